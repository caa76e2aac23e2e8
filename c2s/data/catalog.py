"""The dataset catalog: class names, the inductive seen/unseen split, label-id mapping and folder layout.

Label spaces (every consumer uses these three words the same way):

- **raw ids**: the values stored in the mask files (VOC: 0 = background, 1..20 = classes, 255 = boundary);
- **class ids**: ``0..N-1`` in catalog order (``info.classes``), ``255`` = ignore. Evaluation happens here;
  :meth:`DatasetInfo.map_raw` converts raw ids to class ids;
- **train ids**: ``0..Ns-1`` in the order of ``info.seen_classes``; unseen classes and ignore -> ``255``.
  :meth:`DatasetInfo.to_train_labels` is the one place the inductive rule removes unseen annotations.

Splits follow ZegCLIP's inductive protocol (``../shared/design/method-notes.md``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

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


def _variant(*parts: tuple[str, str] | tuple[str, str, str], name: str = "") -> SplitVariant:
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


def _plain_layout(img_suffix: str, seg_suffix: str, extra: Mapping[str, tuple[SplitVariant, ...]] = {}) -> Layout:
    # Every dataset accepts the generic mmseg layout img_dir/{split}, ann_dir/{split} first.
    splits = {
        split: (_variant((f"img_dir/{split}", f"ann_dir/{split}")), *extra.get(split, ()))
        for split in ("train", "val")
    }
    return Layout(img_suffix, seg_suffix, splits)


@dataclass(frozen=True)
class DatasetInfo:
    """One catalog entry. Build with :func:`get_dataset_info`."""

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


# --- PASCAL VOC 2012 (aug) -------------------------------------------------------------------------
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
VOC_UNSEEN = VOC_CLASSES[15:]

# --- COCO-Stuff 164k (mmseg's 171-class order; files hold train ids 0..170, 255) ------------------------
COCO_STUFF_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush", "banner", "blanket", "branch", "bridge", "building-other",
    "bush", "cabinet", "cage", "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes",
    "clouds", "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble",
    "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit",
    "furniture-other", "grass", "gravel", "ground-other", "hill", "house", "leaves", "light", "mat", "metal",
    "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other",
    "plastic", "platform", "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug",
    "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone",
    "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable", "wall-brick",
    "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other",
    "waterdrops", "window-blind", "window-other", "wood",
)
COCO_STUFF_UNSEEN_IDS = (19, 23, 28, 29, 36, 51, 76, 88, 94, 112, 133, 136, 137, 157, 160)
COCO_STUFF_UNSEEN = tuple(COCO_STUFF_CLASSES[i] for i in COCO_STUFF_UNSEEN_IDS)

# --- PASCAL Context 59 (mmseg PascalContextDataset59: file 0 = background -> ignore) --------------------
CONTEXT59_CLASSES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle",
    "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup",
    "curtain", "dog", "door", "fence", "floor", "flower", "food", "grass", "ground", "horse", "keyboard",
    "light", "motorbike", "mountain", "mouse", "person", "plate", "platform", "pottedplant", "road", "rock",
    "sheep", "shelves", "sidewalk", "sign", "sky", "snow", "sofa", "table", "track", "train", "tree",
    "truck", "tvmonitor", "wall", "water", "window", "wood",
)
CONTEXT59_UNSEEN = ("cow", "motorbike", "sofa", "cat", "boat", "fence", "bird", "tvmonitor", "aeroplane", "keyboard")

# --- The toy world (c2s/data/toyworld.py) ---------------------------------------------------------
# Classes compose two attributes the captions use. Each unseen class's colour and shape both occur in
# seen classes (every colour has 3 seen shapes, every shape >= 3 seen colours), so unseen classes are new
# combinations of seen attributes, never new attributes.
TOY_COLOURS = ("red", "green", "blue", "yellow", "purple")
TOY_SHAPES = ("circle", "square", "triangle", "cross")
TOY_CLASSES = tuple(f"{c} {s}" for c in TOY_COLOURS for s in TOY_SHAPES)
TOY_UNSEEN = ("red cross", "green triangle", "blue square", "yellow circle", "purple cross")
# "toy_stuff" reads the same files with the background as a seen class (COCO-Stuff-like: every pixel is
# annotated, so the unannotated area holds the unseen objects only; "toy" is VOC-like, background ignored).
TOY_STUFF_CLASSES = (*TOY_CLASSES, "background")
# Datasets generated by c2s/data/toyworld.py: data.root null makes the world, the toy CLIP and backbone apply.
TOY_DATASETS = ("toy", "toy_stuff")


def is_toy_world(dataset: str) -> bool:
    """True for the catalog's generated toy-world datasets (``TOY_DATASETS``)."""
    return dataset in TOY_DATASETS


