"""``c2s bench flops``: parameters and GFLOPs of the full-size students at 1x3x512x512, beside the paper's Table 2.

Counted with mmengine's analysis tools (``mmengine/analysis/print_helper.py``: ``get_model_complexity_info``
returns ``FlopAnalyzer(model, inputs).total()`` as ``flops`` and ``parameter_count(model)['']`` as
``params``; this module calls those two directly, which skips that function's second, activation-counting
trace of the model). mmengine's counter is fvcore's: a fused multiply-add counts as ONE flop
(``jit_handles.conv_flop_count``: "only multiplication is counted"), so its "FLOPs" are multiply-accumulates
(MACs), as are mmcv's and most segmentation papers' "GFLOPs". The paper's Table 2 numbers match that
convention (SETR-B with the naive head: 109.0 there, 109.5 counted here; 2x would be 219).

Table 2's parameter counts are the student's PLUS the latent-embedding generator's (one
``nn.TransformerDecoderLayer``, d=512, FFN 2048: 4.20 M; ``c2s.method.latent.LatentGenerator``), a
training-time module: the student alone is 4.2 M smaller for all three backbones. Both sums are printed.

Prints one line per student, then a JSON line LAST:

    {"bench": "flops", "size": 512, "embed_dim": 512,
     "latent_generator_params_m": 4.2,
     "students": {"segformer_b4": {"params_m": ..., "params_with_latent_m": ..., "gflops": ...,
                                   "paper_params_m": 65.7, "paper_gflops": 60.7, "unsupported_ops": {...}}, ...}}

``unsupported_ops`` lists the traced operators the counter skipped (elementwise ops, softmax, GELU: no
multiply-adds of note).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch

from c2s.config import CONFIG_DIR, load_config
from c2s.method.latent import LatentGenerator
from c2s.student.zoo import VARIANTS, build_student

# The paper's Table 2 (512x512): student -> (parameters in millions, GFLOPs).
PAPER_TABLE2: dict[str, tuple[float, float]] = {
    "segnext_b": (32.0, 33.5),
    "setr_b_naive": (91.0, 109.0),
    "segformer_b4": (65.7, 60.7),
}
FULL_SIZE = ("segformer_b4", "segnext_b", "setr_b_naive")


def student_complexity(name: str, size: int = 512, embed_dim: int = 512, **model: Any) -> dict[str, Any]:
    """Parameters and mmengine-counted GFLOPs (MACs, see the module docstring) of student ``name`` on one
    ``size x size`` image, in eval mode (SegNeXt's Hamburger then runs its ``eval_steps``).

    Returns:
        ``{"params": int, "flops": int, "params_m": float, "gflops": float, "unsupported_ops": {op: count}}``.
    """
    from mmengine.analysis import FlopAnalyzer, parameter_count

    student = build_student({"name": name, "embed_dim": embed_dim, **model}).eval()
    images = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        analyzer = FlopAnalyzer(student, (images,))
        analyzer.unsupported_ops_warnings(False)  # reported in the result instead of logged per op
        analyzer.uncalled_modules_warnings(False)
        flops = int(analyzer.total())
        unsupported = dict(analyzer.unsupported_ops())
    params = int(parameter_count(student)[""])
    return {"params": params, "flops": flops, "params_m": round(params / 1e6, 2), "gflops": round(flops / 1e9, 2),
            "unsupported_ops": unsupported}


def latent_generator_params(embed_dim: int = 512) -> int:
    """Parameters of the latent-embedding generator of the default config (``_base_/default.py``'s ``latent``)."""
    latent = load_config(CONFIG_DIR / "_base_" / "default.py").latent
    return sum(p.numel() for p in LatentGenerator(latent, embed_dim).parameters())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="c2s bench flops", description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", nargs="+", default=list(FULL_SIZE), metavar="NAME",
                        help=f"students to count (default: {' '.join(FULL_SIZE)}); any of c2s.student.zoo.VARIANTS")
    parser.add_argument("--size", type=int, default=512, help="square input size in pixels (default 512, Table 2's)")
    parser.add_argument("--embed-dim", type=int, default=512,
                        help="D, the projection's output dim (default 512: CLIP ViT-B/16, the paper's teacher)")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    unknown = [n for n in args.names if n not in VARIANTS]
    if unknown:
        print(f"c2s bench flops: unknown student(s) {unknown}; valid names: {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    results: dict[str, dict[str, Any]] = {}
    latent = latent_generator_params(args.embed_dim)
    for name in args.names:
        res = student_complexity(name, size=args.size, embed_dim=args.embed_dim)
        paper = PAPER_TABLE2.get(name) if args.size == 512 else None
        res.update(paper_params_m=paper[0] if paper else None, paper_gflops=paper[1] if paper else None)
        res["params_with_latent_m"] = round((res["params"] + latent) / 1e6, 2)
        results[name] = {k: res[k] for k in ("params_m", "params_with_latent_m", "gflops", "paper_params_m",
                                             "paper_gflops", "unsupported_ops")}
        vs = f"   (paper: {paper[0]} M, {paper[1]} GFLOPs)" if paper else ""
        print(f"{name:<14} {res['params_m']:7.2f} M params ({res['params_with_latent_m']:.2f} M with the latent "
              f"generator)  {res['gflops']:7.2f} GFLOPs (MACs){vs}", flush=True)
    print(json.dumps({"bench": "flops", "size": args.size, "embed_dim": args.embed_dim,
                      "latent_generator_params_m": round(latent / 1e6, 2), "students": results}))
    return 0
