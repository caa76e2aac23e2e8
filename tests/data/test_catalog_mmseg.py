"""The catalog lists and labels samples exactly as mmsegmentation 1.2.2 does (unit, no Ray).

Fake roots in mmseg's layouts (a few tiny files) are listed twice: by c2s (``list_split``) and by the
dataset mmseg's own config builds (``configs/_base_/datasets/{pascal_voc12_aug,coco-stuff164k,
pascal_context_59}.py``, installed with mmseg under ``.mim/configs``): the VOC aug config is a
``ConcatDataset`` of train.txt + SegmentationClass and aug.txt + SegmentationClassAug. Labels are compared
with mmseg's ``LoadAnnotations`` (``reduce_zero_label`` as the dataset class sets it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from c2s.data.catalog import get_dataset_info, list_split
from c2s.data.readers import decode_pair


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 8, 3), seed * 9 % 256, np.uint8)).save(path)


def _mask(path: Path, values: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((6, 8), np.uint8)
    mask.flat[: len(values)] = values
    Image.fromarray(mask).save(path)


def _c2s(dataset: str, root: Path, split: str) -> list[tuple[Path, Path]]:
    listing = list_split(get_dataset_info(dataset), root, split)
    assert not (listing.unpaired_images or listing.unpaired_masks or listing.missing_listed)
    return listing.pairs


def test_voc_aug_matches_mmseg_concat(tmp_path, mmseg_build):
    seg = tmp_path / "ImageSets" / "Segmentation"
    train, aug, val = ["2007_000032", "2007_000039"], ["2008_000002", "2007_000005", "2011_003276"], ["2007_000033"]
    for k, name in enumerate(train + aug + val):
        _image(tmp_path / "JPEGImages" / f"{name}.jpg", k)
    for name in train + val:
        _mask(tmp_path / "SegmentationClass" / f"{name}.png", [1, 20, 255])
    for name in aug:
        _mask(tmp_path / "SegmentationClassAug" / f"{name}.png", [0, 15])
    seg.mkdir(parents=True)
    (seg / "train.txt").write_text("\n".join(train) + "\n")
    (seg / "aug.txt").write_text("\n".join(aug) + "\n")  # voc_aug.py writes a set: any order
    (seg / "val.txt").write_text("\n".join(val) + "\n")

    ref = mmseg_build("pascal_voc12_aug.py", tmp_path, "train")
    ours = _c2s("voc12", tmp_path, "train")
    assert len(ours) == 5  # train.txt + aug.txt, not aug.txt alone (9,118 of 10,582 on the real data)
    assert ours == [(i, m) for i, m, _ in ref]
    assert list_split(get_dataset_info("voc12"), tmp_path, "train").variant.name == "mmseg VOC aug"
    assert _c2s("voc12", tmp_path, "val") == [(i, m) for i, m, _ in mmseg_build("pascal_voc12_aug.py", tmp_path, "val")]


def test_coco_stuff164k_matches_mmseg(tmp_path, mmseg_build):
    # Unsorted creation, a nested folder and names whose order differs between Path and string sorting:
    # mmseg lists images recursively and sorts by the full path string.
    names = ["000000000139", "000000000009", "sub/000000000285", "sub-a/000000000001", "000000000632"]
    for split in ("train2017", "val2017"):
        for k, name in enumerate(names):
            _image(tmp_path / "images" / split / f"{name}.jpg", k)
            _mask(tmp_path / "annotations" / split / f"{name}_labelTrainIds.png", [0, 170, 255])
    info = get_dataset_info("coco_stuff164k")
    for split in ("train", "val"):
        ref = mmseg_build("coco-stuff164k.py", tmp_path, split)
        assert _c2s("coco_stuff164k", tmp_path, split) == [(i, m) for i, m, _ in ref]
        assert {z for _, _, z in ref} == {False}
    _, label = decode_pair(info, *_c2s("coco_stuff164k", tmp_path, "val")[0])
    assert label.flat[:4].tolist() == [0, 170, 255, 0]  # train ids as stored, no reduce_zero_label


def test_context59_matches_mmseg_and_reduces_zero(tmp_path, mmseg_build):
    sets = tmp_path / "ImageSets" / "SegmentationContext"
    sets.mkdir(parents=True)
    for k, name in enumerate(["2008_000002", "2008_000003", "2010_001000"]):
        _image(tmp_path / "JPEGImages" / f"{name}.jpg", k)
        _mask(tmp_path / "SegmentationClassContext" / f"{name}.png", [0, 1, 59, 255, 30])
    (sets / "train.txt").write_text("2010_001000\n2008_000002\n")
    (sets / "val.txt").write_text("2008_000003\n")
    for split in ("train", "val"):
        ref = mmseg_build("pascal_context_59.py", tmp_path, split)
        assert _c2s("context59", tmp_path, split) == [(i, m) for i, m, _ in ref]
        assert {z for _, _, z in ref} == {True}
    from mmseg.datasets.transforms import LoadAnnotations

    image_path, mask_path = _c2s("context59", tmp_path, "val")[0]
    theirs = LoadAnnotations()(dict(seg_map_path=str(mask_path), reduce_zero_label=True, seg_fields=[]))
    _, ours = decode_pair(get_dataset_info("context59"), image_path, mask_path)
    assert np.asarray(theirs["gt_seg_map"]).ravel().tolist() == ours.ravel().tolist()
    assert ours.flat[:5].tolist() == [255, 0, 58, 255, 29]


@pytest.mark.parametrize("pair_lines", [False, True])
def test_deeplab_root_is_accepted(tmp_path, pair_lines):
    """SegmentationClassAug (all masks) + ImageSets/Segmentation/train_aug.txt, ids or DeepLab pair lines."""
    names = ["2007_000032", "2008_000002", "2007_000005"]
    for k, name in enumerate(names):
        _image(tmp_path / "JPEGImages" / f"{name}.jpg", k)
        _mask(tmp_path / "SegmentationClassAug" / f"{name}.png", [3])
    seg = tmp_path / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True)
    lines = [f"/JPEGImages/{n}.jpg /SegmentationClassAug/{n}.png" if pair_lines else n for n in names]
    (seg / "train_aug.txt").write_text("\n".join(lines) + "\n")
    (seg / "val.txt").write_text("2007_000005\n")
    listing = list_split(get_dataset_info("voc12"), tmp_path, "train")
    assert listing.variant.name == "DeepLab aug"
    assert listing.pairs == [(tmp_path / "JPEGImages" / f"{n}.jpg", tmp_path / "SegmentationClassAug" / f"{n}.png")
                             for n in names]
    # No SegmentationClass folder: val falls back to SegmentationClassAug + val.txt.
    assert _c2s("voc12", tmp_path, "val") == [(tmp_path / "JPEGImages" / "2007_000005.jpg",
                                               tmp_path / "SegmentationClassAug" / "2007_000005.png")]
    assert os.fspath(listing.pairs[0][0]).endswith("2007_000032.jpg")
