"""The inductive rule on the data side, as a Ray Data ``map_batches`` stage shared by the live training
pipeline (c2s.train.pipeline) and the token cache (c2s.teacher.cache): no Ray, no trainer."""

from __future__ import annotations

import numpy as np

from c2s.data.catalog import DatasetInfo


def seen_labels(batch: dict[str, np.ndarray], info: DatasetInfo) -> dict[str, np.ndarray]:
    """``map_batches`` function: class-id labels -> seen-index labels (unseen and background -> ignore).

    This is the inductive rule on the data side: after this operator no unseen annotation exists.
    """
    batch["label"] = info.to_train_labels(batch["label"]).astype(np.int64)
    return batch
