"""PNG panels: image | ground truth | prediction, with a legend of class names (unseen marked *)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def palette(num_classes: int, seed: int = 3) -> np.ndarray:
    """A fixed colour per class id (uint8, (N+1,3)); the last row is the ignore colour (black)."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 256, size=(num_classes + 1, 3), dtype=np.uint8)
    colours[-1] = 0
    return colours


def colourise(label: np.ndarray, colours: np.ndarray, ignore_index: int) -> np.ndarray:
    ids = np.where(label == ignore_index, len(colours) - 1, np.clip(label, 0, len(colours) - 2))
    return colours[ids]


def save_panels(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], info, path: Path) -> Path:
    """One row per (image uint8 (H,W,3), label (H,W), prediction (H,W)); legend lists present classes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colours = palette(len(info.classes))
    unseen = set(info.unseen_ids)
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows)), squeeze=False)
    for r, (image, label, pred) in enumerate(rows):
        for c, (title, panel) in enumerate((("image", image), ("ground truth", colourise(label, colours, info.ignore_index)),
                                            ("prediction", colourise(pred, colours, info.ignore_index)))):
            axes[r, c].imshow(panel, interpolation="nearest")
            axes[r, c].set_title(title if r == 0 else "")
            axes[r, c].axis("off")
        present = sorted(set(np.unique(label).tolist()) | set(np.unique(pred).tolist()))
        present = [i for i in present if 0 <= i < len(info.classes)]
        handles = [Patch(color=colours[i] / 255.0, label=info.classes[i] + (" *" if i in unseen else ""))
                   for i in present]
        axes[r, 2].legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7, frameon=False)
    fig.suptitle("* = unseen class (never labelled in training)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
