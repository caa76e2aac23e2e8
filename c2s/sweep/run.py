"""Run a sweep spec with Ray Tune: ``c2s sweep SPEC [--set key=value ...] [--out DIR] [--resume]``.

The Train V2 pattern for Tune (Ray 2.60, "Hyperparameter Tuning with Ray Tune"): a ``Tuner`` runs one
*driver function* per trial (:func:`trial_driver`, ``tune.with_resources(.., {"CPU": driver_cpus})``);
the driver builds and fits the training job's ``TorchTrainer`` through
:func:`c2s.train.trainer.run_training` with the trial's overrides, and a
:class:`EvalReportCallback` (a ``TuneReportCallback``) in the Train ``RunConfig`` passes every evaluation
(``step`` + sIoU / uIoU / hIoU / mIoU) to Tune, which is what ASHA decides on.

Layout of a sweep directory (``<work_dir>/sweeps/<spec name>`` or ``--out``)::

    sweep.json                 the trials (id -> overrides), the spec updates it was started with, the commit
    trials.parquet curves.parquet per_class.parquet      (c2s/sweep/tables.py, docs/tables.md)
    runs/<trial_id>/           each trial's run directory (metrics.jsonl, final/, checkpoints)
    tune-<time>/               Ray Tune's experiment folder of each invocation

Tables are written as trials start (status ``running``) and finish (``completed``, ``failed`` with its
error after ``max_failures`` retries, ``stopped`` by ASHA), and once more at the end. A failed trial never
stops the sweep.

Resume: trial ids are stable for a spec (``t003_s1``), so ``--resume`` skips every trial whose row in
``trials.parquet`` is ``completed`` (and whose ``final/metrics.json`` exists) and runs the others again; a
trial interrupted mid-training continues from its latest Train checkpoint in ``runs/<trial_id>``. A
completed trial whose overrides differ from the spec's now is an error (use ``--out`` for a new sweep).
This is simpler and more robust than ``Tuner.restore`` (which needs Tune's experiment state to have been
saved consistently, and re-creates trials by Tune's own ids rather than ours).

CLIP once per sweep (c2s/sweep/tokens.py): unless the spec sets ``teacher.cache``, the trials read token
caches, built once per distinct cache key before any trial starts; they start no CLIP actor. The last JSON
line counts the images CLIP encoded (``teacher_images``), ``trials.parquet`` each trial's own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from c2s.config import load_config
from c2s.paths import atomic_path, cache_root
from c2s.sweep.spec import (
    DRIVER_CPUS_DEFAULT,
    METRICS,
    ClusterFitError,
    SpecError,
    SweepSpec,
    TrialSpec,
    check_cluster_fits,
    expand_trials,
    load_spec,
    resources_needed,
    tune_scheduler,
)
from c2s.sweep.tables import TableError, collect_run, read_final_metrics, read_table, write_run
from c2s.sweep.tokens import prepare_token_caches, with_token_cache_default
from c2s.sweep.tracking import OFF as TRACKING_OFF
from c2s.sweep.tracking import sweep_tracking

STATE_FILE = "sweep.json"
RUNS_DIR = "runs"
ERROR_CHARS = 4000


class SweepError(RuntimeError):
    """The sweep cannot start (or resume) as asked; the message names the folder/trial and what to do."""


# ---------------------------------------------------------------------------------------------- trial side


class EvalReportCallback(TuneReportCallback):
    """Forward the training job's evaluations to Tune as ``{step, sIoU, uIoU, hIoU, mIoU, ...}``.

    Rank 0 reports ``eval_<metric>`` on evaluation steps only; other reports carry no metric, which ASHA
    would skip and Tune's strict metric check would reject, so they are not forwarded (curves come from
    ``metrics.jsonl``, not from Tune).
    """

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if not metrics:
            return
        row = metrics[0]
        evals = {k.removeprefix("eval_"): v for k, v in row.items() if k.startswith("eval_")}
        if not any(m in evals for m in METRICS) or "step" not in row:
            return
        super().after_report(run_context, [{"step": int(row["step"]), **evals}], None)


def trial_driver(config: dict[str, Any], *, base: str, overrides: Mapping[str, Mapping[str, Any]],
                 sweep_dir: str, cache_roots: Mapping[str, str]) -> None:
    """Tune's function for one trial: the training job with the trial's overrides, evaluated at the end.

    ``cache_roots``: each trial's cache root as the sweep's driver resolved it, where it built the token
    caches and the toy world. A trial runs in a Ray worker, whose ``$C2S_CACHE`` is the one Ray started with,
    not necessarily the driver's: resolved there, a trial looked in another folder and ran CLIP itself.

    A retry (Tune ``max_failures``) or a resumed sweep continues from the run's latest Train checkpoint.
    """
    from ray.data import DataContext

    from c2s.train.trainer import run_training

    DataContext.get_current().enable_progress_bars = False
    trial_id = str(config["trial_id"])
    # tracking.mlflow_uri: the sweep's Tune callback logs this trial; its Train run opens no second MLflow run
    cfg = load_config(base, {**dict(overrides[trial_id]), **TRACKING_OFF, "cache_root": cache_roots[trial_id]})
    run_dir = Path(sweep_dir) / RUNS_DIR / trial_id
    resume = any(run_dir.glob("checkpoint_*/state.pt"))
    run_training(cfg, run_dir, resume=resume, callbacks=[EvalReportCallback()])


# ---------------------------------------------------------------------------------------------- driver side


def _error_text(err: BaseException | str | None) -> str:
    """The root cause of a trial's error as ``Type: message`` (Ray wraps it in RayTaskError / TrainingFailedError)."""
    if err is None:
        return "unknown error (Ray Tune recorded no exception)"
    if isinstance(err, str):
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        return (lines[-1] if lines else err)[:ERROR_CHARS]
    seen: set[int] = set()
    while id(err) not in seen:
        seen.add(id(err))
        nxt = getattr(err, "cause", None) or err.__cause__
        if not isinstance(nxt, BaseException):
            break
        err = nxt
    text = str(err).strip()
    return f"{type(err).__name__}: {text}"[:ERROR_CHARS]


