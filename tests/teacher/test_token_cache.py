"""The shared teacher token cache: key invariance, atomic folders, and (integration) build + train from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from c2s.config import load_config
from c2s.paths import atomic_path
from c2s.teacher.cache import TOKEN_COLUMNS, TokenCacheError, cache_key, cache_key_inputs
from c2s.teacher.tokens import read_call_counts, write_call_count

TINY = ["train.workers=1", "train.checkpoint_interval=100"]  # on top of the toy_tiny config


def _key(root: Path, *overrides: str) -> str:
    return cache_key(load_config("toy_tiny", [*TINY, *overrides]), root)


def test_key_ignores_method_student_and_pool_keys(tmp_path):
    base = _key(tmp_path)
    assert len(base) == 20 and base == _key(tmp_path)  # deterministic
    for same in ("loss.tau=0.2", "loss.alpha=0.5", "loss.beta=3.0", "bank.size=48", "model.name=segformer_b4",
                 "distill.kind=cosine", "latent.kind=mlp", "train.iters=999", "optim.lr=0.1",
                 "teacher.actors=[2,4]", "teacher.num_cpus=1.0", "teacher.batch_size=16", "teacher.cache=true",
                 "teacher.torch_threads=2", "data.num_cpus=1.0", "train.workers=4"):
        assert _key(tmp_path, same) == base, same


def test_key_changes_with_what_clip_computes(tmp_path):
    base = _key(tmp_path)
    changed = {_key(tmp_path, o) for o in (
        "mining.k_max=4", "mining.merge_threshold=0.8", "teacher.dense_variant=sclip", "teacher.dense_size=64",
        "teacher.seed=1", "teacher.max_regions=8", "train.seed=1", "teacher.cache_epochs=2",
        "data.crop_size=[64,64]", "data.world.seed=3")}
    assert base not in changed and len(changed) == 10  # every one gives its own key
    other_root = tmp_path / "other"
    other_root.mkdir()
    assert _key(other_root) != base  # the data root is part of the key
    # precision auto is resolved by the pool's device: a GPU pool computes fp16 tokens
    assert _key(tmp_path, "teacher.num_gpus=0.5") != base
    assert _key(tmp_path, "teacher.precision=fp32") == base
    inputs = cache_key_inputs(load_config("toy_tiny", TINY), tmp_path)
    assert inputs["teacher"]["precision"] == "fp32" and "actors" not in inputs["teacher"]
    assert "num_cpus" not in inputs["data"] and inputs["cache_epochs"] == 1 and len(inputs["seen_classes"]) == 15


def test_key_fingerprints_the_checkpoint_file(tmp_path):
    ckpt = tmp_path / "clip.pt"
    ckpt.write_bytes(b"x" * 10)
    a = _key(tmp_path, f"teacher.checkpoint={ckpt}")
    ckpt.write_bytes(b"y" * 11)
    assert _key(tmp_path, f"teacher.checkpoint={ckpt}") != a
    with pytest.raises(TokenCacheError, match="teacher.checkpoint = .*nope.pt.* does not exist"):
        _key(tmp_path, f"teacher.checkpoint={tmp_path / 'nope.pt'}")


def test_atomic_folder_write(tmp_path):
    final = tmp_path / "tokens" / "abc"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.mkdir()
            (tmp / "part.parquet").write_text("half")
            raise RuntimeError("crash mid-write")
    assert not final.exists() and list((tmp_path / "tokens").iterdir()) == []  # nothing half-written left
    for content in ("v1", "v2"):
        with atomic_path(final) as tmp:
            tmp.mkdir()
            (tmp / "manifest.json").write_text(content)
    assert (final / "manifest.json").read_text() == "v2"  # a folder replaces a folder
    assert [p.name for p in (tmp_path / "tokens").iterdir()] == ["abc"]


def test_call_counter_files(tmp_path):
    assert read_call_counts(tmp_path / "none") == {"batches": 0, "images": 0}
    write_call_count(tmp_path, "a", 2, 8)
    write_call_count(tmp_path, "a", 3, 12)  # an actor rewrites its own totals
    write_call_count(tmp_path, "b", 1, 4)
    assert read_call_counts(tmp_path) == {"batches": 4, "images": 16}


def test_missing_cache_is_a_clear_error(tmp_path):
    from c2s.data.catalog import get_dataset_info
    from c2s.train.pipeline import build_train_dataset

    cfg = load_config("toy_tiny", [*TINY, "teacher.cache=true"])
    with pytest.raises(TokenCacheError, match=r"no token cache .* `c2s tokens CONFIG"):
        build_train_dataset(cfg, get_dataset_info("toy"), tmp_path, cache_root=tmp_path / "cache")


@pytest.mark.integration
def test_build_cache_then_read_it_without_clip(ray_local, cache_root, tmp_path, capsys):
    import pyarrow.parquet as pq

    from c2s.inputs import resolve_inputs
    from c2s.teacher.cache import STORED_COLUMNS, build_token_cache, cache_dir, load_token_cache

    cfg = load_config("toy_tiny", [*TINY, "teacher.cache_epochs=2"])
    inputs = resolve_inputs(cfg)
    folder, manifest = build_token_cache(cfg, inputs.data_root, inputs.cache_root, progress_s=0.2)
    # Progress while CLIP runs, counted against the 48 images it will encode (the build takes seconds)
    progress = [line for line in capsys.readouterr().out.splitlines() if "CLIP encoded" in line]
    assert progress and all(line.startswith(f"[c2s] token cache {folder.name}: CLIP encoded ") for line in progress)
    counts = [int(line.split("CLIP encoded ")[1].split(" / ")[0]) for line in progress]
    assert counts == sorted(counts) and counts[-1] <= 48 and all(" / 48 images" in line for line in progress)
    assert folder == cache_dir(cfg, inputs.data_root, cache_root) and folder.parent == cache_root / "tokens"
    assert manifest["built"] and manifest["epochs"] == 2
    assert manifest["rows"] == 48 and manifest["rows_per_epoch"] == {"0": 24, "1": 24}
    assert manifest["teacher_calls"] == {"batches": 6 * 2, "images": 48}  # 24 images x 2 epochs, batches of 4
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left

    table = pq.read_table(folder / "data")
    assert set(STORED_COLUMNS) == set(table.column_names)  # format 2: no pixels, no labels
    assert manifest["source"]["items"] == 24
    rows = load_token_cache(cfg, inputs.data_root, inputs.cache_root)  # replayed from the source files
    epochs = table["epoch"].to_numpy()
    images = rows["image"]
    digests = [{images[i].tobytes() for i in np.flatnonzero(epochs == e)} for e in (0, 1)]
    assert len(digests[0]) == 24 and len(digests[1]) == 24
    assert len(digests[0] & digests[1]) < 12  # epoch 1 holds other crops than epoch 0 (reader seed + 1)

    again, manifest2 = build_token_cache(cfg, inputs.data_root, inputs.cache_root)
    assert again == folder and not manifest2["built"]  # reused, CLIP not run again

    # The training pipeline with teacher.cache=true reads these rows: no reader, no teacher actor. (A whole
    # training run from the cache, with CLIP never called, is in tests/sweep/test_sweep_run.py.)
    from c2s.data.catalog import get_dataset_info
    from c2s.train.pipeline import build_train_dataset

    cached_cfg = load_config("toy_tiny", [*TINY, "teacher.cache_epochs=2", "teacher.cache=true", "loss.tau=0.05"])
    resolve_inputs(cached_cfg)
    ds = build_train_dataset(cached_cfg, get_dataset_info("toy"), inputs.data_root, cache_root=cache_root,
                             calls_dir=tmp_path / "calls")
    assert ds.count() == 48 and sorted(ds.schema().names) == sorted(TOKEN_COLUMNS)
    batch = next(iter(ds.iter_batches(batch_size=4, batch_format="numpy")))
    assert batch["global"].shape == (4, 64) and batch["local"].shape == (4, 16, 64)
    assert batch["pseudo_mask"].shape == (4, 96, 96) and batch["local_valid"].dtype == bool
    assert read_call_counts(tmp_path / "calls") == {"batches": 0, "images": 0}  # CLIP never ran
    # the Ray read path replays the same rows as the in-process reader (as multisets: Ray may reorder)
    read = ds.take_all()
    assert sorted(r["image"].tobytes() + r["pseudo_mask"].tobytes() for r in read) == sorted(
        rows["image"][i].tobytes() + rows["pseudo_mask"][i].tobytes() for i in range(48))
    assert read[0]["global"].dtype == np.float32 and read[0]["pseudo_mask"].dtype == np.int64
    assert json.loads((folder / "manifest.json").read_text())["teacher_calls"]["images"] == 48  # unchanged
