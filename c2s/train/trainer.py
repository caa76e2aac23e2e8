"""Driver side of the training job: resolve inputs, check resources, build the pipeline, fit.

``c2s train CONFIG key=value ...`` and ``jobs/train.py`` (for ``ray job submit``) both call :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from c2s.config import ConfigError, dump_config, from_dict, load_config, to_dict
from c2s.inputs import JobInputs, resolve_inputs

# Ray start-up lives in c2s.raystart (shared with the token cache and the sweep); re-exported for callers.
from c2s.raystart import JOB_ENV_VARS, init_ray, job_runtime_env  # noqa: F401
from c2s.train.pipeline import (
    TrainDatasetFactory,
    needs_teacher,
    per_worker_batch,
    repeats_epochs,
    starts_teacher_pool,
)
from c2s.train.resolve import check_job_placement, text_embeddings_for
from c2s.train.snapshot import resume_from_intact
from c2s.train.storage import (
    check_run_location,
    check_shared_inputs,
    check_shared_storage,
    job_input_paths,
    node_local_roots,
    under_ray_job,
    worker_hosts,
)
from c2s.train.tracking import check_tracking, mlflow_settings

# Ray Train V2 reads its controller's poll interval from the driver's environment when fit() creates the
# controller actor (ray/train/v2/_internal/constants.py: HEALTH_CHECK_INTERVAL_S_ENV_VAR, ENV_VARS_TO_PROPAGATE;
# read in execution/controller/controller.py).
CONTROLLER_POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"


def set_controller_poll(seconds: Any, environ: dict[str, str] | None = None) -> None:
    """``train.controller_poll_s`` -> the environment variable Ray Train's controller reads at fit().

    Each ``ray.train.report`` waits until the controller has taken the previous report, and the controller
    takes one per poll: at Ray's default 2 s a run that reports every step trains at most one step per 2 s.
    A missed poll is not a failure in Ray 2.60 (only a poll hanging for
    RAY_TRAIN_WORKER_HEALTH_CHECK_TIMEOUT_S, 10 min, is), so a short interval is safe under load.
    """
    environ = os.environ if environ is None else environ
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < float(seconds) <= 60:
        raise ValueError(f"train.controller_poll_s must be a number of seconds in (0, 60], got {seconds!r}")
    environ[CONTROLLER_POLL_ENV] = repr(float(seconds))


def train_data_config(preserve_order: bool) -> Any:
    """Ray Train's ``DataConfig`` for the training stream: Train's default ingest options
    (ray/train/_internal/data_config.py, ``DataConfig.default_ingest_options``: the driver's resource limits)
    with ``train.preserve_order``, so rows reach the workers in stream order, not in the order their Ray Data
    tasks finish."""
    from ray.data import DataContext, ExecutionOptions
    from ray.train import DataConfig

    current = DataContext.get_current().execution_options
    return DataConfig(execution_options=ExecutionOptions(
        resource_limits=current.resource_limits, preserve_order=preserve_order,
        verbose_progress=current.verbose_progress))


def check_torch_threads(value: Any) -> int:
    """``train.torch_threads``: a whole number >= 0, checked on the driver (the worker applies it)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"train.torch_threads must be a whole number >= 0 (0: Ray's OMP_NUM_THREADS, "
                         f"floor(train.cpus_per_worker) and at least 1), got {value!r}")
    return value


class ProgressTail(threading.Thread):
    """Prints the rows rank 0 appends to ``metrics.jsonl`` as one readable line each, while fit() runs.

    A resumed run rewrites the file (``loop.truncate_jsonl`` drops the rows after the restored step, then
    the redone steps are appended), so a byte offset kept from before would point into the middle of a row.
    The tail keeps the complete lines it has seen instead and prints the lines after the part the file
    still shares with them: new rows once, rewritten rows again, kept rows never.
    """

    def __init__(self, path: Path, total: int, label: str, interval_s: float = 2.0):
        super().__init__(daemon=True)
        self.path, self.total, self.label, self.interval_s = path, total, label, interval_s
        self.stop = threading.Event()
        self.seen = self._complete_lines()  # rows of an earlier attempt are not printed again

    def run(self) -> None:
        while not self.stop.is_set():
            self.flush()
            self.stop.wait(self.interval_s)
        self.flush()

    def _complete_lines(self) -> list[str]:
        if not self.path.exists():
            return []
        text = self.path.read_text()
        return text[: text.rfind("\n") + 1].splitlines()

    def flush(self) -> None:
        lines = self._complete_lines()
        shared = 0
        for old, new in zip(self.seen, lines):
            if old != new:
                break
            shared += 1
        self.seen = lines
        for line in lines[shared:]:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                print(f"[{self.label}] unreadable row in {self.path}: {err}: {line[:200]!r}", flush=True)
                continue
            print(format_progress(row, self.total, self.label), flush=True)


