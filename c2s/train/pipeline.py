"""The streaming data side of a training job: readers -> seen-only labels -> CLIP actor pool.

Runs on the driver and only wires Ray Data operators; the math lives in c2s.data and c2s.teacher.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from c2s.data.catalog import DatasetInfo


def needs_teacher(cfg: Mapping[str, Any]) -> bool:
    """The baseline (no distillation, no latent embeddings) never needs CLIP tokens."""
    return bool(cfg["distill"]["enabled"] or cfg["latent"]["enabled"])


def seen_labels(batch: dict[str, np.ndarray], info: DatasetInfo) -> dict[str, np.ndarray]:
    """``map_batches`` function: class-id labels -> seen-index labels (unseen and background -> ignore).

    This is the inductive rule on the data side: after this operator no unseen annotation exists.
    """
    batch["label"] = info.to_train_labels(batch["label"]).astype(np.int64)
    return batch


def build_train_dataset(cfg: Mapping[str, Any], info: DatasetInfo, root: Path, *,
                        calls_dir: Path | None = None, cache_root: Path | None = None):
    """Ray Dataset of training rows: ``image`` uint8 (H,W,3), ``label`` int64 (H,W) in seen-index space,
    plus, when the method needs the teacher, ``global``, ``local``, ``local_ids``, ``local_valid`` and
    ``pseudo_mask`` from the CLIP actor pool (see c2s.teacher.tokens.TeacherActor).

    With ``teacher.cache = true`` those rows are read from the token cache under ``cache_root`` (default:
    :func:`c2s.paths.cache_root`) instead; no CLIP actor starts (c2s.teacher.cache; a missing cache is a
    :class:`~c2s.teacher.cache.TokenCacheError` that says how to build it). ``calls_dir``: where the
    teacher actors count their CLIP calls (None: not counted).
    """
    if needs_teacher(cfg) and cfg["teacher"].get("cache"):
        from c2s.paths import cache_root as default_cache_root
        from c2s.teacher.cache import read_token_cache

        return read_token_cache(cfg, root, cache_root if cache_root is not None else default_cache_root(cfg))
    from c2s.data.readers import build_dataset

    data_cfg = cfg["data"]
    ds = build_dataset(data_cfg, root, "train", seed=int(cfg["train"]["seed"]))
    ds = ds.map_batches(seen_labels, fn_kwargs={"info": info}, batch_format="numpy",
                        num_cpus=float(data_cfg["num_cpus"]))
    if not needs_teacher(cfg):
        return ds
    from c2s.teacher.tokens import TeacherActor, map_batches_kwargs

    return ds.map_batches(TeacherActor, **map_batches_kwargs(cfg, len(info.seen_ids), calls_dir))
