"""The streaming data side of a training job: readers -> seen-only labels -> CLIP actor pool.

Only wires Ray Data operators; the math lives in c2s.data and c2s.teacher.

On the live path the training dataset is ONE finite stream over every epoch the run needs
(:func:`stream_span`): the pipeline and the CLIP actor pool keep working through epoch boundaries, and the
teacher encodes exactly the images training consumes (no epoch tail computed and thrown away). Row ``p``
of the stream is file ``p % n`` of epoch ``p // n`` with the augmentation of seed ``train.seed + p // n``
(c2s.data.readers.build_dataset). :class:`TrainDatasetFactory` builds it each time Ray Train starts the
worker group, from the step Ray Train restores, so a resumed or restarted run reads the rows it has not
trained on yet. The token cache path (``teacher.cache = true``) holds ``teacher.cache_epochs`` epochs and is
read epoch after epoch instead (:func:`repeats_epochs`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from c2s.data.catalog import DatasetInfo
from c2s.data.labels import seen_labels  # noqa: F401  (the stage lives in the data layer; re-exported)


def needs_teacher(cfg: Mapping[str, Any]) -> bool:
    """The baseline (no distillation, no latent embeddings) never needs CLIP tokens."""
    return bool(cfg["distill"]["enabled"] or cfg["latent"]["enabled"])


def repeats_epochs(cfg: Mapping[str, Any]) -> bool:
    """True when the training dataset is read epoch after epoch (the token cache: a fixed number of cached
    epochs), False when it is one finite stream covering the whole run (:func:`stream_span`)."""
    return bool(needs_teacher(cfg) and cfg["teacher"].get("cache"))


def starts_teacher_pool(cfg: Mapping[str, Any]) -> bool:
    """True when the run starts the CLIP actor pool: the method needs the teacher and reads no token cache
    (what a job or a sweep trial reserves teacher actors for)."""
    return needs_teacher(cfg) and not cfg["teacher"].get("cache")


def per_worker_batch(batch_size: int, workers: int) -> int:
    """Images per worker per step: ``train.batch_size`` split over the workers (at least 1)."""
    return max(1, int(batch_size) // int(workers))


def stream_span(iters: int, batch_size: int, workers: int, n_items: int, *, start_step: int = 0,
                skip_margin: bool = False) -> tuple[int, int]:
    """Rows ``(start, stop)`` of the epoch-major training stream for a run resumed at ``start_step``.

    Every step consumes ``per_worker_batch * workers`` rows (Ray Train splits the stream into equal shares,
    ``streaming_split(equal=True)``), so an uninterrupted run reads rows ``0 .. iters * global_batch`` and
    one resumed at step ``s`` starts at ``s * global_batch``: what every worker had consumed. No margin:
    the teacher encodes exactly what training reads. With ``skip_margin`` (``data.on_bad_sample=skip``,
    where skipped rows shorten the stream) one more epoch of ``n_items`` rows covers up to
    ``n_items / epochs`` bad files per epoch; a resumed run in that mode may repeat the few rows the skips
    shifted.
    """
    if n_items <= 0:
        raise ValueError(f"stream_span: the training split has {n_items} items; expected at least one")
    global_batch = per_worker_batch(batch_size, workers) * int(workers)
    start = int(start_step) * global_batch
    stop = int(iters) * global_batch + (n_items if skip_margin else 0)
    # A run resumed at or past train.iters trains no step; keep one batch so the (unread) dataset is valid.
    return start, max(stop, start + global_batch)


def stream_epochs(iters: int, batch_size: int, workers: int, n_items: int) -> int:
    """How many epochs of ``n_items`` files an uninterrupted run's stream covers (ceil)."""
    return math.ceil(stream_span(iters, batch_size, workers, n_items)[1] / n_items)


def build_train_dataset(cfg: Mapping[str, Any], info: DatasetInfo, root: Path, *,
                        calls_dir: Path | None = None, cache_root: Path | None = None, start_step: int = 0):
    """Ray Dataset of training rows: ``image`` uint8 (H,W,3), ``label`` int64 (H,W) in seen-index space,
    ``row`` int64 (the stream position, live path only), plus, when the method needs the teacher,
    ``global``, ``local``, ``local_ids``, ``local_valid`` and ``pseudo_mask`` from the CLIP actor pool (see
    c2s.teacher.tokens.TeacherActor).

    Live path: one stream of the rows :func:`stream_span` gives for a run resumed at ``start_step``.
    With ``teacher.cache = true`` those rows are read from the token cache under ``cache_root`` (default:
    :func:`c2s.paths.cache_root`) instead; no CLIP actor starts (c2s.teacher.cache; a missing cache is a
    :class:`~c2s.teacher.cache.TokenCacheError` that says how to build it). ``calls_dir``: where the
    teacher actors count their CLIP calls (None: not counted).
    """
    if repeats_epochs(cfg):
        from c2s.paths import cache_root as default_cache_root
        from c2s.teacher.cache import read_token_cache

        return read_token_cache(cfg, root, cache_root if cache_root is not None else default_cache_root(cfg))
    from c2s.data.catalog import list_split
    from c2s.data.readers import build_dataset

    data_cfg, train_cfg = cfg["data"], cfg["train"]
    n_items = len(list_split(info, Path(root), "train").pairs)
    start, stop = stream_span(int(train_cfg["iters"]), int(train_cfg["batch_size"]), int(train_cfg["workers"]),
                              n_items, start_step=start_step,
                              skip_margin=data_cfg.get("on_bad_sample", "error") == "skip")
    ds = build_dataset(data_cfg, root, "train", seed=int(train_cfg["seed"]), start=start, stop=stop, with_row=True)
    ds = ds.map_batches(seen_labels, fn_kwargs={"info": info}, batch_format="numpy",
                        num_cpus=float(data_cfg["num_cpus"]))
    if not needs_teacher(cfg):
        return ds
    from c2s.teacher.tokens import TeacherActor, map_batches_kwargs

    return ds.map_batches(TeacherActor, **map_batches_kwargs(cfg, len(info.seen_ids), calls_dir))


class TrainDatasetFactory:
    """``TorchTrainer(datasets={"train": factory})``: Ray Train V2 calls it on its controller each time it
    starts the worker group (first start, restart after a worker failure, ``--resume``), so the stream starts
    at the step it restores (:func:`c2s.train.snapshot.restored_step`). Ray 2.60: ``GenDataset = Dataset |
    Callable[[], Dataset]`` (ray/train/v2/_internal/data_integration/interfaces.py; called in
    callbacks/datasets.py)."""

    def __init__(self, cfg_dict: dict[str, Any], root: Path, run_dir: Path, *, calls_dir: Path | None = None,
                 cache_root: Path | None = None) -> None:
        self.cfg_dict, self.root, self.run_dir = cfg_dict, Path(root), Path(run_dir)
        self.calls_dir, self.cache_root = calls_dir, cache_root

    def __call__(self, start_step: int | None = None):
        from c2s.config import from_dict
        from c2s.data.catalog import get_dataset_info
        from c2s.train.snapshot import restored_step  # torch (via the checkpoint module) only where it runs

        cfg = from_dict(self.cfg_dict)
        step = restored_step(self.run_dir) if start_step is None else int(start_step)
        return build_train_dataset(cfg, get_dataset_info(str(cfg.data.dataset)), self.root,
                                   calls_dir=self.calls_dir, cache_root=self.cache_root, start_step=step)
