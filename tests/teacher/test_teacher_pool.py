"""The elastic teacher pool (issue 18, item 5): ``teacher.actors = [min, max]`` is Ray Data's
``ActorPoolStrategy(min_size, max_size)``, whose autoscaler adds actors while inputs queue in front of a
busy pool (ray 2.60: ray/data/_internal/actor_autoscaler/default_actor_autoscaler.py, utilisation = tasks in
flight / actors >= 1). With a slow teacher (``teacher.simulate_delay_s``) the queue builds and the pool grows
from ``min``; ``metrics.jsonl`` says per interval how many actors ran CLIP (``teacher_actors_active``), how
many ever did (``teacher_actors_seen``) and the teacher wait (checked on a training run in
tests/integration/test_stream_ray.py::test_teacher_encodes_what_training_consumes).

The growth test streams c2s's teacher stage with a consumer of its own: in a 16-step toy training run on this
2-core machine the Train worker's start-up (~100 s under load) let one actor encode the whole run before the
first step, so nothing ever queued (measured: 32 batches, one actor, teacher wait 0% after step 1).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from c2s.config import load_config
from c2s.teacher.tokens import read_actor_batches, read_actor_devices, read_call_counts, write_call_count


def test_actor_counters_unit(tmp_path):
    """No Ray: per-actor counters give batches per actor, their devices, and totals (read_call_counts)."""
    assert read_actor_batches(tmp_path / "none") == {} and read_actor_devices(tmp_path / "none") == []
    write_call_count(tmp_path, "a", 3, 12, "cuda (float16)")
    write_call_count(tmp_path, "b", 1, 4, "cpu (float32)")
    write_call_count(tmp_path, "a", 4, 16, "cuda (float16)")  # overwritten, not added
    assert read_actor_batches(tmp_path) == {"a": 4, "b": 1}
    assert read_actor_devices(tmp_path) == ["cpu (float32)", "cuda (float16)"]
    assert read_call_counts(tmp_path) == {"batches": 5, "images": 20}

SLOW = ["teacher.arch=c2s-test-vit", "teacher.checkpoint=null", "teacher.allow_random=true", "teacher.image_size=32", "teacher.dense_size=32",
        "teacher.num_cpus=0.1", "teacher.batch_size=2", "teacher.simulate_delay_s=1.5"]


def _stream_through_pool(actors: str, calls_dir, images: int = 96) -> int:
    """``images`` toy crops through c2s's teacher stage (TeacherActor with map_batches_kwargs from teacher.*),
    consumed slower than nothing but faster than the teacher: returns the rows that came out."""
    import ray.data

    from c2s.teacher.tokens import TeacherActor, map_batches_kwargs

    cfg = load_config("toy_c2s", [*SLOW, f"teacher.actors={actors}"])
    rng = np.random.default_rng(0)
    label = np.full((32, 32), 255, dtype=np.int64)
    label[:16] = 0
    items = [{"image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "label": label} for _ in range(images)]
    ds = ray.data.from_items(items, override_num_blocks=images // 2).map_batches(
        TeacherActor, **map_batches_kwargs(cfg, 4, calls_dir))
    rows = 0
    for batch in ds.iter_batches(batch_size=4, batch_format="numpy"):
        rows += len(batch["global"])
        time.sleep(0.2)  # a training step: much faster than a 1.5 s teacher call per 2 images
    return rows


@pytest.mark.integration
@pytest.mark.slow
def test_pool_grows_from_min_under_a_slow_teacher(ray_local, tmp_path):
    """teacher.actors=[1,3] with a slow teacher: Ray Data's autoscaler adds actors (more than one ran CLIP,
    never more than three) and every batch ran exactly once; the same stream with [1,1] keeps one actor.

    96 images, 1.5 s per call of 2: one actor alone needs 72 s, time enough for a second actor to start (an
    actor's start-up, CLIP included, took 20-40 s on the loaded 2-core machine; with 32 images the second
    actor once arrived after the last batch, and 64 passed once). 0.1 CPU per actor keeps Ray Data's per-operator
    budget (a share of the 2 CPUs) from capping the pool at one."""
    assert _stream_through_pool("[1,3]", tmp_path / "grow") == 96
    grown = read_actor_batches(tmp_path / "grow")
    assert 2 <= len(grown) <= 3, grown
    assert sum(grown.values()) == 48  # 96 images in calls of 2: none twice, none lost
    assert read_actor_devices(tmp_path / "grow") == ["cpu (float32)"]
    assert _stream_through_pool("[1,1]", tmp_path / "fixed", images=8) == 8
    assert len(read_actor_batches(tmp_path / "fixed")) == 1