def _trial_error(trial: Any) -> str:
    """The latest error of a Tune trial, read from the files Tune writes on the driver (``trial.local_path``)."""
    from ray import cloudpickle

    pickled, text = getattr(trial, "pickled_error_file", None), getattr(trial, "error_file", None)
    if pickled and Path(pickled).is_file():
        try:
            with open(pickled, "rb") as handle:
                return _error_text(cloudpickle.load(handle))
        except (OSError, EOFError, ImportError, AttributeError, TypeError, ValueError):
            pass  # an exception class that does not unpickle here: fall back to the text file
    if text and Path(text).is_file():
        return _error_text(Path(text).read_text())
    return _error_text(None)


def _fmt_metrics(final: Mapping[str, Any] | None) -> str:
    if not final:
        return "no final evaluation"
    return "  ".join(f"{m} {float(final[m]):.1f}" for m in ("sIoU", "uIoU", "hIoU") if final.get(m) is not None)


class SweepRecorder(tune.Callback):
    """Runs in the sweep's process: one progress line per trial start/finish, and the Parquet rows."""

    def __init__(self, spec: SweepSpec, trials: Mapping[str, TrialSpec], sweep_dir: Path, total: int,
                 gpus_per_trial: float, log: Callable[[str], None] = print):
        self.spec, self.trials, self.sweep_dir, self.total = spec, dict(trials), sweep_dir, total
        self.gpus_per_trial, self.log = gpus_per_trial, log
        self.started: dict[str, float] = {}
        self.attempts: dict[str, int] = {}
        self.outcomes: dict[str, dict[str, Any]] = {}

    def _trial(self, trial: Any) -> TrialSpec:
        return self.trials[str(trial.config["trial_id"])]

    def _write(self, t: TrialSpec, **kwargs: Any) -> None:
        run_dir = self.sweep_dir / RUNS_DIR / t.trial_id
        try:
            write_run(self.sweep_dir, collect_run(run_dir if run_dir.is_dir() else None, t, sweep=self.spec.name,
                                                  metric=self.spec.metric, mode=self.spec.mode,
                                                  gpus=self.gpus_per_trial, **kwargs))
        except (TableError, OSError) as err:  # a table problem must not stop the other trials
            self.log(f"[sweep {self.spec.name}] WARNING: could not write the rows of {t.trial_id} to "
                     f"{self.sweep_dir}: {err}")

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        t = self._trial(trial)
        self.started.setdefault(t.trial_id, time.perf_counter())
        self.attempts[t.trial_id] = self.attempts.get(t.trial_id, 0) + 1
        self._write(t, status="running")
        self.log(f"[sweep {self.spec.name}] start  {t.trial_id} ({t.label}, seed {t.seed})"
                 f"{'' if self.attempts[t.trial_id] == 1 else f' attempt {self.attempts[t.trial_id]}'}"
                 f"  [{len(self.outcomes) + 1}/{self.total}]")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        t = self._trial(trial)
        self.log(f"[sweep {self.spec.name}] retry  {t.trial_id}: {_trial_error(trial)} "
                 f"(attempt {self.attempts.get(t.trial_id, 1)} of {self.spec.max_failures + 1})")

    def _wall(self, t: TrialSpec) -> float | None:
        start = self.started.get(t.trial_id)
        return time.perf_counter() - start if start is not None else None

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        t = self._trial(trial)
        final = read_final_metrics(self.sweep_dir / RUNS_DIR / t.trial_id)
        error = None
        if final is not None:
            status = "completed"
        elif self.spec.scheduler.kind == "asha":
            status = "stopped"
        else:
            status, error = "failed", (f"the trial ended without {RUNS_DIR}/{t.trial_id}/final/metrics.json "
                                       "(its final evaluation did not run)")
        wall = self._wall(t)
        self.outcomes[t.trial_id] = {"status": status, "error": error, "wall_s": wall}
        self._write(t, status=status, error=error, wall_s=wall)
        what = _fmt_metrics(final) if final else error or \
            f"stopped early by ASHA at step {(trial.last_result or {}).get('step')}"
        self.log(f"[sweep {self.spec.name}] {status:<9} {t.trial_id} ({t.label}): {what}  "
                 f"{wall or 0:.0f}s  [{len(self.outcomes)}/{self.total} finished]")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        t = self._trial(trial)
        error = _trial_error(trial)
        wall = self._wall(t)
        self.outcomes[t.trial_id] = {"status": "failed", "error": error, "wall_s": wall}
        self._write(t, status="failed", error=error, wall_s=wall)
        self.log(f"[sweep {self.spec.name}] FAILED    {t.trial_id} ({t.label}) after "
                 f"{self.attempts.get(t.trial_id, 1)} attempt(s): {error.splitlines()[0] if error else ''}  "
                 f"[{len(self.outcomes)}/{self.total} finished]")


