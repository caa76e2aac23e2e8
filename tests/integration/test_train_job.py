"""Integration tests of the training job on one local Ray (2 CPUs): 2 workers + 1 teacher actor (the early
path errors, which need no Ray, are unit tests in test_train_units.py).

Uses the random-weight test CLIP (c2s-test-vit) and a tiny toy world so each run takes seconds of
compute; most of the wall time is Ray starting actors.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import threading

import numpy as np
import pandas as pd
import pytest
import torch

from c2s import evaluate
from c2s.config import load_config
from c2s.train.checkpoint import STATE_FILE, checkpoints_newest_first, latest_checkpoint, load_state
from c2s.train.schedule import lr_factor
from c2s.train.snapshot import restored_step
from c2s.train.trainer import run_training

pytestmark = pytest.mark.integration

# On top of toy_tiny. A bank of 24 holds all of a step-2 checkpoint's 8 tokens and the 16 that four more steps
# push, so the resumed run's bank shows the restored tokens, oldest first (a fresh bank would hold 16).
TINY = ["train.workers=2", "train.checkpoint_interval=2", "train.max_failures=1", "bank.size=24"]
# Evaluation every 2 steps on 5 validation images: the two workers' slices are uneven (3 + 2).
EVAL = ["train.eval_interval=2", "data.world.images_val=5"]


def _rows(run_dir, kind="train"):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if json.loads(line).get("kind") == kind]


def _fifo(objective_state):
    """Bank tokens oldest first, from the ring buffer in a checkpoint."""
    tokens, ptr, count = (objective_state[f"bank.{k}"] for k in ("tokens", "ptr", "count"))
    if int(count) < tokens.shape[0]:
        return tokens[: int(count)]
    return torch.cat([tokens[int(ptr):], tokens[: int(ptr)]])


def _metrics_from_table(path):
    """sIoU / uIoU / hIoU recomputed from the saved per-class table (NaN classes left out, as mmseg)."""
    table = pd.read_parquet(path)
    s = table[table["seen"]]["iou"].dropna().mean()
    u = table[~table["seen"]]["iou"].dropna().mean()
    return {"sIoU": s, "uIoU": u, "hIoU": 2 * s * u / (s + u) if s + u else 0.0}


def _batches_tracked(student_state):
    """BatchNorm's num_batches_tracked of every BN layer: +1 per training forward pass of the student."""
    return {int(v) for k, v in student_state.items() if k.endswith("num_batches_tracked")}


class _RowWatcher(threading.Thread):
    """Records metrics.jsonl's train rows as first written, before the injected crash (polls 20x a second)."""

    def __init__(self, run_dir):
        super().__init__(daemon=True)
        self.run_dir, self.before_crash, self.stop = run_dir, {}, threading.Event()

    def run(self):
        metrics, marker = self.run_dir / "metrics.jsonl", self.run_dir / ".crash_injected"
        while not self.stop.is_set() and not marker.exists():
            if metrics.exists():
                for line in metrics.read_text().splitlines():
                    row = json.loads(line) if line.strip().endswith("}") else {}
                    if row.get("kind") == "train":
                        self.before_crash.setdefault(row["step"], line)
            self.stop.wait(0.05)


