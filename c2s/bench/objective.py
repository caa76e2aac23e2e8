"""``c2s bench objective``: the C2S objective's training cost next to the student's.

Times, in one process, a training step (forward + backward) of the student alone (a dummy mean-square loss
on F) and of the student with the full C2S objective (distillation + bank + latent generator + NEL/CE at
label resolution), on random images and random teacher tokens / pseudo masks of the real shapes, and the
objective alone on a fixed F. The three are interleaved over ``--repeats`` rounds (default 5: student,
objective, alone, student, ...; c2s.bench.repeats), so load from other processes hits all alike; each
gets its median and spread (min, quartiles, max) and the comparisons are ratios of medians. Also measures
the peak memory of the objective's own tensors (CUDA: ``max_memory_allocated`` above the level before the
objective; CPU: live-tensor accounting of every op the objective runs, forward and backward).

Prints progress, then one JSON line last: ``student_s`` / ``objective_s`` / ``objective_alone_s`` (medians)
with ``*_min_s``, ``*_q1_s``, ``*_q3_s``, ``*_max_s``; ``objective_overhead`` = objective_s / student_s - 1;
``objective_alone_frac``; ``objective_peak_mib`` (null for ``--compile`` on CPU); ``objective_ops`` /
``objective_host_syncs`` (aten ops and host synchronisations of one step of the eager objective, counted with
c2s.bench.dispatch: on a GPU each op is a kernel launch and each sync a stall); ``compile`` (``--compile``:
``loss.compile``); the device, torch threads and the setup. ``--quick``: a seconds-long run of the toy student
at 64x64 (tests)."""

from __future__ import annotations

import argparse
import json
import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from c2s.bench.dispatch import DispatchCounter
from c2s.bench.repeats import (
    MIN_REPEATS,
    bench_device,
    describe,
    environment,
    flat,
    interleaved,
    parse_with_quick,
)
from c2s.method.losses import IGNORE_INDEX
from c2s.train.precision import training_autocast


def make_synthetic_batch(batch: int, size: int, dim: int, num_seen: int, k_max: int, seen_regions: int = 6,
                         grid: int = 8, device: torch.device | str = "cpu", seed: int = 0) -> dict[str, torch.Tensor]:
    """Random teacher outputs of the real shapes (see :mod:`c2s.method.objective` for the keys).

    Each image's pseudo mask is a ``grid x grid`` block mosaic of ``seen_regions`` seen ids, ``k_max``
    latent ids and ~10% ignore; one local slot per region present, padded to the batch's max.
    """
    if size % grid:
        raise ValueError(f"size {size} must be divisible by grid {grid}")
    g = torch.Generator().manual_seed(seed)
    cell = size // grid
    masks, ids = [], []
    for _ in range(batch):
        seen = torch.randperm(num_seen, generator=g)[:seen_regions]
        pool = torch.cat([seen, num_seen + torch.arange(k_max)])
        blocks = pool[torch.randint(len(pool), (grid, grid), generator=g)]
        blocks[torch.rand(grid, grid, generator=g) < 0.1] = IGNORE_INDEX
        mask = blocks.repeat_interleave(cell, 0).repeat_interleave(cell, 1)
        masks.append(mask)
        present = mask.unique()
        ids.append(present[present != IGNORE_INDEX])
    slots = max(len(i) for i in ids)
    local_ids = torch.zeros(batch, slots, dtype=torch.long)
    local_valid = torch.zeros(batch, slots, dtype=torch.bool)
    for b, i in enumerate(ids):
        local_ids[b, : len(i)] = i
        local_valid[b, : len(i)] = True
    pseudo = torch.stack(masks)
    unit = torch.nn.functional.normalize
    out = {
        "global": unit(torch.randn(batch, dim, generator=g), dim=-1),
        "local": unit(torch.randn(batch, slots, dim, generator=g), dim=-1),
        "local_ids": local_ids,
        "local_valid": local_valid,
        "pseudo_mask": pseudo,
        "label": torch.where(pseudo >= num_seen, torch.full_like(pseudo, IGNORE_INDEX), pseudo),
    }
    return {k: v.to(device) for k, v in out.items()}