def default_sweep_dir(spec: SweepSpec) -> Path:
    """``<work_dir>/sweeps/<spec name>`` (work_dir from the spec's base config)."""
    return Path(str(spec.base_config().work_dir)) / "sweeps" / spec.name


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def read_state(sweep_dir: Path) -> dict[str, Any] | None:
    p = sweep_dir / STATE_FILE
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise SweepError(f"{p}: not valid JSON ({err}); it records the sweep's trials") from err
    if not isinstance(data, dict) or not isinstance(data.get("trials"), dict):
        raise SweepError(f"{p}: expected a JSON object with a 'trials' mapping")
    return data


def completed_trials(sweep_dir: Path) -> set[str]:
    """Trial ids whose ``trials.parquet`` row is ``completed`` and whose final metrics exist."""
    table = read_table(sweep_dir, "trials")
    if table is None or not table.num_rows:
        return set()
    done = set()
    for tid, status, run_dir in zip(table["trial_id"].to_pylist(), table["status"].to_pylist(),
                                    table["run_dir"].to_pylist()):
        if status == "completed" and run_dir and (Path(run_dir) / "final" / "metrics.json").is_file():
            done.add(tid)
    return done


def _check_resume(state: Mapping[str, Any] | None, trials: Sequence[TrialSpec], done: set[str],
                  sweep_dir: Path) -> None:
    if state is None:
        return
    stored = state["trials"]
    for t in trials:
        if t.trial_id in done and t.trial_id in stored and _plain(stored[t.trial_id]) != _plain(t.overrides):
            raise SweepError(
                f"--resume {sweep_dir}: trial {t.trial_id} was run with {stored[t.trial_id]} but the spec now "
                f"gives it {_plain(t.overrides)}; resume with the same spec and --set updates, or start a new "
                "sweep with --out DIR")


def _init_ray() -> None:
    from c2s.raystart import init_ray

    # Trials log to their own files; the sweep prints one line per trial start/finish itself.
    init_ray(log_to_driver=False)


