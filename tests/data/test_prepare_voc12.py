"""``c2s data prepare voc12`` on tiny archives with the real internal structure (unit, no Ray).

VOC: ``VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation,Annotations}`` in a plain tar;
SBD: ``benchmark_RELEASE/dataset/{cls/*.mat,img/*.jpg,train.txt,val.txt}`` in a .tgz, the .mat files holding
a ``GTcls`` struct as SBD's do. Checked: the masks (SBD .mat -> PNG values, VOC PNG bytes unchanged), the
split lists as mmseg's voc_aug.py defines them, the counts printed, `c2s data check`, the listing of
mmseg's own pascal_voc12_aug.py dataset, and resume after an interrupted run.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from c2s.data import prepare
from c2s.data.catalog import get_dataset_info, list_split
from c2s.data.check import main as check_main
from c2s.data.prepare import common, voc12

VOC_TRAIN, VOC_VAL = ["2007_000001", "2007_000002", "2007_000003"], ["2007_000010", "2007_000011"]
SBD_TRAIN, SBD_VAL = ["2007_000001", "2008_000001", "2008_000002", "2007_000010"], ["2008_000003", "2007_000002"]
EXTRA = ["2009_000099"]  # a JPEG no split lists (VOC's JPEGImages holds more than the segmentation sets)


def _jpg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((5, 7, 3), seed * 13 % 256, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _png(mask: np.ndarray, palette: bool = False) -> bytes:
    img = Image.fromarray(mask)
    if palette:  # VOC's SegmentationClass PNGs are palette images whose indices are the class ids
        img = img.convert("P")
        img.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def sbd_mask(name: str) -> np.ndarray:
    m = np.zeros((5, 7), np.uint8)
    m[1:4, 2:6] = 1 + sum(map(ord, name)) % 20
    return m


def _mat(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    savemat(buf, {"GTcls": {"Segmentation": mask, "Boundaries": np.zeros((20, 1), object),
                            "CategoriesPresent": np.unique(mask[mask > 0]).astype(np.uint8)}})
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_archives(folder: Path) -> tuple[Path, Path, dict[str, bytes]]:
    """(voc tar, sbd tgz, the SegmentationClass PNG bytes by name)."""
    folder.mkdir(parents=True, exist_ok=True)
    voc, sbd = folder / "VOCtrainval_11-May-2012.tar", folder / "benchmark.tgz"
    seg_bytes = {}
    with tarfile.open(voc, "w") as tar:
        for i, name in enumerate(sorted(set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL + EXTRA))):
            _add(tar, f"VOCdevkit/VOC2012/JPEGImages/{name}.jpg", _jpg(i))
            _add(tar, f"VOCdevkit/VOC2012/Annotations/{name}.xml", b"<annotation/>")
        for name in VOC_TRAIN + VOC_VAL:
            mask = np.zeros((5, 7), np.uint8)
            mask[0, :3], mask[2, 2], mask[4, :] = 15, 255, 3
            seg_bytes[name] = _png(mask, palette=True)
            _add(tar, f"VOCdevkit/VOC2012/SegmentationClass/{name}.png", seg_bytes[name])
        seg = "VOCdevkit/VOC2012/ImageSets/Segmentation"
        _add(tar, f"{seg}/train.txt", "".join(f"{n}\n" for n in VOC_TRAIN).encode())
        _add(tar, f"{seg}/val.txt", "".join(f"{n}\n" for n in VOC_VAL).encode())
        _add(tar, f"{seg}/trainval.txt", "".join(f"{n}\n" for n in VOC_TRAIN + VOC_VAL).encode())
    with tarfile.open(sbd, "w:gz") as tar:
        for name in SBD_TRAIN + SBD_VAL:
            _add(tar, f"benchmark_RELEASE/dataset/cls/{name}.mat", _mat(sbd_mask(name)))
            _add(tar, f"benchmark_RELEASE/dataset/img/{name}.jpg", _jpg(0))
        _add(tar, "benchmark_RELEASE/dataset/train.txt", "".join(f"{n}\n" for n in SBD_TRAIN).encode())
        _add(tar, "benchmark_RELEASE/dataset/val.txt", "".join(f"{n}\n" for n in SBD_VAL).encode())
    return voc, sbd, seg_bytes


def _argv(voc: Path, sbd: Path, out: Path, workers: int = 2) -> list[str]:
    return ["voc12", "--voc", str(voc), "--sbd", str(sbd), "--out", str(out), "--workers", str(workers), "--quiet"]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_voc12_layout_masks_lists_and_counts(tmp_path, capsys):
    voc, sbd, seg_bytes = make_archives(tmp_path / "dl")
    out = tmp_path / "VOC2012"
    assert prepare.main(_argv(voc, sbd, out)) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[1:] == [
        "  JPEGImages 9, SegmentationClass 5, SegmentationClassAug 6 (from SBD .mat)",
        "  ImageSets/Segmentation: train.txt 3, val.txt 2, aug.txt 3, trainaug.txt 6",
        "  training images: train.txt + aug.txt = 6 (the full VOC aug has 10582: partial archives?)",
        "  files written 23, already there from an earlier run 0",
        f"done. Next: c2s data check {out} --dataset voc12",
    ]
    # voc_aug.py's generate_aug_list: (SBD train + val) - (VOC train + val); trainaug adds VOC train, drops val
    assert _lines(out / "ImageSets/Segmentation/aug.txt") == ["2008_000001", "2008_000002", "2008_000003"]
    assert _lines(out / "ImageSets/Segmentation/trainaug.txt") == sorted(
        ["2007_000001", "2007_000002", "2007_000003", "2008_000001", "2008_000002", "2008_000003"])
    assert _lines(out / "ImageSets/Segmentation/train.txt") == VOC_TRAIN
    for name in SBD_TRAIN + SBD_VAL:
        png = Image.open(out / "SegmentationClassAug" / f"{name}.png")
        assert png.mode == "L" and np.array_equal(np.array(png), sbd_mask(name)), name
    for name, data in seg_bytes.items():  # VOC's palette PNGs are copied byte for byte
        assert (out / "SegmentationClass" / f"{name}.png").read_bytes() == data
    assert not list(out.rglob("*.mat")) and not (out / "Annotations").exists()
    assert not (out / common.TMP_DIR).exists() and (out / common.MANIFEST).is_file()

    info = get_dataset_info("voc12")
    train = list_split(info, out, "train")
    assert train.variant.name == "mmseg VOC aug" and len(train.pairs) == 6
    assert check_main([str(out), "--dataset", "voc12", "--allow-subset", "--workers", "1", "--quiet"]) == 0


def test_mmseg_lists_the_prepared_root_as_c2s_does(tmp_path, mmseg_build):
    """mmseg's own configs/_base_/datasets/pascal_voc12_aug.py dataset over the prepared root."""
    voc, sbd, _ = make_archives(tmp_path / "dl")
    out = tmp_path / "VOC2012"
    assert prepare.main(_argv(voc, sbd, out, workers=1)) == 0
    info = get_dataset_info("voc12")
    for split in ("train", "val"):
        theirs = [(img, seg) for img, seg, _ in mmseg_build("pascal_voc12_aug.py", out, split)]
        assert theirs == list_split(info, out, split).pairs, split
        assert len(theirs) == {"train": 6, "val": 2}[split]


