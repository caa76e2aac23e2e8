"""Probe Tables 3 and 5 on the toy world: why the latent embeddings add nothing to distillation there.

    C2S_CACHE=/tmp/cache_demo python tools/probe_latent_gain.py [--sweeps runs/sweeps] [--batches 4] [--no-train]
        [--rows DISTILL_ONLY_PREFIX FULL_PREFIX]   (default: ablation_modules/runs/t001 ablation_modules/runs/t002)

Reads ``ablation_modules`` (t001: baseline + distillation; t002: + latent embedding; 3 seeds, checkpoints at
steps 150 and 300) and the shared token cache through tools/probe_seen.py's Context (no Ray, one process).
Prints JSON lines:

``train``: at each full-C2S checkpoint, on ``--batches`` cached training batches of 16 (training mode, as the
step computes them), the pixel loss's own logits ``cat(X_s, X_u)`` (c2s.method.objective.pixel_logits): on the
latent-mined pixels that have a generated embedding, the cross-entropy of their latent class against chance
(log of the classes in play), the share where the latent class wins, its mean softmax probability, and the
cosine of the feature with its own A'_u next to the best seen logit there; the same cross-entropy on seen
pixels for scale.

``train_seen_logits``: each final student (both rows, eval mode, no logit bias) on the same batches: the
best seen-class logit on the latent-mined pixels and on the seen pixels.

``val``: each final student (both rows, 3 seeds) on the 200 val images at eval scale (c2s.method.objective.
classify over all text embeddings, upsampled to the label): on unseen-object pixels, the share read as their
own class, as the seen class of the same colour, as background, as another seen object, the mean logits of the own class
and of the best seen class, and the mean margin of the own
unseen class over the best seen class. If the latent logits taught the student to keep unseen objects away
from the seen classes (Sec. 3.3: "differentiate latent classes from other categories"), the full row reads
fewer unseen pixels as seen than the distillation-only row.

Written for issue 29 item 3; the findings are in docs/table3-toy.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_seen import SEEDS, Context, emit, val_arrays  # noqa: E402

from c2s.method.losses import IGNORE_INDEX as IGNORE  # noqa: E402
from c2s.method.objective import classify  # noqa: E402

ROWS = {"distill_only": "ablation_modules/runs/t001", "full": "ablation_modules/runs/t002"}


def latent_pixel_stats(logits: torch.Tensor, target: torch.Tensor, num_seen: int, beta: float,
                       bias: float) -> dict[str, float]:
    """Statistics of the pixel loss's logits ``(B, Ns + K, H, W)`` (padded slots at a very low logit) against
    ``target (B, H, W)`` (seen ids ``< Ns``, latent ``Ns + j``, IGNORE): see the module docstring."""
    valid = target != IGNORE
    latent = valid & (target >= num_seen)
    seen = valid & (target < num_seen)
    logp = logits.log_softmax(1)
    ce = -logp.gather(1, target.clamp(0, logits.shape[1] - 1).unsqueeze(1))[:, 0]
    in_play = (logits > -1e3).sum(1).float()  # the classes the softmax really chooses among at each pixel
    pred = logits.argmax(1)
    own = logits.gather(1, target.clamp(0, logits.shape[1] - 1).unsqueeze(1))[:, 0]
    best_seen = logits[:, :num_seen].max(1).values
    return {
        "latent_pixels": int(latent.sum()), "seen_pixels": int(seen.sum()),
        "latent_ce": float(ce[latent].mean()), "latent_ce_chance": float(in_play[latent].log().mean()),
        "latent_wins": float((pred == target)[latent].float().mean()),
        "latent_prob": float(ce[latent].neg().exp().mean()),
        "latent_cos_to_own_embedding": float(((own[latent] - bias) / beta).mean()),
        "latent_logit": float(own[latent].mean()), "best_seen_logit_on_latent": float(best_seen[latent].mean()),
        "seen_ce": float(ce[seen].mean()), "seen_ce_chance": math.log(num_seen),
    }


def val_unseen_reading(ctx: Context, feats: torch.Tensor, labels: torch.Tensor, alpha: float,
                       form: str) -> dict[str, float]:
    """How the unseen-object pixels of the val images are read over all classes (module docstring)."""
    with torch.no_grad():
        logits = F.interpolate(classify(feats, ctx.all_text, alpha, form), size=labels.shape[-2:],
                               mode="bilinear", align_corners=False)
    unseen = torch.isin(labels, ctx.unseen_ids)
    pred = logits.argmax(1)
    ids = labels.clamp(0, len(ctx.all_text) - 1)  # ignore pixels (255) fall outside `unseen` anyway
    colour_partner = same_colour_seen(ctx)[ids]
    is_seen_pred = torch.isin(pred, ctx.seen_ids)
    background = ctx.info.classes.index("background")
    own = logits.gather(1, ids.unsqueeze(1))[:, 0]
    best_seen = logits[:, ctx.seen_ids].max(1).values
    return {
        "unseen_px_own": float((pred == labels)[unseen].float().mean()),
        "unseen_px_as_same_colour_seen": float((pred == colour_partner)[unseen].float().mean()),
        "unseen_px_as_background": float((pred == background)[unseen].float().mean()),
        "unseen_px_as_other_seen_object": float(
            (is_seen_pred & (pred != colour_partner) & (pred != background))[unseen].float().mean()),
        "unseen_own_logit": float(own[unseen].mean()), "unseen_best_seen_logit": float(best_seen[unseen].mean()),
        "unseen_margin_own_minus_best_seen": float((own - best_seen)[unseen].mean()),
    }


def same_colour_seen(ctx: Context) -> torch.Tensor:
    """``(C,)`` catalog id of the seen object class with each unseen class's colour (-1 elsewhere)."""
    classes = ctx.info.classes
    partner = torch.full((len(classes),), -1, dtype=torch.long)
    for u in ctx.unseen_ids.tolist():
        colour = classes[u].split()[0]
        same = [s for s in ctx.seen_ids.tolist() if classes[s].split()[0] == colour]
        partner[u] = same[0] if same else -1
    return partner


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=Path, default=Path("runs/sweeps"))
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--no-train", dest="train", action="store_false", help="skip the full row's train part")
    parser.add_argument("--rows", nargs=2, metavar=("DISTILL_ONLY", "FULL"), default=list(ROWS.values()),
                        help="trial prefixes under --sweeps of the two rows (e.g. latent_nel_probe/runs/t000 ...)")
    args = parser.parse_args(argv)
    rows = dict(zip(ROWS, args.rows))
    torch.set_num_threads(1)
    ctx = Context(args.sweeps)
    probe = [ctx.batch(16 * i) for i in range(args.batches)]
    for seed in SEEDS if args.train else ():
        run = args.sweeps / f"{rows['full']}_s{seed}"
        for step in (150, 300):
            state = ctx.state(run, step)
            student = ctx.student(state, train=True)
            objective = ctx.objective(None, state["config"])
            objective.load_state_dict(state["objective"])
            loss = state["config"]["loss"]
            bias = float(objective.logit_bias.detach()) if objective.logit_bias is not None else 0.0
            acc: dict[str, list[float]] = {}
            for images, batch in probe:
                with torch.no_grad():
                    logits, target = objective.pixel_logits(student(student.normalize(images)), batch)
                for k, v in latent_pixel_stats(logits, target, ctx.num_seen, float(loss["beta"]), bias).items():
                    acc.setdefault(k, []).append(v)
            emit({"part": "train", "run": "full", "seed": seed, "step": step,
                  **{k: float(np.mean(v)) for k, v in acc.items()}})
    for name, prefix in rows.items():  # both rows' seen logits (no bias, eval mode) on training latent pixels
        for seed in SEEDS:
            state = ctx.state(args.sweeps / f"{prefix}_s{seed}", None)
            student = ctx.student(state, train=False)
            loss: dict[str, Any] = state["config"]["loss"]
            acc = {}
            for images, batch in probe:
                with torch.no_grad():
                    best = F.interpolate(classify(student(student.normalize(images)).float(), ctx.seen_text,
                                                  float(loss["alpha"]), str(loss["seen_logits"])),
                                         size=batch["pseudo_mask"].shape[-2:], mode="bilinear",
                                         align_corners=False).max(1).values
                pseudo = batch["pseudo_mask"]
                for part, where in (("latent", (pseudo >= ctx.num_seen) & (pseudo != IGNORE)),
                                    ("seen", pseudo < ctx.num_seen)):
                    acc.setdefault(part, []).append(float(best[where].mean()))
            emit({"part": "train_seen_logits", "run": name, "seed": seed,
                  "best_seen_logit_on_latent_px": float(np.mean(acc["latent"])),
                  "best_seen_logit_on_seen_px": float(np.mean(acc["seen"]))})
    x_all, y_all = val_arrays(ctx)
    for name, prefix in rows.items():
        for seed in SEEDS:
            state = ctx.state(args.sweeps / f"{prefix}_s{seed}", None)
            student = ctx.student(state, train=False)
            with torch.no_grad():
                feats = torch.cat([student(student.normalize(x_all[i:i + 50])).float()
                                   for i in range(0, len(x_all), 50)])
            loss: dict[str, Any] = state["config"]["loss"]
            emit({"part": "val", "run": name, "seed": seed,
                  **val_unseen_reading(ctx, feats, y_all, float(loss["alpha"]), str(loss["seen_logits"]))})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
