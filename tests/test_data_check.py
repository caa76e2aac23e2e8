"""`c2s data check` on small folders with planted problems (unit, no Ray)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from c2s.cli import main as cli_main
from c2s.data.catalog import get_dataset_info
from c2s.data.check import check_split, main


def make_voc_like(root, n=6, split="train"):
    (root / "img_dir" / split).mkdir(parents=True, exist_ok=True)
    (root / "ann_dir" / split).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((20, 30, 3), i * 7 % 256, np.uint8)).save(root / "img_dir" / split / f"{i:03d}.jpg")
        mask = np.zeros((20, 30), np.uint8)
        mask[5:10, 5:10] = i % 20 + 1
        mask[0] = 255
        Image.fromarray(mask).save(root / "ann_dir" / split / f"{i:03d}.png")


def test_clean_folder_passes(tmp_path, capsys):
    make_voc_like(tmp_path, split="train")
    make_voc_like(tmp_path, n=3, split="val")
    assert main([str(tmp_path), "--dataset", "voc12", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "OK: no problems found." in out
    assert "train        6       6       6" in out


def test_planted_unpaired_and_bad_id_are_reported(tmp_path, capsys):
    make_voc_like(tmp_path, split="train")
    make_voc_like(tmp_path, n=3, split="val")
    # An image without a mask, and a mask with ids 21 and 77 (VOC knows 0..20 and 255).
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "img_dir" / "train" / "lonely.jpg")
    bad = np.zeros((20, 30), np.uint8)
    bad[0, 0], bad[1, 1] = 21, 77
    Image.fromarray(bad).save(tmp_path / "ann_dir" / "val" / "001.png")
    rc = cli_main(["data", "check", str(tmp_path), "--dataset", "voc12", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "image without mask:" in out and "lonely.jpg" in out
    assert "001.png: ids [21, 77]" in out
    assert "2 problem(s) found." in out
    info = get_dataset_info("voc12")
    train, val = check_split(info, tmp_path, "train"), check_split(info, tmp_path, "val")
    assert (train.images, train.masks, train.pairs, len(train.unpaired)) == (7, 6, 6, 1)
    assert val.bad_ids == [(str(tmp_path / "ann_dir" / "val" / "001.png"), [21, 77])]


def test_size_mismatch_and_corrupt_files(tmp_path, capsys):
    make_voc_like(tmp_path, n=3, split="train")
    Image.fromarray(np.zeros((21, 30), np.uint8)).save(tmp_path / "ann_dir" / "train" / "000.png")
    (tmp_path / "img_dir" / "train" / "001.jpg").write_bytes(b"not a jpeg")
    assert main([str(tmp_path), "--dataset", "voc12", "--splits", "train", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "000.png is 30x21 but" in out and "000.jpg is 30x20" in out
    assert "unreadable files: 1" in out and "001.jpg" in out


def test_split_file_layout(tmp_path, capsys):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClass").mkdir()
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    for name in ("a", "b"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "JPEGImages" / f"{name}.jpg")
        Image.fromarray(np.ones((8, 8), np.uint8)).save(tmp_path / "SegmentationClass" / f"{name}.png")
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("a\nb\nc\n")
    (tmp_path / "ImageSets" / "Segmentation" / "train.txt").write_text("a\n")
    assert main([str(tmp_path), "--dataset", "voc12", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "neither file exists: c" in out
    assert "val          2       2       2" in out


def test_no_layout_exits_2(tmp_path, capsys):
    assert main([str(tmp_path), "--dataset", "coco_stuff164k", "--quiet"]) == 2
    assert "images/train2017" in capsys.readouterr().out


def test_progress_lines(tmp_path, capsys):
    make_voc_like(tmp_path, n=30)
    lines = []
    check_split(get_dataset_info("voc12"), tmp_path, "train", progress=lines.append, progress_every_s=0.0)
    assert lines and lines[-1].startswith("train: 30/30 masks checked")
