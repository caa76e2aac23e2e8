"""Per-batch teacher tokens: the plain function, bad input, and the Ray Data actor in a local pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from c2s.config import load_config, to_dict
from c2s.teacher.clip import load_teacher
from c2s.teacher.tokens import TeacherActor, map_batches_kwargs, teacher_tokens

NUM_SEEN = 4
OVERRIDES = ["teacher.arch=c2s-test-vit", "teacher.checkpoint=null", "teacher.allow_random=true", "teacher.image_size=32",
             "teacher.dense_size=64", "teacher.max_regions=6", "teacher.num_cpus=0.5", "teacher.batch_size=2"]


@pytest.fixture(scope="module")
def cfg():
    return load_config("toy_c2s", OVERRIDES)


@pytest.fixture(scope="module")
def teacher(cfg):
    return load_teacher(cfg.teacher, device="cpu")


def make_batch(b=2, size=48, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8)
    label = np.full((b, size, size), 255, dtype=np.int64)
    label[0, :16, :] = 0
    label[0, 16:24, :24] = 2
    if b > 1:
        label[1, :, :8] = 3  # image 1: one seen class, the rest unannotated
    for i in range(2, b):
        label[i, : size // 4] = i % NUM_SEEN
    return {"image": image, "label": label, "path": np.array([f"img{i}" for i in range(b)])}


def test_columns_shapes_and_regions(teacher, cfg):
    batch = make_batch()
    out = teacher_tokens(teacher, batch, NUM_SEEN, cfg)
    b, size, d, slots = 2, 48, 64, 6
    assert out["global"].shape == (b, d) and out["global"].dtype == np.float32
    assert out["local"].shape == (b, slots, d) and out["local"].dtype == np.float32
    assert out["local_ids"].shape == (b, slots) and out["local_ids"].dtype == np.int64
    assert out["local_valid"].shape == (b, slots) and out["local_valid"].dtype == np.bool_
    assert out["pseudo_mask"].shape == (b, size, size) and out["pseudo_mask"].dtype == np.int64
    assert list(out["path"]) == ["img0", "img1"]  # other columns pass through
    np.testing.assert_allclose(np.linalg.norm(out["global"], axis=1), 1.0, atol=1e-5)
    for i in range(b):
        pm, lab = out["pseudo_mask"][i], batch["label"][i]
        assert np.array_equal(pm[lab != 255], lab[lab != 255])  # seen labels kept
        assert set(np.unique(pm)) <= set(range(NUM_SEEN)) | set(range(NUM_SEEN, NUM_SEEN + 8)) | {255}
        present = sorted(int(v) for v in np.unique(pm) if v != 255)
        valid = out["local_valid"][i]
        assert int(valid.sum()) == min(len(present), slots)
        assert list(out["local_ids"][i][valid]) == present[:slots]  # ordered by id
        assert np.all(out["local_ids"][i][~valid] == -1)  # padding marked invalid
        assert np.all(out["local"][i][~valid] == 0)
        np.testing.assert_allclose(np.linalg.norm(out["local"][i][valid], axis=1), 1.0, atol=1e-5)
    assert list(out["local_ids"][0][:2]) == [0, 2]


def test_local_tokens_equal_encode_regions(teacher, cfg):
    import torch

    batch = make_batch()
    out = teacher_tokens(teacher, batch, NUM_SEEN, cfg)
    mask = torch.from_numpy(out["pseudo_mask"][0] == 2)[None]
    ref = teacher.encode_regions(torch.from_numpy(batch["image"]), mask, torch.tensor([0]))
    slot = list(out["local_ids"][0]).index(2)
    assert np.abs(out["local"][0, slot] - ref[0].numpy()).max() < 1e-5


def test_max_regions_keeps_largest(teacher, cfg):
    small = load_config("toy_c2s", OVERRIDES + ["teacher.max_regions=1"])
    batch = make_batch()
    out = teacher_tokens(teacher, batch, NUM_SEEN, small)
    assert out["local"].shape == (2, 1, 64)
    sizes = {int(v): int((out["pseudo_mask"][0] == v).sum()) for v in np.unique(out["pseudo_mask"][0]) if v != 255}
    assert int(out["local_ids"][0, 0]) == max(sizes, key=sizes.get)


def test_no_unannotated_area(teacher, cfg):
    batch = make_batch(b=1)
    batch["label"][:] = 1
    out = teacher_tokens(teacher, batch, NUM_SEEN, cfg)
    assert np.array_equal(out["pseudo_mask"], batch["label"])
    assert list(out["local_ids"][0]) == [1, -1, -1, -1, -1, -1]


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b.update(image=b["image"][..., :2]), r"sample 0: image must be 3-channel uint8"),
    (lambda b: b.update(image=b["image"].astype(np.float32)), r"sample 0: image must be 3-channel uint8"),
    (lambda b: b.update(label=b["label"][:, :40]), r"sample 0: label size \(40, 48\) differs from image size \(48, 48\)"),
    (lambda b: b["label"].__setitem__((1, 0, 0), 7), r"sample 1: label ids \[7\] outside the seen classes \[0, 4\)"),
    (lambda b: b["label"].__setitem__((1, 0, 0), -3), r"sample 1: label ids \[-3\]"),
])
def test_bad_input_names_sample(teacher, cfg, mutate, message):
    batch = make_batch()
    mutate(batch)
    with pytest.raises(ValueError, match=message):
        teacher_tokens(teacher, batch, NUM_SEEN, cfg)


def test_actor_callable_without_ray(cfg):
    actor = TeacherActor(to_dict(cfg), NUM_SEEN)
    assert actor.teacher.device.type == "cpu"
    out = actor(make_batch())
    assert out["local"].shape == (2, 6, 64)


@pytest.mark.integration
def test_actor_in_ray_data_pipeline(ray_local, cfg, teacher):
    import ray.data

    rows = make_batch(b=4, size=32)
    items = [{"image": rows["image"][i], "label": rows["label"][i]} for i in range(4)]
    ds = ray.data.from_items(items).map_batches(TeacherActor, **map_batches_kwargs(cfg, NUM_SEEN))
    out = ds.take_all()
    assert len(out) == 4
    # the same images through the plain function in this process: the actor must give the same tokens
    ref = teacher_tokens(teacher, {"image": rows["image"], "label": rows["label"]}, NUM_SEEN, cfg)
    matched = []
    for row in out:
        assert set(row) == {"image", "label", "global", "local", "local_ids", "local_valid", "pseudo_mask"}
        assert row["global"].shape == (64,) and row["global"].dtype == np.float32
        assert row["local"].shape == (6, 64)
        assert row["pseudo_mask"].shape == (32, 32) and row["pseudo_mask"].dtype == np.int64
        i = next(k for k in range(4) if np.array_equal(rows["image"][k], row["image"]))  # Ray may reorder rows
        matched.append(i)
        np.testing.assert_allclose(row["global"], ref["global"][i], atol=1e-5)
        np.testing.assert_allclose(row["local"], ref["local"][i], atol=1e-5)
        for key in ("local_ids", "local_valid", "pseudo_mask", "label"):
            assert np.array_equal(row[key], ref[key][i]), key
        assert int(row["local_valid"].sum()) >= 1
    assert sorted(matched) == [0, 1, 2, 3]
