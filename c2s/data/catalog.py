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
from dataclasses import dataclass
from pathlib import Path

from c2s import plugins
from c2s.data.custom import DatasetFileError, is_dataset_file, load_dataset_file
from c2s.data.layout import (  # noqa: F401  (re-exported: the catalog is where users look for them)
    IGNORE_INDEX,
    DatasetInfo,
    Layout,
    SplitPart,
    SplitVariant,
    plain_layout,
    shifted,
    variant,
)

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

def _build() -> dict[str, DatasetInfo]:
    seg = "ImageSets/Segmentation"
    voc_layout = plain_layout(".jpg", ".png", {
        # mmseg 1.x configs/_base_/datasets/pascal_voc12_aug.py: ConcatDataset of train.txt + SegmentationClass
        # (1,464) and aug.txt + SegmentationClassAug (9,118 = SBD minus VOC train and val, written by
        # tools/dataset_converters/voc_aug.py) = 10,582. aug.txt alone is NOT the aug set.
        "train": (variant(("JPEGImages", "SegmentationClass", f"{seg}/train.txt"),
                           ("JPEGImages", "SegmentationClassAug", f"{seg}/aug.txt"), name="mmseg VOC aug"),
                  # The DeepLab-style root: SegmentationClassAug holds all 12,031 masks, one 10,582-line list.
                  variant(("JPEGImages", "SegmentationClassAug", f"{seg}/train_aug.txt"), name="DeepLab aug"),
                  # voc_aug.py's trainaug.txt (10,582) with a SegmentationClassAug that holds every mask.
                  variant(("JPEGImages", "SegmentationClassAug", f"{seg}/trainaug.txt"), name="trainaug"),
                  variant(("JPEGImages", "SegmentationClass", f"{seg}/train.txt"), name="VOC 2012 only")),
        "val": (variant(("JPEGImages", "SegmentationClass", f"{seg}/val.txt")),
                variant(("JPEGImages", "SegmentationClassAug", f"{seg}/val.txt"))),
    })
    # mmseg 1.x configs/_base_/datasets/coco-stuff164k.py (COCOStuffDataset: *.jpg, *_labelTrainIds.png,
    # reduce_zero_label False) and pascal_context_59.py (PascalContextDataset59: reduce_zero_label True).
    coco_layout = plain_layout(".jpg", "_labelTrainIds.png", {
        "train": (variant(("images/train2017", "annotations/train2017")),),
        "val": (variant(("images/val2017", "annotations/val2017")),),
    })
    ctx = "ImageSets/SegmentationContext"
    context_layout = plain_layout(".jpg", ".png", {
        "train": (variant(("JPEGImages", "SegmentationClassContext", f"{ctx}/train.txt")),),
        "val": (variant(("JPEGImages", "SegmentationClassContext", f"{ctx}/val.txt")),),
    })
    entries = [
        DatasetInfo("voc12", VOC_CLASSES, VOC_UNSEEN, voc_layout, shifted(20), num_train=10582, num_val=1449,
                    note="PASCAL VOC 2012 + SBD aug; background -> ignore in training and evaluation"),
        DatasetInfo("coco_stuff164k", COCO_STUFF_CLASSES, COCO_STUFF_UNSEEN, coco_layout,
                    {k: k for k in range(171)}, num_train=118287, num_val=5000,
                    note="mmseg-converted *_labelTrainIds.png (0..170, 255 = unlabelled)"),
        DatasetInfo("context59", CONTEXT59_CLASSES, CONTEXT59_UNSEEN, context_layout, shifted(59),
                    num_train=4996, num_val=5104,
                    note="PASCAL Context 59 (mmseg conversion); background 0 -> ignore"),
    ]
    return {e.name: e for e in entries}


# The built-in entries. Packages add theirs through the "c2s.datasets" entry point (c2s/plugins.py): the
# toy world's "toy" and "toy_stuff" come from c2s/world/classes.py that way.
DATASETS: dict[str, DatasetInfo] = _build()
PLUGIN_GROUP = "c2s.datasets"


def _plugin_datasets() -> dict[str, DatasetInfo]:
    found: dict[str, DatasetInfo] = {}
    for source, entries in plugins.load(PLUGIN_GROUP):
        for info in entries:
            if info.name in DATASETS or info.name in found:
                raise ValueError(f"entry point {PLUGIN_GROUP}:{source} registers dataset {info.name!r}, "
                                 "which another entry already has")
            found[info.name] = info
    return found


def dataset_names() -> list[str]:
    """Every catalog name: the built-in ones, then those packages register."""
    return [*DATASETS, *_plugin_datasets()]


def get_dataset_info(name: str) -> DatasetInfo:
    """The catalog entry for ``name`` (built-in or registered), or the dataset a ``.yaml`` file declares
    (:mod:`c2s.data.custom`); an unknown name is a ValueError listing the known ones."""
    if is_dataset_file(name):
        info = load_dataset_file(name)
        if info.name in dataset_names():
            raise DatasetFileError(f"{info.source}: name: {info.name!r} is a catalog dataset's name; choose another")
        return info
    if name in DATASETS:
        return DATASETS[name]
    registered = _plugin_datasets()
    if name in registered:
        return registered[name]
    raise ValueError(f"unknown dataset {name!r}; the catalog has: {', '.join(dataset_names())} "
                     f"(or pass a dataset .yaml file){plugins.none_installed_hint(PLUGIN_GROUP)}")


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