@pytest.fixture(scope="module")
def crashed_run(ray_local, tmp_path_factory):
    """One run, two Train runs (each costs ~20-30 s of Ray start-up here, so the behaviours share them):

    1. toy_tiny, 2 workers, 4 steps; the last worker exits at step 3 and Train restarts from the step-2
       checkpoint. The step-4 checkpoint is evaluated single-process (``c2s eval``); checkpoints kept: 2 and 4.
    2. The step-4 ``state.pt`` truncated to half (a node that died while writing), ``--resume`` to step 6:
       the driver finds the damage and Ray Train restores the step-2 checkpoint (issue 27 item 6), whose
       bank, optimizer, schedule and student the resumed run continues.

    Every phase logs to MLflow (``tracking.mlflow_uri``, a SQLite store) where the c2s[mlflow] extra is installed.

    Yields what each phase left (states, rows, printed lines) for the tests below to assert on."""
    tmp_path = tmp_path_factory.mktemp("crashed_run")
    cache = tmp_path / "cache"
    mp = pytest.MonkeyPatch()
    mp.setenv("C2S_CACHE", str(cache))
    run_dir = tmp_path / "run"
    phases: dict = {"run_dir": run_dir, "mlflow_uri": f"sqlite:///{tmp_path}/mlflow.db"}
    track = [f"tracking.mlflow_uri={phases['mlflow_uri']}"] if importlib.util.find_spec("mlflow") else []
    watcher = _RowWatcher(run_dir)
    watcher.start()
    try:
        phases["summary"] = run_training(
            load_config("toy_tiny", [*TINY, *EVAL, *track, "train.iters=4", "train.crash_at_step=3"]), run_dir)
    finally:
        watcher.stop.set()
        watcher.join()
    phases["before_crash"] = dict(watcher.before_crash)
    phases["crash_marker"] = (run_dir / ".crash_injected").read_text()
    phases["lines_4"] = _train_lines(run_dir)
    phases["evals_4"] = _rows(run_dir, kind="eval")
    step4 = latest_checkpoint(run_dir)
    phases["state_4"] = load_state(step4)
    phases["final_4"] = json.loads((run_dir / "final" / "metrics.json").read_text())
    phases["confusion_4"] = np.load(run_dir / "final" / "confusion.npy")
    phases["table_4"] = _metrics_from_table(run_dir / "final" / "per_class.parquet")
    phases["panels_4"] = (run_dir / "final" / "panels.png").is_file()
    phases["single"] = _single_process_eval(step4, tmp_path / "single")
    step2 = checkpoints_newest_first(run_dir)[1]
    phases["state_2"] = load_state(step2)

    damaged = step4 / STATE_FILE
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    phases["damaged"], phases["damaged_size"], phases["fallback"] = damaged, len(data) // 2, step2
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        phases["resumed"] = run_training(load_config("toy_tiny", [*TINY, *EVAL, *track, "train.iters=6"]),
                                         run_dir, resume=True)
    phases["printed_6"] = out.getvalue().splitlines()
    phases["lines_6"] = _train_lines(run_dir)
    phases["state_6"] = load_state(latest_checkpoint(run_dir))
    yield phases
    mp.undo()


def _train_lines(run_dir) -> dict[int, str]:
    """metrics.jsonl's train rows as written, by step."""
    return {json.loads(line)["step"]: line for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if json.loads(line).get("kind") == "train"}


def test_train_killed_worker_restarts_from_its_checkpoint(crashed_run):
    """The last worker exits at step 3 and Train restarts from the step-2 checkpoint; the run's metrics,
    evaluation and step-4 checkpoint are complete."""
    summary = crashed_run["summary"]
    assert crashed_run["crash_marker"] == "3"  # the last worker really exited at step 3
    # train.torch_threads=0: Ray's OMP_NUM_THREADS for a 0.5-CPU worker, floor(0.5) raised to 1
    assert summary["worker_device"]["torch_threads"] == 1
    # The restart began at step 3, not step 0: rows 1 and 2 are still the ones the first attempt wrote
    # before the crash (a restart from 0 truncates and rewrites them, with new timings). Rank 0 may also
    # have logged step 3 while the crashing rank slept; that row is redone after the restart.
    before_crash, lines = crashed_run["before_crash"], crashed_run["lines_4"]
    assert {1, 2} <= set(before_crash) <= {1, 2, 3}
    assert [lines[1], lines[2]] == [before_crash[1], before_crash[2]]
    rows = [json.loads(lines[step]) for step in sorted(lines)]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # step 3 redone after the restart, no duplicate rows
    for key in ("loss", "loss_global", "loss_local", "loss_pixel", "loss_nel", "loss_ce", "lr",
                "images_per_s", "teacher_wait_frac"):
        assert key in rows[-1], key
    assert 0.0 <= rows[-1]["teacher_wait_frac"] <= 1.0
    assert rows[0]["loss_global"] > 0 and rows[0]["loss_local"] > 0  # the teacher's tokens arrived
    assert summary["step"] == 4
    recomputed = crashed_run["table_4"]
    assert math.isfinite(summary["hIoU"])  # both sides had classes to evaluate
    for key in ("sIoU", "uIoU", "hIoU"):
        assert summary[key] == pytest.approx(recomputed[key]), key
    assert crashed_run["panels_4"]

    state = crashed_run["state_4"]
    assert state["step"] == 4
    bank = _fifo(state["objective"])
    # 4 steps x 4 images (2 restored with the step-2 checkpoint, 2 after the restart), gathered from both
    # workers each step (a restart from a fresh bank would hold 8)
    assert bank.shape == (16, 64)
    assert torch.equal(bank[:8], _fifo(crashed_run["state_2"]["objective"]))
    assert state["seen_text"].shape == (15, 64)  # training received the 15 seen classes only
    assert {"student", "optimizer", "scheduler", "rng", "config"} <= set(state)
    assert state["scheduler"]["last_epoch"] == 4
    # Adam, the schedule and BatchNorm counted 4 steps: restored at 2 by the restart (a restart from
    # scratch would count 2, one that ignored the checkpoint's optimizer 2 as well)
    assert {int(v["step"]) for v in state["optimizer"]["state"].values()} == {4}
    assert _batches_tracked(state["student"]) == {4}


