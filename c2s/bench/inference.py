"""``c2s bench inference``: the paper's Table 2 measured side by side in one process: each full-size student
ALONE (no CLIP) against a CLIP-at-inference pipeline of ZegCLIP's kind, at 512x512, batch 1.

* Students (SegFormer-B4, SegNeXt-B, SETR-B naive, D = 512): parameters and GFLOPs from ``c2s bench flops``
  (:func:`c2s.bench.flops.student_complexity`, mmengine's counter, multiply-adds; the student alone, without the
  training-time latent generator) and images/s of :class:`c2s.infer.OpenVocabularyModel` (the student, the
  classifier over N text embeddings and the bilinear upsampling to 512x512: what ``c2s predict`` runs).
* CLIP at inference: open_clip's ViT-B-16 image tower (random weights: speed does not depend on them; no hub),
  built at 224 and run at 512x512 through c2s's teacher path (``c2s.teacher.clip.Teacher``: the patch part of the
  positional embedding bicubically interpolated from 14x14 to 32x32), all 1024 patch tokens through ln_post
  and the projection to 512, then a light head of ZegCLIP's shape (ZegCLIP ``ATMSingleHeadSeg``: 3 transformer
  decoder layers, d = 512, 8 heads, class queries from the text embeddings cross-attending to the patch
  tokens, masks = query . token), upsampled to 512x512 like the students' logits. Its GFLOPs come from the same
  counter. (ZegCLIP's own count is 61.1 GFLOPs with 13.8 M trainable parameters; its head adds VPT prompts
  and a relationship descriptor not modelled here, so the pipeline is a lower bound on ZegCLIP's cost.)

Timing: c2s.bench.repeats.interleaved (every variant once per round, ``--repeats`` rounds, medians);
images/s = batch / median seconds; ``speedup_vs_clip`` = a student's images/s over the CLIP pipeline's.
Prints a table, then a JSON line LAST with every figure. ``--quick``: the toy student and the test CLIP at
64x64 (seconds; what the test runs). GPU: ``--device cuda --dtype bf16|fp16`` (autocast).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from c2s.bench.flops import FULL_SIZE, PAPER_TABLE2, student_complexity
from c2s.bench.repeats import (
    MIN_REPEATS,
    bench_device,
    describe,
    environment,
    flat,
    interleaved,
    parse_with_quick,
    spread,
)

# Table 2's FPS (one RTX 3090): ZegCLIP 25.6, the students 40.9 / 20.8 / 23.0.
PAPER_FPS = {"clip_pipeline": 25.6, "segnext_b": 40.9, "setr_b_naive": 20.8, "segformer_b4": 23.0}
PAPER_CLIP_GFLOPS = 61.1


class LightHead(nn.Module):
    """ZegCLIP-shaped head: text queries -> ``layers`` decoder layers over the patch tokens -> per-class masks."""

    def __init__(self, dim: int, layers: int = 3, heads: int = 8) -> None:
        super().__init__()
        self.query_proj = nn.Linear(dim, dim)
        self.token_proj = nn.Linear(dim, dim)
        layer = nn.TransformerDecoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=0.0, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)

    def forward(self, tokens: torch.Tensor, text: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """tokens (B, h*w, D), text (N, D) -> mask logits (B, N, h, w)."""
        memory = self.token_proj(tokens)
        queries = self.decoder(self.query_proj(text).unsqueeze(0).expand(tokens.shape[0], -1, -1), memory)
        masks = torch.einsum("bnd,bkd->bnk", queries, memory)
        return masks.reshape(tokens.shape[0], text.shape[0], *grid)


class ClipAtInference(nn.Module):
    """CLIP's image tower at the input size (interpolated positions) + :class:`LightHead`, upsampled."""

    def __init__(self, arch: str, size: int, head_layers: int = 3, head_heads: int = 8) -> None:
        super().__init__()
        from c2s.teacher.clip import load_teacher

        self.teacher = load_teacher({"arch": arch, "checkpoint": None, "allow_random": True, "precision": "fp32",
                                     "image_size": size, "dense_size": size}, device="cpu")
        self.visual = self.teacher.visual  # registered here so parameter counts and .to() see it
        self.head = LightHead(self.teacher.embed_dim, head_layers, head_heads)

    def to_device(self, device: torch.device) -> ClipAtInference:
        """``.to(device)`` plus the teacher's own tensors (its cached interpolated positions are rebuilt)."""
        self.to(device)
        self.teacher.device = device
        self.teacher._pos_cache.clear()
        return self

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        tokens, h, w = self.teacher._tokens_before_last(x)
        tokens = self.visual.transformer.resblocks[-1](tokens)
        patches = self.teacher._project(tokens[:, 1:])
        masks = self.head(patches, text, (h, w))
        return F.interpolate(masks, size=x.shape[-2:], mode="bilinear", align_corners=False)


def count(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[int, int]:
    """(parameters, multiply-adds) with mmengine's counter (as c2s.bench.flops)."""
    from mmengine.analysis import FlopAnalyzer, parameter_count

    with torch.no_grad():
        analyzer = FlopAnalyzer(model, inputs)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        flops = int(analyzer.total())
    return int(parameter_count(model)[""]), flops


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="c2s bench inference", description=__doc__.split("\n\n")[0])
    p.add_argument("--students", nargs="+", default=list(FULL_SIZE), help="student variants (default: Table 2's)")
    p.add_argument("--clip-arch", default="ViT-B-16", help="open_clip image tower of the CLIP pipeline")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--classes", type=int, default=171, help="text embeddings N (COCO-Stuff: 171)")
    p.add_argument("--embed-dim", type=int, default=512)
    p.add_argument("--head-layers", type=int, default=3)
    p.add_argument("--repeats", type=int, default=MIN_REPEATS)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="autocast dtype (GPU)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--quick", action="store_true", help="toy student + test CLIP at 64x64, 1 round (tests)")
    return p