class LiveTensorMemory(TorchDispatchMode):
    """Peak bytes of tensors created by ops run under this mode (forward and backward), alive at once.

    Each new storage counts once (views and in-place results share their base's storage); its bytes are
    released when the last tensor made under the mode that refers to it is freed. Tensors that existed
    before entering (the inputs, the parameters) are not counted: this measures *extra* memory.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._refs: dict[int, list[int]] = {}  # storage key -> [nbytes, tensors alive]

    def _release(self, key: int) -> None:
        entry = self._refs.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self._refs[key]

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0:
                continue
            entry = self._refs.get(key)
            if entry is None:
                if any(a is not None and isinstance(a, torch.Tensor) and a.untyped_storage().data_ptr() == key
                       for a in tree_flatten((args, kwargs))[0]):
                    continue  # a view or in-place result of a pre-existing tensor: no new memory
                self._refs[key] = entry = [nbytes, 0]
                self.live += nbytes
                self.peak = max(self.peak, self.live)
            entry[1] += 1
            weakref.finalize(t, self._release, key)
        return out


def profile_objective(run, device: torch.device, top: int, rounds: int = 3) -> dict[str, float]:
    """Profile ``rounds`` calls of ``run`` (the objective alone, forward + backward) with torch.profiler.

    Prints the objective's parts (the ``c2s.objective.*`` record_function labels of
    c2s.method.objective, forward only: autograd runs their backward outside the labels) and the ``top`` ops
    by self time; returns ``{part: ms per call}`` (device time on CUDA, CPU time otherwise)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(rounds):
            run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    events = prof.key_averages()
    on_device = device.type == "cuda"

    def total_us(e) -> float:
        return float(e.device_time_total if on_device else e.cpu_time_total)

    def self_us(e) -> float:
        return float(e.self_device_time_total if on_device else e.self_cpu_time_total)

    kind = "device" if on_device else "CPU"
    parts = {e.key.removeprefix("c2s.objective."): round(total_us(e) / rounds / 1e3, 3)
             for e in events if e.key.startswith("c2s.objective.")}
    print(f"[bench] objective parts, forward, {kind} ms per call: "
          + ", ".join(f"{k} {v:.2f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])), flush=True)
    # aten ops only: on CUDA the profiler also lists every kernel under its own (long) name
    ops = sorted((e for e in events if e.key.startswith("aten::")), key=self_us, reverse=True)[:top]
    print(f"[bench] top {len(ops)} ops by self {kind} time (ms per call, calls per call):", flush=True)
    for e in ops:
        print(f"[bench]   {self_us(e) / rounds / 1e3:8.3f}  {e.count / rounds:6.1f}x  {e.key}", flush=True)
    return parts


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="c2s bench objective", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="coco_stuff164k_segformer_b4",
                   help="config whose loss/bank/distill/latent settings are timed (default: the paper's)")
    p.add_argument("--student", default="segformer_b4", help="student variant (c2s.student.VARIANTS)")
    p.add_argument("--size", type=int, default=512, help="square input size")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seen", type=int, default=156, help="seen classes (COCO-Stuff: 156)")
    p.add_argument("--k-max", type=int, default=8, help="latent classes per image")
    p.add_argument("--repeats", type=int, default=MIN_REPEATS,
                   help=f"interleaved timed rounds (student, objective, alone); default {MIN_REPEATS}. On CPU a B4 "
                        "step at 512 takes ~1-2 min on 2 cores: budget accordingly")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--quick", action="store_true",
                   help="seconds-long smoke run: toy_tiny's objective, segformer_tiny at 64x64, batch 1, 15 seen, "
                        "k_max 2 (explicit flags still win)")
    p.add_argument("--warmup-size", type=int, default=None,
                   help="input size of the warm-up steps (default: size/4 on CPU, which pays the one-time costs "
                        "in seconds instead of minutes; --size on CUDA, where kernels are tuned per shape)")
    p.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="train.amp: bf16 autocast on CUDA around student + objective, as the worker loop")
    p.add_argument("--compile", action="store_true",
                   help="loss.compile: the objective's logits and label-size pixel losses torch.compiled (the "
                        "warm-up, then at --size, pays the compilation)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="after timing, profile the objective alone (forward + backward, torch.profiler): its "
                        "parts (c2s.objective.*) and the N most expensive ops; the JSON gets profile_ms")
    return p


QUICK = {"config": "toy_tiny", "student": "segformer_tiny", "size": 64, "batch": 1, "seen": 15, "k_max": 2,
         "warmup_size": 64}


