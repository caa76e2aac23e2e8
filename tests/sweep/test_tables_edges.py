"""Edges of c2s/sweep/tables.py that mutation testing (``make mutate``) showed no other test pinned down: the
exact rows collected from a hand-made run directory (every key and value), best-row ties, the precedence of
wall time and GPU hours, the error texts, and which keys/keys-sets an upsert replaces."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from c2s.sweep import tables as T
from c2s.sweep.spec import TrialSpec
from c2s.sweep.tables import (
    TableError,
    collect_curves,
    collect_per_class,
    collect_run,
    collect_trial_row,
    read_final_metrics,
    read_metrics_jsonl,
    read_table,
    upsert,
    write_run,
)

SPEC = TrialSpec(trial_id="t004_s2", point_id="t004", label="bank.size=48", variant="full", seed=2,
                 params={"bank.size": 48}, base="toy_c2s",
                 overrides={"bank.size": 48, "latent.layers": [2, 1], "loss.extra": {"b": 1, "a": 2},
                            "train.seed": 2, "distill.enabled": False})
CFG = {"cfg.bank.size": 48, "cfg.latent.layers": "[2, 1]", "cfg.loss.extra": '{"a": 2, "b": 1}',
       "cfg.distill.enabled": False}


def run_dir(root: Path, lines: list, final: dict | None, per_class: pa.Table | None = None) -> Path:
    run = root / "run"
    (run / "final").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if final is not None:
        (run / "final" / "metrics.json").write_text(json.dumps(final))
    if per_class is not None:
        pq.write_table(per_class, run / "final" / "per_class.parquet")
    return run


def ev(step: int, h: float, s: float = 1.0) -> dict:
    return {"step": step, "sIoU": s, "uIoU": 2.0, "hIoU": h, "mIoU": 3.0, "kind": "eval"}


def test_trial_row_is_exactly_the_documented_row(tmp_path):
    final = {"sIoU": 40.0, "uIoU": 20.0, "hIoU": 26.0, "mIoU": 30.0, "step": 90, "wall_s": 100.0,
             "gpu_hours": 0.5, "params_m": 12.5, "gflops": 7.25}
    run = run_dir(tmp_path, [{"step": 10, "loss": 1.0}, ev(30, 27.0, s=5.0), ev(60, 25.0)], final)
    row = collect_trial_row(run, SPEC, sweep="bank")
    assert row == {
        "sweep": "bank", "trial_id": "t004_s2", "point_id": "t004", "label": "bank.size=48", "variant": "full",
        "seed": 2, "status": "completed", "error": None, "run_dir": str(run), "base": "toy_c2s",
        "final_sIoU": 40.0, "final_uIoU": 20.0, "final_hIoU": 26.0, "final_mIoU": 30.0, "final_step": 90,
        "best_metric": "hIoU", "best_sIoU": 5.0, "best_uIoU": 2.0, "best_hIoU": 27.0, "best_mIoU": 3.0,
        "best_step": 30, "wall_s": 100.0, "gpu_hours": 0.5, "params_m": 12.5, "gflops": 7.25,
        "teacher_images": 0, **CFG,
    }
    # the final metrics are a candidate for the best too: lowest sIoU by min is the final (step 90)
    by_min = collect_trial_row(run, SPEC, sweep="bank", metric="sIoU", mode="min")
    assert (by_min["best_metric"], by_min["best_step"], by_min["best_sIoU"]) == ("sIoU", 60, 1.0)
    final["sIoU"] = 0.5
    (run / "final" / "metrics.json").write_text(json.dumps(final))
    by_min = collect_trial_row(run, SPEC, sweep="bank", metric="sIoU", mode="min")
    assert (by_min["best_step"], by_min["best_sIoU"], by_min["best_hIoU"]) == (90, 0.5, 26.0)


def test_final_without_step_is_no_best_candidate(tmp_path):
    run = run_dir(tmp_path, [ev(30, 10.0)], {"sIoU": 9.0, "uIoU": 9.0, "hIoU": 99.0, "mIoU": 9.0})
    row = collect_trial_row(run, SPEC, sweep="s")
    assert row["final_step"] is None and row["final_hIoU"] == 99.0
    assert (row["best_step"], row["best_hIoU"]) == (30, 10.0)
    # no eval rows and no final step: no best at all
    run2 = run_dir(tmp_path / "b", [], {"hIoU": 5.0})
    row2 = collect_trial_row(run2, SPEC, sweep="s")
    assert [row2[f"best_{m}"] for m in T.METRICS] == [None] * 4 and row2["best_step"] is None


def test_best_ties_go_to_the_earliest_step_both_ways():
    rows = [ev(40, 7.0), ev(20, 7.0), ev(30, 1.0), ev(10, 1.0), {"step": 5, "hIoU": None, "kind": "eval"}]
    assert T._best(rows, "hIoU", "max")["step"] == 20
    assert T._best(rows, "hIoU", "min")["step"] == 10
    assert T._best([ev(50, 3.0), ev(10, 2.0), ev(30, 1.0)], "hIoU", "min")["step"] == 30
    assert T._best([{"step": 1, "hIoU": float("nan")}], "hIoU", "max") is None


def test_wall_time_and_gpu_hours_precedence(tmp_path):
    run = run_dir(tmp_path, [], {"hIoU": 1.0, "step": 1, "wall_s": 3600.0, "gpu_hours": 4.0})
    row = collect_trial_row(run, SPEC, sweep="s", wall_s=7200.0, gpu_hours=0.25, gpus=8)
    assert (row["wall_s"], row["gpu_hours"]) == (7200.0, 0.25)  # arguments win over final/metrics.json
    row = collect_trial_row(run, SPEC, sweep="s", gpus=8)
    assert (row["wall_s"], row["gpu_hours"]) == (3600.0, 4.0)  # final's own gpu_hours win over wall x gpus
    run2 = run_dir(tmp_path / "b", [], {"hIoU": 1.0, "step": 1, "wall_s": 1800.0})
    row = collect_trial_row(run2, SPEC, sweep="s", gpus=2)
    assert (row["wall_s"], row["gpu_hours"]) == (1800.0, 1.0)  # 1800 s x 2 GPUs
    row = collect_trial_row(run2, SPEC, sweep="s")
    assert (row["wall_s"], row["gpu_hours"]) == (1800.0, None)  # without gpus no guess
    row = collect_trial_row(None, SPEC, sweep="s", error="boom", wall_s=60.0, gpus=2)
    assert (row["status"], row["run_dir"], row["gpu_hours"]) == ("failed", None, pytest.approx(60 * 2 / 3600))


def test_trial_row_errors_name_the_trial():
    with pytest.raises(TableError, match=r"^trial t004_s2: status must be one of completed, failed, running, "
                                         r"stopped, got 'done'$"):
        collect_trial_row(None, SPEC, sweep="s", status="done")


def test_curve_rows_exactly(tmp_path):
    lines = [{"step": 10, "loss": 2.0, "lr": 0.1, "note": "text", "flag": True, "extra": 3, "sweep": "x",
              "trial_id": "y", "seed": 9, "kind": ""},
             {"step": 20, "hIoU": float("inf"), "kind": "eval"}]
    rows = collect_curves(run_dir(tmp_path, lines, None), SPEC, sweep="bank")
    assert rows == [
        # unknown non-numeric keys are dropped, unknown numbers kept; kind "" is a train row
        {"sweep": "bank", "trial_id": "t004_s2", "seed": 2, "step": 10, "kind": "train", "loss": 2.0, "lr": 0.1,
         "extra": 3.0},
        {"sweep": "bank", "trial_id": "t004_s2", "seed": 2, "step": 20, "kind": "eval", "hIoU": None},
    ]


def test_per_class_rows_exactly_and_missing_columns(tmp_path):
    table = pa.table({"class": ["sky", "cat"], "seen": [False, True], "iou": [float("nan"), 40.0]})
    rows = collect_per_class(run_dir(tmp_path, [], None, table), SPEC, sweep="bank")
    assert rows == [
        {"sweep": "bank", "trial_id": "t004_s2", "seed": 2, "class": "sky", "seen": False, "iou": None},
        {"sweep": "bank", "trial_id": "t004_s2", "seed": 2, "class": "cat", "seen": True, "iou": 40.0},
    ]
    bad = run_dir(tmp_path / "b", [], None, pa.table({"seen": [True]}))
    with pytest.raises(TableError, match=r"per_class.parquet: missing column\(s\) class, iou; expected class "
                                         r"\(str\), seen \(bool\), iou \(float\)$"):
        collect_per_class(bad, SPEC, sweep="bank")


def test_collect_run_passes_the_sweep_name_to_every_table(tmp_path):
    table = pa.table({"class": ["cat"], "seen": [True], "iou": [1.0]})
    run = run_dir(tmp_path, [{"step": 1, "loss": 1.0}], {"hIoU": 1.0, "step": 1}, table)
    rows = collect_run(run, SPEC, sweep="bank", metric="sIoU")
    assert [r["sweep"] for r in rows.trials + rows.curves + rows.per_class] == ["bank"] * 3
    assert rows.trials[0]["best_metric"] == "sIoU"


def test_finite_and_cfg_columns():
    assert [T._finite(v) for v in (None, True, False, "2.5", "x", [1], float("nan"), float("-inf"), 3)] == \
        [None, None, None, 2.5, None, None, None, None, 3.0]
    assert T.cfg_columns(SPEC) == CFG  # train.seed left out, the other keys after it kept


def test_metrics_jsonl_lines(tmp_path):
    p = tmp_path / "m.jsonl"
    assert read_metrics_jsonl(p) == []
    p.write_text('{"step": 1}\n\n   \n{"step": 2}\n')  # blank lines are skipped, not the end
    assert read_metrics_jsonl(p) == [{"step": 1}, {"step": 2}]
    p.write_text('{"step": 1}\n{"loss": 2.0}\n')
    with pytest.raises(TableError, match=rf"^{p}:2: expected a JSON object with a 'step' key, got "
                                         r"'\{\"loss\": 2.0\}'$"):
        read_metrics_jsonl(p)
    long = "[" + ", ".join(["1"] * 40) + "]"  # a list, not an object: the message quotes its first 80 chars
    p.write_text(f'{{"step": 1}}\n{long}\n')
    with pytest.raises(TableError) as err:
        read_metrics_jsonl(p)
    assert str(err.value) == f"{p}:2: expected a JSON object with a 'step' key, got {long[:80]!r}"


def test_final_metrics_errors(tmp_path):
    (tmp_path / "final").mkdir()
    p = tmp_path / "final" / "metrics.json"
    p.write_text("{oops")
    with pytest.raises(TableError, match=rf"^{p}: not valid JSON: Expecting property name"):
        read_final_metrics(tmp_path)
    p.write_text("[1, 2]")
    with pytest.raises(TableError, match=rf"^{p}: expected a JSON object with sIoU, uIoU, hIoU, mIoU, step$"):
        read_final_metrics(tmp_path)


def test_write_run_replaces_the_trials_old_curves_even_when_it_now_has_none(tmp_path):
    sweep = tmp_path / "sweep"
    run = run_dir(tmp_path, [{"step": 1, "loss": 1.0}], {"hIoU": 1.0, "step": 1})
    write_run(sweep, collect_run(run, SPEC, sweep="s"))
    assert read_table(sweep, "curves").num_rows == 1
    write_run(sweep, collect_run(None, SPEC, sweep="s", error="rerun failed early"))
    assert read_table(sweep, "curves").num_rows == 0 and read_table(sweep, "per_class").num_rows == 0
    assert read_table(sweep, "trials")["status"].to_pylist() == ["failed"]


def test_upsert_with_explicit_keys_and_an_all_null_column(tmp_path):
    rows = [{"trial_id": "a", "seed": 0, "cfg.x": 1}, {"trial_id": "b", "seed": 0, "cfg.x": 2}]
    upsert(tmp_path, "trials", rows)
    # replace only ("b", 0); the new row's cfg.x is all null, so it takes the stored int64 type
    upsert(tmp_path, "trials", [{"trial_id": "c", "seed": 1, "cfg.x": None}], keys=[("b", 0)])
    t = read_table(tmp_path, "trials")
    assert t["trial_id"].to_pylist() == ["a", "c"] and t["cfg.x"].to_pylist() == [1, None]
    assert t.schema.field("cfg.x").type == pa.int64()
    assert t.schema.metadata[b"c2s.table"] == b"trials"


def test_a_stored_all_null_column_takes_the_type_of_later_rows(tmp_path):
    """sweeps/additions.yaml: its first trials store distill.local_false_negative_cos = null (typed string, the
    default of an all-null cfg column), a later trial 0.95; the later rows are kept, not refused."""
    upsert(tmp_path, "trials", [{"trial_id": "t000", "seed": 0, "cfg.cos": None}])
    assert read_table(tmp_path, "trials").schema.field("cfg.cos").type == pa.string()
    upsert(tmp_path, "trials", [{"trial_id": "t002", "seed": 0, "cfg.cos": 0.95}])
    t = read_table(tmp_path, "trials")
    assert t["trial_id"].to_pylist() == ["t000", "t002"] and t["cfg.cos"].to_pylist() == [None, 0.95]
    assert t.schema.field("cfg.cos").type == pa.float64()
    # a stored column with values still refuses another type, naming the file
    with pytest.raises(TableError, match=r"trials.parquet: new rows do not match the stored column types"):
        upsert(tmp_path, "trials", [{"trial_id": "t003", "seed": 0, "cfg.cos": "high"}])


def test_infer_type_and_mixed_types():
    assert T._infer_type("cfg.a", [None]) == pa.string() and T._infer_type("b", [None]) == pa.float64()
    assert T._infer_type("a", [True, None]) == pa.bool_() and T._infer_type("a", [1, 2]) == pa.int64()
    assert T._infer_type("a", [1, 2.5]) == pa.float64() and T._infer_type("a", ["x"]) == pa.string()
    with pytest.raises(TableError, match=r"^column 'a' mixes value types \['int', 'str'\]; a column must hold "
                                         r"one type$"):
        T._infer_type("a", ["x", 1])
    with pytest.raises(TableError, match=r"^unknown table 'runs'; expected one of trials, curves, per_class$"):
        T.table_path(".", "runs")


def test_best_tie_on_value_and_step_keeps_the_first_row():
    # the final metrics repeat the last eval row (same step, same value): no comparison of the rows themselves
    rows = [ev(30, 4.0), {**ev(30, 4.0), "kind": "final"}]
    assert T._best(rows, "hIoU", "min") is rows[0] and T._best(rows, "hIoU", "max") is rows[0]


def test_curve_steps_stay_integers(tmp_path):
    rows = collect_curves(run_dir(tmp_path, [{"step": 10, "loss": 1.0}], None), SPEC, sweep="s")
    assert type(rows[0]["step"]) is int and type(rows[0]["seed"]) is int


def test_a_value_of_the_wrong_type_is_a_table_error_naming_the_column():
    with pytest.raises(TableError, match=r"^trials.parquet column 'seed' expects int64: "):
        T.to_arrow("trials", [{"trial_id": "a", "seed": "x"}])


def test_upsert_sorts_by_trial_then_seed(tmp_path):
    upsert(tmp_path, "trials", [{"trial_id": "b", "seed": 0}, {"trial_id": "a", "seed": 5}])
    upsert(tmp_path, "trials", [{"trial_id": "a", "seed": 1}])
    t = read_table(tmp_path, "trials")
    assert list(zip(t["trial_id"].to_pylist(), t["seed"].to_pylist())) == [("a", 1), ("a", 5), ("b", 0)]
    assert "" not in t.column_names and t.column_names == [f.name for f in T.TRIALS_FIELDS]


def test_all_null_new_column_keeps_its_name(tmp_path):
    upsert(tmp_path, "trials", [{"trial_id": "a", "seed": 0, "cfg.x": 1}])
    upsert(tmp_path, "trials", [{"trial_id": "b", "seed": 0, "cfg.x": None}])
    t = read_table(tmp_path, "trials")
    assert t.column_names == [f.name for f in T.TRIALS_FIELDS] + ["cfg.x"]
    assert t["cfg.x"].to_pylist() == [1, None] and t.schema.field("cfg.x").type == pa.int64()


def test_load_tables_of_an_empty_sweep_has_the_typed_columns(tmp_path):
    dfs = T.load_tables(tmp_path)
    assert list(dfs) == ["trials", "curves", "per_class"]
    for name, fields in T.TABLES.items():
        assert list(dfs[name].columns) == [f.name for f in fields] and len(dfs[name]) == 0
    assert str(dfs["trials"]["seed"].dtype) == "int64" and str(dfs["trials"]["final_hIoU"].dtype) == "float64"
    assert str(dfs["per_class"]["seen"].dtype) == "bool"


def test_a_per_class_table_cut_short_is_a_table_error_naming_it(tmp_path):
    """A node lost while its trial wrote final/per_class.parquet left half a file; the sweep's recorder read it
    for the retry's `running` row and the whole sweep stopped on pyarrow's ArrowInvalid (multi-node scenario,
    2026-12-05). Now a TableError names the file, which the recorder logs as a warning and goes on."""
    final = tmp_path / "run" / "final"
    final.mkdir(parents=True)
    pq.write_table(pa.table({"class": ["a"], "seen": [True], "iou": [0.5]}), final / "per_class.parquet")
    data = (final / "per_class.parquet").read_bytes()
    (final / "per_class.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(T.TableError, match=r"per_class.parquet: not a readable parquet table"):
        T.collect_per_class(tmp_path / "run", SPEC, sweep="s")


def test_evaluation_files_are_written_whole(tmp_path, monkeypatch):
    """c2s.evaluate writes per_class.parquet, confusion.npy and metrics.json through atomic_path: a writer that
    dies mid-file leaves nothing under the final name."""
    import pandas as pd

    from c2s.paths import atomic_path

    target = tmp_path / "per_class.parquet"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        pd.DataFrame({"class": ["a"], "seen": [True], "iou": [0.5]}).to_parquet(tmp, index=False)
        raise RuntimeError("node lost")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    source = Path(__import__("c2s.evaluate", fromlist=["x"]).__file__).read_text()
    for name in ("confusion.npy", "per_class.parquet", "metrics.json"):
        assert f'atomic_path(out_dir / "{name}")' in source


def test_the_final_pass_logs_a_table_error_and_returns_it_instead_of_raising(tmp_path):
    """c2s sweep's final pass (c2s.sweep.run.write_final_rows): rows the tables refuse, after every trial ran,
    give one ERROR line naming the sweep folder and the run directories, and the error for the summary; the
    rows the tables already held stay as they were."""
    from c2s.sweep.run import write_final_rows

    upsert(tmp_path, "trials", [{"trial_id": "t000_s0", "seed": 0, "cfg.cos": 0.5}])
    later = collect_run(None, TrialSpec(trial_id="t001_s0", point_id="t001", label="cos=high", variant="v", seed=0,
                                        params={}, base="toy_c2s", overrides={"cos": "high"}),
                        sweep="s", status="failed", error="boom")
    later.trials[0]["cfg.cos"] = "high"  # a string where the stored column holds doubles
    lines: list[str] = []
    error = write_final_rows(tmp_path, [later], "s", lines.append)
    assert error is not None and "new rows do not match the stored column types" in error
    assert lines == [f"[sweep s] ERROR: could not write the final rows to {tmp_path}: {error}; the trials' run "
                     f"directories are under {tmp_path / 'runs'}"]
    assert read_table(tmp_path, "trials")["trial_id"].to_pylist() == ["t000_s0"]
    assert write_final_rows(tmp_path, [], "s", lines.append) is None and len(lines) == 1  # nothing to write
    good = collect_run(None, TrialSpec(trial_id="t002_s0", point_id="t002", label="cos=0.9", variant="v", seed=0,
                                       params={}, base="toy_c2s", overrides={"cos": 0.9}),
                       sweep="s", status="failed", error="boom")
    assert write_final_rows(tmp_path, [good], "s", lines.append) is None and len(lines) == 1
    assert read_table(tmp_path, "trials")["trial_id"].to_pylist() == ["t000_s0", "t002_s0"]


def test_c2s_sweep_prints_its_summary_and_exits_1_when_the_final_rows_were_not_written(monkeypatch, tmp_path, capsys):
    from c2s.sweep import run as sweep_run

    summary = {"sweep": "tau", "completed": 2, "table_error": "trials.parquet: new rows do not match"}
    monkeypatch.setattr(sweep_run, "run_sweep", lambda *args, **kwargs: dict(summary))
    # a spec of its own, not sweeps/tau.yaml: the mutation run's snapshot (tools/mutate.py) holds c2s/ and tests/
    spec = tmp_path / "tau.yaml"
    spec.write_text("name: tau\nbase: toy_c2s\nspace:\n  loss.tau: {grid: [0.03, 0.07]}\nseeds: [0]\n")
    assert sweep_run.main([str(spec), "--out", str(tmp_path / "tau")]) == 1
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == summary
    del summary["table_error"]
    assert sweep_run.main([str(spec), "--out", str(tmp_path / "tau")]) == 0
