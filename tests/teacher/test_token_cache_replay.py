"""Token cache format 2 (issue 15.1): no pixels stored; training replays the augmentation from the source files.

Unit tests, no Ray: the reader's rows (what the teacher saw) against the replayed rows, bit for bit, for every
transform of the training pipeline; the storage dtypes; old-format and changed-source caches refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from c2s.config import load_config
from c2s.data.catalog import get_dataset_info, list_split
from c2s.data.labels import seen_labels
from c2s.data.readers import _Loader
from c2s.teacher.cache import (
    CACHE_VERSION,
    MANIFEST,
    STORED_DTYPES,
    TOKEN_COLUMNS,
    TokenCacheError,
    cache_dir,
    replay_batch,
    source_fingerprint,
    to_storage,
)
from c2s.world.generate import generate_world

SEED = 7
IGNORE = 255
# Every transform of the training pipeline on (crop smaller than the resized image, so the box moves).
ALL_ON = dict(crop_size=[64, 64], scale=[96, 96], ratio_range=[0.75, 1.5], cat_max_ratio=0.75, flip_prob=0.5,
              photometric=True)
ALL_OFF = dict(crop_size=[96, 96], scale=[96, 96], ratio_range=[1.0, 1.0], cat_max_ratio=1.0, flip_prob=0.0,
               photometric=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(dict(images_train=6, images_val=2), out)
    return out


def _data_cfg(**options) -> dict:
    return {"dataset": "toy", "num_cpus": 0.25, "on_bad_sample": "error", **ALL_OFF, **options}


def reader_rows(world: Path, data_cfg: dict, epochs: int) -> dict[str, np.ndarray]:
    """What the cache build feeds the teacher: epoch e is the reader with seed SEED + e, then seen labels."""
    info = get_dataset_info("toy")
    pairs = list_split(info, world, "train").pairs
    rows = []
    for e in range(epochs):
        loader = _Loader(info, data_cfg, "train", SEED + e, None, False, pairs, 0, True)
        rows += [dict(r, epoch=e, item=r["row"]) for i in range(len(pairs)) for r in loader({"id": i})]
    batch = {k: np.stack([r[k] for r in rows]) for k in ("image", "label", "epoch", "item")}
    return seen_labels(batch, info)


def fake_teacher(batch: dict[str, np.ndarray], num_seen: int) -> dict[str, np.ndarray]:
    """Teacher outputs with the mining rule's shape: seen labels kept, latent ids on some ignore pixels."""
    rng = np.random.default_rng(0)
    n, length, dim = len(batch["label"]), 16, 32
    pseudo = batch["label"].copy()
    ignore = pseudo == IGNORE
    pseudo[ignore & (rng.random(pseudo.shape) < 0.5)] = num_seen + 2
    tokens = rng.normal(size=(n, length, dim)).astype(np.float32)
    return {**batch, "global": rng.normal(size=(n, dim)).astype(np.float32) / 6,
            "local": tokens / np.linalg.norm(tokens, axis=-1, keepdims=True),
            "local_ids": rng.integers(-1, num_seen + 4, size=(n, length)),
            "local_valid": rng.random((n, length)) < 0.5, "pseudo_mask": pseudo}


