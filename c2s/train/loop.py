"""The per-worker training loop (runs inside a Ray Train worker; CLIP is never loaded here).

The batch stream arrives from the dataset shard with the teacher's tokens already attached. The loop
(:class:`TrainRecipe`: setup, train, save_checkpoint, cleanup) owns the step: forward (student + C2S
objective), backward, clip, AdamW + schedule, report, checkpoint, evaluate. Rank 0 also writes
``metrics.jsonl`` under the run directory: ``Result.metrics`` only keeps metrics reported with a checkpoint
(architecture.md), so curves need their own sink.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from c2s.config import from_dict
from c2s.data.readers import BadSampleError, bad_sample_counts, bad_sample_message
from c2s.teacher.calls import read_actor_batches
from c2s.train.checkpoint import load_state, save_state, set_rng_state
from c2s.train.curves import CurveWriter
from c2s.train.pipeline import per_worker_batch, repeats_epochs
from c2s.train.precision import training_autocast
from c2s.train.schedule import build_optimizer
from c2s.train.tracking import RowSinks, tracking_sinks

NONFINITE_MARKER = "NONFINITE_LOSS.json"
# data.on_bad_sample=error met a file it cannot read. Ray Train retries any worker error (FailureConfig
# .max_failures; ray/train/v2/_internal/execution/failure_handling/default.py has no non-retryable class
# for worker errors), and a retry would rebuild the data pipeline and read up to the same file again: the
# marker makes the retry fail at once with the same message. The driver removes it when a run starts.
BAD_SAMPLE_MARKER = "BAD_SAMPLE.txt"
CRASH_MARKER = ".crash_injected"
TENSOR_KEYS = ("label", "global", "local", "local_ids", "local_valid", "pseudo_mask")


class NonFiniteLoss(FloatingPointError):
    """A loss component became NaN/inf; the run stops and keeps the last good checkpoint."""


class TrainModule(torch.nn.Module):
    """Student + objective as one module, so DDP syncs the student and the latent generator together."""

    def __init__(self, student: torch.nn.Module, objective: torch.nn.Module):
        super().__init__()
        self.student = student
        self.objective = objective

    def forward(self, images: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """images: (B,3,H,W) normalised -> loss dict of the C2S objective."""
        features = self.student(images)
        return self.objective(features.float(), batch)


def raise_if_stopped(run_dir: Path) -> None:
    """Ray Train's retry of a run that stopped on an error a retry cannot fix fails at once, with its message."""
    if (run_dir / NONFINITE_MARKER).exists():
        raise NonFiniteLoss(f"run {run_dir} stopped on a non-finite loss: {(run_dir / NONFINITE_MARKER).read_text()}")
    if (run_dir / BAD_SAMPLE_MARKER).exists():
        raise BadSampleError((run_dir / BAD_SAMPLE_MARKER).read_text())


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop rows after ``last_step`` (a resumed run repeats those steps; no duplicate rows)."""
    if not path.exists():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in rows if json.loads(line).get("step", 0) <= last_step]
    # Replace in one step: the driver's progress tail never reads a half-written file.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def _batches(shard, batch_size: int, *, needed: int, repeat: bool, prefetch_batches: int = 1,
             first_row: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """The shard's batches of ``batch_size``: one pass over the finite stream that covers the whole run
    (live path, c2s.train.pipeline.stream_span), or epoch after epoch with ``repeat`` (the token cache).

    ``needed``: batches the run still needs (named when the stream ends early). ``first_row``: the first
    stream row not yet trained on; a batch carrying a ``row`` column below it means the stream restarted
    at the wrong step. ``prefetch_batches``: Ray's ``iter_torch_batches`` look-ahead (train.prefetch_batches).
    """
    produced = 0
    while True:
        in_pass = 0
        for batch in shard.iter_torch_batches(batch_size=batch_size, drop_last=True,
                                              prefetch_batches=prefetch_batches):
            if produced == 0 and "row" in batch and int(batch["row"].min()) < first_row:
                raise RuntimeError(f"the training stream serves row {int(batch['row'].min())} but rows before "
                                   f"{first_row} were already trained on (resumed step x global batch): the "
                                   "stream did not start at the restored step")
            in_pass += 1
            produced += 1
            yield batch
        if in_pass == 0:
            raise RuntimeError(
                f"the training dataset shard yielded no batch of {batch_size}: fewer training images than "
                "train.batch_size / train.workers, or every sample was skipped (data.on_bad_sample=skip)"
            )
        if not repeat:
            raise RuntimeError(
                f"the training stream ended after {produced} batches of {batch_size} on this worker, but the run "
                f"needs {needed} from its start step: with data.on_bad_sample=skip more rows were skipped than "
                "the one-epoch margin covers (c2s.train.pipeline.stream_span)"
            )


class FirstBatchAhead:
    """``iterator``, its first item fetched in a thread from construction on.

    A worker's first batch waits on the whole data pipeline starting: Ray Data's split coordinator, the read
    tasks, the teacher actors (open_clip's import and the model, ~4 s each here). Asked for before the worker
    builds its student, that start runs beside the build instead of after it. The first item (or the error
    fetching it raised) is handed over on the first ``next``; later items come straight from ``iterator``.
    Ray 2.60's order, checked in ray/train/v2/_internal/callbacks/datasets.py and
    ray/train/v2/_internal/data_integration/dataset_manager.py: the split coordinator is made when rank 0 first
    calls ``get_dataset_shard``, and the stream executes from the first ``next``.
    """

    def __init__(self, iterator: Iterator[Any]) -> None:
        self._iterator = iterator
        self._first: Any = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = threading.Thread(target=self._fetch, name="c2s-first-batch",
                                                                 daemon=True)
        self._thread.start()

    def _fetch(self) -> None:
        try:
            self._first = next(self._iterator)
        except BaseException as err:  # noqa: BLE001 - re-raised as is in the caller's thread by __next__
            self._error = err

    def __iter__(self) -> FirstBatchAhead:
        return self

    def __next__(self) -> Any:
        if self._thread is None:
            return next(self._iterator)
        self._thread.join()
        self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        first, self._first = self._first, None
        return first


def quiet_report_log() -> None:
    """Drop Ray Train's per-report INFO line from this worker's console (the driver prints one line per
    log interval from metrics.jsonl instead).

    Ray 2.60 logs ``Reporting training result N: TrainingReport(...)`` (~500 characters per report and
    worker) through ``logging.getLogger(__file__)`` in ray/train/v2/_internal/execution/context.py: a logger
    named by its file path, outside ``ray.train``, so ``RunConfig(logging_config=LoggingConfig(...))`` (whose
    filter only matches ``ray.train*`` records, train/v2/_internal/logging/logging.py) does not reach it.
    Its WARNING and ERROR records still show.
    """
    from ray.train.v2._internal.execution import context as train_context

    train_context.logger.setLevel(logging.WARNING)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry: ``config`` holds the resolved config dict, the run dir and text embeddings."""
    recipe = TrainRecipe(config)
    recipe.setup()
    recipe.train()
    recipe.cleanup()


class Interval:
    """The sums behind one ``metrics.jsonl`` train row: loss components, teacher wait and busy time."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.wait_s = self.busy_s = 0.0
        self.steps = 0
        self.start = time.perf_counter()

    def add(self, values: dict[str, float], wait_s: float, busy_s: float) -> None:
        self.wait_s += wait_s
        self.busy_s += busy_s
        self.steps += 1
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value

    def row(self, step: int, lr: float, images_per_step: int) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.start
        return {"step": step, "kind": "train", **{k: v / self.steps for k, v in self.sums.items()}, "lr": lr,
                "images_per_s": self.steps * images_per_step / max(elapsed, 1e-9),
                "teacher_wait_frac": self.wait_s / max(self.wait_s + self.busy_s, 1e-9)}


class TrainRecipe:
    """One worker's run, as torchtune's recipes: :meth:`setup` (worker, checkpoint, stream, model, outputs),
    :meth:`train` (step, log, evaluate, checkpoint), :meth:`cleanup`. Rank 0 writes the run's files."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.cfg = from_dict(config["cfg"])
        self.run_dir = Path(config["run_dir"])
        self.train_cfg, self.optim_cfg = self.cfg.train, self.cfg.optim
        self.total = int(self.train_cfg.iters)
        self.step = 0

    # ------------------------------------------------------------------------------------------- setup
    def setup(self) -> None:
        self._setup_worker()
        self._read_checkpoint()
        self._start_stream()  # the data pipeline starts while the model builds (FirstBatchAhead)
        self._setup_model()
        self._restore()
        self._setup_outputs()
        self._setup_data()

    def _setup_worker(self) -> None:
        import ray.train
        import ray.train.torch

        quiet_report_log()
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        raise_if_stopped(self.run_dir)
        threads = int(self.train_cfg.torch_threads)
        if threads > 0:  # else Ray's OMP_NUM_THREADS: floor(cpus_per_worker), at least 1
            torch.set_num_threads(threads)
        torch.manual_seed(int(self.train_cfg.seed) + self.rank)
        np.random.seed(int(self.train_cfg.seed) + self.rank)

    def _setup_model(self) -> None:
        """Student, objective (its latent generator, projector and logit bias trained with the head's lr) and
        AdamW with its schedule."""
        from c2s.method.objective import build_objective
        from c2s.student import build_student

        self.seen_text = torch.tensor(np.asarray(self.config["seen_text"], dtype=np.float32))
        self.student = build_student(self.cfg.model)
        # ids are checked on the host batch (check_batch_ids in _step): no GPU sync in forward
        self.objective = build_objective(self.cfg, self.seen_text, check_ids=False)
        self.module = TrainModule(self.student, self.objective).to(self.device)
        optim = self.optim_cfg
        lr, mult, wd = float(optim.lr), float(optim.head_lr_mult), float(optim.weight_decay)
        groups = self.student.param_groups(lr, mult, wd)
        extra = [p for p in self.objective.parameters() if p.requires_grad]
        if extra:
            groups.append({"params": extra, "lr": lr * mult, "weight_decay": wd})
        self.optimizer, self.scheduler = build_optimizer(groups, optim, self.total)

    def _read_checkpoint(self) -> None:
        """Ray Train's checkpoint of this run, if it restarts one, read before anything is built: its step
        says where the batch stream starts."""
        import ray.train

        self.restored = None
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return
        with checkpoint.as_directory() as directory:
            self.restored = load_state(directory, map_location="cpu")
        self.step = int(self.restored["step"])

    def _start_stream(self) -> None:
        """This worker's batch stream from the restored step on, its first batch already on its way."""
        import ray.train

        train_cfg = self.train_cfg
        self.per_worker = per_worker_batch(int(train_cfg.batch_size), self.world)
        self.stream = FirstBatchAhead(_batches(ray.train.get_dataset_shard("train"), self.per_worker,
                                               needed=self.total - self.step, repeat=repeats_epochs(self.cfg),
                                               prefetch_batches=int(train_cfg.prefetch_batches),
                                               first_row=self.step * self.per_worker * self.world))

    def _restore(self) -> None:
        """The checkpoint read by :meth:`_read_checkpoint` into the built model: weights, optimizer, schedule,
        RNG."""
        state, self.restored = self.restored, None
        if state is None:
            return
        self.student.load_state_dict(state["student"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.module.to(self.device)
        print(f"[c2s] resumed from checkpoint at step {self.step}/{self.total}", flush=True)

    def _setup_outputs(self) -> None:
        """Rank 0: worker_device.json, metrics.jsonl cut back to the restored step, the TensorBoard curves and
        (tracking.mlflow_uri) the MLflow run."""
        self.curves = None
        if self.rank != 0:
            return
        # where the student trains, for summary.json (a worker's prints do not reach a local run's console)
        amp = "bf16 autocast" if self.device.type == "cuda" and bool(self.train_cfg.amp) else "fp32"
        (self.run_dir / "worker_device.json").write_text(json.dumps({
            "device": str(self.device), "precision": amp, "workers": self.world,
            "torch_threads": torch.get_num_threads()}))
        truncate_jsonl(self.run_dir / "metrics.jsonl", self.step)  # a restart repeats the steps after `step`
        # TensorBoard beside metrics.jsonl, and MLflow when tracking.mlflow_uri is set (c2s.train.tracking)
        self.curves = RowSinks([CurveWriter(self.run_dir, start_step=self.step),
                                *tracking_sinks(self.cfg, self.config["cfg"], self.run_dir, self.step)])

    def _setup_data(self) -> None:
        """The DDP model and the intervals (the stream started in :meth:`_start_stream`)."""
        import ray.train.torch

        train_cfg = self.train_cfg
        self.model = ray.train.torch.prepare_model(self.module,
                                                   parallel_strategy_kwargs={"find_unused_parameters": True})
        self.crash_at = int(train_cfg.get("crash_at_step", 0))
        self.log_every, self.ckpt_every = int(train_cfg.log_interval), int(train_cfg.checkpoint_interval)
        self.eval_every = int(train_cfg.eval_interval)
        self.calls_dir = self.run_dir / "teacher_calls"  # the live pool's per-actor counters (c2s.teacher.calls)
        self.actor_batches = read_actor_batches(self.calls_dir) if self.rank == 0 else {}

    # ------------------------------------------------------------------------------------------- train
    def train(self) -> None:
        """Steps from the restored one to ``train.iters``; every log interval a row (reported to Ray Train,
        with a checkpoint every checkpoint interval and at the end), an evaluation every eval interval."""
        interval = Interval()
        while self.step < self.total:
            t0 = time.perf_counter()
            batch = self._next_batch()
            t1 = time.perf_counter()
            values = self._step(batch)
            interval.add(values, t1 - t0, time.perf_counter() - t1)
            self._maybe_crash()
            is_ckpt = self.step % self.ckpt_every == 0 or self.step == self.total
            if not (self.step % self.log_every == 0 or is_ckpt):
                continue
            row = interval.row(self.step, self.scheduler.get_last_lr()[0], self.per_worker * self.world)
            interval = Interval()
            self._log(row)
            if self._eval_due():
                row.update(self.evaluate())  # every rank: its slice of the validation set, counts all-reduced
            if is_ckpt:
                self.save_checkpoint(row)
            else:
                self.report(row)

    def _next_batch(self) -> dict[str, torch.Tensor]:
        try:
            return next(self.stream)
        except Exception as err:  # Ray Data wraps a bad file's BadSampleError: surface its message
            message = bad_sample_message(err)
            if message is None:
                raise
            (self.run_dir / BAD_SAMPLE_MARKER).write_text(message)
            raise BadSampleError(message) from None

    def _step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Forward, backward, clip, AdamW and schedule; the loss components read back, checked finite."""
        self.objective.check_batch_ids(batch)
        self.objective.set_progress(self.step, self.total)
        images = self.student.normalize(batch["image"].to(self.device))
        tensors = {k: batch[k].to(self.device) for k in TENSOR_KEYS if k in batch}
        with training_autocast(self.device, bool(self.train_cfg.amp)):
            out = self.model(images, tensors)
        # every component read back at once: one device synchronisation per step, not one per component
        values = dict(zip(out, torch.stack([v.detach().float() for v in out.values()]).tolist()))
        self._check_finite(values)
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        if float(self.optim_cfg.grad_clip) > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(self.optim_cfg.grad_clip))
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return values

    def _check_finite(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            if not math.isfinite(value):
                message = {"step": self.step + 1, "component": name, "value": value}
                if self.rank == 0:
                    (self.run_dir / NONFINITE_MARKER).write_text(json.dumps(message))
                raise NonFiniteLoss(
                    f"non-finite {name} = {message['value']} at step {self.step + 1}; the run stops and keeps "
                    f"its last good checkpoint (every {self.ckpt_every} steps) under {self.run_dir}"
                )

    def _maybe_crash(self) -> None:
        """train.crash_at_step (tests): the last rank exits once at that step, as a worker lost mid-run."""
        rank, step = self.rank, self.step
        if self.crash_at and step == self.crash_at and rank == self.world - 1 \
                and not (self.run_dir / CRASH_MARKER).exists():
            (self.run_dir / CRASH_MARKER).write_text(str(step))
            # Give the controller time to register the checkpoint reported just before; a crash inside
            # that window restarts from the previous checkpoint, which would make the test ambiguous.
            time.sleep(5.0)
            print(f"[c2s] fault injection: worker rank {rank} exits at step {step}", flush=True)
            os._exit(1)

    def _log(self, row: dict[str, Any]) -> None:
        """Rank 0: the teacher pool's and the skipped samples' counts added to the interval's train row,
        written to metrics.jsonl and the curves."""
        if self.rank != 0:
            return
        if self.calls_dir.is_dir():
            # the elastic pool (teacher.actors = [min, max]): actors that ran CLIP in this interval, and so far
            now = read_actor_batches(self.calls_dir)
            row["teacher_actors_active"] = sum(n > self.actor_batches.get(a, 0) for a, n in now.items())
            row["teacher_actors_seen"] = len(now)
            self.actor_batches = now
        skipped_before = self.config.get("bad_samples_skipped_before")
        if skipped_before is not None:  # data.on_bad_sample=skip
            row["bad_samples_skipped"] = bad_sample_counts().get("train", 0) - skipped_before
        append_jsonl(self.run_dir / "metrics.jsonl", row)
        self.curves.add(row)

    def _eval_due(self) -> bool:
        return (self.step % self.eval_every == 0 or self.step == self.total) \
            and self.config.get("eval_text") is not None

    def evaluate(self) -> dict[str, float]:
        return _evaluate(self.student, self.config, self.cfg, self.run_dir, self.step,
                         final=self.step == self.total, device=self.device, curves=self.curves, rank=self.rank)

    def report(self, row: dict[str, Any]) -> None:
        import ray.train

        ray.train.report(_scalars(row))

    def save_checkpoint(self, row: dict[str, Any]) -> None:
        """Report ``row`` with a checkpoint (rank 0 writes it; the others report none)."""
        import ray.train

        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if self.rank == 0:
                save_state(tmp, student=self.student, objective=self.objective, optimizer=self.optimizer,
                           scheduler=self.scheduler, step=self.step, config=self.config["cfg"],
                           seen_text=self.seen_text)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(_scalars(row), checkpoint=ckpt)

    def cleanup(self) -> None:
        if self.curves is not None:
            self.curves.close()


def _scalars(row: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def _evaluate(student, config, cfg, run_dir: Path, step: int, *, final: bool, device,
              curves: RowSinks | None = None, rank: int = 0) -> dict[str, float]:
    """Evaluation of the student alone (no CLIP) with text embeddings of all classes, sharded over the
    workers (c2s.evaluate.evaluate_student); rank 0 writes the files and the eval row (with ``eval_s``)."""
    from c2s.evaluate import evaluate_student

    out_dir = run_dir / ("final" if final else f"eval/step_{step:07d}")
    eval_text = torch.tensor(np.asarray(config["eval_text"], dtype=np.float32))
    was_training = student.training
    student.eval()
    metrics = evaluate_student(student, eval_text, cfg, Path(config["data_root"]), out_dir, device=device,
                               step=step, panels=final)
    student.train(was_training)
    eval_row = {"step": step, "kind": "eval", **metrics}
    if rank == 0:
        append_jsonl(run_dir / "metrics.jsonl", eval_row)
    if curves is not None:
        curves.add(eval_row)
    return {k if k == "eval_s" else f"eval_{k}": v for k, v in metrics.items()}
