"""``c2s bench objective``: the C2S objective's training cost next to the student's.

Times, in one process, a training step (forward + backward) of the student alone (a dummy mean-square loss
on F) and of the student with the full C2S objective (distillation + bank + latent generator + NEL/CE at
label resolution), on random images and random teacher tokens / pseudo masks of the real shapes. Steps
alternate student / objective so that load from other processes hits both alike; each time is the best
of ``--repeats`` (the least disturbed run). Also times the objective alone on a fixed F and measures the
peak memory of the objective's own tensors (CUDA: ``max_memory_allocated`` above the level before the
objective; CPU: live-tensor accounting of every op the objective runs, forward and backward).

Prints progress, then one JSON line last: ``student_s``, ``objective_s``, ``objective_overhead`` =
objective_s / student_s - 1, ``objective_alone_s``, ``objective_peak_mib`` and the setup.
"""

from __future__ import annotations

import argparse
import json
import time
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from c2s.method.losses import IGNORE_INDEX


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="c2s bench objective", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="coco_stuff164k_segformer_b4",
                   help="config whose loss/bank/distill/latent settings are timed (default: the paper's)")
    p.add_argument("--student", default="segformer_b4", help="student variant (c2s.student.VARIANTS)")
    p.add_argument("--size", type=int, default=512, help="square input size")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seen", type=int, default=156, help="seen classes (COCO-Stuff: 156)")
    p.add_argument("--k-max", type=int, default=8, help="latent classes per image")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed steps of each kind, best kept (default: 1 on CPU, where a B4 step takes ~1-2 min "
                        "on 2 cores, 5 on CUDA)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps of each kind first")
    p.add_argument("--warmup-size", type=int, default=None,
                   help="input size of the warm-up steps (default: size/4 on CPU, which pays the one-time costs "
                        "in seconds instead of minutes; --size on CUDA, where kernels are tuned per shape)")
    p.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from c2s.config import load_config
    from c2s.method.objective import C2SObjective
    from c2s.student import build_student

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    if args.repeats is None:
        args.repeats = 5 if device.type == "cuda" else 1
    if args.warmup_size is None:
        args.warmup_size = args.size if device.type == "cuda" else max(64, args.size // 4 // 32 * 32)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(args.config, {"model.name": args.student, "mining.k_max": args.k_max})
    dim = int(cfg.model.embed_dim)
    print(f"[bench] {args.student} D={dim} at {args.size}x{args.size}, batch {args.batch}, {args.seen} seen, "
          f"k_max {args.k_max}, device {device} ({torch.get_num_threads()} CPU threads)", flush=True)
    student = build_student(cfg.model).to(device).train()
    seen_text = torch.nn.functional.normalize(torch.randn(args.seen, dim), dim=-1)
    objective = C2SObjective(cfg, seen_text).to(device).train()
    full = make_synthetic_batch(args.batch, args.size, dim, args.seen, args.k_max, device=device)
    small = make_synthetic_batch(args.batch, args.warmup_size, dim, args.seen, args.k_max, device=device)
    images = {s: torch.randn(args.batch, 3, s, s, device=device) for s in {args.size, args.warmup_size}}
    params = [p for p in list(student.parameters()) + list(objective.parameters()) if p.requires_grad]

    def student_step(size: int) -> None:
        feats = student(images[size])
        feats.float().square().mean().backward()  # the cheapest loss that backpropagates through F

    def objective_step(size: int) -> None:
        objective(student(images[size]), full if size == args.size else small)["loss"].backward()

    with torch.no_grad():
        feats_fixed = student(images[args.size]).detach()
    print(f"[bench] student features {tuple(feats_fixed.shape)}; local slots {full['local'].shape[1]}", flush=True)

    def objective_alone(size: int) -> None:
        leaf = feats_fixed.clone().requires_grad_(True)
        objective(leaf, full)["loss"].backward()

    times: dict[str, list[float]] = {"student": [], "objective": [], "alone": []}
    total = args.warmup + args.repeats
    for i in range(total):
        warm = i < args.warmup
        size = args.warmup_size if warm else args.size
        for name, fn in (("student", student_step), ("objective", objective_step), ("alone", objective_alone)):
            for p in params:
                p.grad = None
            t = _timed(lambda fn=fn, size=size: fn(size), device)
            label = f"warm-up at {size}" if warm else "timed"
            print(f"[bench] {label} {i + 1}/{total} {name:<9} {t:.3f} s", flush=True)
            if not warm:
                times[name].append(t)

    # peak memory of the objective's own tensors, forward + backward on a fixed F
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        objective_alone(args.size)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        method = "torch.cuda.max_memory_allocated above the level before the objective"
    else:
        tracker = LiveTensorMemory()
        with tracker:
            objective_alone(args.size)
        peak = tracker.peak
        method = "live-tensor accounting of the objective's ops (TorchDispatchMode), incl. dL/dF"

    student_s, objective_s, alone_s = (min(times[k]) for k in ("student", "objective", "alone"))
    result = {
        "bench": "objective",
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "student": args.student,
        "size": args.size,
        "batch": args.batch,
        "seen": args.seen,
        "k_max": args.k_max,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "student_s": round(student_s, 4),
        "objective_s": round(objective_s, 4),
        "objective_overhead": round(objective_s / student_s - 1, 4),
        "objective_alone_s": round(alone_s, 4),
        "objective_alone_frac": round(alone_s / student_s, 4),
        "objective_peak_mib": round(peak / 2**20, 1),
        "memory_method": method,
        "timing": "best of repeats, student/objective steps interleaved",
    }
    print(json.dumps(result), flush=True)
    return 0