def test_final_metrics_match_their_per_class_table(crashed_run):
    run_dir = crashed_run["run_dir"]
    # the resumed run rewrote final/; its metrics still agree with its own per-class table
    recomputed = _metrics_from_table(run_dir / "final" / "per_class.parquet")
    final = json.loads((run_dir / "final" / "metrics.json").read_text())
    for key in ("sIoU", "uIoU", "hIoU"):
        assert final[key] == pytest.approx(recomputed[key]), key
    assert (run_dir / "final" / "panels.png").exists()


def test_resume_continues_with_the_saved_state(crashed_run):
    """``--resume`` continues the run from the step-2 checkpoint to step 6 with its bank, optimizer, schedule
    and student (the step-4 one is damaged, the next test)."""
    state, after = crashed_run["state_2"], crashed_run["state_6"]
    assert state["step"] == 2
    assert crashed_run["resumed"]["step"] == 6 and after["step"] == 6
    # The resumed run started from the saved bank: its 8 tokens are the 8 oldest, in the same FIFO order,
    # and steps 3-6 pushed 16 new ones (a fresh bank would hold 16)
    bank, bank_after = _fifo(state["objective"]), _fifo(after["objective"])
    assert bank.shape == (8, 64) and bank_after.shape == (24, 64)
    assert torch.equal(bank_after[:8], bank)
    # Optimizer, schedule and student continued from their step-2 values (fresh ones would count the 4 steps
    # trained since): Adam's step counters, the scheduler's epoch, BatchNorm's forward-pass counters.
    assert {int(v["step"]) for v in after["optimizer"]["state"].values()} == {6}
    assert after["scheduler"]["last_epoch"] == 6
    assert _batches_tracked(after["student"]) == {6}
    assert any(not torch.equal(after["student"][k], v) for k, v in state["student"].items() if v.is_floating_point())
    # The logged lr follows the restored schedule over the new total (6): lr_t = lr_0 * factor(t, 6)
    cfg6 = load_config("toy_tiny", [*TINY, *EVAL, "train.iters=6"])
    lr0 = state["optimizer"]["param_groups"][0]["initial_lr"]
    for step in (3, 5, 6):
        row = json.loads(crashed_run["lines_6"][step])
        assert row["lr"] == pytest.approx(lr0 * lr_factor(step, 6, cfg6.optim)), step
    assert restored_step(crashed_run["run_dir"]) == 6


def test_resume_past_a_damaged_checkpoint_restores_the_newest_intact_one(crashed_run):
    """Issue 27 item 6, as a user whose node died while writing: the step-4 state.pt cut to half. The resume
    says which file is damaged and why, Ray Train restores the step-2 checkpoint, steps 3-6 are trained."""
    damaged, fallback = crashed_run["damaged"], crashed_run["fallback"]
    assert (f"[c2s] checkpoint {damaged} is damaged (truncated: {crashed_run['damaged_size']} bytes, a zip "
            f"archive cut short before its central directory); resuming from {fallback} (step 2) instead"
            ) in crashed_run["printed_6"]
    before, after = crashed_run["lines_4"], crashed_run["lines_6"]
    assert sorted(after) == [1, 2, 3, 4, 5, 6]  # continued after the restored step, no duplicates
    assert [after[s] for s in (1, 2)] == [before[s] for s in (1, 2)]  # kept: restored after step 2
    assert after[3] != before[3] and after[4] != before[4]  # redone from the step-2 checkpoint
    # (The redone steps' losses are not compared: which worker gets which rows of the stream is Ray Data's
    # split, not fixed across runs with 2 workers. tests/train/test_damaged_checkpoint.py's units cover the choice.)