def replay(world: Path, data_cfg: dict, stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    info = get_dataset_info("toy")
    pairs = [(str(i), str(m)) for i, m in list_split(info, world, "train").pairs]
    return replay_batch(stored, info, data_cfg, pairs, SEED, IGNORE)


@pytest.mark.parametrize("options", [
    ALL_ON,
    dict(ratio_range=[0.5, 2.0]),  # random resize alone
    dict(crop_size=[48, 64], cat_max_ratio=0.75),  # random crop (with mmseg's cat_max_ratio retries)
    dict(flip_prob=0.5),
    dict(photometric=True),
    dict(crop_size=[120, 120]),  # pad to the crop size (image 0, label 255)
], ids=["all", "resize", "crop", "flip", "photometric", "pad"])
def test_replayed_image_and_mask_equal_what_the_teacher_saw(world, options):
    cfg = _data_cfg(**options)
    seen_rows = reader_rows(world, cfg, epochs=2)
    # the transform is live: its rows differ from the pipeline with everything off (same seed)
    plain = reader_rows(world, _data_cfg(**{k: v for k, v in options.items() if k == "crop_size"}), epochs=2)
    if options.get("crop_size") != [120, 120]:
        assert not np.array_equal(seen_rows["image"], plain["image"])
    else:
        assert (seen_rows["label"][:, 96:, :] == IGNORE).all() and (seen_rows["image"][:, :, 96:] == 0).all()
    info = get_dataset_info("toy")
    teacher_out = fake_teacher(seen_rows, len(info.seen_ids))
    stored = to_storage(teacher_out, IGNORE)
    assert "image" not in stored and "label" not in stored
    assert {k: v.dtype for k, v in stored.items()} == {k: np.dtype(v) for k, v in STORED_DTYPES.items()}
    got = replay(world, cfg, stored)
    assert list(got) == list(TOKEN_COLUMNS)
    for key in ("image", "label", "pseudo_mask", "local_ids", "local_valid"):
        assert got[key].dtype == teacher_out[key].dtype, key
        assert np.array_equal(got[key], teacher_out[key]), key  # bit for bit
    for key in ("global", "local"):  # fp16 storage: the fp32 tokens rounded once, nothing else
        assert got[key].dtype == np.float32
        assert np.array_equal(got[key], teacher_out[key].astype(np.float16).astype(np.float32)), key
        assert np.abs(got[key] - teacher_out[key]).max() < 2e-3
    # epochs are different augmentations of the same files, and each replays its own
    assert not np.array_equal(got["image"][:6], got["image"][6:]) or options == dict(crop_size=[120, 120])


def test_to_storage_refuses_what_it_cannot_hold(world):
    rows = reader_rows(world, _data_cfg(), epochs=1)
    out = fake_teacher(rows, 15)
    seen = np.argwhere(out["label"] != IGNORE)[0]
    broken = {**out, "pseudo_mask": out["pseudo_mask"].copy()}
    broken["pseudo_mask"][tuple(seen)] = 15 + 1
    with pytest.raises(ValueError, match="pseudo_mask differs from the seen label on seen pixels"):
        to_storage(broken, IGNORE)
    big = {**out, "global": out["global"] * 1e6}
    with pytest.raises(ValueError, match="'global' tokens overflow fp16"):
        to_storage(big, IGNORE)


def _write_manifest(folder: Path, **fields) -> None:
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text(json.dumps(fields))


def test_old_version_cache_is_refused_naming_the_folder_and_the_fix(world, tmp_path):
    from c2s.train.pipeline import build_train_dataset

    cfg = load_config("toy_tiny", ["teacher.cache=true"])
    root = tmp_path / "cache"
    old = cache_dir(cfg, world, root, version=1)
    assert old != cache_dir(cfg, world, root)  # the format version is part of the key
    _write_manifest(old, version=1, rows=24)
    with pytest.raises(TokenCacheError) as err:
        build_train_dataset(cfg, get_dataset_info("toy"), world, cache_root=root)
    assert str(err.value) == (
        f"token cache {old} is format version 1; this c2s reads version {CACHE_VERSION} (version 2 stores the "
        "augmentation's seed and replays the pixels instead of storing them). Rebuild it with `c2s tokens CONFIG "
        f"<the same overrides>` (it goes to a new folder), then delete {old}")
    # a version-1 manifest in the current folder (copied by hand) is refused the same way, never read
    current = cache_dir(cfg, world, root)
    _write_manifest(current, version=1, rows=24)
    with pytest.raises(TokenCacheError, match=f"token cache {current} is format version 1; this c2s reads "):
        build_train_dataset(cfg, get_dataset_info("toy"), world, cache_root=root)


def test_cache_of_other_source_files_is_refused(world, tmp_path):
    from c2s.train.pipeline import build_train_dataset

    cfg = load_config("toy_tiny", ["teacher.cache=true"])
    root = tmp_path / "cache"
    info = get_dataset_info("toy")
    source = source_fingerprint(info, world)
    assert source["items"] == 6 and len(source["sha256"]) == 64
    _write_manifest(cache_dir(cfg, world, root), version=CACHE_VERSION, rows=6,
                    source={"items": 5, "sha256": "0" * 64})
    with pytest.raises(TokenCacheError, match=r"was built from 5 training pairs .* now lists 6 .* --force"):
        build_train_dataset(cfg, info, world, cache_root=root)
