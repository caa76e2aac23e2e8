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


def test_clean_folder_passes_only_as_an_intended_subset(tmp_path, capsys):
    make_voc_like(tmp_path, split="train")
    make_voc_like(tmp_path, n=3, split="val")
    assert main([str(tmp_path), "--dataset", "voc12", "--quiet", "--allow-subset", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "OK: no problems found." in out
    assert "train        6       6       6" in out
    assert "[train] 6 pairs; the benchmark has 10582 (accepted: --allow-subset)" in out
    # Without --allow-subset a count that differs from the published one is a failure, not a note.
    assert main([str(tmp_path), "--dataset", "voc12", "--quiet", "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert ("[train] 6 pairs, but the voc12 benchmark's train split has 10582: results would not be "
            "comparable with the paper.") in out
    assert "[val] 3 pairs, but the voc12 benchmark's val split has 1449" in out
    assert "2 problem(s) found." in out


def test_planted_unpaired_and_bad_id_are_reported(tmp_path, capsys):
    make_voc_like(tmp_path, split="train")
    make_voc_like(tmp_path, n=3, split="val")
    # An image without a mask, and a mask with ids 21 and 77 (VOC knows 0..20 and 255).
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "img_dir" / "train" / "lonely.jpg")
    bad = np.zeros((20, 30), np.uint8)
    bad[0, 0], bad[1, 1] = 21, 77
    Image.fromarray(bad).save(tmp_path / "ann_dir" / "val" / "001.png")
    rc = cli_main(["data", "check", str(tmp_path), "--dataset", "voc12", "--quiet", "--allow-subset"])
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
    assert main([str(tmp_path), "--dataset", "voc12", "--splits", "train", "--quiet", "--allow-subset",
                 "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "000.png is 30x21 but" in out and "000.jpg is 30x20" in out
    assert "files that cannot be decoded: 1" in out
    assert f"cannot decode image {tmp_path}/img_dir/train/001.jpg" in out


def test_split_file_layout(tmp_path, capsys):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClass").mkdir()
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    for name in ("a", "b"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "JPEGImages" / f"{name}.jpg")
        Image.fromarray(np.ones((8, 8), np.uint8)).save(tmp_path / "SegmentationClass" / f"{name}.png")
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("a\nb\nc\n")
    (tmp_path / "ImageSets" / "Segmentation" / "train.txt").write_text("a\n")
    assert main([str(tmp_path), "--dataset", "voc12", "--quiet", "--allow-subset", "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "listed but neither image nor mask exists: c (val.txt)" in out
    assert "val          2       2       2" in out
    assert "train        1       1       1" in out and "[VOC 2012 only]" in out


def test_no_layout_exits_2(tmp_path, capsys):
    assert main([str(tmp_path), "--dataset", "coco_stuff164k", "--quiet"]) == 2
    assert "images/train2017" in capsys.readouterr().out


def test_progress_lines(tmp_path, capsys):
    make_voc_like(tmp_path, n=30)
    lines = []
    check_split(get_dataset_info("voc12"), tmp_path, "train", progress=lines.append, progress_every_s=0.0)
    assert len(lines) == 30 and lines[-1].startswith("train: 30/30 pairs decoded (")
    assert lines[-1].endswith("/s), 0 bad so far")
    quiet = []
    check_split(get_dataset_info("voc12"), tmp_path, "train", progress=quiet.append, progress_every_s=60.0)
    assert quiet == []  # a short run prints no progress


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_files_are_decoded_and_named_in_a_process_pool(tmp_path, capsys):
    """Headers of truncated files read fine; only decoding every byte finds them (issue 14, item 6)."""
    rng = np.random.default_rng(0)
    (tmp_path / "img_dir" / "val").mkdir(parents=True)
    (tmp_path / "ann_dir" / "val").mkdir(parents=True)
    for i in range(12):
        # Noise, so the compressed data is long enough that half of it is a valid header and part of IDAT.
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            tmp_path / "img_dir" / "val" / f"{i:06d}.png")
        Image.fromarray(rng.integers(0, 21, (32, 32), dtype=np.uint8)).save(
            tmp_path / "ann_dir" / "val" / f"{i:06d}.png")
    _truncate(tmp_path / "img_dir" / "val" / "000005.png")
    _truncate(tmp_path / "ann_dir" / "val" / "000009.png")
    with Image.open(tmp_path / "img_dir" / "val" / "000005.png") as im:
        assert im.size == (32, 32)  # the header alone looks fine
    info = get_dataset_info("toy")  # PNG images, as in the toy world
    pooled = check_split(info, tmp_path, "val", workers=2)
    assert pooled.unreadable == [
        f"cannot decode image {tmp_path}/img_dir/val/000005.png (mask {tmp_path}/ann_dir/val/000005.png): "
        "image file is truncated",
        f"cannot decode mask {tmp_path}/ann_dir/val/000009.png (image {tmp_path}/img_dir/val/000009.png): "
        "image file is truncated",
    ]
    assert check_split(info, tmp_path, "val", workers=1).unreadable == pooled.unreadable  # same, in order
    assert main([str(tmp_path), "--dataset", "toy", "--splits", "val", "--workers", "2", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "files that cannot be decoded: 2" in out and "2 problem(s) found." in out
    assert "val         12      12      12        0       0     0      2" in out


def test_bad_ids_found_by_the_pool(tmp_path):
    make_voc_like(tmp_path, n=9, split="val")
    bad = np.zeros((20, 30), np.uint8)
    bad[3, 3] = 99
    Image.fromarray(bad).save(tmp_path / "ann_dir" / "val" / "004.png")
    report = check_split(get_dataset_info("voc12"), tmp_path, "val", workers=2)
    assert report.bad_ids == [(str(tmp_path / "ann_dir" / "val" / "004.png"), [99])]
    assert report.unreadable == [] and report.size_mismatch == []