def test_interrupted_run_resumes_and_finished_run_is_detected(tmp_path, monkeypatch, capsys):
    voc, sbd, _ = make_archives(tmp_path / "dl")
    out = tmp_path / "VOC2012"
    real, calls = common.write_bytes, []

    def dies_after_seven(out_dir, final, data):
        if len(calls) == 7:
            raise KeyboardInterrupt  # as Ctrl-C between two files
        calls.append(final)
        real(out_dir, final, data)

    for module in (common, voc12):
        monkeypatch.setattr(module, "write_bytes", dies_after_seven)
    with pytest.raises(KeyboardInterrupt):
        prepare.main(_argv(voc, sbd, out, workers=1))
    assert not (out / common.MANIFEST).exists()
    assert sum(1 for p in out.rglob("*") if p.is_file() and common.TMP_DIR not in p.parts) == 7
    (out / common.TMP_DIR / "123-half.png").write_bytes(b"half")  # a temp file the interruption left
    monkeypatch.undo()
    capsys.readouterr()

    assert prepare.main(_argv(voc, sbd, out, workers=2)) == 0
    printed = capsys.readouterr().out
    # the 7 finished outputs (the tar's first JPEGs) are skipped; 23 - 7 are written
    assert "  files written 16, already there from an earlier run 7" in printed
    assert not (out / common.TMP_DIR).exists()
    fresh = tmp_path / "fresh"
    assert prepare.main(_argv(voc, sbd, fresh, workers=1)) == 0
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file() and p.name != common.MANIFEST)
    assert files == sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file() and p.name != common.MANIFEST)
    for rel in files:
        assert (out / rel).read_bytes() == (fresh / rel).read_bytes(), rel

    capsys.readouterr()
    mtime = os.stat(out / common.MANIFEST).st_mtime_ns
    assert prepare.main(_argv(voc, sbd, out)) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"voc12: {out} is already prepared (") and printed[0].endswith("nothing to do")
    assert printed[1] == ("  JPEGImages 9, SegmentationClass 5, SegmentationClassAug 6, train.txt 3, val.txt 2, "
                          "aug.txt 3, trainaug.txt 6")
    assert os.stat(out / common.MANIFEST).st_mtime_ns == mtime


def test_wrong_archives_are_named(tmp_path, capsys):
    voc, sbd, _ = make_archives(tmp_path / "dl")
    assert prepare.main(["voc12", "--voc", str(sbd), "--sbd", str(voc), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    assert "--voc" in capsys.readouterr().err
    assert prepare.main(["voc12", "--voc", str(tmp_path / "nope.tar"), "--sbd", str(sbd), "--out",
                         str(tmp_path / "o")]) == 1
    assert f"--voc {tmp_path / 'nope.tar'}: no such file" in capsys.readouterr().err
    assert prepare.main(_argv(voc, sbd, sbd)) == 1
    assert f"--out {sbd} exists and is not a folder" in capsys.readouterr().err
    truncated = tmp_path / "dl" / "cut.tgz"
    truncated.write_bytes(sbd.read_bytes()[:300])
    assert prepare.main(_argv(voc, truncated, tmp_path / "o2")) == 1
    assert "cut.tgz: cannot read the archive" in capsys.readouterr().err
