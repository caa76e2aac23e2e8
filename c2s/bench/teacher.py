"""``c2s bench teacher``: the teacher's cost per image, stage by stage, next to a student training step.

A CLIP image tower (open_clip ``--arch``, random weights: timing only, nothing is downloaded) at the sizes
of c2s's teacher config (``c2s/configs/_base_/teacher.py``: global and local tokens at ``image_size`` 224,
dense tokens at ``dense_size`` 448) on ``--size`` training crops (512), and, in the same process on the
same device, a training step (forward + backward) of the student (``--student``, SegFormer-B4 at 512x512,
random weights). Timed variants, interleaved over ``--repeats`` rounds (c2s.bench.repeats):

- ``global``: encode_global of ``--batch`` crops; ``dense``: encode_dense of them; ``mining``: latent
  class mining on each dense map (Eq. 1);
- ``regions_batched``: encode_regions of ``--batch x --regions`` regions in one call; ``regions_per_call``:
  the same regions one call each (``local_batching_speedup`` = per-call / batched, medians);
- ``student_step``: ``--student-batch`` crops through the student, forward + backward (on CUDA under
  bf16 autocast as training runs it; ``--no-amp``: fp32).

The text tower runs once per run (class-name prompts; reported, not per image). Per image, the teacher
costs ``(global + dense + mining) / batch + P x regions_batched / (batch x regions)`` for P regions per
image; ``teacher_student_ratio_p{P}`` divides it by the student step's time per image, for ``--p`` (VOC:
3, COCO-Stuff: 8). ``mining_ops_per_image`` / ``mining_host_syncs_per_image``: the aten ops and host
synchronisations mining runs per image (c2s.bench.dispatch; on a GPU each sync stalls the kernel queue).
Prints one line per variant (median and spread), then a JSON line LAST. ``--quick``: the test-size CLIP and
student (seconds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

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
from c2s.config import load_config
from c2s.teacher.clip import load_teacher
from c2s.teacher.mining import mine_latent_classes
from c2s.train.precision import training_autocast

QUICK = {"arch": "c2s-test-vit", "size": 64, "image_size": 32, "dense_size": 48, "batch": 1, "regions": 2,
         "student": "segformer_tiny", "student_size": 64, "student_dim": 64, "text_classes": 20}


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


def _parser() -> argparse.ArgumentParser:
    teacher_defaults = load_config("voc12_segformer_b4").teacher
    p = argparse.ArgumentParser(prog="c2s bench teacher", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default=str(teacher_defaults.arch), help="open_clip architecture (random weights)")
    p.add_argument("--size", type=int, default=512, help="training crop side: the images the teacher receives")
    p.add_argument("--image-size", type=int, default=int(teacher_defaults.image_size),
                   help="CLIP input side of global and local tokens (teacher.image_size)")
    p.add_argument("--dense-size", type=int, default=int(teacher_defaults.dense_size),
                   help="input side of the dense pass (teacher.dense_size)")
    p.add_argument("--batch", type=int, default=2, help="crops per teacher call")
    p.add_argument("--regions", type=int, default=8, help="regions per image in the region calls")
    p.add_argument("--p", type=int, nargs="+", default=[3, 8],
                   help="regions per image to price (VOC ~3, COCO-Stuff ~8)")
    p.add_argument("--student", default="segformer_b4", help="student variant timed beside the teacher; 'none' skips")
    p.add_argument("--student-size", type=int, default=512, help="student crop side")
    p.add_argument("--student-batch", type=int, default=1, help="crops per student step")
    p.add_argument("--student-dim", type=int, default=512, help="student embedding dim D (the teacher's)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="the student step under train.amp's bf16 autocast on CUDA, as training runs it")
    p.add_argument("--text-classes", type=int, default=171,
                   help="class-name prompts encoded once (COCO-Stuff 171); 0 skips")
    p.add_argument("--repeats", type=int, default=MIN_REPEATS, help=f"interleaved timed rounds (default {MIN_REPEATS})")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    p.add_argument("--quick", action="store_true",
                   help="seconds-long smoke run: test-size CLIP (c2s-test-vit) at 64/32/48, segformer_tiny at 64 "
                        "(explicit flags still win)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse_with_quick(_parser(), argv, QUICK)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.repeats < MIN_REPEATS:
        print(f"[bench] --repeats {args.repeats} < {MIN_REPEATS}: the spread says little", flush=True)

    cfg = load_config("toy_c2s", {"teacher.arch": args.arch, "teacher.checkpoint": None,
                                  "teacher.allow_random": True, "teacher.image_size": args.image_size,
                                  "teacher.dense_size": args.dense_size})
    teacher = load_teacher(cfg.teacher, device=bench_device(args.device))
    device = teacher.device
    env = environment(device)  # before the work: the load average says what else was running
    print(f"[bench] teacher {args.arch} (random weights, {str(teacher.dtype).replace('torch.', '')}) on "
          f"{args.size}px crops: global/local at {teacher.image_size}, dense at {teacher.dense_size} "
          f"(grid {teacher.grid()}); batch {args.batch}, {args.regions} regions per image; device {device} "
          f"({env['device_name']}), {env['torch_threads']} torch threads", flush=True)
    images, labels = make_inputs(args.batch, args.size, args.regions)
    labels = labels.to(device)
    num_seen = args.regions
    # Mining needs unannotated area to cluster: two of the regions are left unlabelled.
    seen_labels = torch.where(labels < num_seen - 2, labels, torch.full_like(labels, 255))
    masks = torch.cat([labels[b][None] == torch.arange(args.regions, device=device)[:, None, None]
                       for b in range(args.batch)])
    index = torch.arange(args.batch).repeat_interleave(args.regions)
    n_regions = len(index)
    dense_out: list[torch.Tensor] = [teacher.encode_dense(images[:1])]

    def dense() -> None:
        dense_out[0] = teacher.encode_dense(images)

    def mining() -> None:
        maps = dense_out[0]
        for b in range(maps.shape[0]):
            mine_latent_classes(maps[b], seen_labels[b], num_seen, cfg.mining)

    def per_call() -> None:
        for r in range(n_regions):
            teacher.encode_regions(images, masks[r:r + 1], index[r:r + 1])

    variants = {
        "global": lambda: teacher.encode_global(images),
        "dense": dense,
        "mining": mining,
        "regions_batched": lambda: teacher.encode_regions(images, masks, index),
        "regions_per_call": per_call,
    }
    student_info: dict[str, object] = {}
    if args.student != "none":
        from c2s.student import build_student

        student_cfg = load_config("voc12_segformer_b4", {"model.name": args.student, "model.pretrained": None,
                                                         "model.embed_dim": args.student_dim}).model
        torch.manual_seed(0)
        student = build_student(student_cfg).to(device).train()
        crops = torch.randn(args.student_batch, 3, args.student_size, args.student_size, device=device)

        def student_step() -> None:
            for p in student.parameters():
                p.grad = None
            with training_autocast(device, args.amp):
                feats = student(crops)
            feats.float().square().mean().backward()  # the cheapest loss that backpropagates

        variants["student_step"] = student_step
        student_info = {"student": args.student, "student_size": args.student_size,
                        "student_amp": "bf16" if args.amp and device.type == "cuda" else "fp32",
                        "student_batch": args.student_batch, "student_dim": args.student_dim,
                        "student_params_m": round(sum(p.numel() for p in student.parameters()) / 1e6, 2)}

    times = interleaved(variants, args.repeats, warmup=args.warmup, device=device,
                        log=lambda line: print(line, flush=True))
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, series in times.items():
        per = args.student_batch if name == "student_step" else n_regions if name.startswith("regions") else args.batch
        what = "region" if name.startswith("regions") else "image"
        print(describe(f"{name} /{what}", series, per=per), flush=True)

    # what mining asks of the device, per image (on a GPU each host sync stalls the queue): counted on CPU too
    counter = DispatchCounter()
    with counter:
        mining()
    mining_counts = {"mining_ops_per_image": round(counter.ops / args.batch, 1),
                     "mining_host_syncs_per_image": round(len(counter.syncs) / args.batch, 1)}
    print(f"[bench] mining per image: {mining_counts['mining_ops_per_image']} aten ops, "
          f"{mining_counts['mining_host_syncs_per_image']} host syncs", flush=True)

    text: dict[str, object] = {}
    if args.text_classes > 0:
        from c2s.data.catalog import get_dataset_info

        names = list(get_dataset_info("coco_stuff164k").classes) * (1 + args.text_classes // 171)
        prompts = [f"a photo of a {n}." for n in names[: args.text_classes]]
        teacher.encode_text(prompts[:2])  # tokenizer and first-call costs
        start = time.perf_counter()
        teacher.encode_text(prompts)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        text = {"text_classes": args.text_classes, "text_once_s": round(time.perf_counter() - start, 4)}
        print(f"[bench] text tower, once per run: {text['text_once_s']:.3f} s for {args.text_classes} prompts",
              flush=True)

    per_image = {
        "global_s_per_image": med["global"] / args.batch,
        "dense_s_per_image": med["dense"] / args.batch,
        "mining_s_per_image": med["mining"] / args.batch,
        "region_s_per_region": med["regions_batched"] / n_regions,
    }
    costs: dict[str, float] = {}
    for p in args.p:
        teacher_s = (per_image["global_s_per_image"] + per_image["dense_s_per_image"]
                     + per_image["mining_s_per_image"] + p * per_image["region_s_per_region"])
        costs[f"teacher_s_per_image_p{p}"] = teacher_s
        if "student_step" in med:
            costs[f"teacher_student_ratio_p{p}"] = teacher_s / (med["student_step"] / args.student_batch)
    if "student_step" in med:
        costs["student_step_s_per_image"] = med["student_step"] / args.student_batch
    for key, value in costs.items():
        print(f"[bench] {key}: {value:.4f}", flush=True)

    result = {
        "bench": "teacher",
        **env,
        "arch": args.arch,
        "weights": "random",
        "dtype": str(teacher.dtype).replace("torch.", ""),
        "crop_size": args.size,
        "clip_input": teacher.image_size,
        "dense_size": teacher.dense_size,
        "dense_grid": list(teacher.grid()),
        "batch": args.batch,
        "regions_per_image": args.regions,
        "repeats": args.repeats,
        **student_info,
        **{k: round(v, 5) for k, v in per_image.items()},
        **mining_counts,
        **{k: round(v, 5) for k, v in costs.items()},
        **text,
        "global_images_per_s": round(args.batch / med["global"], 3),
        "dense_mining_images_per_s": round(args.batch / (med["dense"] + med["mining"]), 3),
        "local_images_per_s": round(args.batch / med["regions_batched"], 3),
        "local_regions_per_s": round(n_regions / med["regions_batched"], 3),
        "local_batching_speedup": round(med["regions_per_call"] / med["regions_batched"], 3),
        **{k: v for name, series in times.items() for k, v in flat(name, series).items()},
        "timing": f"median of {args.repeats} interleaved rounds ({', '.join(variants)}); ratios of medians",
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
