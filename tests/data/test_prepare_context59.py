"""``c2s data prepare context59`` on a tiny VOC 2010 tar and a tiny trainval_merged.json (unit, no Ray).

The JSON has the structure the PASCAL in Detail API's ``Detail`` class reads (``images`` with ``phase``,
``annos_segmentation`` with COCO RLE ``segmentation``, ``categories``); the RLE strings are written by a port of
maskApi.c's ``rleToString`` below. The masks are compared with pascal_context.py's own ``_class_to_index``
(``np.digitize`` on mmseg's literal ``_mapping``) applied to ``Detail.getMask``'s painting order.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from c2s.data import prepare
from c2s.data.catalog import CONTEXT59_CLASSES, get_dataset_info, list_split
from c2s.data.check import main as check_main
from c2s.data.prepare.common import PrepareError
from c2s.data.prepare.context59 import decode_rle, render_mask, rle_counts

# tools/dataset_converters/pascal_context.py, as written there (unsorted)
MMSEG_MAPPING = [0, 2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33, 162, 420,
                 454, 295, 296, 427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68, 326, 72, 458, 34,
                 207, 80, 355, 85, 347, 220, 349, 360, 98, 187, 104, 105, 366, 189, 368, 113, 115]


def mmseg_class_to_index(mask: np.ndarray) -> np.ndarray:
    mapping = np.sort(np.array(MMSEG_MAPPING))
    key = np.array(range(len(mapping))).astype("uint8")
    index = np.digitize(mask.ravel(), mapping, right=True)
    return key[index].reshape(mask.shape)


def rle_string(mask: np.ndarray) -> dict:
    """maskApi.c rleEncode (column-major runs from 0) + rleToString."""
    flat = mask.T.reshape(-1).astype(bool)
    runs, value, n = [], False, 0
    for v in flat:
        if v != value:
            runs.append(n)
            value, n = v, 0
        n += 1
    runs.append(n)
    chars = []
    for i, cnt in enumerate(runs):
        x = cnt - runs[i - 2] if i > 2 else cnt
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return {"size": list(mask.shape), "counts": "".join(chars)}


def test_rle_round_trip_with_long_and_shrinking_runs():
    rng = np.random.default_rng(0)
    for shape in ((1, 1), (7, 5), (40, 90)):
        for density in (0.0, 0.1, 0.5, 0.97, 1.0):
            mask = rng.random(shape) < density
            mask[: shape[0] // 2, : shape[1] // 3] = True  # a long run (multi-char counts)
            assert np.array_equal(decode_rle(rle_string(mask), "t"), mask)
    # the uncompressed form: counts as a list
    assert decode_rle({"size": [2, 3], "counts": [1, 2, 3]}, "t").tolist() == [[False, True, False],
                                                                                 [True, False, False]]
    assert rle_counts("") == []
    with pytest.raises(PrepareError, match="t: RLE runs cover 5 pixels, the mask has 2x3 = 6"):
        decode_rle({"size": [2, 3], "counts": [1, 4]}, "t")


def test_sorted_mapping_is_mmseg_class_order():
    # Detail category id -> mask value -> PascalContextDataset59 class (reduce_zero_label: value v = class v-1)
    out = render_ids([2, 9, 115, 284, 458])
    assert [CONTEXT59_CLASSES[v - 1] for v in out] == ["aeroplane", "bag", "door", "person", "wood"]


def render_ids(ids: list[int]) -> list[int]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        anns = []
        for i, cid in enumerate(ids):
            m = np.zeros((1, len(ids)), bool)
            m[0, i] = True
            anns.append((cid, rle_string(m)))
        (Path(tmp) / ".c2s-prepare-tmp").mkdir()
        render_mask(tmp, 1, len(ids), anns, f"{tmp}/x.png", "x")
        return np.array(Image.open(f"{tmp}/x.png")).reshape(-1).tolist()


IMAGES = [  # (image_id, name, phase)
    (2008000002, "2008_000002", "train"), (2008000003, "2008_000003", "train"), (2008000007, "2008_000007", "val"),
    (2008000008, "2008_000008", "val"), (2008000009, "2008_000009", "val"), (2008000010, "2008_000010", "test"),
]


def _anns(rng, h, w) -> list[tuple[int, np.ndarray]]:
    out = []
    for cid in rng.choice(MMSEG_MAPPING[1:], size=4, replace=False):
        m = np.zeros((h, w), bool)
        y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
        m[y: y + rng.integers(2, h), x: x + rng.integers(2, w)] = True
        out.append((int(cid), m))
    return out


def make_inputs(folder: Path, bad_category: int | None = None) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """(VOC 2010 tar, trainval_merged.json, expected masks by name via mmseg's own functions)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    images, segs, expected = [], [], {}
    for image_id, name, phase in IMAGES:
        h, w = 6 + image_id % 3, 9
        images.append({"image_id": image_id, "file_name": f"{name}.jpg", "height": h, "width": w, "phase": phase,
                       "date_captured": "", "annotations": []})
        anns = _anns(rng, h, w)
        if bad_category is not None and name == "2008_000003":
            anns[-1] = (bad_category, anns[-1][1])  # painted last: it stays visible
        getmask = np.zeros((h, w))  # Detail.getMask: float zeros, category ids painted in file order
        for cid, m in anns:
            segs.append({"id": len(segs) + 1, "image_id": image_id, "category_id": cid, "iscrowd": 0,
                         "segmentation": rle_string(m), "area": int(m.sum()), "bbox": [0, 0, 1, 1], "parts": []})
            getmask[np.nonzero(m)] = cid
        if phase != "test" and bad_category is None:
            expected[name] = mmseg_class_to_index(getmask)
    segs = segs[::2] + segs[1::2]  # annotations of one image interleave with others' in the file
    expected = {k: v for k, v in expected.items()}
    data = {"info": {}, "images": images, "annos_segmentation": segs, "annos_occlusion": [], "annos_boundary": [],
            "annos_joints": [], "parts": [],
            "categories": [{"category_id": c, "name": f"cat{c}", "supercategory": "object", "onlysemantic": 0,
                            "parts": []} for c in MMSEG_MAPPING[1:]]}
    js = folder / "trainval_merged.json"
    js.write_text(json.dumps(data))
    tar_path = folder / "VOCtrainval_03-May-2010.tar"
    with tarfile.open(tar_path, "w") as tar:
        for i, (_, name, _) in enumerate(IMAGES + [(0, "2010_000001", "none")]):
            buf = io.BytesIO()
            h = 6 + IMAGES[i][0] % 3 if i < len(IMAGES) else 5
            Image.fromarray(np.full((h, 9, 3), 40 * i, np.uint8)).save(buf, "JPEG")
            info = tarfile.TarInfo(f"VOCdevkit/VOC2010/JPEGImages/{name}.jpg")
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
    return tar_path, js, expected


def _recompute_expected(js: Path) -> dict[str, np.ndarray]:
    """Detail.getMask over the file's own order (after the interleaving), then mmseg's _class_to_index."""
    data = json.loads(js.read_text())
    out = {}
    for img in data["images"]:
        if img["phase"] not in ("train", "val"):
            continue
        mask = np.zeros((img["height"], img["width"]))
        for seg in data["annos_segmentation"]:
            if seg["image_id"] == img["image_id"]:
                mask[np.nonzero(decode_rle(seg["segmentation"], "t"))] = seg["category_id"]
        out[img["file_name"][:-4]] = mmseg_class_to_index(mask)
    return out


def test_context59_masks_lists_counts_check_and_mmseg_listing(tmp_path, capsys, mmseg_build):
    tar_path, js, _ = make_inputs(tmp_path / "dl")
    out = tmp_path / "VOC2010"
    argv = ["context59", "--voc", str(tar_path), "--annotations", str(js), "--out", str(out), "--workers", "2",
            "--quiet"]
    assert prepare.main(argv) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "  JPEGImages 7; SegmentationClassContext 5 masks (0 = background, 1..59 = the classes)",
        "  ImageSets/SegmentationContext: train.txt 2, val.txt 3 (the full PASCAL Context has 4996 / 5104: "
        "a partial JSON?)",
        "  files written 12, already there from an earlier run 0",
        f"done. Next: c2s data check {out} --dataset context59",
    ]
    expected = _recompute_expected(js)
    assert sorted(expected) == ["2008_000002", "2008_000003", "2008_000007", "2008_000008", "2008_000009"]
    for name, want in expected.items():
        got = Image.open(out / "SegmentationClassContext" / f"{name}.png")
        assert got.mode == "L" and np.array_equal(np.array(got), want), name
        assert len(np.unique(want)) >= 3  # the overlaps and the background are really exercised
    assert (out / "ImageSets/SegmentationContext/val.txt").read_text() == "2008_000007\n2008_000008\n2008_000009\n"
    assert not (out / "SegmentationClassContext" / "2008_000010.png").exists()  # phase 'test'
    assert check_main([str(out), "--dataset", "context59", "--allow-subset", "--workers", "1", "--quiet"]) == 0

    for split in ("train", "val"):
        theirs = [(img, seg) for img, seg, _ in mmseg_build("pascal_context_59.py", out, split)]
        assert theirs == list_split(get_dataset_info("context59"), out, split).pairs
        assert len(theirs) == {"train": 2, "val": 3}[split]

    # as if interrupted before the end: no manifest, one mask missing -> only that one (and the lists) rewritten
    (out / ".c2s-prepare.json").unlink()
    (out / "SegmentationClassContext" / "2008_000008.png").unlink()
    capsys.readouterr()
    assert prepare.main(argv) == 0
    assert "  files written 1, already there from an earlier run 11" in capsys.readouterr().out
    assert np.array_equal(np.array(Image.open(out / "SegmentationClassContext" / "2008_000008.png")),
                          expected["2008_000008"])


def test_a_category_outside_the_59_names_its_image(tmp_path, capsys):
    tar_path, js, _ = make_inputs(tmp_path / "dl", bad_category=1)
    assert prepare.main(["context59", "--voc", str(tar_path), "--annotations", str(js), "--out", str(tmp_path / "o"),
                         "--workers", "1", "--quiet"]) == 1
    assert ("trainval_merged.json: image 2008000003 (2008_000003.jpg): category ids [1] are not among the 59 "
            "classes" in capsys.readouterr().err)
    not_json = tmp_path / "dl" / "x.json"
    not_json.write_text("[1, 2]")
    assert prepare.main(["context59", "--voc", str(tar_path), "--annotations", str(not_json), "--out",
                         str(tmp_path / "o2"), "--quiet"]) == 1
    assert "not a PASCAL in Detail JSON with 'images' and 'annos_segmentation'" in capsys.readouterr().err
