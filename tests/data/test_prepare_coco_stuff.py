"""``c2s data prepare coco_stuff164k`` on tiny zips with the real internal structure (unit, no Ray).

``train2017.zip`` / ``val2017.zip`` hold ``train2017/<id>.jpg`` / ``val2017/<id>.jpg``;
``stuffthingmaps_trainval2017.zip`` holds ``train2017/<id>.png`` and ``val2017/<id>.png`` (0..181, 255).
The id mapping is checked against mmseg's COCOStuffDataset class list through COCO-Stuff's own label names.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from c2s.data import prepare
from c2s.data.catalog import COCO_STUFF_CLASSES, get_dataset_info, list_split
from c2s.data.check import main as check_main
from c2s.data.prepare.coco_stuff import CLS_TO_TRAIN, UNUSED_IDS, to_train_ids
from c2s.data.prepare.common import PrepareError

COCO_STUFF_LABELS = (  # nightrome/cocostuff labels.txt, ids 1..182 (0 = unlabeled left out)
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "street sign", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse",
    "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "hat", "backpack", "umbrella", "shoe",
    "eye glasses", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "plate",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "mirror", "dining table", "window", "desk", "toilet", "door", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "blender", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush", "hair brush", "banner", "blanket",
    "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard", "carpet", "ceiling-other",
    "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff", "dirt",
    "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood",
    "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill",
    "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net",
    "paper", "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing",
    "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf", "sky-other",
    "skyscraper", "snow", "solid-other", "stairs", "stone", "straw", "structural-other", "table", "tent",
    "textile-other", "towel", "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel",
    "wall-stone", "wall-tile", "wall-wood", "water-other", "waterdrops", "window-blind", "window-other",
    "wood",
)

TRAIN, VAL = ["000000000009", "000000000025", "000000000030"], ["000000000139", "000000000285"]


def test_label_ids_map_to_mmseg_classes_by_name():
    import c2s.compat

    c2s.compat.install()
    from mmseg.datasets.coco_stuff import COCOStuffDataset

    mmseg_classes = COCOStuffDataset.METAINFO["classes"]
    assert len(mmseg_classes) == 171 and tuple(mmseg_classes) == COCO_STUFF_CLASSES
    # stuffthingmap value v is COCO-Stuff label id v + 1; its train id must name the same class in mmseg
    assert {v: COCO_STUFF_LABELS[v] for v in CLS_TO_TRAIN if v != 255} == {
        v: mmseg_classes[t] for v, t in CLS_TO_TRAIN.items() if v != 255}
    assert sorted(t for v, t in CLS_TO_TRAIN.items() if v != 255) == list(range(171))
    assert [COCO_STUFF_LABELS[v] for v in UNUSED_IDS] == [
        "street sign", "hat", "shoe", "eye glasses", "plate", "mirror", "window", "desk", "door", "blender",
        "hair brush"]
    # a few entries of coco_stuff164k.py's literal clsID_to_trID
    assert [CLS_TO_TRAIN[c] for c in (0, 10, 12, 24, 26, 30, 43, 45, 64, 66, 69, 71, 81, 83, 89, 91, 181, 255)] == [
        0, 10, 11, 23, 24, 26, 39, 40, 59, 60, 61, 62, 72, 73, 79, 80, 170, 255]


def test_values_outside_the_mapping_are_an_error():
    mask = np.array([[0, 181, 255], [11, 200, 5]], np.uint8)
    with pytest.raises(PrepareError, match=r"x.png: values \[11, 200\] are not COCO-Stuff label ids"):
        to_train_ids(mask, "x.png")
    assert to_train_ids(mask[:1], "x.png").tolist() == [[0, 170, 255]]


def stuff_map(i: int) -> np.ndarray:
    used = [v for v in range(182) if v not in UNUSED_IDS] + [255]
    return np.array(used[i * 7: i * 7 + 48] * 1, np.uint8).reshape(6, 8)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name in sorted({n.split("/")[0] + "/" for n in members}):
            zf.writestr(name, b"")  # the folder entries real zips carry
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _encode(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt)
    return buf.getvalue()


def make_zips(folder: Path) -> tuple[Path, Path, Path]:
    jpg = _encode(np.full((6, 8, 3), 120, np.uint8), "JPEG")
    train = _zip(folder / "train2017.zip", {f"train2017/{n}.jpg": jpg for n in TRAIN})
    val = _zip(folder / "val2017.zip", {f"val2017/{n}.jpg": jpg for n in VAL})
    maps = {f"{split}/{n}.png": _encode(stuff_map(i), "PNG")
            for i, (split, n) in enumerate([("train2017", n) for n in TRAIN] + [("val2017", n) for n in VAL])}
    return train, val, _zip(folder / "stuffthingmaps_trainval2017.zip", maps)


def test_coco_stuff_layout_ids_counts_check_and_mmseg_listing(tmp_path, capsys, mmseg_build):
    train, val, maps = make_zips(tmp_path / "dl")
    out = tmp_path / "coco"
    argv = ["coco_stuff164k", "--images", str(train), str(val), "--annotations", str(maps), "--out", str(out),
            "--workers", "2", "--quiet"]
    assert prepare.main(argv) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "  train2017: 3 images, 3 label maps -> 3 pairs",
        "  val2017: 2 images, 2 label maps -> 2 pairs",
        "  label maps converted to 171 train ids: 5 (the full COCO-Stuff 164k has 123287: partial archives?)",
        "  files written 10, already there from an earlier run 0",
        f"done. Next: c2s data check {out} --dataset coco_stuff164k",
    ]
    lut = {v: t for v, t in CLS_TO_TRAIN.items()}
    for i, (split, n) in enumerate([("train2017", n) for n in TRAIN] + [("val2017", n) for n in VAL]):
        written = np.array(Image.open(out / "annotations" / split / f"{n}_labelTrainIds.png"))
        assert written.tolist() == [[lut[v] for v in row] for row in stuff_map(i).tolist()], n
        assert (out / "images" / split / f"{n}.jpg").is_file()
    assert check_main([str(out), "--dataset", "coco_stuff164k", "--allow-subset", "--workers", "1", "--quiet"]) == 0

    for split in ("train", "val"):
        theirs = [(img, seg) for img, seg, _ in mmseg_build("coco-stuff164k.py", out, split)]
        assert theirs == list_split(get_dataset_info("coco_stuff164k"), out, split).pairs
        assert len(theirs) == {"train": 3, "val": 2}[split]

    capsys.readouterr()
    assert prepare.main(argv) == 0
    assert "is already prepared" in capsys.readouterr().out
    # as if interrupted before the end: no manifest, one label map missing -> only that one is written
    (out / ".c2s-prepare.json").unlink()
    (out / "annotations" / "val2017" / f"{VAL[0]}_labelTrainIds.png").unlink()
    assert prepare.main(argv) == 0
    assert "  files written 1, already there from an earlier run 9" in capsys.readouterr().out
    assert np.array_equal(np.array(Image.open(out / "annotations" / "val2017" / f"{VAL[0]}_labelTrainIds.png")),
                          to_train_ids(stuff_map(3), "x"))


def test_a_bad_label_map_names_its_member(tmp_path, capsys):
    train, val, _ = make_zips(tmp_path / "dl")
    bad = np.zeros((6, 8), np.uint8)
    bad[0, 0] = 67  # "window": a COCO thing id that was never annotated
    maps = _zip(tmp_path / "dl" / "maps.zip", {"train2017/000000000009.png": _encode(bad, "PNG")})
    assert prepare.main(["coco_stuff164k", "--images", str(train), "--annotations", str(maps), "--out",
                         str(tmp_path / "o"), "--workers", "1", "--quiet"]) == 1
    assert ("maps.zip:train2017/000000000009.png: values [67] are not COCO-Stuff label ids"
            in capsys.readouterr().err)
    assert not (tmp_path / "o" / ".c2s-prepare.json").exists()
