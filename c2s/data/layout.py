"""The types a dataset is described by: its folder layout (mmseg's) and its label spaces.

The catalog (c2s/data/catalog.py), dataset files (c2s/data/custom.py) and the toy world's entries
(c2s/world/classes.py) all build :class:`DatasetInfo`; this module imports none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

IGNORE_INDEX = 255


@dataclass(frozen=True)
class SplitPart:
    """One listing under a dataset root (paths relative to the root), as one mmseg ``BaseSegDataset``.

    ``split_file`` is ``None`` for the plain mmseg layout (every image under ``img_dir``, recursively, is a
    sample; mmseg's ``ann_file=''``), or a text file with one sample per line (mmseg's ``ann_file``, e.g.
    VOC's ``ImageSets/Segmentation/train.txt``): a basename without suffix, or a DeepLab-style pair line
    ``/JPEGImages/x.jpg /SegmentationClassAug/x.png`` (the first path's basename names the sample).
    """

    img_dir: str
    ann_dir: str
    split_file: str | None = None

    def describe(self) -> str:
        return f"{self.img_dir}/ + {self.ann_dir}/" + (f" listed in {self.split_file}" if self.split_file else "")


@dataclass(frozen=True)
class SplitVariant:
    """One way a split can be laid out: the concatenation of its parts, in order (mmengine's
    ``ConcatDataset``, as mmseg's ``pascal_voc12_aug.py`` builds VOC aug from two parts)."""

    parts: tuple[SplitPart, ...]
    name: str = ""

    def describe(self) -> str:
        text = " + ".join(f"({p.describe()})" if len(self.parts) > 1 else p.describe() for p in self.parts)
        return f"{text}  [{self.name}]" if self.name else text


def variant(*parts: tuple[str, str] | tuple[str, str, str], name: str = "") -> SplitVariant:
    return SplitVariant(tuple(SplitPart(*p) for p in parts), name)


@dataclass(frozen=True)
class Layout:
    """The mmseg directory layout a dataset root may have; variants are tried in order per split."""

    img_suffix: str
    seg_suffix: str
    splits: Mapping[str, tuple[SplitVariant, ...]]

    def describe(self) -> str:
        lines = [f"images *{self.img_suffix}, masks *{self.seg_suffix}; per split, the first that exists:"]
        for split, variants in self.splits.items():
            for v in variants:
                lines.append(f"  {split}: {v.describe()}")
        return "\n".join(lines)


def plain_layout(img_suffix: str, seg_suffix: str, extra: Mapping[str, tuple[SplitVariant, ...]] = {}) -> Layout:
    # Every dataset accepts the generic mmseg layout img_dir/{split}, ann_dir/{split} first.
    splits = {
        split: (variant((f"img_dir/{split}", f"ann_dir/{split}")), *extra.get(split, ()))
        for split in ("train", "val")
    }
    return Layout(img_suffix, seg_suffix, splits)


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: the catalog's entries, a dataset file's, the toy world's. Look one up with
    :func:`c2s.data.catalog.get_dataset_info`."""

    name: str
    classes: tuple[str, ...]
    unseen: tuple[str, ...]
    layout: Layout
    # raw id -> class id for every valid raw id other than IGNORE_INDEX; anything else is invalid.
    raw_to_class: Mapping[int, int | None] = field(repr=False)
    ignore_index: int = IGNORE_INDEX
    num_train: int | None = None  # expected sizes, for `c2s data check` to compare against
    num_val: int | None = None
    note: str = ""
    templates: str | None = None  # a dataset file's `templates` (c2s/data/custom.py); None for the catalog
    source: str | None = None  # the dataset file this entry was declared in; None for the catalog

    def __post_init__(self) -> None:
        missing = [c for c in self.unseen if c not in self.classes]
        if missing:
            raise ValueError(f"catalog entry {self.name!r}: unseen classes {missing} are not in its class list")
        lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        valid = np.zeros(256, dtype=bool)
        valid[IGNORE_INDEX] = True
        for raw, cls in self.raw_to_class.items():
            lut[raw] = IGNORE_INDEX if cls is None else cls
            valid[raw] = True
        object.__setattr__(self, "_lut", lut)
        object.__setattr__(self, "_valid", valid)
        unseen = set(self.unseen)
        seen_ids = tuple(i for i, c in enumerate(self.classes) if c not in unseen)
        train_lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        train_lut[list(seen_ids)] = np.arange(len(seen_ids), dtype=np.uint8)
        object.__setattr__(self, "_train_lut", train_lut)

    @property
    def ref(self) -> str:
        """What ``data.dataset`` / ``--dataset`` says to get this entry back: the catalog name or the file."""
        return self.source or self.name

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def seen_classes(self) -> tuple[str, ...]:
        return tuple(self.classes[i] for i in self.seen_ids)

    @property
    def seen_ids(self) -> tuple[int, ...]:
        unseen = set(self.unseen)
        return tuple(i for i, c in enumerate(self.classes) if c not in unseen)

    @property
    def unseen_ids(self) -> tuple[int, ...]:
        unseen = set(self.unseen)
        return tuple(i for i, c in enumerate(self.classes) if c in unseen)

    @property
    def valid_raw_ids(self) -> np.ndarray:
        """Sorted raw ids a mask file may contain (the ignore id included)."""
        return np.flatnonzero(self._valid)

    def invalid_raw_ids(self, raw_label: np.ndarray) -> np.ndarray:
        """Sorted distinct raw ids in ``raw_label`` that the catalog does not know (empty if all valid)."""
        ids = np.unique(raw_label)
        return ids[(ids < 0) | (ids > 255) | ~self._valid[np.clip(ids, 0, 255)]]

    def map_raw(self, raw_label: np.ndarray) -> np.ndarray:
        """Raw file ids -> class ids (uint8, 255 = ignore). Raises ValueError on ids outside the catalog."""
        raw = np.asarray(raw_label)
        bad = self.invalid_raw_ids(raw)
        if bad.size:
            raise ValueError(
                f"{self.name}: mask ids {bad.tolist()[:20]} are outside the catalog "
                f"(valid: {_ranges(self.valid_raw_ids)})"
            )
        return self._lut[raw.astype(np.intp, copy=False)]

    def to_train_labels(self, label: np.ndarray) -> np.ndarray:
        """Class ids -> seen (train) ids ``0..Ns-1``; unseen classes and ignore become 255 (inductive rule)."""
        lab = np.asarray(label)
        if lab.size and (lab.min() < 0 or lab.max() > 255):
            raise ValueError(f"{self.name}: class ids must lie in 0..255, got {lab.min()}..{lab.max()}")
        # Keep the caller's dtype (uint8 masks from files, int64 rows from the readers).
        return self._train_lut[lab.astype(np.intp, copy=False)].astype(lab.dtype, copy=False)


def _ranges(ids: np.ndarray) -> str:
    """``[0,1,2,3,255]`` -> ``"0-3, 255"`` for error messages."""
    parts, ids = [], list(map(int, ids))
    start = prev = ids[0] if ids else None
    for i in ids[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        start = prev = i
    return ", ".join(parts)


def shifted(n: int) -> dict[int, int | None]:
    """VOC-style files: 0 = background (-> ignore), k = class k-1."""
    return {0: None, **{k + 1: k for k in range(n)}}