def format_progress(row: dict[str, Any], total: int, label: str) -> str:
    if row.get("kind") == "eval":
        return (f"[{label}] eval  step {row['step']}/{total}: sIoU {row['sIoU']:.1f}  uIoU {row['uIoU']:.1f}  "
                f"hIoU {row['hIoU']:.1f}")
    parts = " ".join(f"{k.removeprefix('loss_')} {row[k]:.3f}" for k in
                     ("loss_global", "loss_local", "loss_pixel") if row.get(k))
    return (f"[{label}] step {row['step']}/{total}  loss {row['loss']:.3f} ({parts})  lr {row['lr']:.1e}  "
            f"{row['images_per_s']:.1f} img/s  teacher-wait {100 * row['teacher_wait_frac']:.0f}%"
            + (f"  teacher actors {row['teacher_actors_active']}" if "teacher_actors_active" in row else "")
            + (f"  skipped {row['bad_samples_skipped']}" if "bad_samples_skipped" in row else ""))


def run_training(cfg, run_dir: Path, *, resume: bool = False, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` (= storage_path/name for Ray Train); returns the final metrics.

    With ``resume=True`` Ray Train restores the latest checkpoint found under ``run_dir``, checked first on the
    driver: a damaged one is replaced by the newest intact one, or named in a CheckpointError
    (:func:`resume_from_intact`). ``callbacks`` go into the Train ``RunConfig`` (a sweep trial passes a
    ``TuneReportCallback``). With ``teacher.cache = true`` the token cache is built first when missing
    (c2s.teacher.cache). CLIP calls made by this run's teacher actors are counted under
    ``run_dir/teacher_calls/`` (``summary["teacher_calls"]``).
    """
    from c2s.data.catalog import get_dataset_info
    from c2s.data.readers import bad_sample_counts

    run_dir = open_run_dir(run_dir, resume)
    started = time.perf_counter()
    info = get_dataset_info(cfg.data.dataset)
    job = prepare_job(cfg, run_dir)  # every check before Ray starts, then Ray, placement and storage
    announce(cfg, run_dir, info, job)
    # data.on_bad_sample=skip: the job's skip counter before this run (a test session runs several in one job).
    skipped_before = bad_sample_counts().get("train", 0) if cfg.data.on_bad_sample == "skip" else None
    trainer = build_trainer(cfg, run_dir, job, skipped_before, callbacks)
    result = fit_with_progress(trainer, run_dir, int(cfg.train.iters), job.inputs.data_root, info)
    return write_summary(cfg, run_dir, result, started, skipped_before, job.token_cache)


@dataclass
class PreparedJob:
    """What the driver resolved before fit(): the inputs, the text embeddings, where the teacher's tokens
    come from."""

    inputs: JobInputs  # c2s.inputs.resolve_inputs: data_root, teacher checkpoint, cache_root
    seen_text: Any  # (Ns, D) torch.Tensor, the objective's
    all_text: Any  # (N, D) torch.Tensor, the evaluator's
    with_teacher: bool  # distillation or latent classes on: the teacher's tokens are needed
    cached: bool  # they come from the token cache (teacher.cache), not a live pool
    token_cache: str | None = None  # the cache folder the run reads (teacher.cache), for summary.json


def open_run_dir(run_dir: str | Path, resume: bool) -> Path:
    """The run directory, made: a fresh run refuses one holding checkpoints; a resume checks them first."""
    from c2s.train.loop import BAD_SAMPLE_MARKER, NONFINITE_MARKER

    run_dir = Path(run_dir).resolve()
    if run_dir.exists() and any(run_dir.glob("checkpoint_*/state.pt")) and not resume:
        raise FileExistsError(f"{run_dir} already holds checkpoints; pass --resume {run_dir} to continue it, "
                              "or choose another run name")
    if resume:
        resume_from_intact(run_dir)  # seconds, before Ray: a damaged newest checkpoint is skipped or named
    run_dir.mkdir(parents=True, exist_ok=True)
    # The markers stop Ray Train's automatic retries of one fit(); a --resume (the data fixed, the config
    # changed) tries again from the last checkpoint.
    for marker in (BAD_SAMPLE_MARKER, NONFINITE_MARKER):
        (run_dir / marker).unlink(missing_ok=True)
    return run_dir


INTERVAL_KEYS = ("iters", "log_interval", "checkpoint_interval", "eval_interval")


def check_train_intervals(train_cfg) -> None:
    """``train.iters`` and its intervals are whole steps >= 1 (an interval of 0 once reached the worker as a
    modulo by zero). To evaluate or checkpoint only at the end, set the interval to ``train.iters``."""
    for key in INTERVAL_KEYS:
        value = train_cfg.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            hint = "" if key == "iters" else f"; to do it only at the end, set train.{key}={train_cfg.get('iters')}"
            raise ConfigError(f"train.{key}: expected a whole number of steps >= 1, got {value!r}{hint}")


def check_objective_settings(cfg) -> None:
    """The objective's settings (c2s.method.settings), checked on the driver: a bad ``loss.*``, ``distill.*``,
    ``bank.*``, ``latent.*`` or ``mining.k_max`` is a ConfigError naming the key before Ray starts, not a
    worker's error Ray Train retries."""
    from c2s.method.settings import SettingsError, objective_settings

    try:
        objective_settings(cfg)
    except SettingsError as err:
        raise ConfigError(str(err)) from None


def check_mining(cfg) -> None:
    """``mining.edges`` checked on the driver (the teacher actors read it), so a typo stops the run before Ray
    starts."""
    from c2s.teacher.mining import mining_edges

    try:
        mining_edges(cfg.mining)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def prepare_job(cfg, run_dir: Path) -> PreparedJob:
    """Inputs and settings checked, the text embeddings and the config written, then Ray started, the job
    placed, the storage checked and (teacher.cache) the token cache built."""
    inputs = resolve_inputs(cfg)  # errors about paths come before any Ray resource is asked for
    check_objective_settings(cfg)
    check_mining(cfg)
    check_train_intervals(cfg.train)
    check_tracking(cfg)  # tracking.mlflow_uri set: MLflow importable (c2s.train.tracking)
    set_controller_poll(cfg.train.controller_poll_s)
    check_torch_threads(cfg.train.torch_threads)
    seen_text, all_text = text_embeddings_for(cfg, inputs)
    dump_config(cfg, run_dir / "config.json")
    job = PreparedJob(inputs, seen_text, all_text, with_teacher=needs_teacher(cfg),
                      cached=repeats_epochs(cfg))  # cached: the teacher's tokens come from the token cache
    init_ray()
    placement = check_job_placement(cfg, starts_teacher_pool(cfg))  # per node, with autoscaled node types
    check_run_storage(cfg, run_dir, inputs, cached=job.cached,
                      new_nodes=sum(placement.launched.values()) if placement is not None else 0)
    if job.cached:
        from c2s.teacher.cache import ensure_token_cache

        folder, _ = ensure_token_cache(cfg, inputs.data_root, inputs.cache_root)
        job.token_cache = str(folder)
    return job


def announce(cfg, run_dir: Path, info: Any, job: PreparedJob) -> None:
    """The run's one line: student, dataset, steps, workers and where the teacher's tokens come from."""
    train_cfg = cfg.train
    teacher_desc = ('token cache (no CLIP actor)' if job.cached else 'pool of ' + str(tuple(cfg.teacher.actors))) \
        if job.with_teacher else 'not needed (baseline)'
    print(f"[c2s] run {run_dir.name}: {cfg.model.name} on {info.name} ({len(info.seen_classes)} seen classes), "
          f"{train_cfg.iters} steps x {train_cfg.batch_size} images, {train_cfg.workers} worker(s), "
          f"teacher {teacher_desc}",
          flush=True)
    uri, experiment = mlflow_settings(cfg)
    if uri is not None:
        print(f"[c2s] MLflow: experiment {experiment!r} at {uri} (rank 0 logs every metrics.jsonl row)", flush=True)


def build_trainer(cfg, run_dir: Path, job: PreparedJob, skipped_before: int | None,
                  callbacks: list[Any] | None) -> Any:
    """The training dataset, planned here (data errors reach the console before any worker starts), and the
    TorchTrainer that runs c2s.train.loop.train_loop_per_worker on it."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from c2s.train.loop import train_loop_per_worker

    train_cfg, inputs = cfg.train, job.inputs
    dataset = TrainDatasetFactory(to_dict(cfg), inputs.data_root, run_dir, calls_dir=run_dir / "teacher_calls",
                                  cache_root=inputs.cache_root)
    dataset(start_step=0)  # plan once here: data errors reach the console before any worker starts
    use_gpu = float(train_cfg.gpus_per_worker) > 0
    resources = {"CPU": float(train_cfg.cpus_per_worker)}
    if use_gpu:
        resources["GPU"] = float(train_cfg.gpus_per_worker)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "cfg": to_dict(cfg),
            "run_dir": str(run_dir),
            "data_root": str(inputs.data_root),
            "seen_text": job.seen_text.numpy().tolist(),
            # Only the rank-0 evaluator reads this; the objective and the teacher never see unseen names.
            "eval_text": job.all_text.numpy().tolist(),
            "bad_samples_skipped_before": skipped_before,
        },
        scaling_config=ScalingConfig(num_workers=int(train_cfg.workers), use_gpu=use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=run_dir.name,
            storage_path=str(run_dir.parent),
            failure_config=FailureConfig(max_failures=int(train_cfg.max_failures)),
            checkpoint_config=CheckpointConfig(num_to_keep=int(train_cfg.num_to_keep)),
            callbacks=list(callbacks or []),
            # ray.train's INFO lines ("Started training replica group of size N:" + one line per worker,
            # ...) stay out of the console; the job prints its own line per interval (ProgressTail). The
            # level applies to ray.train.* console and app logs only; the system log files keep everything
            # (ray/train/v2/_internal/logging/logging.py, TrainLogLevelFilter). The per-report line is not
            # a ray.train.* record: loop.quiet_report_log handles it.
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
        datasets={"train": dataset},
        dataset_config=train_data_config(bool(train_cfg.preserve_order)),
    )


def fit_with_progress(trainer: Any, run_dir: Path, total: int, data_root: Path, info: Any) -> Any:
    """``trainer.fit()`` with one progress line per logged row; a bad training file named in a BadSampleError."""
    from c2s.data.readers import BadSampleError, bad_sample_message

    tail = ProgressTail(run_dir / "metrics.jsonl", total, run_dir.name)
    tail.start()
    try:
        return trainer.fit()
    except Exception as err:
        # Ray's message ends in "UDF failed to process a data block ... (Output truncated)"; name the file.
        culprit = bad_sample_message(err)
        if culprit is None:
            raise
        raise BadSampleError(
            f"bad training data: {culprit}\n(data.on_bad_sample=error stops at the first bad file: fix or remove "
            f"it - `c2s data check {data_root} --dataset {info.ref}` lists them all - or set "
            "data.on_bad_sample=skip to drop and count bad samples)") from None
    finally:
        tail.stop.set()
        tail.join()


def write_summary(cfg, run_dir: Path, result: Any, started: float, skipped_before: int | None,
                  token_cache: str | None = None) -> dict[str, Any]:
    """``run_dir/summary.json``: the final metrics, the checkpoint, the teacher's work against training's,
    the token cache read (teacher.cache; else null) and (data.on_bad_sample=skip) the bad samples skipped."""
    from c2s.data.readers import bad_sample_counts, bad_sample_examples
    from c2s.teacher.calls import read_actor_devices, read_call_counts

    final_file = run_dir / "final" / "metrics.json"
    final = json.loads(final_file.read_text()) if final_file.exists() else {}
    summary = {"run_dir": str(run_dir), "wall_s": time.perf_counter() - started,
               "checkpoint": result.checkpoint.path if result.checkpoint else None,
               "teacher_calls": read_call_counts(run_dir / "teacher_calls"), "token_cache": token_cache, **final}
    # CLIP work against training's consumption (issue 15: <= 1.1); counted over every attempt of the run.
    trained_step = int((result.metrics or {}).get("step", 0))
    summary["teacher_images"] = summary["teacher_calls"]["images"]
    summary["teacher_devices"] = read_actor_devices(run_dir / "teacher_calls")  # e.g. ["cuda (float16)"]
    device_file = run_dir / "worker_device.json"
    summary["worker_device"] = json.loads(device_file.read_text()) if device_file.exists() else None
    workers = int(cfg.train.workers)
    summary["trained_images"] = trained_step * per_worker_batch(int(cfg.train.batch_size), workers) * workers
    if skipped_before is not None:
        summary["bad_samples_skipped"] = bad_sample_counts().get("train", 0) - skipped_before
        # Distinct messages: a multi-epoch stream meets the same bad file once per epoch.
        examples = list(dict.fromkeys(bad_sample_examples()))[:5] if summary["bad_samples_skipped"] else []
        summary["bad_sample_examples"] = examples
        print(f"[c2s] data.on_bad_sample=skip: skipped {summary['bad_samples_skipped']} bad training sample(s)"
              + "".join(f"\n  {e}" for e in summary["bad_sample_examples"]), flush=True)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def check_run_storage(cfg, run_dir: Path, inputs: Any = None, *, cached: bool = False, new_nodes: int = 0) -> None:
    """Preflight (Ray connected, nothing started): the run directory outlives the job and every host the
    workers may use writes to the same place; with ``inputs`` (JobInputs) the data, teacher, backbone and
    token cache are on storage every host reads too (c2s.train.storage). ``new_nodes``: nodes the placement
    needs the autoscaler to launch (then the job spans hosts even if only the head runs now)."""
    import ray

    per_worker = {"CPU": float(cfg.train.cpus_per_worker), "GPU": float(cfg.train.gpus_per_worker)}
    hosts = worker_hosts(ray.nodes(), ray.get_runtime_context().get_node_id(), per_worker)
    hosts = max(hosts, 2) if new_nodes else hosts
    check_shared_storage(run_dir, under_job=under_ray_job(), cwd=Path.cwd(), hosts=hosts,
                         local_roots=node_local_roots())
    if inputs is not None:
        check_shared_inputs(job_input_paths(cfg, inputs.cache_root, cached=cached), hosts=hosts,
                            local_roots=node_local_roots())


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="c2s train", description="Train a student with C2S distillation.")
    parser.add_argument("config", nargs="?", help="config name under c2s/configs or a .py path")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. loss.tau=0.05 bank.size=48")
    parser.add_argument("--run-dir", type=Path, default=None, help="where checkpoints and metrics go "
                        "(default: <work_dir>/<config>-<time>)")
    parser.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                        help="continue a run from its latest checkpoint (config read from RUN_DIR/config.json)")
    args = parser.parse_args(argv)
    if args.config is None and args.resume is None:
        parser.error("give a CONFIG, or --resume RUN_DIR")
    if args.config is not None and "=" in args.config and args.resume is not None:
        args.overrides, args.config = [args.config, *args.overrides], None  # only overrides after --resume
    if args.config is not None and "=" in args.config:
        parser.error(f"the first argument must be a config name, got the override {args.config!r}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    under_job, cwd = under_ray_job(), Path.cwd()
    if args.resume is not None:
        check_run_location(args.resume, key="--resume", under_job=under_job, cwd=cwd)
        if args.config is not None:
            raise SystemExit("c2s train --resume RUN_DIR takes the config from RUN_DIR/config.json; "
                             f"drop {args.config!r} (overrides such as train.iters=... are allowed)")
        config_file = args.resume / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"--resume {args.resume}: no config.json there (not a c2s run directory)")
        from c2s.config import apply_overrides

        cfg = apply_overrides(from_dict(json.loads(config_file.read_text())), args.overrides)
        run_dir = args.resume
    else:
        cfg = load_config(args.config, args.overrides)
        if args.run_dir is not None:
            check_run_location(args.run_dir, key="--run-dir", under_job=under_job, cwd=cwd)
        else:
            check_run_location(cfg.work_dir, key="work_dir", under_job=under_job, cwd=cwd)
        run_dir = args.run_dir or Path(cfg.work_dir) / f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    summary = run_training(cfg, run_dir, resume=args.resume is not None)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
