"""The training stream on one local Ray (integration): the live stream's epoch e holds the token cache's
epoch e, and a run's teacher encodes exactly the images it trains on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from c2s.config import load_config
from c2s.data.catalog import get_dataset_info

pytestmark = pytest.mark.integration

ONE = ["train.workers=1", "train.checkpoint_interval=100"]  # on top of toy_tiny (24 train images, batch 4)


def _by_image(rows):
    return sorted(rows, key=lambda r: r["image"].tobytes())


def test_live_epoch_equals_cached_epoch(ray_local, cache_root, tmp_path):
    from c2s.inputs import resolve_inputs
    from c2s.teacher.cache import build_token_cache, load_token_cache
    from c2s.train.pipeline import build_train_dataset

    cfg = load_config("toy_tiny", [*ONE, "teacher.cache_epochs=2", "train.seed=7"])
    inputs = resolve_inputs(cfg)
    folder, _ = build_token_cache(cfg, inputs.data_root, inputs.cache_root, log=False)
    rows = load_token_cache(cfg, inputs.data_root, inputs.cache_root)  # format 2: pixels replayed
    cached = [{k: rows[k][i] for k in ("image", "label", "epoch")} for i in range(len(rows["epoch"]))]
    # The live stream of a 12-step run (48 rows = 2 epochs); the baseline keeps the teacher out of it.
    live_cfg = load_config("toy_tiny", [*ONE, "train.iters=12", "train.seed=7", "distill.enabled=false",
                                        "latent.enabled=false"])
    live = build_train_dataset(live_cfg, get_dataset_info("toy"), inputs.data_root).take_all()
    assert sorted(int(r["row"]) for r in live) == list(range(48))
    for epoch in (0, 1):
        a = _by_image([r for r in live if int(r["row"]) // 24 == epoch])
        b = _by_image([r for r in cached if int(r["epoch"]) == epoch])
        assert len(a) == len(b) == 24
        assert all(np.array_equal(x["image"], y["image"]) and np.array_equal(x["label"], y["label"])
                   for x, y in zip(a, b))
    first = {r["image"].tobytes() for r in live if int(r["row"]) < 24}
    assert len(first & {r["image"].tobytes() for r in live if int(r["row"]) >= 24}) == 0  # fresh crops


def test_teacher_encodes_what_training_consumes(ray_local, cache_root, tmp_path):
    from c2s.train.trainer import run_training

    """Also (one Train run serves both): metrics.jsonl gets teacher_actors_active (actors that ran CLIP in the
    interval) and teacher_actors_seen beside teacher_wait_frac on every row; summary.json says where the
    teacher and the student ran, and on how many threads (train.torch_threads)."""
    run_dir = tmp_path / "run"
    summary = run_training(load_config("toy_tiny", [*ONE, "train.iters=9", "train.prefetch_batches=2",
                                                    "train.log_interval=1", "teacher.actors=[1,1]",
                                                    "train.torch_threads=2"]), run_dir)
    # 9 steps x 4 images = 36 rows: 1.5 epochs in one stream, nothing encoded past the last step.
    assert summary["trained_images"] == 36 and summary["teacher_images"] == 36
    assert json.loads((run_dir / "summary.json").read_text())["teacher_images"] == 36
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("kind") == "train"]
    assert [r["step"] for r in rows] == list(range(1, 10))
    assert all({"teacher_actors_active", "teacher_actors_seen", "teacher_wait_frac"} <= set(r) for r in rows)
    assert {r["teacher_actors_seen"] for r in rows} == {1}
    assert sum(r["teacher_actors_active"] for r in rows) <= 9 and rows[0]["teacher_actors_active"] == 1
    assert summary["teacher_devices"] == ["cpu (float32)"]
    assert summary["worker_device"] == {"device": "cpu", "precision": "fp32", "workers": 1, "torch_threads": 2}


def test_training_stream_reaches_the_worker_in_stream_order(ray_local, tmp_path):
    """train.preserve_order: through Ray Train's own DataConfig.configure (what fit() hands each worker), a
    stream whose first block's task finishes last still arrives in order; without the option it does not.

    The first block is held by a gate, not a sleep (a 2 s sleep let a loaded CI machine finish it first and
    the unordered half then arrived in order): ordered, it waits until the other three blocks are done;
    unordered, it waits until the driver has received a row, which can then only come from a later block."""
    import ray

    from c2s.train.trainer import train_data_config

    def gated_first_block(batch: dict, gate: str, release_on: str) -> dict:  # nested: Ray's workers cannot
        import time  # import this test module
        from pathlib import Path

        first = int(batch["id"].min())
        if first >= 4:
            (Path(gate) / f"done_{first}").touch()
            return batch
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline:
            if release_on == "others_done" and len(list(Path(gate).glob("done_*"))) == 3:
                time.sleep(0.5)  # their tasks return right after the marker: let them, so this one is last
                return batch
            if release_on == "driver_received" and (Path(gate) / "received").exists():
                return batch
            time.sleep(0.05)
        (Path(gate) / "timed_out").touch()
        return batch

    def arrival(preserve_order: bool) -> list[int]:
        gate = tmp_path / f"gate_{preserve_order}"
        gate.mkdir()
        ds = ray.data.range(16, override_num_blocks=4).map_batches(
            gated_first_block, batch_size=None, num_cpus=0.25,
            fn_kwargs={"gate": str(gate), "release_on": "others_done" if preserve_order else "driver_received"})
        (shards,) = train_data_config(preserve_order).configure({"train": ds}, world_size=1, worker_handles=None,
                                                                worker_node_ids=None)
        ids = []
        for row in shards["train"].iter_rows():
            ids.append(int(row["id"]))
            (gate / "received").touch()
        assert not (gate / "timed_out").exists(), (
            f"preserve_order={preserve_order}: the first block waited 120 s and Ray Data ran no other block "
            f"beside it (markers: {sorted(p.name for p in gate.iterdir())})")
        return ids

    assert arrival(True) == list(range(16))
    unordered = arrival(False)
    assert sorted(unordered) == list(range(16)) and unordered[0] >= 4