def _shifted(n: int) -> dict[int, int | None]:
    """VOC-style files: 0 = background (-> ignore), k = class k-1."""
    return {0: None, **{k + 1: k for k in range(n)}}


def _build() -> dict[str, DatasetInfo]:
    seg = "ImageSets/Segmentation"
    voc_layout = _plain_layout(".jpg", ".png", {
        # mmseg 1.x configs/_base_/datasets/pascal_voc12_aug.py: ConcatDataset of train.txt + SegmentationClass
        # (1,464) and aug.txt + SegmentationClassAug (9,118 = SBD minus VOC train and val, written by
        # tools/dataset_converters/voc_aug.py) = 10,582. aug.txt alone is NOT the aug set.
        "train": (_variant(("JPEGImages", "SegmentationClass", f"{seg}/train.txt"),
                           ("JPEGImages", "SegmentationClassAug", f"{seg}/aug.txt"), name="mmseg VOC aug"),
                  # The DeepLab-style root: SegmentationClassAug holds all 12,031 masks, one 10,582-line list.
                  _variant(("JPEGImages", "SegmentationClassAug", f"{seg}/train_aug.txt"), name="DeepLab aug"),
                  # voc_aug.py's trainaug.txt (10,582) with a SegmentationClassAug that holds every mask.
                  _variant(("JPEGImages", "SegmentationClassAug", f"{seg}/trainaug.txt"), name="trainaug"),
                  _variant(("JPEGImages", "SegmentationClass", f"{seg}/train.txt"), name="VOC 2012 only")),
        "val": (_variant(("JPEGImages", "SegmentationClass", f"{seg}/val.txt")),
                _variant(("JPEGImages", "SegmentationClassAug", f"{seg}/val.txt"))),
    })
    # mmseg 1.x configs/_base_/datasets/coco-stuff164k.py (COCOStuffDataset: *.jpg, *_labelTrainIds.png,
    # reduce_zero_label False) and pascal_context_59.py (PascalContextDataset59: reduce_zero_label True).
    coco_layout = _plain_layout(".jpg", "_labelTrainIds.png", {
        "train": (_variant(("images/train2017", "annotations/train2017")),),
        "val": (_variant(("images/val2017", "annotations/val2017")),),
    })
    ctx = "ImageSets/SegmentationContext"
    context_layout = _plain_layout(".jpg", ".png", {
        "train": (_variant(("JPEGImages", "SegmentationClassContext", f"{ctx}/train.txt")),),
        "val": (_variant(("JPEGImages", "SegmentationClassContext", f"{ctx}/val.txt")),),
    })
    entries = [
        DatasetInfo("voc12", VOC_CLASSES, VOC_UNSEEN, voc_layout, _shifted(20), num_train=10582, num_val=1449,
                    note="PASCAL VOC 2012 + SBD aug; background -> ignore in training and evaluation"),
        DatasetInfo("coco_stuff164k", COCO_STUFF_CLASSES, COCO_STUFF_UNSEEN, coco_layout,
                    {k: k for k in range(171)}, num_train=118287, num_val=5000,
                    note="mmseg-converted *_labelTrainIds.png (0..170, 255 = unlabelled)"),
        DatasetInfo("context59", CONTEXT59_CLASSES, CONTEXT59_UNSEEN, context_layout, _shifted(59),
                    num_train=4996, num_val=5104,
                    note="PASCAL Context 59 (mmseg conversion); background 0 -> ignore"),
        DatasetInfo("toy", TOY_CLASSES, TOY_UNSEEN, _plain_layout(".png", ".png"), _shifted(len(TOY_CLASSES)),
                    note="generated by c2s/data/toyworld.py; background 0 -> ignore; captions/{split}.jsonl"),
        DatasetInfo("toy_stuff", TOY_STUFF_CLASSES, TOY_UNSEEN, _plain_layout(".png", ".png"),
                    {0: len(TOY_CLASSES), **{k + 1: k for k in range(len(TOY_CLASSES))}},
                    note="the toy world's files with background 0 -> the seen class 'background' "
                         "(COCO-Stuff-like: every pixel annotated)"),
    ]
    return {e.name: e for e in entries}


DATASETS: dict[str, DatasetInfo] = _build()


def get_dataset_info(name: str) -> DatasetInfo:
    """The catalog entry for ``name``, or the dataset a ``.yaml`` file declares (:mod:`c2s.data.custom`);
    an unknown name is a ValueError listing the known ones."""
    if str(name).lower().endswith((".yaml", ".yml")):  # c2s.data.custom.is_dataset_file, without its imports
        from c2s.data.custom import load_dataset_file

        return load_dataset_file(name)
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; the catalog has: {', '.join(DATASETS)} "
                         "(or pass a dataset .yaml file)") from None


