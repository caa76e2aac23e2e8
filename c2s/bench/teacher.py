"""``c2s bench teacher``: time the teacher's stages and the batching of local tokens.

A ViT-B/16-sized teacher (random weights: timing only) at 512x512 (dense tokens at 512 -> 32x32 grid),
a batch of 4 images with 6 regions each. Prints one line per stage, then a JSON line LAST:

    {"bench": "teacher", "global_images_per_s": ..., "dense_mining_images_per_s": ...,
     "local_images_per_s": ..., "local_batching_speedup": ..., ...}

``local_batching_speedup`` = time of one encode_regions call per region / time of one batched call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from c2s.config import load_config
from c2s.teacher.clip import load_teacher
from c2s.teacher.mining import mine_latent_classes


def _time(fn: Callable[[], object], repeats: int, warmup: Callable[[], object] | None = None) -> float:
    """Median wall time of ``repeats`` runs after a warm-up call (oneDNN/cuDNN primitives, allocations).

    ``warmup`` defaults to ``fn``; a one-image / one-region call of the same shapes warms up as well at a
    fraction of the cost, which keeps the whole benchmark within a few minutes on 2 CPU cores.
    """
    (warmup or fn)()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _load_average() -> float | None:
    """1-minute load average (CPU timings on a shared machine are only comparable at similar load)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def make_inputs(batch: int, size: int, regions: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 (B, S, S, 3) and labels (B, S, S) with ``regions`` blocks of unequal size per image.

    Blocks are vertical strips of widths proportional to 1..regions (so boxes and crops differ), shifted
    per image; random colours with noise, so nothing is constant.
    """
    g = torch.Generator().manual_seed(seed)
    weights = torch.arange(1, regions + 1, dtype=torch.float)
    edges = torch.cat([torch.zeros(1), (weights.cumsum(0) / weights.sum() * size)]).round().long()
    cols = torch.arange(size)
    strip = (cols[None] >= edges[1:-1, None]).sum(0)  # (S,) region index per column
    labels = torch.empty(batch, size, size, dtype=torch.long)
    for b in range(batch):
        shifted = torch.roll(strip, shifts=b * size // (batch * 2))
        labels[b] = shifted[None].expand(size, size)
        labels[b, : size // 3] = (labels[b, : size // 3] + 1) % regions  # break the strips into two rows
    colours = torch.randint(0, 256, (batch, regions, 3), generator=g).float()
    images = torch.stack([colours[b][labels[b]] for b in range(batch)])
    images = (images + 20 * torch.randn(images.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    return images, labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="c2s bench teacher", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="ViT-B-16", help="open_clip architecture (random weights)")
    parser.add_argument("--size", type=int, default=512, help="image side; dense tokens at this size too")
    parser.add_argument("--batch", type=int, default=4, help="images per batch")
    parser.add_argument("--regions", type=int, default=6, help="regions per image (local tokens)")
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats per stage (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    cfg = load_config("toy_c2s", {"teacher.arch": args.arch, "teacher.checkpoint": None,
                                  "teacher.allow_random": True, "teacher.image_size": 224,
                                  "teacher.dense_size": args.size})
    teacher = load_teacher(cfg.teacher, device=args.device)
    images, labels = make_inputs(args.batch, args.size, args.regions)
    labels = labels.to(teacher.device)
    uptime_load = _load_average()
    num_seen = args.regions
    # Dense + mining: two of the regions unannotated, so mining has an area to cluster.
    seen_labels = torch.where(labels < num_seen - 2, labels, torch.full_like(labels, 255))
    masks = torch.cat([labels[b][None] == torch.arange(args.regions, device=labels.device)[:, None, None]
                       for b in range(args.batch)])
    index = torch.arange(args.batch).repeat_interleave(args.regions)
    n_regions = len(index)

    def dense_and_mining() -> None:
        dense = teacher.encode_dense(images)
        for b in range(args.batch):
            mine_latent_classes(dense[b], seen_labels[b], num_seen, cfg.mining)

    def per_region() -> None:
        for r in range(n_regions):
            teacher.encode_regions(images, masks[r:r + 1], index[r:r + 1])

    one_region = lambda: teacher.encode_regions(images, masks[:1], index[:1])  # noqa: E731
    stages = {
        "global": _time(lambda: teacher.encode_global(images), args.repeats,
                        lambda: teacher.encode_global(images[:1])),
        "dense_mining": _time(dense_and_mining, args.repeats, lambda: teacher.encode_dense(images[:1])),
        "local": _time(lambda: teacher.encode_regions(images, masks, index), args.repeats, one_region),
    }
    t_per_region = _time(per_region, args.repeats, one_region)
    dense = teacher.encode_dense(images)
    t_mining = _time(lambda: [mine_latent_classes(dense[b], seen_labels[b], num_seen, cfg.mining)
                              for b in range(args.batch)], args.repeats)
    for name, seconds in stages.items():
        print(f"{name:>13}: {seconds:8.3f} s per batch of {args.batch} -> {args.batch / seconds:7.2f} images/s")
    print(f"{'(mining)':>13}: {t_mining:8.3f} s of dense_mining")
    print(f"{'local 1/call':>13}: {t_per_region:8.3f} s for {n_regions} regions one call each")

    result = {
        "bench": "teacher",
        "arch": args.arch,
        "weights": "random",
        "device": str(teacher.device),
        "dtype": str(teacher.dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1m_at_start": uptime_load,
        "image_size": args.size,
        "dense_grid": list(teacher.grid()),
        "clip_input": teacher.image_size,
        "batch": args.batch,
        "regions_per_image": args.regions,
        "repeats": args.repeats,
        "global_images_per_s": round(args.batch / stages["global"], 3),
        "dense_mining_images_per_s": round(args.batch / stages["dense_mining"], 3),
        "mining_s_per_image": round(t_mining / args.batch, 4),
        "local_images_per_s": round(args.batch / stages["local"], 3),
        "local_regions_per_s": round(n_regions / stages["local"], 3),
        "local_per_region_s": round(t_per_region, 3),
        "local_batched_s": round(stages["local"], 3),
        "local_batching_speedup": round(t_per_region / stages["local"], 3),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