def run_sweep(spec: SweepSpec, sweep_dir: str | os.PathLike, *, resume: bool = False,
              updates: Sequence[str] = (), log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the sweep into ``sweep_dir``; returns a summary dict (also the JSON line of ``main``)."""
    import ray

    started = time.perf_counter()
    sweep_dir = Path(sweep_dir).resolve()
    trials = with_token_cache_default(spec, expand_trials(spec), log)
    by_id = {t.trial_id: t for t in trials}
    state = read_state(sweep_dir)
    done = completed_trials(sweep_dir)
    has_rows = (sweep_dir / "trials.parquet").is_file()
    if not resume and (has_rows or state is not None):
        raise SweepError(f"{sweep_dir} already holds a sweep ({STATE_FILE} / trials.parquet); pass --resume to "
                         "run only what is left, or --out DIR for a new sweep")
    if resume:
        _check_resume(state, trials, done, sweep_dir)
    todo = [t for t in trials if t.trial_id not in done]
    skipped = [t.trial_id for t in trials if t.trial_id in done]
    tracking = sweep_tracking(spec, todo)  # tracking.mlflow_uri: one MLflow run per trial (checked before Ray)

    needed = resources_needed(spec)
    _init_ray()
    from c2s.train.cluster import cluster_from_ray

    # Before any trial (or cache build) starts: totals, then bundles per node (with autoscaled node types).
    cluster = cluster_from_ray()
    check_cluster_fits(needed, ray.cluster_resources(), cluster=cluster, spec=spec)
    _check_sweep_storage(sweep_dir, cluster)

    sweep_dir.mkdir(parents=True, exist_ok=True)
    stored = dict(state["trials"]) if state else {}
    stored.update({t.trial_id: _plain(t.overrides) for t in trials})
    from c2s.sweep.book import code_commit

    commit, dirty = code_commit()  # the code the trials run; `c2s report --collect` keeps it with the tables
    with atomic_path(sweep_dir / STATE_FILE) as tmp:
        tmp.write_text(json.dumps({"name": spec.name, "spec": str(spec.path) if spec.path else None,
                                   "base": spec.base, "updates": list(updates), "commit": commit,
                                   "dirty": dirty, "trials": stored}, indent=2))
    log(f"[sweep {spec.name}] {len(trials)} trial(s) ({len(trials) // len(spec.seeds)} point(s) x "
        f"{len(spec.seeds)} seed(s)); {len(skipped)} already completed, {len(todo)} to run, "
        f"max_concurrent {spec.max_concurrent}, scheduler {spec.scheduler.kind} -> {sweep_dir}")

    for callback in tracking:
        log(f"[sweep {spec.name}] MLflow: experiment {callback.experiment_name!r} at {callback.tracking_uri}, "
            "one run per trial")
    caches = prepare_token_caches(spec, todo, log) if todo else []
    recorder = SweepRecorder(spec, by_id, sweep_dir, len(todo), float(needed["per_trial"]["GPU"]), log)
    if todo:
        driver = tune.with_parameters(trial_driver, base=spec.base,
                                      overrides={t.trial_id: dict(t.overrides) for t in todo},
                                      sweep_dir=str(sweep_dir),
                                      cache_roots={t.trial_id: str(cache_root(load_config(spec.base, t.overrides)))
                                                   for t in todo})
        driver = tune.with_resources(driver, {"CPU": float(spec.resources.get("driver_cpus",
                                                                                 DRIVER_CPUS_DEFAULT))})
        # Tune's own console output (experiment box, per-trial tracebacks) is replaced by one line per trial
        # start/finish; errors go to trials.parquet and Tune's error files.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
        tuner = tune.Tuner(
            driver,
            param_space={"trial_id": tune.grid_search([t.trial_id for t in todo])},
            tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=spec.max_concurrent,
                                        scheduler=tune_scheduler(spec, time_attr="step"), reuse_actors=False),
            run_config=tune.RunConfig(
                name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str(sweep_dir),
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                callbacks=[recorder, *tracking], verbose=0),
        )
        tuner.fit()
    # Final pass: every trial run this time, from its run directory and recorded outcome.
    rows = []
    for t in todo:
        out = recorder.outcomes.get(t.trial_id)
        if out is None:
            continue  # never finished (the sweep was stopped): keeps its `running` row for --resume
        run_dir = sweep_dir / RUNS_DIR / t.trial_id
        rows.append(collect_run(run_dir if run_dir.is_dir() else None, t, sweep=spec.name, metric=spec.metric,
                                mode=spec.mode, gpus=float(needed["per_trial"]["GPU"]), **out))
    table_error = write_final_rows(sweep_dir, rows, spec.name, log)
    statuses = [o["status"] for o in recorder.outcomes.values()]
    summary = {
        "sweep": spec.name, "sweep_dir": str(sweep_dir), "trials": len(trials), "ran": len(todo),
        "skipped_completed": len(skipped), "completed": statuses.count("completed"),
        "failed": statuses.count("failed"), "stopped": statuses.count("stopped"),
        "token_caches": caches, "teacher_images": teacher_images(caches, rows),
        "wall_s": round(time.perf_counter() - started, 2),
        **({"table_error": table_error} if table_error else {}),
    }
    log(f"[sweep {spec.name}] done: {summary['completed']} completed, {summary['failed']} failed, "
        f"{summary['stopped']} stopped, {len(skipped)} skipped (already completed) in {summary['wall_s']:.0f}s; "
        f"tables in {sweep_dir} (c2s report {sweep_dir})")
    return summary


def write_final_rows(sweep_dir: Path, rows: Sequence[Any], name: str, log: Callable[[str], None]) -> str | None:
    """Write the final pass's rows (:func:`c2s.sweep.tables.write_run`); returns None, or the error when the
    tables refused them. The trials have run by then (an hour of them, maybe): a table error must not lose the
    sweep's summary, so it is logged with where the run directories are, and returned for the summary (its
    ``table_error``) and the exit status of ``c2s sweep`` (1). Each run directory keeps its trial's metrics:
    :func:`c2s.sweep.tables.collect_run` rebuilds the trial's rows from it once the cause is fixed."""
    if not rows:
        return None
    try:
        write_run(sweep_dir, rows)
    except (TableError, OSError) as err:
        log(f"[sweep {name}] ERROR: could not write the final rows to {sweep_dir}: {err}; the trials' run "
            f"directories are under {sweep_dir / RUNS_DIR}")
        return str(err)
    return None


