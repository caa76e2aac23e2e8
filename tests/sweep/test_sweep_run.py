"""The sweep runner on one local Ray (2 CPUs): a 2-trial toy sweep end to end, a planted failure, --resume.

Trials use the random-weight test CLIP and a tiny toy world (3 steps each); most of the time is Ray Train
starting its workers.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from c2s.sweep.run import SweepError, completed_trials, main, run_sweep
from c2s.sweep.spec import ClusterFitError, expand_trials, load_spec
from c2s.sweep.tables import SCHEMA_VERSION, TABLES, collect_run, load_tables, write_run

TINY = {
    "teacher.arch": "c2s-test-vit", "teacher.checkpoint": None, "teacher.allow_random": True, "teacher.image_size": 32,
    "teacher.dense_size": 48, "teacher.batch_size": 4, "model.embed_dim": 64,
    "model.pretrained": None,  # random init: the toy backbone's minute of pretraining is not under test
    "data.world.images_train": 24, "data.world.images_val": 4, "data.num_cpus": 0.25,
    "train.batch_size": 4, "bank.size": 12, "train.iters": 3, "train.log_interval": 1,
    "train.checkpoint_interval": 100, "train.eval_interval": 2, "optim.warmup_iters": 1,
}  # teacher.cache is not set: the sweep's default (c2s/sweep/tokens.py) builds the token cache once
RESOURCES = {"driver_cpus": 0.25, "train_workers": 1, "cpus_per_worker": 0.5, "teacher_actors": [1, 1],
             "teacher_cpus": 0.5}


def write_spec(path: Path, **extra) -> Path:
    spec = {"name": "tiny", "base": "toy_c2s", "overrides": dict(TINY),
            # "bad" passes spec validation (an int for an int key) but its training job fails its preflight
            # (the student's embedding dim differs from the teacher's) on every attempt.
            "variants": {"ok": {"loss.tau": 0.05}, "bad": {"loss.tau": 0.1, "model.embed_dim": 32}},
            "seeds": [0], "metric": "hIoU", "resources": dict(RESOURCES), "max_concurrent": 1, "max_failures": 1,
            **extra}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path



def _check_mlflow_runs(uri: str, ok, evals, out: Path) -> None:
    """One MLflow run per trial in the experiment c2s-tiny, with the trial's overrides and each evaluation
    at its step (the same values as the curves table); the failed trial's run says FAILED; the trials' own
    Train runs opened none (their config.json has tracking off)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    assert client.get_experiment_by_name("c2s") is None  # no Train run logged on its own
    runs = {r.data.tags["c2s.trial_id"]: r for r in
            client.search_runs([client.get_experiment_by_name("c2s-tiny").experiment_id])}
    assert sorted(runs) == ["t000_s0", "t001_s0"]
    good, bad = runs["t000_s0"], runs["t001_s0"]
    assert good.info.status == "FINISHED" and bad.info.status == "FAILED"
    assert good.data.tags["c2s.sweep"] == "tiny" and good.data.params["loss.tau"] == "0.05"
    assert bad.data.params["model.embed_dim"] == "32"
    history = [(m.step, m.value) for m in client.get_metric_history(good.info.run_id, "eval/hIoU")]
    assert history == [(int(r.step), pytest.approx(r.hIoU, abs=1e-9)) for r in evals.itertuples()]
    assert history[-1][1] == pytest.approx(ok.final_hIoU, abs=1e-9)
    assert json.loads((out / "runs" / "t000_s0" / "config.json").read_text())["tracking"]["mlflow_uri"] is None