def main(argv: list[str]) -> int:
    args = parse_with_quick(_parser(), argv, QUICK)
    from c2s.config import load_config
    from c2s.method.objective import build_objective
    from c2s.student import build_student

    device = bench_device(args.device)
    if args.repeats < MIN_REPEATS:
        print(f"[bench] --repeats {args.repeats} < {MIN_REPEATS}: the spread says little", flush=True)
    if args.warmup_size is None:  # compiled code is specialised to the shapes: warm up at the timed size
        args.warmup_size = args.size if device.type == "cuda" or args.compile else max(64, args.size // 4 // 32 * 32)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # random weights: timing only (a backbone file would change nothing but the load time)
    overrides = {"model.name": args.student, "mining.k_max": args.k_max, "model.pretrained": None}
    cfg = load_config(args.config, {**overrides, "loss.compile": bool(args.compile)})
    dim = int(cfg.model.embed_dim)
    print(f"[bench] {args.student} D={dim} at {args.size}x{args.size}, batch {args.batch}, {args.seen} seen, "
          f"k_max {args.k_max}, device {device} ({torch.get_num_threads()} CPU threads)", flush=True)
    student = build_student(cfg.model).to(device).train()
    seen_text = torch.nn.functional.normalize(torch.randn(args.seen, dim), dim=-1)
    objective = build_objective(cfg, seen_text, check_ids=False).to(device).train()  # as the worker loop builds it
    full = make_synthetic_batch(args.batch, args.size, dim, args.seen, args.k_max, device=device)
    small = make_synthetic_batch(args.batch, args.warmup_size, dim, args.seen, args.k_max, device=device)
    images = {s: torch.randn(args.batch, 3, s, s, device=device) for s in {args.size, args.warmup_size}}
    params = [p for p in list(student.parameters()) + list(objective.parameters()) if p.requires_grad]

    def student_step(size: int) -> None:
        with training_autocast(device, args.amp):
            feats = student(images[size])
        feats.float().square().mean().backward()  # the cheapest loss that backpropagates through F

    def objective_step(size: int) -> None:
        with training_autocast(device, args.amp):  # as the worker loop: student and objective inside
            out = objective(student(images[size]), full if size == args.size else small)
        out["loss"].backward()

    with torch.no_grad():
        feats_fixed = student(images[args.size]).detach()
    print(f"[bench] student features {tuple(feats_fixed.shape)}; local slots {full['local'].shape[1]}", flush=True)

    def objective_alone(size: int) -> None:
        leaf = feats_fixed.clone().requires_grad_(True)
        objective(leaf, full)["loss"].backward()

    def fresh(fn, size: int):
        def run() -> None:
            for p in params:
                p.grad = None
            fn(size)
        return run

    log = lambda line: print(line, flush=True)  # noqa: E731
    # Warm-up at the (CPU: smaller) warm-up size pays the one-time costs; then the timed rounds at --size.
    if args.warmup:
        interleaved({**{name: fresh(fn, args.warmup_size) for name, fn in (("student", student_step),
                                                                            ("objective", objective_step))},
                     "alone": fresh(objective_alone, args.size)}, args.warmup, warmup=0, device=device, log=lambda line: log(line.replace("round", "warm-up")))
    times = interleaved({"student": fresh(student_step, args.size), "objective": fresh(objective_step, args.size),
                         "alone": fresh(objective_alone, args.size)}, args.repeats, warmup=0, device=device, log=log)

    # peak memory of the objective's own tensors, forward + backward on a fixed F
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        objective_alone(args.size)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        method = "torch.cuda.max_memory_allocated above the level before the objective"
    elif args.compile:  # a dispatch mode does not see inside compiled code (and torch.compile refuses to run under one)
        peak = None
        method = "not measured: CPU accounting cannot see inside compiled kernels (measured on CUDA)"
    else:
        tracker = LiveTensorMemory()
        with tracker:
            objective_alone(args.size)
        peak = tracker.peak
        method = "live-tensor accounting of the objective's ops (TorchDispatchMode), incl. dL/dF"

    # aten ops (each one kernel launch or more on a GPU) and host synchronisations of one step of the objective
    # alone, forward + backward, counted on its eager form (compiled code runs fused kernels no dispatch sees)
    eager = objective if not args.compile else build_objective(
        load_config(args.config, overrides), seen_text, check_ids=False).to(device).train()
    counter = DispatchCounter()
    with counter:
        leaf = feats_fixed.clone().requires_grad_(True)
        eager(leaf, full)["loss"].backward()
    print(f"[bench] objective alone, eager: {counter.ops} aten ops dispatched, {len(counter.syncs)} host syncs "
          f"{sorted(set(counter.syncs))}", flush=True)

    profile = profile_objective(lambda: fresh(objective_alone, args.size)(), device, args.profile) \
        if args.profile else None
    for name in ("student", "objective", "alone"):
        print(describe(name, times[name]), flush=True)
    student_s, objective_s, alone_s = (flat(k, times[k])[f"{k}_median_s"] for k in ("student", "objective", "alone"))
    result = {
        "bench": "objective",
        **environment(device),
        "student": args.student,
        "config": args.config,
        "size": args.size,
        "batch": args.batch,
        "seen": args.seen,
        "k_max": args.k_max,
        "repeats": args.repeats,
        "amp": "bf16" if args.amp and device.type == "cuda" else "fp32",
        "student_s": student_s,
        **{k: v for k, v in flat("student", times["student"]).items() if k != "student_median_s"},
        "objective_s": objective_s,
        **{k: v for k, v in flat("objective", times["objective"]).items() if k != "objective_median_s"},
        "objective_alone_s": alone_s,
        **{f"objective_{k}": v for k, v in flat("alone", times["alone"]).items() if k != "alone_median_s"},
        "objective_overhead": round(objective_s / student_s - 1, 4),
        "objective_alone_frac": round(alone_s / student_s, 4),
        "objective_peak_mib": None if peak is None else round(peak / 2**20, 1),
        "compile": bool(args.compile),
        "objective_ops": counter.ops,
        "objective_host_syncs": len(counter.syncs),
        "memory_method": method,
        "timing": f"median of {args.repeats} interleaved rounds (student, objective, alone); ratios of medians",
        **({"profile_ms": profile} if profile is not None else {}),
    }
    print(json.dumps(result), flush=True)
    return 0