QUICK = {"students": ["segformer_tiny"], "clip_arch": "c2s-test-vit", "size": 64, "classes": 5, "embed_dim": 64,
         "head_layers": 1, "repeats": 1, "warmup": 0}


def main(argv: list[str] | None = None) -> int:
    args = parse_with_quick(_parser(), argv, QUICK)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = bench_device(args.device)
    from c2s.infer import OpenVocabularyModel
    from c2s.student.zoo import build_student

    g = torch.Generator().manual_seed(0)
    text = F.normalize(torch.randn(args.classes, args.embed_dim, generator=g), dim=-1)
    pixels = torch.rand(args.batch, 3, args.size, args.size, generator=g) * 255
    clip = ClipAtInference(args.clip_arch, args.size, args.head_layers).eval()
    if clip.teacher.embed_dim != args.embed_dim:
        print(f"c2s bench inference: --embed-dim {args.embed_dim} but {args.clip_arch} embeds in "
              f"{clip.teacher.embed_dim}", file=sys.stderr)
        return 2
    clip_in = (pixels - clip.teacher._mean.cpu()) / clip.teacher._std.cpu()  # CLIP's normalisation
    # per image, like the students' counts (c2s.bench.flops): a --batch 16 run printed 16x the GFLOPs before
    clip_params, clip_flops = count(clip, (clip_in[:1], text))
    head_params = sum(p.numel() for p in clip.head.parameters())
    print(f"{'clip_pipeline':<14} {clip_params / 1e6:7.2f} M params ({head_params / 1e6:.2f} M head)  "
          f"{clip_flops / 1e9:7.2f} GFLOPs", flush=True)
    models: dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]] = {}
    figures: dict[str, dict[str, Any]] = {}
    for name in args.students:
        comp = student_complexity(name, size=args.size, embed_dim=args.embed_dim)
        student = build_student({"name": name, "embed_dim": args.embed_dim}).eval()
        models[name] = (OpenVocabularyModel(student, 1.0).eval(), (pixels, text))
        paper = PAPER_TABLE2.get(name) if args.size == 512 else None
        figures[name] = {"params_m": comp["params_m"], "flops": comp["flops"], "gflops": comp["gflops"],
                         "paper_params_m": paper[0] if paper else None, "paper_gflops": paper[1] if paper else None,
                         "gflops_vs_paper": round(comp["gflops"] / paper[1] - 1, 4) if paper else None}
        print(f"{name:<14} {comp['params_m']:7.2f} M params  {comp['gflops']:7.2f} GFLOPs"
              + (f"   (paper: {paper[0]} M, {paper[1]} GFLOPs)" if paper else ""), flush=True)
    models["clip_pipeline"] = (clip, (clip_in, text))
    autocast = (torch.autocast(device.type, dtype=getattr(torch, {"bf16": "bfloat16", "fp16": "float16"}[args.dtype]))
                if args.dtype != "fp32" else contextlib.nullcontext())
    runs = {}
    for name, (model, inputs) in models.items():
        model.to_device(device) if isinstance(model, ClipAtInference) else model.to(device)
        moved = tuple(t.to(device) for t in inputs)

        def run(model=model, moved=moved):
            with torch.inference_mode(), autocast:
                return model(*moved)

        runs[name] = run
    env = environment(device)
    times = interleaved(runs, args.repeats, warmup=args.warmup, device=device,
                        log=lambda line: print(line, flush=True))
    clip_ips = args.batch / spread(times["clip_pipeline"])["median"]
    for name in args.students:
        ips = args.batch / spread(times[name])["median"]
        figures[name].update(images_per_s=round(ips, 3), speedup_vs_clip=round(ips / clip_ips, 3),
                             paper_fps=PAPER_FPS.get(name), **flat("forward", times[name]))
        print(describe(name, times[name], per=args.batch, unit="s/img"), flush=True)
    print(describe("clip_pipeline", times["clip_pipeline"], per=args.batch, unit="s/img"), flush=True)
    print(f"{'model':<14} {'params M':>9} {'GFLOPs':>8} {'img/s':>8} {'x CLIP':>7}", flush=True)
    for name in args.students:
        f = figures[name]
        print(f"{name:<14} {f['params_m']:9.2f} {f['gflops']:8.2f} {f['images_per_s']:8.3f} "
              f"{f['speedup_vs_clip']:7.2f}", flush=True)
    print(f"{'clip_pipeline':<14} {clip_params / 1e6:9.2f} {clip_flops / 1e9:8.2f} {clip_ips:8.3f} {1.0:7.2f}",
          flush=True)
    print(json.dumps({
        "bench": "inference", "size": args.size, "batch": args.batch, "classes": args.classes,
        "embed_dim": args.embed_dim, "dtype": args.dtype, "repeats": args.repeats, **env,
        "clip_pipeline": {"arch": args.clip_arch, "head_layers": args.head_layers,
                          "params_m": round(clip_params / 1e6, 2), "head_params_m": round(head_params / 1e6, 2),
                          "flops": clip_flops, "gflops": round(clip_flops / 1e9, 2), "images_per_s": round(clip_ips, 3),
                          "paper_zegclip_gflops": PAPER_CLIP_GFLOPS, "paper_fps": PAPER_FPS["clip_pipeline"],
                          **flat("forward", times["clip_pipeline"])},
        "students": figures,
        "paper_speedup_segnext_vs_zegclip": round(PAPER_FPS["segnext_b"] / PAPER_FPS["clip_pipeline"], 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