@pytest.mark.integration
def test_sweep_tables_failure_and_resume(ray_local, cache_root, tmp_path, capsys):
    # tracking.mlflow_uri (c2s/sweep/tracking.py), where the c2s[mlflow] extra is installed: Tune's MLflow callback
    mlflow_uri = f"sqlite:///{tmp_path}/mlflow.db" if importlib.util.find_spec("mlflow") else None
    spec_file = write_spec(tmp_path / "tiny.yaml", overrides={**TINY, "tracking.mlflow_uri": mlflow_uri})
    out = tmp_path / "sweep"
    assert main([str(spec_file), "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert log.count("start  t000_s0") == 1 and log.count("start  t001_s0 (bad, seed 0) attempt 2") == 1
    assert "retry  t001_s0: PreflightError" in log  # the failing trial was retried once (max_failures: 1) ...
    assert "FAILED    t001_s0 (bad) after 2 attempt(s): PreflightError: model.embed_dim = 32" in log
    assert '"completed": 1, "failed": 1' in log  # ... and did not stop the sweep
    # The token cache was built once, before any trial, and training read it: CLIP never ran in a trial.
    # 3 steps x 4 images = 12 rows of a 24-image world: one epoch cached, shared by both trials (one key).
    assert "token caches (CLIP once per distinct cache key) for 2 trial(s), cache_epochs 1" in log
    assert log.index("token cache") < log.index("start  t000_s0")
    assert '"built": true, "teacher_calls": {"batches": 6, "images": 24}' in log
    assert '"teacher_images": {"cache_builds": 24, "trials": 0, "total": 24}' in log
    assert not (out / "runs" / "t000_s0" / "teacher_calls").exists()
    # ... and the trial read that cache: the one under the sweep's cache root, which the trial's Ray worker
    # (started with the session's $C2S_CACHE, not this test's) is told. Left to resolve its own, the trial
    # looked in the session's root and ran CLIP itself (7.2 s of this test, 2026-12-06).
    built_dir = json.loads(log.strip().splitlines()[-1])["token_caches"][0]["cache_dir"]
    assert Path(built_dir).parent == cache_root / "tokens"
    assert json.loads((out / "runs" / "t000_s0" / "summary.json").read_text())["token_cache"] == built_dir

    tables = load_tables(out)
    trials = tables["trials"].set_index("trial_id")
    assert list(trials.index) == ["t000_s0", "t001_s0"]
    ok, bad = trials.loc["t000_s0"], trials.loc["t001_s0"]
    assert (ok.status, ok.label, ok.variant, ok.seed, ok.sweep) == ("completed", "ok", "ok", 0, "tiny")
    assert ok.final_step == 3 and ok.best_step in (2, 3)
    # final_hIoU is the harmonic mean of the trial's own per-class table (seen / unseen means, NaN left out)
    pc = tables["per_class"][tables["per_class"].trial_id == "t000_s0"]
    s_iou, u_iou = pc[pc.seen].iou.dropna().mean(), pc[~pc.seen].iou.dropna().mean()
    assert ok.final_hIoU == pytest.approx(2 * s_iou * u_iou / (s_iou + u_iou) if s_iou + u_iou else 0.0)
    assert pd.isna(ok.error) and ok.wall_s > 0 and ok.gpu_hours == 0.0
    assert ok["cfg.loss.tau"] == 0.05 and ok["cfg.model.embed_dim"] == 64 and ok["cfg.train.iters"] == 3
    assert ok["cfg.teacher.cache"] and ok["cfg.teacher.cache_epochs"] == 1 and ok.teacher_images == 0
    assert bad.status == "failed" and bad["cfg.model.embed_dim"] == 32 and bad.final_hIoU != bad.final_hIoU  # NaN
    assert "PreflightError: model.embed_dim = 32 but the teacher c2s-test-vit embeds in 64 dims" in bad.error
    for name in TABLES:  # documented, versioned schema: the fixed columns in order, then cfg.* extras
        table = pq.read_table(out / f"{name}.parquet")
        assert table.schema.metadata[b"c2s.schema_version"] == str(SCHEMA_VERSION).encode()
        assert table.column_names[: len(TABLES[name])] == [f.name for f in TABLES[name]]
        assert all(table.schema.field(f.name).type == f.type for f in TABLES[name])
    curves = tables["curves"]
    assert set(curves.trial_id) == {"t000_s0"}
    assert (curves[curves.kind == "train"].loss_global > 0).all()  # the cached teacher tokens arrived
    assert sorted(curves[curves.kind == "train"].step) == [1, 2, 3]
    assert sorted(curves[curves.kind == "eval"].step) == [2, 3]  # eval_interval 2 + the final one
    per_class = tables["per_class"]
    assert len(per_class) == 21 and per_class.seen.sum() == 16 and set(per_class.trial_id) == {"t000_s0"}  # toy_stuff: 20 objects + background
    assert completed_trials(out) == {"t000_s0"}
    if mlflow_uri is not None:
        _check_mlflow_runs(mlflow_uri, ok, curves[curves.kind == "eval"], out)

    # Without --resume the folder is refused. An interrupted sweep: t001's row says `running` (it had
    # started when the sweep was killed). --resume skips the completed t000 and runs only t001 again.
    with pytest.raises(SweepError, match="already holds a sweep.*--resume"):
        run_sweep(load_spec(spec_file), out)
    write_run(out, collect_run(None, expand_trials(load_spec(spec_file))[1], sweep="tiny", status="running"))
    assert load_tables(out)["trials"].status.tolist() == ["completed", "running"]
    ok_summary = (out / "runs" / "t000_s0" / "summary.json").stat().st_mtime_ns
    assert main([str(spec_file), "--out", str(out), "--resume", "--set", "max_failures=0"]) == 0
    log = capsys.readouterr().out
    assert "1 already completed, 1 to run" in log
    assert "reused" in log and '"built": false' in log  # the token cache from the first run
    assert "start  t000_s0" not in log and log.count("start  t001_s0") == 1  # one attempt: max_failures=0
    assert '"ran": 1, "skipped_completed": 1, "completed": 0, "failed": 1' in log
    assert (out / "runs" / "t000_s0" / "summary.json").stat().st_mtime_ns == ok_summary  # not re-run
    tables = load_tables(out)
    trials = tables["trials"].set_index("trial_id")
    assert list(trials.index) == ["t000_s0", "t001_s0"]  # no duplicate rows
    assert list(trials.status) == ["completed", "failed"] and "model.embed_dim = 32" in trials.loc["t001_s0", "error"]
    assert trials.loc["t000_s0", "final_hIoU"] == ok.final_hIoU
    assert len(tables["curves"]) == 5 and len(tables["per_class"]) == 21
    assert len(list(out.glob("tune-*"))) == 2  # one Tune experiment per invocation

    # A completed trial whose overrides changed is refused on --resume.
    write_spec(spec_file, overrides={**TINY, "train.iters": 4})
    with pytest.raises(SweepError, match="trial t000_s0 was run with"):
        run_sweep(load_spec(spec_file), out, resume=True)


def test_resume_reruns_interrupted_trial_rows_only(tmp_path):
    """Without Ray: which trials --resume skips, from the table rows an interrupted sweep leaves behind."""
    spec_file = write_spec(tmp_path / "tiny.yaml")
    spec = load_spec(spec_file)
    out = tmp_path / "sweep"
    t0, t1 = expand_trials(spec)
    run0 = out / "runs" / t0.trial_id
    (run0 / "final").mkdir(parents=True)
    (run0 / "final" / "metrics.json").write_text('{"sIoU": 50, "uIoU": 20, "hIoU": 28.6, "mIoU": 40, "step": 3}')
    write_run(out, [collect_run(run0, t0, sweep="tiny"), collect_run(None, t1, sweep="tiny", status="running")])
    assert completed_trials(out) == {"t000_s0"}  # the interrupted (running) one is left to run
    (run0 / "final" / "metrics.json").unlink()
    assert completed_trials(out) == set()  # a completed row without its final metrics is run again


@pytest.mark.integration
def test_cluster_too_small_fails_before_any_trial(ray_local, tmp_path):
    spec_file = write_spec(tmp_path / "big.yaml", max_concurrent=2)
    with pytest.raises(ClusterFitError, match=r"needs CPU=2\.5.*per trial CPU=1\.25.*teacher actors: 0 CPU.*cluster has CPU=2"):
        run_sweep(load_spec(spec_file), tmp_path / "sweep")
    assert not (tmp_path / "sweep" / "trials.parquet").exists()


def test_eval_report_callback_forwards_only_evaluations():
    """Tune gets {step, sIoU, uIoU, hIoU, mIoU} from evaluation reports only (what ASHA decides on)."""
    from c2s.sweep.run import EvalReportCallback

    class Queue:
        def __init__(self):
            self.items = []

        def put(self, item):
            self.items.append(item)

    cb = EvalReportCallback.__new__(EvalReportCallback)  # __init__ needs a Tune session
    cb._training_actor_item_queue = Queue()
    cb.after_report(None, [{"step": 1, "loss": 2.0, "lr": 1e-3}], None)
    cb.after_report(None, [], None)
    cb.after_report(None, [{"step": 4, "loss": 1.0, "eval_sIoU": 50.0, "eval_uIoU": 20.0, "eval_hIoU": 28.6,
                            "eval_mIoU": 40.0}, {"step": 4}], object())
    assert cb._training_actor_item_queue.items == [
        {"step": 4, "sIoU": 50.0, "uIoU": 20.0, "hIoU": 28.6, "mIoU": 40.0}]
