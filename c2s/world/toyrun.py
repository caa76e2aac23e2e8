"""A checkpoint directory of the smallest toy student, written without Ray or training: what ``c2s bench
serve`` serves, and what the predict/export/serve tests load like a real run's checkpoint.

The student is toy_tiny's tiny SegFormer (D = 64) with seeded random weights and the random-weight test CLIP
as its teacher: enough to exercise every path (text tower, cache, inference, serving) and to time them;
nothing it predicts means anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def make_toy_run(run_dir: str | Path, overrides: Sequence[str] = (), seed: int = 0,
                 config: str = "toy_tiny") -> Path:
    """``run_dir/checkpoint_000001/state.pt`` of a seeded random ``config`` student; returns ``run_dir``."""
    import torch

    from c2s.config import load_config, to_dict
    from c2s.student import build_student
    from c2s.train.checkpoint import save_state

    cfg = load_config(config, ["model.pretrained=null", *overrides])
    torch.manual_seed(seed)
    student = build_student(dict(cfg.model)).eval()
    with torch.no_grad():  # non-trivial BN statistics, so eval-mode BN is not an identity
        for name, buf in student.named_buffers():
            if name.endswith("running_mean"):
                buf.uniform_(-0.1, 0.1)
    objective = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(objective.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    ckpt = Path(run_dir) / "checkpoint_000001"
    ckpt.mkdir(parents=True)
    save_state(ckpt, student=student, objective=objective, optimizer=optimizer, scheduler=scheduler, step=1,
               config=to_dict(cfg), seen_text=torch.zeros(1, int(cfg.model.embed_dim)))
    return Path(run_dir)
