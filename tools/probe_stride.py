"""Probe the backbones table on the toy world: how much a student's output stride alone costs on 96-pixel images.

    C2S_CACHE=/tmp/cache_demo python tools/probe_stride.py [WORLD_DIR] [--config toy_c2s] [--strides 1 4 8 16]

``WORLD_DIR``: a toy world folder (``ann_dir/val/*.png``); without it, the toy world of ``--config`` under the
cache root (generated there if missing, as a training run would). For each stride ``s``
the best prediction a model can make whose class scores live on an ``(H/s, W/s)`` grid and are upsampled
bilinearly to the image (as c2s's evaluation does, ``c2s/segmenter.py``): each cell scores a class by its
share of the cell's pixels (the one-hot label average-pooled over ``s x s``), upsampled, argmax. Its
mIoU / sIoU / uIoU / hIoU against the label (``c2s.metrics``: mmseg's IoU) is the ceiling that stride puts on any
student, however well trained. One JSON line per stride. No model, no Ray; seconds on one core.

The tiny students' information strides (c2s/student/zoo.py): segformer_tiny 4 (its head fuses 1/4 .. 1/32),
segnext_tiny 8 (LightHamHead on stages 2-4), setr_tiny 16 (a ViT with 16-pixel patches; the naive head's
x4 upsampling adds no detail).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from c2s.config import load_config  # noqa: E402
from c2s.data.catalog import get_dataset_info  # noqa: E402
from c2s.metrics import ConfusionMatrix, summarize  # noqa: E402
from c2s.paths import cache_root  # noqa: E402
from c2s.world import providers  # noqa: E402


def stride_ceiling(labels: torch.Tensor, num_classes: int, stride: int, ignore_index: int = 255) -> torch.Tensor:
    """The best prediction at output stride ``stride``: ``labels`` (B, H, W) class ids (``ignore_index`` kept out
    of every class's share) -> (B, H, W) ids. H and W must be multiples of ``stride``."""
    b, h, w = labels.shape
    if h % stride or w % stride:
        raise ValueError(f"image size {h}x{w} is not a multiple of stride {stride}")
    valid = labels != ignore_index
    onehot = F.one_hot(torch.where(valid, labels, 0).long(), num_classes).permute(0, 3, 1, 2).float()
    onehot = onehot * valid.unsqueeze(1)
    shares = F.avg_pool2d(onehot, stride) if stride > 1 else onehot
    up = F.interpolate(shares, size=(h, w), mode="bilinear", align_corners=False) if stride > 1 else shares
    return up.argmax(1)


def read_val_labels(world: Path, dataset: str) -> tuple[torch.Tensor, object]:
    """The val label maps of ``world`` as class ids (the catalog's raw-id mapping), stacked (N, H, W)."""
    info = get_dataset_info(dataset)
    files = sorted((world / "ann_dir" / "val").glob("*.png"))
    if not files:
        raise FileNotFoundError(f"{world / 'ann_dir' / 'val'}: no *.png label maps (expected a toy world folder)")
    maps = [torch.from_numpy(np.asarray(info.map_raw(np.asarray(Image.open(f))))) for f in files]
    return torch.stack(maps).long(), info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("world", type=Path, nargs="?", help="a toy world folder; default: --config's")
    parser.add_argument("--config", default="toy_c2s", help="the config whose toy world and dataset to read")
    parser.add_argument("--strides", type=int, nargs="+", default=[1, 4, 8, 16])
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    world = args.world or providers.world(cfg, cache_root(cfg))
    labels, info = read_val_labels(world, cfg.data.dataset)
    for stride in args.strides:
        cm = ConfusionMatrix(info.num_classes, ignore_index=info.ignore_index)
        cm.update(stride_ceiling(labels, info.num_classes, stride, info.ignore_index), labels)
        row = {k: round(v, 1) for k, v in summarize(cm.iou(), info.unseen_ids).items()}
        print(json.dumps({"stride": stride, "images": int(labels.shape[0]), **row}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
