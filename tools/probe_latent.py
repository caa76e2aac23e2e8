"""Probe a trained full-C2S run: what latent class mining marks, and where the generated embeddings sit.

    python tools/probe_latent.py RUN_DIR [--images 64]

RUN_DIR is a `c2s train` run with latent.enabled (its config.json and last checkpoint are used). On the
first ``--images`` training images at eval scale, the run's teacher mines latent regions (Eq. 1); prints the
share of latent pixels on unseen objects vs unlabelled background, how much of the unseen objects the latent
regions cover, and, for the final checkpoint's generator, the max cosine of each generated embedding A'_u to
the unseen and to the seen classes' text embeddings. Issue 13's note (2026-11-26) has the toy-world numbers:
93% of latent pixels were background there.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

KEYS = ("label", "pseudo_mask", "global", "local", "local_ids", "local_valid")


def train_batches(cfg: Any, info: Any, data_root: Any, images: int, batch: int
                  ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """The first ``images`` training images at eval scale, ``batch`` at a time: ``(gt, raw)`` with ``gt``
    (B, H, W) labels over ALL classes and ``raw`` the batch a teacher sees (``image``; ``label`` with the unseen
    classes made ignore, as in training). Also tools/probe_mining.py's."""
    from c2s.data.readers import iter_samples
    from c2s.data.transforms import eval_transform

    pairs = []
    for i, (image, label, _, _) in enumerate(iter_samples(info, data_root, "train")):
        if i == images:
            break
        pairs.append(eval_transform(image, label, cfg.data))
    for start in range(0, len(pairs), batch):
        gt = np.stack([label for _, label in pairs[start:start + batch]])
        yield gt, {"image": np.stack([image for image, _ in pairs[start:start + batch]]),
                   "label": info.to_train_labels(gt).astype(np.int64)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args(argv)

    from c2s.config import from_dict
    from c2s.data.catalog import get_dataset_info
    from c2s.inputs import resolve_inputs
    from c2s.method.objective import build_objective
    from c2s.student import build_student
    from c2s.teacher.clip import load_teacher
    from c2s.teacher.tokens import teacher_tokens
    from c2s.train.checkpoint import latest_checkpoint, load_state
    from c2s.train.resolve import text_embeddings_for

    cfg = from_dict(json.loads((args.run_dir / "config.json").read_text()))
    if not bool(cfg.latent.enabled):
        print(f"{args.run_dir}: latent.enabled is false in its config.json; nothing to probe", file=sys.stderr)
        return 2
    inputs = resolve_inputs(cfg)
    seen_text, all_text = text_embeddings_for(cfg, inputs)
    info = get_dataset_info(str(cfg.data.dataset))
    state = load_state(latest_checkpoint(args.run_dir), map_location="cpu")
    student, objective = build_student(cfg.model), build_objective(cfg, seen_text)
    student.load_state_dict(state["student"])
    objective.load_state_dict(state["objective"])
    student.eval()
    objective.eval()
    teacher = load_teacher(cfg.teacher, "cpu")

    captured: dict[str, torch.Tensor] = {}
    objective.generator.register_forward_hook(lambda m, i, o: captured.update(emb=o, valid=i[2]))
    text = F.normalize(all_text.float(), dim=-1)
    seen = set(int(c) for c in info.seen_ids)
    seen_ids = torch.tensor(sorted(seen))
    unseen_ids = torch.tensor([c for c in range(len(text)) if c not in seen])
    num_seen = len(seen)
    cosines, pixels, images = [], np.zeros(4, dtype=np.int64), 0
    with torch.no_grad():
        for gt, raw in train_batches(cfg, info, inputs.data_root, args.images, args.batch):
            images += len(gt)
            tokens = teacher_tokens(teacher, raw, num_seen, cfg)
            batch = {k: torch.from_numpy(np.ascontiguousarray(tokens[k])) for k in KEYS}
            objective(student(student.normalize(torch.from_numpy(raw["image"]))).float(), batch)
            emb = F.normalize(captured["emb"][captured["valid"]], dim=-1) @ text.T  # (n, C)
            cosines.append(torch.stack([emb[:, unseen_ids].max(1).values, emb[:, seen_ids].max(1).values], 1))
            pseudo = tokens["pseudo_mask"]
            latent = (pseudo >= num_seen) & (pseudo != int(cfg.teacher.ignore_index))
            on_unseen = np.isin(gt, unseen_ids.numpy())
            pixels += [latent.sum(), (latent & on_unseen).sum(), on_unseen.sum(), 0]
    c = torch.cat(cosines)
    print(f"{args.run_dir.name}: {len(c)} latent embeddings in {images} images | max cosine to unseen text "
          f"{float(c[:, 0].mean()):.3f}, to seen text {float(c[:, 1].mean()):.3f} | nearest text is unseen for "
          f"{100 * float((c[:, 0] > c[:, 1]).float().mean()):.0f}%")
    print(f"latent pixels {pixels[0]}: {100 * pixels[1] / max(pixels[0], 1):.0f}% on unseen objects, the rest "
          f"unlabelled background; {100 * pixels[1] / max(pixels[2], 1):.0f}% of unseen-object pixels are latent")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
