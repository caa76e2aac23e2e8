"""A checkpoint directory of the smallest toy student (toy_tiny: tiny SegFormer, D = 64, the random-weight
test CLIP), written without Ray or training: what predict/export tests load like a real run's checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from c2s.config import load_config, to_dict
from c2s.student import build_student
from c2s.train.checkpoint import save_state


def make_toy_run(run_dir: Path, overrides: tuple[str, ...] = (), seed: int = 0) -> Path:
    """``run_dir/checkpoint_000001/state.pt`` of a seeded random toy_tiny student; returns ``run_dir``."""
    cfg = load_config("toy_tiny", ["model.pretrained=null", *overrides])
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