def _single_process_eval(checkpoint, single_dir) -> dict:
    """``c2s eval`` of ``checkpoint`` in this process, one thread like the Ray workers (the same float sums):
    its printed JSON line, its metrics.json and its confusion matrix."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray workers' thread count (num_cpus 0.5)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            assert evaluate.main([str(checkpoint), "--out", str(single_dir), "--device", "cpu"]) == 0
    finally:
        torch.set_num_threads(threads)
    return {"printed": json.loads(out.getvalue().strip().splitlines()[-1]),
            "metrics": json.loads((single_dir / "metrics.json").read_text()),
            "confusion": np.load(single_dir / "confusion.npy")}


def test_sharded_evaluation_equals_single_process(crashed_run):
    """Two Ray Train workers each evaluated their slice of the 5 validation images and all-reduced the
    confusion matrices over the process group Ray Train set up (gloo on CPU): one eval row per evaluation
    (rank 0 alone writes it), and the final metrics equal a single-process ``c2s eval`` of the checkpoint
    (issue 15 item 4)."""
    evals = crashed_run["evals_4"]
    assert [r["step"] for r in evals] == [2, 4]  # step 2 before the crash, 4 after the restart, none twice
    assert all(r["images"] == 5 and r["eval_s"] > 0 for r in evals)
    final = crashed_run["final_4"]
    assert final["workers"] == 2 and final["images"] == 5
    single, printed = crashed_run["single"]["metrics"], crashed_run["single"]["printed"]
    assert single["workers"] == 1 and single["step"] == final["step"] == 4
    keys = ("mIoU", "sIoU", "uIoU", "hIoU", "images")
    assert {k: final[k] for k in keys} == {k: single[k] for k in keys} == {k: printed[k] for k in keys}
    assert {k: evals[-1][k] for k in keys} == {k: single[k] for k in keys}
    trained = crashed_run["confusion_4"]
    assert np.array_equal(trained, crashed_run["single"]["confusion"])
    assert trained.sum() > 0


def test_each_train_attempt_is_one_mlflow_run_of_rank_0(crashed_run):
    """tracking.mlflow_uri (c2s/train/tracking.py): rank 0 of each Train attempt opens one MLflow run through
    Ray's setup_mlflow and logs the rows metrics.jsonl gets, at their steps."""
    pytest.importorskip("mlflow", reason="MLflow is the optional extra c2s[mlflow]")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=crashed_run["mlflow_uri"])
    runs = client.search_runs([client.get_experiment_by_name("c2s").experiment_id])
    # Three attempts, two workers each: the first fit, Train's restart after the crash (from step 2) and the
    # resume to 6 (from step 2, past the damaged step 4). One MLflow run per attempt: rank 1 opens none.
    assert sorted(r.data.tags.get("c2s.resumed_from_step", "0") for r in runs) == ["0", "2", "2"]
    assert {r.data.tags["c2s.run_dir"] for r in runs} == {str(crashed_run["run_dir"])}
    (last,) = [r for r in runs if r.data.params["train.iters"] == "6"]
    assert last.info.status == "FINISHED" and last.data.params["train.workers"] == "2"
    assert last.data.params["tracking.mlflow_uri"] == crashed_run["mlflow_uri"]
    rows = [r for r in _rows(crashed_run["run_dir"]) if r["step"] > 2]  # the last attempt's rows
    logged = [(m.step, m.value) for m in client.get_metric_history(last.info.run_id, "train/loss")]
    assert logged == [(r["step"], pytest.approx(r["loss"], abs=1e-12)) for r in rows] and len(rows) == 4
    (final,) = client.get_metric_history(last.info.run_id, "eval/hIoU")[-1:]
    assert (final.step, final.value) == (6, pytest.approx(crashed_run["resumed"]["hIoU"], abs=1e-9))
