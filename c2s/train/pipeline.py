"""The streaming data side of a training job: readers -> seen-only labels -> CLIP actor pool.

Runs on the driver and only wires Ray Data operators; the math lives in c2s.data and c2s.teacher.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from c2s.config import to_dict
from c2s.data.catalog import DatasetInfo


def needs_teacher(cfg: Mapping[str, Any]) -> bool:
    """The baseline (no distillation, no latent embeddings) never needs CLIP tokens."""
    return bool(cfg["distill"]["enabled"] or cfg["latent"]["enabled"])


class SeenLabels:
    """``map_batches`` function: class-id labels -> seen-index labels (unseen and background -> ignore).

    This is the inductive rule on the data side: after this operator no unseen annotation exists.
    """

    def __init__(self, lut: np.ndarray):
        self.lut = lut

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        label = batch["label"]
        batch["label"] = self.lut[np.clip(label, 0, 255).astype(np.int64)].astype(np.int64)
        return batch


def seen_label_lut(info: DatasetInfo) -> np.ndarray:
    """A 256-entry table: class id -> seen index, everything else (unseen, ignore) -> ignore index."""
    lut = np.full(256, info.ignore_index, dtype=np.int64)
    for seen_index, class_id in enumerate(info.seen_ids):
        lut[class_id] = seen_index
    return lut


def build_train_dataset(cfg: Mapping[str, Any], info: DatasetInfo, root: Path):
    """Ray Dataset of training rows: ``image`` uint8 (H,W,3), ``label`` int64 (H,W) in seen-index space,
    plus, when the method needs the teacher, ``global``, ``local``, ``local_ids``, ``local_valid`` and
    ``pseudo_mask`` from the CLIP actor pool (see c2s.teacher.tokens.TeacherActor)."""
    from c2s.data.readers import build_dataset

    data_cfg = cfg["data"]
    ds = build_dataset(data_cfg, root, "train", seed=int(cfg["train"]["seed"]))
    ds = ds.map_batches(SeenLabels, fn_constructor_kwargs={"lut": seen_label_lut(info)}, batch_format="numpy",
                        num_cpus=float(data_cfg["num_cpus"]), concurrency=1)
    if not needs_teacher(cfg):
        return ds
    from c2s.teacher.tokens import TeacherActor

    teacher = cfg["teacher"]
    lo, hi = (int(x) for x in teacher["actors"])
    return ds.map_batches(
        TeacherActor,
        fn_constructor_kwargs={"cfg_dict": to_dict(cfg), "num_seen": len(info.seen_ids)},
        batch_size=int(teacher["batch_size"]),
        batch_format="numpy",
        concurrency=(lo, hi) if lo != hi else lo,
        num_cpus=float(teacher["num_cpus"]),
        num_gpus=float(teacher["num_gpus"]),
    )
