"""The per-worker training loop (runs inside a Ray Train worker; CLIP is never loaded here).

The batch stream arrives from the dataset shard with the teacher's tokens already attached. The loop
owns the step: forward (student + C2S objective), backward, clip, AdamW + schedule, report, checkpoint,
evaluate. Rank 0 also writes ``metrics.jsonl`` under the run directory: ``Result.metrics`` only keeps
metrics reported with a checkpoint (architecture.md), so curves need their own sink.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
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
    import ray.train
    import ray.train.torch

    from c2s.method.objective import C2SObjective
    from c2s.student import build_student

    cfg = from_dict(config["cfg"])
    run_dir = Path(config["run_dir"])
    train_cfg, optim_cfg = cfg.train, cfg.optim
    quiet_report_log()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    raise_if_stopped(run_dir)

    if int(train_cfg.torch_threads) > 0:  # else Ray's OMP_NUM_THREADS: floor(cpus_per_worker), at least 1
        torch.set_num_threads(int(train_cfg.torch_threads))
    torch.manual_seed(int(train_cfg.seed) + rank)
    np.random.seed(int(train_cfg.seed) + rank)
    seen_text = torch.tensor(np.asarray(config["seen_text"], dtype=np.float32))
    student = build_student(cfg.model)
    objective = C2SObjective(cfg, seen_text, check_ids=False)  # checked below on the host batch: no GPU sync
    module = TrainModule(student, objective).to(device)
    lr, mult, wd = float(optim_cfg.lr), float(optim_cfg.head_lr_mult), float(optim_cfg.weight_decay)
    groups = student.param_groups(lr, mult, wd)
    extra = [p for p in objective.parameters() if p.requires_grad]
    if extra:
        groups.append({"params": extra, "lr": lr * mult, "weight_decay": wd})
    total = int(train_cfg.iters)
    optimizer, scheduler = build_optimizer(groups, optim_cfg, total)

    step = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_state(directory, map_location="cpu")
        student.load_state_dict(state["student"])
        objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        step = int(state["step"])
        module.to(device)
        print(f"[c2s] resumed from checkpoint at step {step}/{total}", flush=True)
    if rank == 0:
        # where the student trains, for summary.json (a worker's prints do not reach a local run's console)
        amp = "bf16 autocast" if device.type == "cuda" and bool(train_cfg.amp) else "fp32"
        (run_dir / "worker_device.json").write_text(json.dumps({"device": str(device), "precision": amp,
                                                                "workers": world,
                                                                "torch_threads": torch.get_num_threads()}))
        truncate_jsonl(run_dir / "metrics.jsonl", step)  # a restart repeats the steps after `step`
    curves = CurveWriter(run_dir, start_step=step) if rank == 0 else None  # TensorBoard, beside metrics.jsonl

    model = ray.train.torch.prepare_model(module, parallel_strategy_kwargs={"find_unused_parameters": True})
    per_worker = per_worker_batch(int(train_cfg.batch_size), world)
    stream = _batches(ray.train.get_dataset_shard("train"), per_worker, needed=total - step,
                      repeat=repeats_epochs(cfg), prefetch_batches=int(train_cfg.prefetch_batches),
                      first_row=step * per_worker * world)
    crash_at = int(train_cfg.get("crash_at_step", 0))
    log_every, ckpt_every = int(train_cfg.log_interval), int(train_cfg.checkpoint_interval)
    eval_every = int(train_cfg.eval_interval)
    sums: dict[str, float] = {}
    wait_s = busy_s = 0.0
    interval_steps = 0
    interval_start = time.perf_counter()
    calls_dir = run_dir / "teacher_calls"  # the live pool's per-actor counters (c2s.teacher.calls)
    actor_batches = read_actor_batches(calls_dir) if rank == 0 else {}

    while step < total:
        t0 = time.perf_counter()
        try:
            batch = next(stream)
        except Exception as err:  # Ray Data wraps a bad file's BadSampleError: surface its message
            message = bad_sample_message(err)
            if message is None:
                raise
            (run_dir / BAD_SAMPLE_MARKER).write_text(message)
            raise BadSampleError(message) from None
        t1 = time.perf_counter()
        objective.check_batch_ids(batch)
        images = student.normalize(batch["image"].to(device))
        tensors = {k: batch[k].to(device) for k in TENSOR_KEYS if k in batch}
        with training_autocast(device, bool(train_cfg.amp)):
            out = model(images, tensors)
        # every component read back at once: one device synchronisation per step, not one per component
        values = dict(zip(out, torch.stack([v.detach().float() for v in out.values()]).tolist()))
        for name, value in values.items():
            if not math.isfinite(value):
                message = {"step": step + 1, "component": name, "value": value}
                if rank == 0:
                    (run_dir / NONFINITE_MARKER).write_text(json.dumps(message))
                raise NonFiniteLoss(
                    f"non-finite {name} = {message['value']} at step {step + 1}; the run stops and keeps "
                    f"its last good checkpoint (every {ckpt_every} steps) under {run_dir}"
                )
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        if float(optim_cfg.grad_clip) > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(optim_cfg.grad_clip))
        optimizer.step()
        scheduler.step()
        step += 1
        wait_s += t1 - t0
        busy_s += time.perf_counter() - t1
        interval_steps += 1
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value

        if crash_at and step == crash_at and rank == world - 1 and not (run_dir / CRASH_MARKER).exists():
            (run_dir / CRASH_MARKER).write_text(str(step))
            # Give the controller time to register the checkpoint reported just before; a crash inside
            # that window restarts from the previous checkpoint, which would make the test ambiguous.
            time.sleep(5.0)
            print(f"[c2s] fault injection: worker rank {rank} exits at step {step}", flush=True)
            os._exit(1)

        is_ckpt = step % ckpt_every == 0 or step == total
        is_log = step % log_every == 0 or is_ckpt
        if not is_log:
            continue
        elapsed = time.perf_counter() - interval_start
        row = {"step": step, "kind": "train", **{k: v / interval_steps for k, v in sums.items()},
               "lr": scheduler.get_last_lr()[0],
               "images_per_s": interval_steps * per_worker * world / max(elapsed, 1e-9),
               "teacher_wait_frac": wait_s / max(wait_s + busy_s, 1e-9)}
        sums, wait_s, busy_s, interval_steps = {}, 0.0, 0.0, 0
        interval_start = time.perf_counter()
        if rank == 0 and calls_dir.is_dir():
            # the elastic pool (teacher.actors = [min, max]): actors that ran CLIP in this interval, and so far
            now = read_actor_batches(calls_dir)
            row["teacher_actors_active"] = sum(n > actor_batches.get(a, 0) for a, n in now.items())
            row["teacher_actors_seen"] = len(now)
            actor_batches = now
        if rank == 0 and config.get("bad_samples_skipped_before") is not None:  # data.on_bad_sample=skip
            row["bad_samples_skipped"] = bad_sample_counts().get("train", 0) - config["bad_samples_skipped_before"]
        if rank == 0:
            append_jsonl(run_dir / "metrics.jsonl", row)
            curves.add(row)
        if (step % eval_every == 0 or step == total) and config.get("eval_text") is not None:
            # every rank: each evaluates its slice of the validation set, the counts are all-reduced
            row.update(_evaluate(student, config, cfg, run_dir, step, final=step == total, device=device,
                                 curves=curves, rank=rank))
        if is_ckpt:
            with tempfile.TemporaryDirectory() as tmp:
                ckpt = None
                if rank == 0:
                    save_state(tmp, student=student, objective=objective, optimizer=optimizer,
                               scheduler=scheduler, step=step, config=config["cfg"], seen_text=seen_text)
                    ckpt = ray.train.Checkpoint.from_directory(tmp)
                ray.train.report(_scalars(row), checkpoint=ckpt)
        else:
            ray.train.report(_scalars(row))
    if curves is not None:
        curves.close()


def _scalars(row: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def _evaluate(student, config, cfg, run_dir: Path, step: int, *, final: bool, device,
              curves: CurveWriter | None = None, rank: int = 0) -> dict[str, float]:
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
