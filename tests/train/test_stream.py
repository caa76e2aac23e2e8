"""The training stream (unit, no Ray): one finite epoch-major stream per run, fresh augmentation per epoch,
epoch e equal to the token cache's epoch e, resume at the right row, and the loop's stream consumer."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from c2s.config import load_config
from c2s.data.catalog import get_dataset_info, list_split
from c2s.data.readers import _Loader, stream_position
from c2s.train.loop import FirstBatchAhead, _batches
from c2s.train.pipeline import repeats_epochs, stream_epochs, stream_span
from c2s.train.snapshot import RAY_CHECKPOINT_SNAPSHOT, restored_step
from c2s.world.generate import generate_world

N = 6  # training images of the test world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    generate_world(dict(images_train=N, images_val=2), root)
    return root


def _loader(world, seed: int, start: int = 0) -> _Loader:
    """The loader exactly as c2s.data.readers.build_dataset builds it for the train split."""
    info = get_dataset_info("toy")
    data = load_config("toy_c2s").data
    return _Loader(info, data, "train", seed, None, False, list_split(info, world, "train").pairs, start, True)


def _row(loader: _Loader, i: int) -> dict:
    (out,) = loader({"id": i})
    return out


def test_stream_position_is_epoch_major():
    assert [stream_position(p, 3) for p in (0, 2, 3, 7)] == [(0, 0), (0, 2), (1, 0), (2, 1)]
    with pytest.raises(ValueError, match="stream position -1 over 3 items"):
        stream_position(-1, 3)
    with pytest.raises(ValueError, match="over 0 items"):
        stream_position(0, 0)


def test_stream_epoch_e_equals_the_one_epoch_dataset_of_seed_plus_e(world):
    # The token cache builds its epoch e as a one-epoch dataset with seed train.seed + e (c2s.teacher.cache).
    stream = _loader(world, seed=5)
    for epoch in (0, 1, 2):
        cache_epoch = _loader(world, seed=5 + epoch)
        for item in range(N):
            live, cached = _row(stream, epoch * N + item), _row(cache_epoch, item)
            assert np.array_equal(live["image"], cached["image"]) and np.array_equal(live["label"], cached["label"])
            assert live["row"] == epoch * N + item


def test_every_epoch_gets_a_fresh_augmentation(world):
    stream = _loader(world, seed=0)
    same = [np.array_equal(_row(stream, item)["image"], _row(stream, N + item)["image"]) for item in range(N)]
    assert not any(same)  # crop position / scale / flip drawn anew for every image in epoch 1


def test_stream_span_exact_rows():
    assert stream_span(300, 16, 1, 2000) == (0, 4800)  # the demo: 2.4 epochs, no epoch tail encoded
    assert stream_epochs(300, 16, 1, 2000) == 3
    assert stream_span(300, 16, 3, 2000) == (0, 4500)  # 5 images per worker per step -> 15 per step
    assert stream_span(300, 16, 2, 2000, start_step=150) == (2400, 4800)
    assert stream_span(300, 16, 1, 2000, skip_margin=True) == (0, 6800)  # one more epoch for skipped files
    assert stream_span(10, 4, 1, 24, start_step=12) == (48, 52)  # resumed past iters: one (unread) batch
    with pytest.raises(ValueError, match="has 0 items"):
        stream_span(10, 4, 1, 0)


def test_resumed_stream_serves_the_rows_an_uninterrupted_run_has_not_trained_on(world):
    iters, batch, workers, seed = 7, 4, 2, 3  # 2 images per worker per step; 28 rows = 4.67 epochs of 6
    full_start, full_stop = stream_span(iters, batch, workers, N)
    uninterrupted = _loader(world, seed, full_start)
    for step in (1, 3, 5):
        start, stop = stream_span(iters, batch, workers, N, start_step=step)
        assert (start, stop) == (step * batch, full_stop)  # rows trained before `step` are skipped, not re-read
        resumed = _loader(world, seed, start)
        for j in range(stop - start):
            a, b = _row(resumed, j), _row(uninterrupted, start + j)
            assert a["row"] == b["row"] == start + j
            assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["label"], b["label"])


def test_restored_step_reads_ray_trains_snapshot(tmp_path):
    assert restored_step(tmp_path) == 0  # fresh run: no snapshot
    snap = tmp_path / RAY_CHECKPOINT_SNAPSHOT
    snap.write_text(json.dumps({"latest_checkpoint_result": None}))
    assert restored_step(tmp_path) == 0
    snap.write_text(json.dumps({"latest_checkpoint_result": {"checkpoint_dir_name": "checkpoint_x",
                                                             "metrics": {"step": 150, "loss": 1.0}}}))
    assert restored_step(tmp_path) == 150
    snap.write_text(json.dumps({"latest_checkpoint_result": {"checkpoint_dir_name": "checkpoint_x", "metrics": {}}}))
    with pytest.raises(ValueError, match="'checkpoint_x'.* no integer 'step' metric"):
        restored_step(tmp_path)
    snap.write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON object"):
        restored_step(tmp_path)


def test_only_the_token_cache_repeats_epochs():
    assert not repeats_epochs(load_config("toy_c2s"))
    assert not repeats_epochs(load_config("toy_baseline", ["teacher.cache=true"]))  # no teacher at all
    assert repeats_epochs(load_config("toy_c2s", ["teacher.cache=true"]))


class _Shard:
    """Stands in for a Ray Train dataset shard: each iter_torch_batches call is one pass."""

    def __init__(self, passes: list[list[int]]):
        self.passes, self.calls = passes, []

    def iter_torch_batches(self, *, batch_size, drop_last, prefetch_batches):
        self.calls.append((batch_size, drop_last, prefetch_batches))
        rows = self.passes[min(len(self.calls) - 1, len(self.passes) - 1)]
        return iter([{"row": torch.tensor([r])} for r in rows])


def test_batches_reads_a_finite_stream_once():
    shard = _Shard([[0, 1, 2]])
    stream = _batches(shard, 1, needed=3, repeat=False, prefetch_batches=3)
    assert [int(next(stream)["row"]) for _ in range(3)] == [0, 1, 2]
    assert shard.calls == [(1, True, 3)]
    with pytest.raises(RuntimeError, match="ended after 3 batches of 1 on this worker, but the run needs 3"):
        next(stream)  # a stream that ends before the run's steps is an error, never a silent second pass


def test_batches_repeats_the_token_cache_and_checks_the_start_row():
    shard = _Shard([[0, 1]])
    stream = _batches(shard, 1, needed=5, repeat=True)
    assert [int(next(stream)["row"]) for _ in range(5)] == [0, 1, 0, 1, 0]
    with pytest.raises(RuntimeError, match="serves row 4 but rows before 8 were already trained on"):
        next(_batches(_Shard([[4, 9]]), 1, needed=2, repeat=False, first_row=8))
    with pytest.raises(RuntimeError, match="yielded no batch of 2"):
        next(_batches(_Shard([[]]), 2, needed=2, repeat=False))


def test_first_batch_is_fetched_from_construction_in_another_thread_and_the_rest_in_order():
    """FirstBatchAhead (the worker builds its model while the pipeline starts): the first item is fetched in a
    thread as soon as it exists, before any ``next``; every item then comes once, in order, in the caller's thread."""
    started, release, threads = threading.Event(), threading.Event(), []

    def source():
        for row in range(4):
            threads.append(threading.current_thread())
            if row == 0:
                started.set()
                release.wait(10)
            yield row

    stream = FirstBatchAhead(source())
    assert started.wait(10)  # fetching began at construction, no next() yet
    release.set()
    assert list(stream) == [0, 1, 2, 3]
    assert threads[0] is not threading.current_thread()
    assert threads[1:] == [threading.current_thread()] * 3


def test_first_batch_error_is_raised_in_the_caller_by_the_first_next():
    """An error fetching the first batch (a bad file, a stream that ended) reaches the training loop unchanged,
    where it would have without the thread: at the first ``next``, and only once."""
    stream = FirstBatchAhead(_batches(_Shard([[]]), 2, needed=2, repeat=False))
    with pytest.raises(RuntimeError, match="yielded no batch of 2"):
        next(stream)
    with pytest.raises(StopIteration):  # the generator is finished: no second copy of the error
        next(stream)
    resumed = FirstBatchAhead(_batches(_Shard([[4, 9]]), 1, needed=2, repeat=False, first_row=8))
    with pytest.raises(RuntimeError, match="serves row 4 but rows before 8 were already trained on"):
        next(resumed)


def test_positions_source_covers_every_row_once_in_order():
    from c2s.data.positions import Positions

    tasks = Positions(10).get_read_tasks(3)
    rows = [[int(v) for block in task() for v in block.column("id").to_numpy()] for task in tasks]
    assert rows == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    assert [t.metadata.num_rows for t in tasks] == [3, 3, 4]
    assert len(Positions(2).get_read_tasks(8)) == 2  # never an empty read task
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        Positions(0)
