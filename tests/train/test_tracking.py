"""MLflow tracking (c2s/train/tracking.py, c2s/sweep/tracking.py) against a local SQLite store, read back with
MLflow's own client: params, metrics at their steps, tags, run status. Ray's side is ray/air/integrations/
mlflow.py (``setup_mlflow``, ``MLflowLoggerCallback``); the end-to-end runs are in tests/integration/
test_train_job.py (a Train run with a crash and two resumes) and tests/sweep/test_sweep_run.py (a sweep)."""

from __future__ import annotations

import sys

import pytest

from c2s.config import ConfigError, from_dict
from c2s.train.tracking import MAX_PARAM_CHARS, RowSinks, check_tracking, config_params, mlflow_settings
from c2s.train.trainer import check_train_intervals

mlflow = pytest.importorskip("mlflow", reason="MLflow is the optional extra c2s[mlflow]")


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _history(client, run_id, key):
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_a_train_runs_rows_reach_mlflow_at_their_steps(tmp_path):
    from c2s.train.tracking import MLflowCurves

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_dir = tmp_path / "runs" / "my-run"
    config = {"loss": {"tau": 0.07}, "train": {"iters": 2}, "data": {"classes": ["x" * 50] * 200}}
    sink = RowSinks([MLflowCurves(uri, "exp", run_dir, config, start_step=0)])
    sink.add({"step": 1, "kind": "train", "loss": 2.5, "lr": 1e-4, "nan_field": float("nan"), "flag": True})
    sink.add({"step": 2, "kind": "train", "loss": 2.0, "lr": 5e-5})
    sink.add({"step": 2, "kind": "eval", "hIoU": 30.5, "sIoU": 40.0, "per_class": {"a": 1.0}})
    sink.close()

    client = _client(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert run.info.run_name == "my-run" and run.info.status == "FINISHED"
    assert run.data.tags["c2s.run_dir"] == str(run_dir) and "c2s.resumed_from_step" not in run.data.tags
    assert run.data.params["loss.tau"] == "0.07" and run.data.params["train.iters"] == "2"
    assert len(run.data.params["data.classes"]) == MAX_PARAM_CHARS  # cut to MLflow's limit, not refused
    assert _history(client, run.info.run_id, "train/loss") == [(1, 2.5), (2, 2.0)]
    assert _history(client, run.info.run_id, "train/lr") == [(1, 1e-4), (2, 5e-5)]
    assert _history(client, run.info.run_id, "eval/hIoU") == [(2, 30.5)]
    assert set(run.data.metrics) == {"train/loss", "train/lr", "eval/hIoU", "eval/sIoU"}  # no NaN, bool, dict


def test_a_resumed_run_is_a_new_mlflow_run_tagged_with_its_step(tmp_path):
    from c2s.train.tracking import MLflowCurves

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    for start in (0, 4):
        sink = MLflowCurves(uri, "c2s", tmp_path / "run", {"train": {"iters": 8}}, start_step=start)
        sink.add({"step": start + 1, "kind": "train", "loss": 1.0})
        sink.close()
    client = _client(uri)
    runs = client.search_runs([client.get_experiment_by_name("c2s").experiment_id])
    assert sorted(r.data.tags.get("c2s.resumed_from_step", "-") for r in runs) == ["-", "4"]


def test_settings_and_the_missing_extra_are_named_before_ray(monkeypatch):
    assert mlflow_settings(from_dict({"tracking": {"mlflow_uri": None, "mlflow_experiment": "c2s"}})) == (None, "c2s")
    assert mlflow_settings(from_dict({})) == (None, "c2s")  # an old config without the section: off
    with pytest.raises(ConfigError, match=r"tracking.mlflow_uri: expected a tracking URI .* got 3"):
        mlflow_settings(from_dict({"tracking": {"mlflow_uri": 3}}))
    cfg = from_dict({"tracking": {"mlflow_uri": "sqlite:///x.db", "mlflow_experiment": "c2s"}})
    check_tracking(cfg)  # installed here: fine
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    cfg = from_dict({"tracking": {"mlflow_uri": "sqlite:///x.db", "mlflow_experiment": "c2s"}})
    with pytest.raises(ConfigError, match=r"tracking.mlflow_uri = 'sqlite:///x.db' needs MLflow.*c2s\[mlflow\]"):
        check_tracking(cfg)


def test_a_relative_local_store_becomes_absolute_for_the_workers(tmp_path):
    from c2s.train.tracking import absolute_store

    assert absolute_store("sqlite:///runs/mlflow.db", tmp_path) == f"sqlite:///{tmp_path}/runs/mlflow.db"
    assert absolute_store("sqlite:////data/mlflow.db", tmp_path) == "sqlite:////data/mlflow.db"
    assert absolute_store("mlruns", tmp_path) == f"{tmp_path}/mlruns"
    for kept in ("http://127.0.0.1:5000", "databricks", "file:///data/mlruns", "/data/mlruns"):
        assert absolute_store(kept, tmp_path) == kept
    cfg = from_dict({"tracking": {"mlflow_uri": "sqlite:///m.db", "mlflow_experiment": "c2s"}})
    check_tracking(cfg)
    assert cfg.tracking.mlflow_uri.startswith("sqlite:////") and cfg.tracking.mlflow_uri.endswith("/m.db")


def test_config_params_are_dotted_text():
    assert config_params({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": "1", "a.c": "[1, 2]", "d": "None"}


@pytest.mark.parametrize("key", ["iters", "log_interval", "checkpoint_interval", "eval_interval"])
def test_a_zero_interval_is_refused_naming_the_key(key):
    train = {"iters": 6, "log_interval": 1, "checkpoint_interval": 3, "eval_interval": 6}
    check_train_intervals(from_dict(train))
    with pytest.raises(ConfigError, match=rf"train.{key}: expected a whole number of steps >= 1, got 0"):
        check_train_intervals(from_dict({**train, key: 0}))
    if key != "iters":
        with pytest.raises(ConfigError, match=rf"to do it only at the end, set train.{key}=6"):
            check_train_intervals(from_dict({**train, key: 0}))


class _Trial:
    """What MLflowLoggerCallback reads of a Tune trial: its config, its name (str) and hashability."""

    def __init__(self, trial_id: str):
        self.config = {"trial_id": trial_id}
        self.local_path = None

    def __str__(self) -> str:
        return f"trial_driver_{self.config['trial_id']}"


def test_tune_callback_logs_each_trial_with_its_overrides_and_eval_steps(tmp_path):
    from c2s.sweep.spec import TrialSpec
    from c2s.sweep.tracking import TrialMLflowCallback

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    specs = {"t000_s1": TrialSpec("t000_s1", "t000", "tau=0.03", None, 1, {"loss.tau": 0.03},
                                  {"train.iters": 300, "loss.tau": 0.03, "train.seed": 1})}
    callback = TrialMLflowCallback(uri, "c2s-tau", "tau", specs)
    callback.setup()
    trial = _Trial("t000_s1")
    callback.log_trial_start(trial)
    callback.log_trial_result(1, trial, {"step": 150, "hIoU": 20.0, "sIoU": 30.0, "training_iteration": 1})
    callback.log_trial_result(2, trial, {"step": 300, "hIoU": 25.5, "uIoU": 21.0, "training_iteration": 2})
    callback.log_trial_end(trial, failed=False)

    client = _client(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("c2s-tau").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "trial_driver_t000_s1"
    assert run.data.tags["c2s.sweep"] == "tau" and run.data.tags["c2s.trial_id"] == "t000_s1"
    assert run.data.tags["c2s.point_id"] == "t000"
    assert run.data.params["loss.tau"] == "0.03" and run.data.params["seed"] == "1"
    assert run.data.params["trial_id"] == "t000_s1"  # Tune's own trial.config, logged by Ray's callback
    assert _history(client, run.info.run_id, "eval/hIoU") == [(150, 20.0), (300, 25.5)]  # c2s's step
    assert set(run.data.metrics) == {"eval/hIoU", "eval/sIoU", "eval/uIoU"}  # not Tune's bookkeeping
