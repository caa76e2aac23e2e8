"""Experiment tracking in MLflow, beside TensorBoard: ``tracking.mlflow_uri`` (off when null).

A ``c2s train`` run is one MLflow run, opened on rank 0 with Ray's ``setup_mlflow``
(ray/air/integrations/mlflow.py: it starts the run, logs the params and hands back the ``mlflow`` module) and
fed every row of ``metrics.jsonl`` as it is written: ``train/loss``, ``train/lr``, ... and ``eval/hIoU``, ...
at the row's step, the same tags as the TensorBoard curves (c2s.train.curves). The params are the run's
config, flattened to dotted keys. A resumed run opens a new MLflow run tagged with the step it resumed from.

A sweep logs its trials with Ray Tune's ``MLflowLoggerCallback`` instead (c2s.sweep.tracking): one MLflow
run per trial; its Train run does not open a second one.

MLflow is an optional extra (``pip install 'c2s[mlflow]'``: mlflow-skinny, with SQLAlchemy and Alembic for a
``sqlite:///`` store). The driver checks it is importable before Ray starts (:func:`check_tracking`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from c2s.config import ConfigError, flatten
from c2s.train.curves import scalar_items

DEFAULT_EXPERIMENT = "c2s"
INSTALL_HINT = "pip install 'c2s[mlflow]' (mlflow-skinny, sqlalchemy, alembic)"
# MLflow keeps a param's value as a string of at most 6000 characters (mlflow/utils/validation.py,
# MAX_PARAM_VAL_LENGTH); longer values (class lists) are cut with a marker rather than refused.
MAX_PARAM_CHARS = 6000
SCHEME_ONLY_URIS = ("databricks", "databricks-uc")  # tracking URIs MLflow reads as a service, not a folder


def mlflow_settings(cfg: Any) -> tuple[str | None, str]:
    """(tracking URI or None, experiment name) from the config's ``tracking`` section."""
    tracking = cfg.get("tracking") or {}
    uri = tracking.get("mlflow_uri")
    experiment = tracking.get("mlflow_experiment") or DEFAULT_EXPERIMENT
    if uri is not None and (not isinstance(uri, str) or not uri.strip()):
        raise ConfigError(f"tracking.mlflow_uri: expected a tracking URI (sqlite:///PATH/mlflow.db, "
                          f"http://HOST:5000, a folder) or null, got {uri!r}")
    if not isinstance(experiment, str):
        raise ConfigError(f"tracking.mlflow_experiment: expected an experiment name, got {experiment!r}")
    return uri, experiment


def absolute_store(uri: str, cwd: Path | None = None) -> str:
    """A local store named relative to the driver's folder, made absolute (Ray's workers run in other
    folders): ``sqlite:///runs/mlflow.db`` -> ``sqlite:////abs/runs/mlflow.db``, ``mlruns`` -> ``/abs/mlruns``.
    Absolute paths, ``file:`` and server URIs (``http://``, ``databricks``) are kept."""
    cwd = Path.cwd() if cwd is None else cwd
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(cwd / uri.removeprefix("sqlite:///"))
    if ":" not in uri and not uri.startswith("/") and uri not in SCHEME_ONLY_URIS:
        return str(cwd / uri)
    return uri


def check_tracking(cfg: Any) -> None:
    """Driver side, before Ray starts: with ``tracking.mlflow_uri`` set, MLflow must be importable here (the
    workers run the same environment), and a relative local store becomes absolute (:func:`absolute_store`)."""
    uri, _ = mlflow_settings(cfg)
    if uri is None:
        return
    try:
        import mlflow  # noqa: F401
    except ImportError as err:
        raise ConfigError(f"tracking.mlflow_uri = {uri!r} needs MLflow, which is not installed ({err}); "
                          f"{INSTALL_HINT}, or set tracking.mlflow_uri=null") from err
    cfg.tracking.mlflow_uri = absolute_store(uri)


def config_params(config: Mapping[str, Any]) -> dict[str, str]:
    """The config as MLflow params: dotted keys, values as text (long ones cut to MLflow's limit)."""
    params = {}
    for key, value in flatten(dict(config)).items():
        text = str(value)
        params[key] = text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 14] + " ...(truncated)"
    return params


class MLflowCurves:
    """One Train run's rows into an MLflow run (rank 0 only); the same ``add``/``close`` as CurveWriter."""

    def __init__(self, uri: str, experiment: str, run_dir: Path, config: Mapping[str, Any], start_step: int = 0):
        from ray.air.integrations.mlflow import setup_mlflow

        tags = {"c2s.run_dir": str(run_dir)}
        if start_step:
            tags["c2s.resumed_from_step"] = str(start_step)
        self._mlflow = setup_mlflow(config=config_params(config), tracking_uri=uri, experiment_name=experiment,
                                    run_name=Path(run_dir).name, create_experiment_if_not_exists=True, tags=tags)
        self.run_id = self._mlflow.active_run().info.run_id

    def add(self, row: dict[str, Any]) -> None:
        metrics = dict(scalar_items(row))
        if metrics:
            self._mlflow.log_metrics(metrics, step=int(row["step"]))

    def close(self) -> None:
        self._mlflow.end_run()


class RowSinks:
    """Every sink a metrics row goes to besides metrics.jsonl (TensorBoard, MLflow), as one."""

    def __init__(self, sinks: Iterable[Any]):
        self.sinks = list(sinks)

    def add(self, row: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.add(row)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def tracking_sinks(cfg: Any, config: Mapping[str, Any], run_dir: Path, start_step: int) -> list[Any]:
    """The MLflow sink when ``tracking.mlflow_uri`` is set (rank 0 calls this), else none."""
    uri, experiment = mlflow_settings(cfg)
    return [] if uri is None else [MLflowCurves(uri, experiment, run_dir, config, start_step)]
