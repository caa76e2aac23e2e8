"""Parquet result tables from hand-made run directories: schema, dtypes, upserts, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from c2s.sweep import tables as T
from c2s.sweep.spec import TrialSpec
from c2s.sweep.tables import SCHEMA_VERSION, TableError, collect_run, load_tables, read_table, write_run


def trial(point: int, seed: int, tau: float = 0.07, **extra) -> TrialSpec:
    overrides = {"train.iters": 300, "loss.tau": tau, "distill.enabled": True, "teacher.actors": [1, 2],
                 "distill.kind": "infonce", **extra, "train.seed": seed}
    return TrialSpec(trial_id=f"t{point:03d}_s{seed}", point_id=f"t{point:03d}", label=f"loss.tau={tau}",
                     variant=None, seed=seed, params={"loss.tau": tau}, overrides=overrides)


def make_run(root: Path, name: str, evals: list[tuple[int, float, float]], final: bool = True,
             truncated_tail: bool = False) -> Path:
    """A run dir as the training job writes it: log rows every 10 steps, eval rows (step, sIoU, uIoU)."""
    run = root / name
    (run / "final").mkdir(parents=True)
    lines = []
    for step in (10, 20, 30):
        lines.append({"step": step, "loss": 3.0 - step / 10, "loss_global": 1.0 / step, "loss_local": 0.5,
                      "loss_pixel": 1.5, "loss_nel": 1.0, "loss_ce": 0.5, "lr": 1e-4 * step,
                      "images_per_s": 50.0, "teacher_wait_frac": 0.1, "grad_norm": 2.0})
    for step, s, u in evals:
        h = 2 * s * u / (s + u)
        lines.append({"step": step, "sIoU": s, "uIoU": u, "hIoU": h, "mIoU": (s + u) / 2, "kind": "eval"})
    text = "\n".join(json.dumps(x) for x in lines) + "\n"
    if truncated_tail:
        text += '{"step": 40, "loss'
    (run / "metrics.jsonl").write_text(text)
    if final:
        step, s, u = evals[-1]
        (run / "final" / "metrics.json").write_text(json.dumps(
            {"sIoU": s, "uIoU": u, "hIoU": 2 * s * u / (s + u), "mIoU": (s + u) / 2, "step": step, "wall_s": 720.0}))
        pq.write_table(pa.table({"class": ["cat", "dog", "sky"], "seen": [True, True, False],
                                 "iou": [50.0, 40.0, 20.0]}), run / "final" / "per_class.parquet")
    return run


def test_collect_run_rows(tmp_path: Path):
    run = make_run(tmp_path, "r0", [(15, 40.0, 30.0), (30, 42.0, 20.0)], truncated_tail=True)
    rows = collect_run(run, trial(0, 1), sweep="tau", gpus=0.5)
    (row,) = rows.trials
    assert row["status"] == "completed" and row["error"] is None and row["seed"] == 1
    assert row["final_sIoU"] == 42.0 and row["final_uIoU"] == 20.0 and row["final_step"] == 30
    # best by hIoU: step 15 (h = 34.29) beats step 30 (h = 27.10)
    assert row["best_step"] == 15 and row["best_sIoU"] == 40.0 and row["best_uIoU"] == 30.0
    assert row["best_hIoU"] == pytest.approx(2 * 40 * 30 / 70)
    assert row["wall_s"] == 720.0 and row["gpu_hours"] == pytest.approx(0.1)  # 720 s x 0.5 GPU
    assert row["cfg.loss.tau"] == 0.07 and row["cfg.teacher.actors"] == "[1, 2]" and "cfg.train.seed" not in row
    assert len(rows.curves) == 5  # 3 log rows + 2 eval rows; the truncated last line is skipped
    assert [r["kind"] for r in rows.curves] == ["train", "train", "train", "eval", "eval"]
    assert rows.curves[0]["grad_norm"] == 2.0  # extra numeric keys are kept
    assert [(r["class"], r["seen"], r["iou"]) for r in rows.per_class] == \
        [("cat", True, 50.0), ("dog", True, 40.0), ("sky", False, 20.0)]


def test_failed_and_running_status(tmp_path: Path):
    failed = collect_run(None, trial(1, 0), sweep="tau", error="RuntimeError: boom")
    assert failed.trials[0]["status"] == "failed" and failed.trials[0]["final_hIoU"] is None
    assert failed.curves == [] and failed.per_class == []
    running = make_run(tmp_path, "r1", [(15, 40.0, 30.0)], final=False)
    assert collect_run(running, trial(2, 0), sweep="tau").trials[0]["status"] == "running"
    with pytest.raises(TableError, match=r"status completed but .*final/metrics.json is missing"):
        collect_run(running, trial(2, 0), sweep="tau", status="completed")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(TableError, match=r"metrics.jsonl:2: not a JSON object"):
        collect_run(bad, trial(3, 0), sweep="tau")


def test_written_schema_and_dtypes(tmp_path: Path):
    sweep = tmp_path / "sweep"
    runs = [collect_run(make_run(tmp_path, f"r{i}", [(30, 40.0 + i, 20.0 + i)]), trial(i, 0, tau=0.05 * (i + 1)),
                        sweep="tau") for i in range(2)]
    runs.append(collect_run(None, trial(2, 0), sweep="tau", error="OOM"))
    paths = write_run(sweep, runs)
    assert sorted(p.name for p in paths.values()) == ["curves.parquet", "per_class.parquet", "trials.parquet"]
    trials = read_table(sweep, "trials")
    assert trials.schema.metadata[b"c2s.schema_version"] == str(SCHEMA_VERSION).encode()
    types = {f.name: f.type for f in trials.schema}
    assert types["trial_id"] == pa.string() and types["seed"] == pa.int64() and types["best_step"] == pa.int64()
    assert types["final_hIoU"] == pa.float64() and types["gpu_hours"] == pa.float64()
    assert types["cfg.loss.tau"] == pa.float64() and types["cfg.train.iters"] == pa.int64()
    assert types["cfg.distill.enabled"] == pa.bool_() and types["cfg.distill.kind"] == pa.string()
    assert [f.name for f in trials.schema][: len(T.TRIALS_FIELDS)] == [f.name for f in T.TRIALS_FIELDS]
    assert trials.num_rows == 3 and trials["status"].to_pylist() == ["completed", "completed", "failed"]
    assert trials["cfg.loss.tau"].to_pylist() == pytest.approx([0.05, 0.1, 0.07])
    curves = read_table(sweep, "curves")
    assert curves.num_rows == 2 * 4 and curves.schema.field("step").type == pa.int64()
    assert {f.name for f in T.CURVES_FIELDS} <= set(curves.column_names)
    per_class = read_table(sweep, "per_class")
    assert per_class.num_rows == 6 and per_class.schema.field("seen").type == pa.bool_()
    dfs = load_tables(sweep)
    assert dfs["trials"].loc[dfs["trials"].status == "completed", "final_sIoU"].tolist() == [40.0, 41.0]
    assert str(dfs["trials"]["seed"].dtype) == "int64"


def test_upsert_adds_no_duplicates_and_replaces(tmp_path: Path):
    sweep = tmp_path / "sweep"
    write_run(sweep, collect_run(None, trial(0, 0), sweep="tau", error="killed"))
    write_run(sweep, collect_run(make_run(tmp_path, "r1", [(30, 41.0, 21.0)]), trial(1, 0), sweep="tau"))
    # resume: trial 0 reruns and completes, trial 1 is collected again
    write_run(sweep, [collect_run(make_run(tmp_path, "r0", [(30, 40.0, 20.0)]), trial(0, 0), sweep="tau"),
                      collect_run(tmp_path / "r1", trial(1, 0), sweep="tau")])
    dfs = load_tables(sweep)
    trials = dfs["trials"]
    assert len(trials) == 2 and trials["trial_id"].tolist() == ["t000_s0", "t001_s0"]
    assert trials["status"].tolist() == ["completed", "completed"] and trials["error"].isna().all()
    assert len(dfs["curves"]) == 2 * 4 and len(dfs["per_class"]) == 2 * 3
    assert not dfs["curves"].duplicated(["trial_id", "seed", "step", "kind"]).any()
    # a new override column appears; older rows get nulls
    write_run(sweep, collect_run(make_run(tmp_path, "r2", [(30, 1.0, 2.0)]), trial(2, 1, **{"bank.size": 48}),
                                 sweep="tau"))
    t = read_table(sweep, "trials")
    assert t.num_rows == 3 and t["cfg.bank.size"].to_pylist() == [None, None, 48]
    assert t.schema.field("cfg.bank.size").type == pa.int64()
    # a changed column type is an error naming the column, and the file stays as it was
    with pytest.raises(TableError, match=r"cfg.loss.tau"):
        write_run(sweep, collect_run(None, trial(3, 0, tau="hot"), sweep="tau", error="x"))
    assert read_table(sweep, "trials").num_rows == 3


def test_atomic_write_leaves_no_partial_file(tmp_path: Path, monkeypatch):
    sweep = tmp_path / "sweep"
    write_run(sweep, collect_run(make_run(tmp_path, "r0", [(30, 40.0, 20.0)]), trial(0, 0), sweep="tau"))
    before = (sweep / "trials.parquet").read_bytes()
    real_write = pq.write_table

    def crash(table, where, *a, **k):
        real_write(table.slice(0, 1), where, *a, **k)  # half the work done, then the writer dies
        raise OSError("disk full")

    monkeypatch.setattr(T.pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        write_run(sweep, collect_run(make_run(tmp_path, "r1", [(30, 41.0, 21.0)]), trial(1, 0), sweep="tau"))
    monkeypatch.undo()
    assert (sweep / "trials.parquet").read_bytes() == before
    assert sorted(p.name for p in sweep.iterdir()) == ["curves.parquet", "per_class.parquet", "trials.parquet"]
    # a fresh sweep dir whose first write crashes has no table at all
    monkeypatch.setattr(T.pq, "write_table", crash)
    with pytest.raises(OSError):
        write_run(tmp_path / "fresh", collect_run(tmp_path / "r1", trial(1, 0), sweep="tau"))
    assert list((tmp_path / "fresh").iterdir()) == []


def test_schema_version_mismatch_is_refused(tmp_path: Path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    pq.write_table(pa.table({"trial_id": ["t000_s0"], "seed": [0]}), sweep / "trials.parquet")
    with pytest.raises(TableError, match=r"trials.parquet: schema version missing.*reads version 1"):
        read_table(sweep, "trials")
