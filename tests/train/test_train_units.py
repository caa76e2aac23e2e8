"""Unit tests of the training job's pure pieces (no Ray): schedule, checkpoint, preflight checks."""

import os
import random

import numpy as np
import pytest
import torch

from c2s.config import load_config
from c2s.errors import PreflightError
from c2s.train.checkpoint import load_state, save_state, set_rng_state
from c2s.train.loop import truncate_jsonl
from c2s.train.resolve import check_resources, resources_needed
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


def _trained(seed: int):
    """A Linear + AdamW + warm-up/poly schedule after 3 steps: non-trivial Adam moments and schedule."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    optimizer, scheduler = build_optimizer([{"params": model.parameters()}], OPTIM, 50)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 3)).pow(2).sum().backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer, scheduler


def test_checkpoint_round_trip_restores_everything_and_rng(tmp_path):
    model, optimizer, scheduler = _trained(0)
    objective = torch.nn.Module()
    objective.register_buffer("bank", torch.arange(6.0).view(3, 2))
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
    assert torch.equal(state["seen_text"], torch.ones(2, 2))

    # Restore into a differently initialised, untrained twin: every value comes back, not just the keys.
    twin = torch.nn.Linear(3, 2)
    twin_opt, twin_sched = build_optimizer([{"params": twin.parameters()}], OPTIM, 50)
    twin.load_state_dict(state["student"])
    twin_opt.load_state_dict(state["optimizer"])
    twin_sched.load_state_dict(state["scheduler"])
    for name, value in model.state_dict().items():
        assert torch.equal(twin.state_dict()[name], value), name
    assert twin_sched.state_dict()["last_epoch"] == 3
    assert twin_sched.get_last_lr() == scheduler.get_last_lr() == [pytest.approx(1e-3 * lr_factor(3, 50, OPTIM))]
    saved, original = twin_opt.state_dict()["state"], optimizer.state_dict()["state"]
    assert sorted(saved) == sorted(original) == [0, 1]
    for index in original:
        assert set(saved[index]) == {"step", "exp_avg", "exp_avg_sq"}
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(saved[index][key], original[index][key]), (index, key)
        assert float(saved[index]["step"]) == 3 and float(saved[index]["exp_avg_sq"].abs().sum()) > 0
    # ...so the next step is identical to the one the original run takes.
    batch = torch.randn(4, 3)
    for m, opt, sched in ((model, optimizer, scheduler), (twin, twin_opt, twin_sched)):
        opt.zero_grad()
        m(batch).pow(2).sum().backward()
        opt.step()
        sched.step()
    for name, value in model.state_dict().items():
        assert torch.equal(twin.state_dict()[name], value), name
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


def test_run_training_checks_resources_before_building_anything(tmp_path, monkeypatch):
    """run_training asks the cluster for its resources and fails with the PreflightError before it plans the
    dataset or builds the TorchTrainer: no Ray is started here (init_ray and the cluster are stand-ins)."""
    import ray
    import ray.train.torch

    import c2s.train.trainer as trainer_module
    from c2s.inputs import JobInputs

    def must_not_run(what):
        def fail(*args, **kwargs):
            raise AssertionError(f"{what} was reached before the resource check failed")
        return fail

    asked = []
    monkeypatch.setenv(trainer_module.CONTROLLER_POLL_ENV, "2.0")  # Ray's default; restored after the test
    ray_was_running = ray.is_initialized()  # an integration test earlier in the session may have started one
    monkeypatch.setattr(ray, "init", must_not_run("ray.init"))
    monkeypatch.setattr(trainer_module, "init_ray", lambda *a, **k: None)
    monkeypatch.setattr(trainer_module, "check_run_storage", lambda *a, **k: None, raising=False)  # asks Ray's nodes
    monkeypatch.setattr(trainer_module, "resolve_inputs", lambda cfg: JobInputs(tmp_path, None, tmp_path))
    monkeypatch.setattr(trainer_module, "text_embeddings_for", lambda cfg, inputs: (torch.zeros(1), torch.zeros(1)))
    import c2s.train.cluster
    from c2s.train.placement import Cluster, Node

    monkeypatch.setattr(c2s.train.cluster, "cluster_from_ray",
                        lambda: asked.append(1) or Cluster([Node("10.0.0.1 (head)", {"CPU": 2.0})]))
    monkeypatch.setattr(ray.train.torch, "TorchTrainer", must_not_run("TorchTrainer"))
    for name in ("TrainDatasetFactory", "build_train_dataset"):  # whichever the trainer plans data with
        monkeypatch.setattr(trainer_module, name, must_not_run(name), raising=False)
    cfg = load_config("toy_c2s", ["train.workers=2", "train.cpus_per_worker=1.0", "teacher.actors=[1, 1]",
                                  "teacher.num_cpus=1.0", "data.num_cpus=0.25", "teacher.cache=false"])
    with pytest.raises(PreflightError, match=r"every bundle fits some node, but not all of them together.*"
                                             r"2 x train worker \{CPU: 1\}.*10.0.0.1 \(head\): \{CPU: 2\}"):
        trainer_module.run_training(cfg, tmp_path / "run")
    assert asked == [1]
    assert ray.is_initialized() is ray_was_running  # this test started no Ray
    # train.controller_poll_s reached the variable Ray Train's controller reads at fit()
    assert os.environ[trainer_module.CONTROLLER_POLL_ENV] == "0.25"


def test_controller_poll_is_a_checked_number_of_seconds():
    from c2s.train.trainer import CONTROLLER_POLL_ENV, set_controller_poll

    env: dict[str, str] = {}
    set_controller_poll(0.5, env)
    assert env == {CONTROLLER_POLL_ENV: "0.5"}
    set_controller_poll(2, env)
    assert float(env[CONTROLLER_POLL_ENV]) == 2.0
    for bad in (0, -1.0, 61, True, "0.5", None):
        with pytest.raises(ValueError, match=r"train.controller_poll_s must be a number of seconds in \(0, 60\]"):
            set_controller_poll(bad, env)
    assert float(env[CONTROLLER_POLL_ENV]) == 2.0  # a refused value leaves the environment as it was


class _NotATensor:
    """Any class outside torch's weights_only allow-list: unpickling it could run code."""


