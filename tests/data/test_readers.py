"""Readers: decoding, bad samples, and (integration) the Ray Data dataset."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from c2s.config import load_config
from c2s.data.catalog import get_dataset_info
from c2s.data.readers import BadSampleError, decode_pair, iter_samples
from c2s.world.generate import generate_world

WORLD = dict(images_train=24, images_val=8)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    generate_world(WORLD, root)
    return root


def test_iter_samples_maps_to_class_ids(world):
    rows = list(iter_samples("toy", world, "val"))
    assert len(rows) == 8
    image, label, ip, lp = rows[0]
    assert image.dtype == np.uint8 and image.shape == (96, 96, 3)
    assert label.dtype == np.int64 and label.shape == (96, 96)
    raw = np.asarray(Image.open(lp))
    assert np.array_equal(label == 255, raw == 0)  # background -> ignore
    assert np.array_equal(label[raw > 0], raw[raw > 0] - 1)


def test_bad_samples_name_both_files(tmp_path):
    info = get_dataset_info("toy")
    img, good, small = tmp_path / "x.png", tmp_path / "good.png", tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(img)
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(good)
    Image.fromarray(np.zeros((9, 12), np.uint8)).save(small)
    decode_pair(info, img, good)
    with pytest.raises(BadSampleError, match=r"small\.png is 12x9 but image .*x\.png is 12x10"):
        decode_pair(info, img, small)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG garbage")
    with pytest.raises(BadSampleError, match=r"corrupt\.png.*good\.png"):
        decode_pair(info, corrupt, good)


def test_iter_samples_skip_counts(world, tmp_path):
    import shutil

    root = tmp_path / "w"
    shutil.copytree(world, root)
    (root / "img_dir" / "val" / "000002.png").write_bytes(b"broken")
    with pytest.raises(BadSampleError, match="000002.png"):
        list(iter_samples("toy", root, "val"))
    stats: dict = {}
    rows = list(iter_samples("toy", root, "val", on_bad_sample="skip", stats=stats))
    assert len(rows) == 7 and stats["skipped"] == 1 and "000002.png" in stats["skipped_examples"][0]


@pytest.mark.integration
def test_ray_dataset_train_and_val(world, tmp_path, ray_local):
    import shutil

    from c2s.data.readers import bad_sample_counts, bad_sample_examples, build_dataset

    cfg = load_config("toy_c2s", ["data.photometric=true"]).data
    train = build_dataset(cfg, world, "train", seed=3, limit=16)
    rows = sorted(train.take_all(), key=lambda r: r["image"].tobytes())
    assert len(rows) == 16
    assert all(r["image"].shape == (96, 96, 3) and r["label"].shape == (96, 96) for r in rows)
    # toy_c2s reads toy_stuff: class ids 0..19 are the objects, 20 the background (never ignore), 255 only
    # where the augmentation padded
    assert all(r["label"].dtype == np.int64 and set(np.unique(r["label"])) <= set(range(21)) | {255} for r in rows)
    assert any(20 in np.unique(r["label"]) for r in rows)
    again = sorted(build_dataset(cfg, world, "train", seed=3, limit=16).take_all(), key=lambda r: r["image"].tobytes())
    assert all(np.array_equal(a["image"], b["image"]) and np.array_equal(a["label"], b["label"])
               for a, b in zip(rows, again))  # same seed, same rows
    val = build_dataset(cfg, world, "val", with_paths=True).take_all()
    assert len(val) == 8 and {r["index"] for r in val} == set(range(8))

    root = tmp_path / "w"
    shutil.copytree(world, root)
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(root / "ann_dir" / "val" / "000005.png")
    with pytest.raises(Exception, match="000005.png"):
        build_dataset(cfg, root, "val").take_all()
    skip_cfg = load_config("toy_c2s", ["data.on_bad_sample=skip"]).data
    before = bad_sample_counts()  # the counter is per Ray job: other tests of this session may have counted
    assert len(build_dataset(skip_cfg, root, "val").take_all()) == 7
    assert bad_sample_counts() == {**before, "val": before.get("val", 0) + 1}
    assert any(f"{root}/img_dir/val/000005.png" in e for e in bad_sample_examples())
