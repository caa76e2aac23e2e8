"""Unit tests of the training job's pure pieces (no Ray): schedule, checkpoint, preflight checks."""

import random

import numpy as np
import pytest
import torch

from c2s.config import load_config
from c2s.train.checkpoint import load_state, save_state, set_rng_state
from c2s.train.loop import truncate_jsonl
from c2s.train.resolve import PreflightError, check_resources, resources_needed
from c2s.train.schedule import build_optimizer, lr_factor

OPTIM = {"lr": 1e-3, "min_lr": 0.0, "poly_power": 1.0, "warmup_iters": 10, "warmup_ratio": 1e-6,
         "betas": (0.9, 0.999), "weight_decay": 0.01}


def test_warmup_then_poly():
    assert lr_factor(0, 100, OPTIM) == pytest.approx(1e-6)
    assert lr_factor(5, 100, OPTIM) == pytest.approx((1e-6 + (1 - 1e-6) * 0.5) * 0.95)
    assert lr_factor(10, 100, OPTIM) == pytest.approx(0.9)  # warm-up over, poly (1 - 10/100)^1
    assert lr_factor(100, 100, OPTIM) == 0.0
    floored = {**OPTIM, "min_lr": 1e-4}
    assert lr_factor(99, 100, floored) == pytest.approx(0.1)  # never below min_lr / lr


def test_optimizer_groups_keep_their_lr_multipliers():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    optimizer, scheduler = build_optimizer([{"params": a.parameters()}, {"params": b.parameters(), "lr": 1e-2}],
                                           {**OPTIM, "warmup_iters": 0}, 10)
    optimizer.step()
    scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.9e-3, 0.9e-2])


def test_checkpoint_round_trip_restores_everything_and_rng(tmp_path):
    model = torch.nn.Linear(3, 2)
    objective = torch.nn.Module()
    objective.register_buffer("bank", torch.arange(6.0).view(3, 2))
    optimizer, scheduler = build_optimizer([{"params": model.parameters()}], OPTIM, 50)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_state(tmp_path, student=model, objective=objective, optimizer=optimizer, scheduler=scheduler, step=7,
               config={"train": {"iters": 50}}, seen_text=torch.ones(2, 2))
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    state = load_state(tmp_path)  # weights_only=True under the hood
    set_rng_state(state["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == pytest.approx(expected)
    assert state["step"] == 7 and state["config"] == {"train": {"iters": 50}}
    assert torch.equal(state["objective"]["bank"], torch.arange(6.0).view(3, 2))
    assert state["scheduler"]["last_epoch"] == 1
    with pytest.raises(FileNotFoundError, match="state.pt"):
        load_state(tmp_path / "missing")


def test_truncate_jsonl_drops_rows_after_resume_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(f'{{"step": {s}}}\n' for s in (10, 20, 30, 40)))
    truncate_jsonl(path, 20)
    assert path.read_text().splitlines() == ['{"step": 10}', '{"step": 20}']


def test_resources_are_added_up_and_checked_before_fit():
    cfg = load_config("toy_c2s", ["train.workers=2", "train.cpus_per_worker=1.0", "teacher.actors=[1, 1]",
                                  "teacher.num_cpus=1.0", "data.num_cpus=0.25"])
    need = resources_needed(cfg, with_teacher=True)
    assert need == {"CPU": pytest.approx(3.5), "GPU": 0.0}
    assert resources_needed(cfg, with_teacher=False)["CPU"] == pytest.approx(2.5)
    with pytest.raises(PreflightError, match=r"CPU: needs 3.5, cluster has 2"):
        check_resources(need, {"CPU": 2.0})
    check_resources({"CPU": 2.0, "GPU": 0.0}, {"CPU": 2.0})
