"""Probe latent class mining per unseen class: how much of each object it marks, and what the teacher reads there.

    python tools/probe_mining.py [--config toy_c2s] [--images 128] [overrides ...]

No student and no Ray: the config's teacher (the toy CLIP from ``$C2S_CACHE``, built if missing) runs
``c2s.teacher.tokens.teacher_tokens`` on the first ``--images`` training images at eval scale, as a training
batch does. Prints one JSON line per unseen class, then a summary line:

- ``latent_px``: the share of the class's pixels that the pseudo mask gives a latent id;
- ``regions``: latent regions whose pixels are mostly this class, and their mean ``purity`` (that majority's
  share of the region);
- ``teacher_reads_own``: the share of those regions whose local CLS token (the masked sub-image, as local
  distillation and the latent embeddings see it) is read as the class by argmax over ALL classes' text, and
  ``teacher_reads``: the class read most often.

Written for ``mining.edges`` (docs/decisions.md#latent-regions-end-where-the-labels-do): compare
``mining.edges=tokens`` and ``mining.edges=labels`` on the same toy CLIP. A ground-truth region of the same
objects reads as its class far more often (``tools/probe_distill.py --per-class``); the gap is the mask's.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_latent import train_batches  # noqa: E402


def latent_region_reads(pseudo: np.ndarray, gt: np.ndarray, local: np.ndarray, local_ids: np.ndarray,
                        local_valid: np.ndarray, text: torch.Tensor, unseen: Sequence[int], num_seen: int,
                        ignore_index: int = 255) -> dict[int, dict[str, float]]:
    """Per unseen class: pixel counts, latent pixel counts, and its latent regions' purity and teacher reads.

    pseudo, gt: (B, H, W) pseudo mask (seen ids, latent ``num_seen + j``, ignore) and ground truth over ALL
    classes; local (B, L, D), local_ids (B, L), local_valid (B, L) as ``teacher_tokens`` returns them; text
    (C, D) every class's text embedding. Returns ``{class: {"pixels", "latent_px", "regions", "purity",
    "reads_own", "reads": [class read per region]}}`` (counts, not yet shares)."""
    text = F.normalize(text.float(), dim=-1)
    out = {c: {"pixels": 0, "latent_px": 0, "regions": 0, "purity": 0.0, "reads_own": 0, "reads": []}
           for c in unseen}
    latent = (pseudo >= num_seen) & (pseudo != ignore_index)
    for c in unseen:
        out[c]["pixels"] = int((gt == c).sum())
        out[c]["latent_px"] = int(((gt == c) & latent).sum())
    for b, j in zip(*np.nonzero(local_valid)):
        rid = int(local_ids[b, j])
        if rid < num_seen:
            continue  # a seen region
        values, counts = np.unique(gt[b][pseudo[b] == rid], return_counts=True)
        if len(values) == 0:
            continue
        major = int(values[counts.argmax()])
        if major not in out:
            continue  # mostly a seen class or unlabelled
        read = int((F.normalize(torch.as_tensor(local[b, j]).float(), dim=0) @ text.T).argmax())
        row = out[major]
        row["regions"] += 1
        row["purity"] += float(counts.max() / counts.sum())
        row["reads_own"] += int(read == major)
        row["reads"].append(read)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="toy_c2s")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. mining.edges=labels toy_clip.seed=1")
    args = parser.parse_args(argv)

    from c2s.config import load_config
    from c2s.data.catalog import get_dataset_info
    from c2s.inputs import resolve_inputs
    from c2s.teacher.clip import load_teacher
    from c2s.teacher.tokens import teacher_tokens
    from c2s.train.resolve import text_embeddings_for

    cfg = load_config(args.config, args.overrides)
    inputs = resolve_inputs(cfg)
    _, all_text = text_embeddings_for(cfg, inputs)
    info = get_dataset_info(str(cfg.data.dataset))
    teacher = load_teacher(cfg.teacher, "cpu")
    num_seen = len(info.seen_ids)
    unseen = [c for c in range(len(info.classes)) if c not in set(int(s) for s in info.seen_ids)]
    totals = {c: {"pixels": 0, "latent_px": 0, "regions": 0, "purity": 0.0, "reads_own": 0, "reads": []}
              for c in unseen}
    images = 0
    with torch.no_grad():
        for gt, raw in train_batches(cfg, info, inputs.data_root, args.images, args.batch):
            images += len(gt)
            tokens = teacher_tokens(teacher, raw, num_seen, cfg)
            part = latent_region_reads(tokens["pseudo_mask"], gt, tokens["local"], tokens["local_ids"],
                                       tokens["local_valid"], all_text, unseen, num_seen,
                                       int(cfg.teacher.ignore_index))
            for c, row in part.items():
                for key in ("pixels", "latent_px", "regions", "purity", "reads_own"):
                    totals[c][key] += row[key]
                totals[c]["reads"] += row["reads"]
    edges = str(cfg.mining.get("edges", "tokens"))
    for c, row in totals.items():
        n = max(row["regions"], 1)
        top = info.classes[int(np.bincount(row["reads"]).argmax())] if row["reads"] else None
        print(json.dumps({"class": info.classes[c], "edges": edges,
                          "latent_px": round(row["latent_px"] / max(row["pixels"], 1), 3),
                          "regions": row["regions"], "purity": round(row["purity"] / n, 3),
                          "teacher_reads_own": round(row["reads_own"] / n, 3), "teacher_reads": top}))
    pixels = sum(r["pixels"] for r in totals.values())
    regions = sum(r["regions"] for r in totals.values())
    print(json.dumps({"edges": edges, "images": images,
                      "unseen_latent_px": round(sum(r["latent_px"] for r in totals.values()) / max(pixels, 1), 3),
                      "latent_regions": regions,
                      "teacher_reads_own": round(sum(r["reads_own"] for r in totals.values()) / max(regions, 1), 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
