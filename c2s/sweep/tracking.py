"""A sweep's trials in MLflow, through Ray Tune's own ``MLflowLoggerCallback`` (ray/air/integrations/mlflow.py).

Set ``tracking.mlflow_uri`` in the spec's ``overrides`` (or ``--set overrides.tracking.mlflow_uri=...``); every
trial then becomes one MLflow run in the experiment ``<tracking.mlflow_experiment>-<sweep name>``, named by
Tune's trial, tagged ``c2s.sweep`` / ``c2s.trial_id`` / ``c2s.point_id``, with the trial's overrides, seed
and variant as params and each evaluation the trial reports as ``eval/sIoU``, ``eval/uIoU``, ``eval/hIoU``,
``eval/mIoU`` at its training step (the tags a ``c2s train`` run logs). The Train run inside a trial opens no
MLflow run of its own (its per-step curves stay in the trial's TensorBoard files): one trial, one MLflow run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from c2s.config import ConfigError, load_config
from c2s.sweep.spec import METRICS, SweepSpec, TrialSpec
from c2s.train.tracking import absolute_store, check_tracking, config_params, mlflow_settings

OFF = {"tracking.mlflow_uri": None}  # what trial_driver applies to each trial's own Train run


class TrialMLflowCallback(MLflowLoggerCallback):
    """Tune's MLflow callback with the trial's c2s overrides as params and its eval metrics at their step.

    Tune's ``trial.config`` here is only ``{"trial_id": ...}`` (c2s.sweep.run passes the overrides by trial
    id), and the callback's step is ``timesteps_total`` or Tune's iteration: both replaced by c2s's own."""

    def __init__(self, uri: str, experiment: str, sweep: str, trials: Mapping[str, TrialSpec]):
        super().__init__(tracking_uri=uri, experiment_name=experiment, tags={"c2s.sweep": sweep})
        self._specs = dict(trials)

    def log_trial_start(self, trial: Any) -> None:
        from mlflow.tracking import MlflowClient

        super().log_trial_start(trial)  # starts the run once (a retried trial keeps it), logs trial.config
        spec = self._specs[str(trial.config["trial_id"])]
        run_id = self._trial_runs[trial]
        client = MlflowClient(tracking_uri=self.tracking_uri)
        for key, value in {"c2s.trial_id": spec.trial_id, "c2s.point_id": spec.point_id}.items():
            client.set_tag(run_id, key, value)
        params = {**config_params(spec.overrides), "seed": str(spec.seed), "variant": str(spec.variant)}
        self.mlflow_util.log_params(run_id=run_id, params_to_log=params)

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        metrics = {f"eval/{m}": float(result[m]) for m in METRICS if isinstance(result.get(m), (int, float))}
        if metrics and "step" in result:
            self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=metrics,
                                         step=int(result["step"]))


def sweep_tracking(spec: SweepSpec, trials: Sequence[TrialSpec]) -> list[TrialMLflowCallback]:
    """The Tune callback when the trials set ``tracking.mlflow_uri`` (all the same one), else none. Checked
    before any trial starts: MLflow importable, and one URI and experiment for the whole sweep."""
    if not trials:
        return []
    settings = {mlflow_settings(load_config(spec.base, t.overrides)) for t in trials}
    if len(settings) > 1:
        raise ConfigError(f"sweep {spec.name}: tracking.mlflow_uri / tracking.mlflow_experiment must be the same "
                          f"for every trial (one MLflow experiment per sweep), got {sorted(map(str, settings))}")
    (uri, experiment), = settings
    if uri is None:
        return []
    check_tracking(load_config(spec.base, trials[0].overrides))
    return [TrialMLflowCallback(absolute_store(uri), f"{experiment}-{spec.name}", spec.name,
                                {t.trial_id: t for t in trials})]
