"""Probe a trained student pixel by pixel: does it decide each object as a whole, or split it between classes?

    python tools/probe_pixels.py RUN_DIR [RUN_DIR ...] [--images 150] [--classes "yellow circle,yellow square"]

For each run (a `c2s train`, `c2s demo` or sweep trial directory: its config.json and last checkpoint), the
student predicts the first ``--images`` validation images exactly as `c2s eval` does
(``c2s.evaluate.val_predictions``, which evaluation scores). Every object (a
connected region of one class in the label) gets its *own share*: the share of its interior pixels (``--interior``
pixels in from its edge, at least ``--min-pixels`` of them) that the student reads as its class. One JSON line
per class:

- ``pixel_acc``: the share of the class's pixels read as it; ``read_as``: the class its other pixels are read
  as most often;
- ``objects``, ``mean_own_share``, and ``objects_split``: how many objects' interiors the student neither reads
  as a whole (own share >= 0.9) nor misses as a whole (<= 0.1). A student that tells two classes apart decides
  each object; one that cannot splits them, and two classes of one size split half and half at random score an
  IoU near 1/3 each.

Written for docs/demo.md: after the demo's 300 steps the toy students split circles and squares of one colour,
seen pairs as well as those with an unseen class, and two of the five unseen classes score what that split gives.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SPLIT_LOW, SPLIT_HIGH = 0.1, 0.9  # own shares outside (0.1, 0.9) count as an object decided as a whole


def object_shares(label: np.ndarray, pred: np.ndarray, class_id: int, min_pixels: int, interior: int
                  ) -> list[tuple[float, int]]:
    """(own share, pixels) of each object of ``class_id`` in ``label (H, W)``, read in ``pred (H, W)``.

    An object is a 4-connected region of the class; only its interior counts: the pixels left after eroding it
    ``interior`` times (a rim read as the neighbouring class says little about how the object as a whole is
    read). Objects with fewer than ``min_pixels`` interior pixels are left out.
    """
    from scipy.ndimage import binary_erosion
    from scipy.ndimage import label as connected

    regions, count = connected(label == class_id)
    out = []
    for j in range(1, count + 1):
        inside = regions == j
        if interior > 0:
            inside = binary_erosion(inside, iterations=interior)
        area = int(inside.sum())
        if area >= min_pixels:
            out.append((float((pred[inside] == class_id).mean()), area))
    return out


def class_row(shares: list[tuple[float, int]], reads: np.ndarray, class_id: int) -> dict:
    """Summary of one class: ``shares`` from :func:`object_shares` over the images, ``reads (C,)`` how many of
    the class's pixels were read as each class."""
    pixels = int(reads.sum())
    others = reads.copy()
    others[class_id] = -1
    own = np.array([s for s, _ in shares], dtype=np.float64)
    return {
        "pixels": pixels,
        "pixel_acc": float(reads[class_id]) / pixels if pixels else float("nan"),
        "read_as": int(others.argmax()) if pixels > reads[class_id] else None,
        "objects": len(own),
        "mean_own_share": float(own.mean()) if len(own) else float("nan"),
        "objects_split": int(((own > SPLIT_LOW) & (own < SPLIT_HIGH)).sum()),
    }


def probe_run(run_dir: Path, images: int, min_pixels: int, interior: int, class_ids: list[int] | None
              ) -> list[dict]:
    """One :func:`class_row` per class (all, or ``class_ids``) of the run's student on its first ``images``
    validation images, each with ``class_id``."""
    from c2s.config import from_dict
    from c2s.data.catalog import get_dataset_info, list_split
    from c2s.evaluate import find_checkpoint, load_student_from_checkpoint, val_predictions
    from c2s.inputs import resolve_inputs
    from c2s.train.resolve import text_embeddings_for

    cfg = from_dict(json.loads((run_dir / "config.json").read_text()))
    inputs = resolve_inputs(cfg)
    _, text = text_embeddings_for(cfg, inputs)
    info = get_dataset_info(str(cfg.data.dataset))
    ids = list(range(len(info.classes))) if class_ids is None else class_ids
    student, _, _ = load_student_from_checkpoint(find_checkpoint(run_dir))  # as `c2s eval` loads it (eval mode)
    shares: dict[int, list[tuple[float, int]]] = {c: [] for c in ids}
    reads = {c: np.zeros(len(info.classes), dtype=np.int64) for c in ids}
    pairs = list_split(info, Path(inputs.data_root), "val").pairs[:images]
    for _, label, pred in val_predictions(student, text, cfg, info, pairs):  # no_grad inside
        for c in ids:
            shares[c] += object_shares(label, pred, c, min_pixels, interior)
            reads[c] += np.bincount(pred[label == c], minlength=len(info.classes))
    return [{"class_id": c, **class_row(shares[c], reads[c], c)} for c in ids]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--images", type=int, default=150, help="first N validation images (default 150)")
    parser.add_argument("--min-pixels", type=int, default=20,
                        help="smallest object interior counted (default 20 px)")
    parser.add_argument("--interior", type=int, default=2,
                        help="erosions before an object's own share is read: its rim is left out (default 2 px)")
    parser.add_argument("--classes", default=None, help="comma-separated class names (default all)")
    args = parser.parse_args(argv)
    from c2s.data.catalog import get_dataset_info

    for run_dir in args.run_dirs:
        if not (run_dir / "config.json").is_file():
            parser.error(f"{run_dir}: no config.json (expected a c2s run directory, e.g. <demo out>/c2s)")
        cfg = json.loads((run_dir / "config.json").read_text())
        info = get_dataset_info(str(cfg["data"]["dataset"]))
        class_ids = None
        if args.classes:
            names = [n.strip() for n in args.classes.split(",")]
            unknown = [n for n in names if n not in info.classes]
            if unknown:
                parser.error(f"--classes: {unknown} not among {info.name}'s classes {list(info.classes)}")
            class_ids = [info.classes.index(n) for n in names]
        for row in probe_run(run_dir, args.images, args.min_pixels, args.interior, class_ids):
            c = row.pop("class_id")
            read_as = row.pop("read_as")
            print(json.dumps({"run": str(run_dir), "class": info.classes[c], "unseen": c in info.unseen_ids,
                              **{k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()},
                              "read_as": None if read_as is None else info.classes[read_as]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