def teacher_images(caches: Sequence[Mapping[str, Any]], rows: Sequence[Any]) -> dict[str, int]:
    """Images CLIP encoded this invocation: building token caches, in the trials' live pools, and in all."""
    built = sum(int(c["teacher_calls"]["images"]) for c in caches)
    live = sum(int(r.trials[0].get("teacher_images") or 0) for r in rows)
    return {"cache_builds": built, "trials": live, "total": built + live}


def _check_sweep_storage(sweep_dir: Path, cluster: Any) -> None:
    """The sweep directory (every trial's run folder) outlives the job and, when trials may run on several
    hosts, is on storage they all write to (the training job's own check, c2s.train.storage)."""
    import ray

    from c2s.train.storage import check_shared_storage, cluster_hosts, node_local_roots, under_ray_job

    hosts = cluster_hosts(ray.nodes(), may_grow=any(t.launchable != 0 for t in cluster.node_types))
    check_shared_storage(sweep_dir, under_job=under_ray_job(), cwd=Path.cwd(), hosts=hosts,
                         local_roots=node_local_roots(), key="--out")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="c2s sweep", description="Run a sweep spec (sweeps/*.yaml) with Ray Tune; "
                                     "results go to Parquet tables under the sweep directory.")
    parser.add_argument("spec", help="a spec file, or a name under sweeps/ (e.g. tau, ablation_modules)")
    parser.add_argument("--set", dest="updates", action="append", default=[], metavar="KEY=VALUE",
                        help="edit the spec, e.g. --set base=voc12_segnext_b --set overrides.train.iters=40000 "
                        "--set seeds=[0,1,2] (repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="sweep directory (default <work_dir>/sweeps/<name>)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep: skip completed "
                        "trials, run the rest (with the --set updates it was started with, unless given again)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    from c2s.errors import PreflightError

    args = parse_args(argv)
    spec = load_spec(args.spec, args.updates)
    sweep_dir = args.out if args.out is not None else default_sweep_dir(spec)
    updates = list(args.updates)
    if args.resume and not updates:
        state = read_state(Path(sweep_dir))
        if state and state.get("updates"):
            updates = list(state["updates"])
            spec = load_spec(args.spec, updates)
            print(f"[sweep {spec.name}] resuming with the stored spec updates {updates}", flush=True)
    try:
        from c2s.train.storage import check_run_location, under_ray_job

        # Under `ray job submit` a relative --out (or the default <work_dir>/sweeps/..., work_dir "runs") would
        # land in Ray's temporary package folder, deleted with the session.
        check_run_location(args.out if args.out is not None else spec.base_config().work_dir,
                           key="--out" if args.out is not None else "work_dir", under_job=under_ray_job(),
                           cwd=Path.cwd())
        summary = run_sweep(spec, sweep_dir, resume=args.resume, updates=updates,
                            log=lambda line: print(line, flush=True))
    except (SweepError, SpecError, ClusterFitError, PreflightError) as err:
        print(f"c2s sweep: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 1 if summary.get("table_error") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