def test_load_state_never_unpickles_arbitrary_objects(tmp_path):
    import pickle

    torch.save({"step": 1, "payload": _NotATensor()}, tmp_path / "state.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_state(tmp_path)


def test_latest_checkpoint_is_the_newest_state(tmp_path):
    import os

    from c2s.train.checkpoint import latest_checkpoint

    with pytest.raises(FileNotFoundError, match=r"no checkpoint_\*/state.pt under"):
        latest_checkpoint(tmp_path)
    for i, (name, mtime) in enumerate((("checkpoint_000002", 200), ("checkpoint_000010", 100),
                                        ("checkpoint_000003", 200), ("checkpoint_000004", 50))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "state.pt").write_bytes(b"x" * i)
        os.utime(tmp_path / name, (mtime, mtime))
    (tmp_path / "checkpoint_000099").mkdir()  # newest folder, but no state.pt: not a checkpoint
    # the most recently written checkpoint folder wins (not the highest number); equal times: the name
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint_000003"


def test_early_errors_before_any_worker(cache_root, tmp_path, monkeypatch):
    """Path errors fire before Ray is touched: no Ray here, and starting one would fail the test (a unit test:
    ``init_ray`` and ``ray.init`` are stand-ins that raise)."""
    import ray

    import c2s.train.trainer as trainer_module

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started before the preflight errors")

    monkeypatch.setattr(trainer_module, "init_ray", no_ray)
    monkeypatch.setattr(ray, "init", no_ray)
    missing_root = load_config("voc12_segformer_b4", [f"data.root={tmp_path / 'nope'}",
                                                      "teacher.checkpoint=/x/ViT-B-16.pt"])
    with pytest.raises(PreflightError, match="data.root = .*nope.* does not exist"):
        trainer_module.run_training(missing_root, tmp_path / "r1")
    (tmp_path / "voc").mkdir()
    missing_ckpt = load_config("voc12_segformer_b4", [f"data.root={tmp_path / 'voc'}",
                                                      "teacher.checkpoint=/x/ViT-B-16.pt"])
    with pytest.raises(PreflightError, match=r"teacher.checkpoint.*'/x/ViT-B-16.pt'.* does not exist"):
        trainer_module.run_training(missing_ckpt, tmp_path / "r2")
    no_ckpt = load_config("voc12_segformer_b4", [f"data.root={tmp_path / 'voc'}"])
    with pytest.raises(PreflightError, match="teacher.checkpoint is not set"):
        trainer_module.run_training(no_ckpt, tmp_path / "r3")
    # nothing was written for any of them: no config dump, no metrics, no checkpoint
    for run in ("r1", "r2", "r3"):
        assert not (tmp_path / run).exists() or not any((tmp_path / run).iterdir()), run


def test_torch_threads_is_a_checked_whole_number():
    from c2s.train.trainer import check_torch_threads

    assert [check_torch_threads(v) for v in (0, 1, 2)] == [0, 1, 2]
    for bad in (-1, 1.5, "2", None, True):
        with pytest.raises(ValueError, match=r"train.torch_threads must be a whole number >= 0"):
            check_torch_threads(bad)


def test_a_bad_objective_setting_stops_the_run_before_ray(tmp_path, monkeypatch):
    """run_training checks the objective's settings on the driver: a ConfigError naming the key (the CLI's exit
    2, no traceback) before Ray starts, not a worker error Ray Train would retry."""
    import ray

    import c2s.train.trainer as trainer_module
    from c2s.config import ConfigError
    from c2s.inputs import JobInputs

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started before the settings were checked")

    monkeypatch.setattr(trainer_module, "init_ray", no_ray)
    monkeypatch.setattr(ray, "init", no_ray)
    monkeypatch.setattr(trainer_module, "resolve_inputs", lambda cfg: JobInputs(tmp_path, None, tmp_path))
    cfg = load_config("toy_tiny", ["loss.tau=-1"])
    with pytest.raises(ConfigError, match=r"^loss.tau: expected a positive number, got -1.0$"):
        trainer_module.run_training(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "config.json").exists()