@dataclass
class SplitListing:
    """Paired files of one split, and what did not pair."""

    split: str
    variant: SplitVariant | None
    pairs: list[tuple[Path, Path]]
    unpaired_images: list[Path]
    unpaired_masks: list[Path]
    missing_listed: list[str]  # 'name (split file)' for lines with neither image nor mask


def _exists(root: Path, part: SplitPart) -> bool:
    return (root / part.img_dir).is_dir() and (root / part.ann_dir).is_dir() and (
        part.split_file is None or (root / part.split_file).is_file())


def find_split(info: DatasetInfo, root: Path, split: str) -> SplitVariant:
    """The first layout variant of ``split`` whose every part exists under ``root``, or a FileNotFoundError
    naming all variants."""
    root = Path(root)
    if split not in info.layout.splits:
        raise ValueError(f"{info.name}: unknown split {split!r}; expected one of {list(info.layout.splits)}")
    for v in info.layout.splits[split]:
        if all(_exists(root, part) for part in v.parts):
            return v
    raise FileNotFoundError(
        f"{root}: no {split!r} split of {info.name} found; expected one of these layouts:\n"
        + info.layout.describe()
    )


def _files(folder: Path, suffix: str) -> list[str]:
    """Paths (relative to ``folder``, '/'-joined) of files ending in ``suffix``, recursively, as mmengine's
    ``list_dir_or_file(recursive=True, suffix=...)`` finds them (hidden entries included, links followed)."""
    found = []
    for dirpath, _, filenames in os.walk(folder, followlinks=True):
        rel = os.path.relpath(dirpath, folder)
        found += [name if rel == "." else f"{rel}/{name}" for name in filenames if name.endswith(suffix)]
    return found


def _list_plain(lay: Layout, img_dir: Path, ann_dir: Path, out: SplitListing) -> None:
    # mmseg BaseSegDataset.load_data_list without ann_file: every image, sorted by its full path string;
    # the mask is the image's relative path with the suffix swapped.
    stems = sorted((f[: -len(lay.img_suffix)] for f in _files(img_dir, lay.img_suffix)),
                   key=lambda stem: os.path.join(img_dir, stem + lay.img_suffix))
    masks = {f[: -len(lay.seg_suffix)] for f in _files(ann_dir, lay.seg_suffix)}
    for stem in stems:
        ip, mp = img_dir / f"{stem}{lay.img_suffix}", ann_dir / f"{stem}{lay.seg_suffix}"
        if stem in masks:
            out.pairs.append((ip, mp))
        else:
            out.unpaired_images.append(ip)
    images = set(stems)
    out.unpaired_masks += [ann_dir / f"{m}{lay.seg_suffix}" for m in sorted(masks - images)]


def _sample_name(line: str, img_suffix: str) -> str:
    """A split-file line -> sample name: ``2007_000032``, or the first path of a DeepLab pair line."""
    first = line.split()[0]
    if len(line.split()) == 1:
        return first  # mmseg: img_name = line.strip()
    name = first.rsplit("/", 1)[-1]
    return name[: -len(img_suffix)] if name.endswith(img_suffix) else name


def _list_file(lay: Layout, img_dir: Path, ann_dir: Path, split_file: Path, out: SplitListing) -> None:
    # mmseg BaseSegDataset.load_data_list with ann_file: file order, one sample per line.
    for line in split_file.read_text().splitlines():
        if not line.strip():
            continue
        name = _sample_name(line.strip(), lay.img_suffix)
        ip, mp = img_dir / f"{name}{lay.img_suffix}", ann_dir / f"{name}{lay.seg_suffix}"
        has_i, has_m = ip.is_file(), mp.is_file()
        if has_i and has_m:
            out.pairs.append((ip, mp))
        elif has_i:
            out.unpaired_images.append(ip)
        elif has_m:
            out.unpaired_masks.append(mp)
        else:
            out.missing_listed.append(f"{name} ({split_file.name})")


def list_split(info: DatasetInfo, root: Path, split: str) -> SplitListing:
    """Pair images with masks for one split, in mmseg's order (``load_data_list`` of each part, parts
    concatenated), reporting everything that did not pair."""
    root = Path(root)
    v = find_split(info, root, split)
    out = SplitListing(split, v, [], [], [], [])
    for part in v.parts:
        img_dir, ann_dir = root / part.img_dir, root / part.ann_dir
        if part.split_file is None:
            _list_plain(info.layout, img_dir, ann_dir, out)
        else:
            _list_file(info.layout, img_dir, ann_dir, root / part.split_file, out)
    return out
