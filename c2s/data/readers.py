"""Readers: decoded, paired ``{image, label}`` rows from a catalog entry and a root folder.

- :func:`iter_samples` - plain Python iterator, no Ray (evaluation, tests, ``c2s data check``);
- :func:`build_dataset` - a Ray Data dataset with the training or evaluation pipeline applied per row.

Rows: ``image`` uint8 (H, W, 3), ``label`` int64 (H, W) in CLASS id space (``info.map_raw`` applied; 255 =
ignore). Unseen classes are still present here: the training path applies ``info.to_train_labels``.

Bad samples (an unreadable image or mask, a mask whose size differs from its image, mask ids outside the
catalog) raise :class:`BadSampleError` naming both files. With ``data.on_bad_sample = "skip"`` the
dataset drops them instead and counts them in a named Ray actor; read the counts with
:func:`bad_sample_counts` (``{split: n}``) and :func:`bad_sample_examples` (the first file names and
reasons), and log them with the job's metrics. Never silent: every skip is counted and the first 20 kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from c2s.data.catalog import DatasetInfo, get_dataset_info, list_split
from c2s.data.transforms import eval_transform, train_transform

COUNTER_NAME = "c2s_bad_samples"
COUNTER_NAMESPACE = "c2s"


class BadSampleError(ValueError):
    """A sample that cannot be used; the message names the image and the mask file.

    ``kind`` says what is wrong (``image`` / ``mask``: cannot decode; ``size``: mask and image differ;
    ``ids``: mask ids outside the catalog, listed in ``ids``); ``path`` is the culprit file.
    """

    def __init__(self, message: str, *, kind: str = "", path: str | Path = "", ids: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        # Plain attributes: BaseException pickles __dict__, so they survive a trip through Ray.
        self.kind, self.path, self.ids = kind, str(path), tuple(ids)


# What PIL raises on a broken file: OSError (truncated, unidentified), SyntaxError (broken PNG chunks),
# EOFError, ValueError, and DecompressionBombError (not an OSError) for absurd sizes.
DECODE_ERRORS = (OSError, SyntaxError, EOFError, ValueError, Image.DecompressionBombError)


def decode_pair(info: DatasetInfo, image_path: Path, label_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pair with PIL: image uint8 (H, W, 3), label int64 (H, W) in class ids.

    Raises :class:`BadSampleError` (naming both files) on unreadable files, size mismatch or bad ids.
    """
    try:
        with Image.open(image_path) as im:
            image = np.asarray(im.convert("RGB"))  # decodes every byte: a truncated file fails here
    except DECODE_ERRORS as err:
        raise BadSampleError(f"cannot decode image {image_path} (mask {label_path}): {err}",
                             kind="image", path=image_path) from err
    try:
        with Image.open(label_path) as lm:
            # Palette PNGs (VOC) hold class ids as palette indices: read the indices, never convert to RGB.
            raw = np.asarray(lm if lm.mode in ("L", "P", "I", "I;16") else lm.convert("L"))
    except DECODE_ERRORS as err:
        raise BadSampleError(f"cannot decode mask {label_path} (image {image_path}): {err}",
                             kind="mask", path=label_path) from err
    if raw.ndim != 2:
        raise BadSampleError(f"mask {label_path} has shape {raw.shape}; expected one channel (image {image_path})",
                             kind="mask", path=label_path)
    if raw.shape != image.shape[:2]:
        raise BadSampleError(f"mask {label_path} is {raw.shape[1]}x{raw.shape[0]} but image {image_path} is "
                             f"{image.shape[1]}x{image.shape[0]} (W x H); they must match",
                             kind="size", path=label_path)
    try:
        label = info.map_raw(raw)
    except ValueError as err:
        raise BadSampleError(f"mask {label_path} (image {image_path}): {err}", kind="ids", path=label_path,
                             ids=tuple(int(i) for i in info.invalid_raw_ids(raw))) from err
    return image, label.astype(np.int64)


def iter_samples(info: DatasetInfo | str, root: Path, split: str, *, on_bad_sample: str = "error",
                 stats: dict[str, Any] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, Path, Path]]:
    """Yield ``(image, label, image_path, label_path)`` for every pair of ``split``, in file order.

    Labels are in class ids. ``on_bad_sample="skip"`` skips bad pairs and, when a ``stats`` dict is given,
    counts them in ``stats["skipped"]`` and keeps the first 20 messages in ``stats["skipped_examples"]``.
    """
    info = get_dataset_info(info) if isinstance(info, str) else info
    _check_policy(on_bad_sample)
    listing = list_split(info, Path(root), split)
    for image_path, label_path in listing.pairs:
        try:
            image, label = decode_pair(info, image_path, label_path)
        except BadSampleError as err:
            if on_bad_sample == "error":
                raise
            if stats is not None:
                stats["skipped"] = stats.get("skipped", 0) + 1
                stats.setdefault("skipped_examples", [])
                if len(stats["skipped_examples"]) < 20:
                    stats["skipped_examples"].append(str(err))
            continue
        yield image, label, image_path, label_path


def _check_policy(policy: str) -> None:
    if policy not in ("error", "skip"):
        raise ValueError(f"data.on_bad_sample must be 'error' or 'skip', got {policy!r}")


def counter_name() -> str:
    """The bad-sample counter's actor name: one per Ray job, so each ``c2s train`` (or ``ray job submit``)
    counts its own skips, and the driver, Ray Train's controller (which builds the training dataset again
    on a restart), the data tasks and the training workers of one job all find the same actor."""
    import ray

    return f"{COUNTER_NAME}:{ray.get_runtime_context().get_job_id()}"


def _counter_actor() -> Any:
    """The job's bad-sample counter (a named Ray actor, created on first use by whoever builds a dataset
    first: the driver, in a training job)."""
    import ray

    @ray.remote(num_cpus=0)
    class BadSampleCounter:
        def __init__(self) -> None:
            self.counts: dict[str, int] = {}
            self.examples: list[str] = []

        def add(self, split: str, message: str) -> None:
            self.counts[split] = self.counts.get(split, 0) + 1
            if len(self.examples) < 20:
                self.examples.append(message)

        def get(self) -> tuple[dict[str, int], list[str]]:
            return dict(self.counts), list(self.examples)

    return BadSampleCounter.options(name=counter_name(), namespace=COUNTER_NAMESPACE,
                                    get_if_exists=True).remote()


def _lookup_counter() -> Any | None:
    import ray

    try:
        return ray.get_actor(counter_name(), namespace=COUNTER_NAMESPACE)
    except ValueError:  # no such actor: nothing was ever skipped in skip mode
        return None


def bad_sample_counts() -> dict[str, int]:
    """``{split: number of skipped samples}`` so far in this Ray job ({} if none)."""
    import ray

    actor = _lookup_counter()
    return ray.get(actor.get.remote())[0] if actor is not None else {}


def bad_sample_examples() -> list[str]:
    """The first 20 skip messages of this Ray job (each names the image and mask files)."""
    import ray

    actor = _lookup_counter()
    return ray.get(actor.get.remote())[1] if actor is not None else []


_BAD_SAMPLE_LINE = re.compile(r"BadSampleError: (.+)")


def bad_sample_message(err: BaseException) -> str | None:
    """The :class:`BadSampleError` message inside ``err``, or None.

    Ray wraps a failing UDF's error as ``UserCodeException("UDF failed to process a data block.")`` raised
    ``from`` it (ray/data/_internal/planner/plan_udf_map_op.py, ``_try_wrap_udf_exception``); across
    processes that arrives as a ``RayTaskError`` whose ``cause`` is the UserCodeException and whose
    ``traceback_str`` holds the whole chain (ray/exceptions.py); Ray Train's ``WorkerGroupError`` keeps each
    worker's exception in ``worker_failures`` (ray/train/v2/api/exceptions.py) and only a truncated text in
    its message. This walks all of those (``__cause__``, ``__context__``, ``cause``, ``worker_failures``)
    for an instance, then searches their texts for the ``BadSampleError: ...`` line.
    """
    stack: list[Any] = [err]
    seen: set[int] = set()
    texts: list[str] = []
    while stack:
        e = stack.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        inner = getattr(e, "cause", None)
        if isinstance(e, BadSampleError) and not isinstance(inner, BaseException):
            return str(e)  # a plain BadSampleError (a RayTaskError subclassing it has .cause)
        failures = getattr(e, "worker_failures", None)
        stack += list(failures.values()) if isinstance(failures, dict) else []
        stack += [e.__context__, e.__cause__, inner, getattr(e, "_base_exc", None)]
        texts += [str(getattr(e, "traceback_str", "") or ""), str(e)]
    for text in texts:
        match = _BAD_SAMPLE_LINE.search(text)
        if match:
            return match.group(1).strip()
    return None


class _Loader:
    """Per-row decode + pipeline, run inside Ray Data tasks. Pickled once per task, holds no Ray state."""

    def __init__(self, info: DatasetInfo, data_cfg: Mapping[str, Any], split: str, seed: int,
                 counter: Any | None, with_paths: bool, pairs: Sequence[tuple[Any, Any]],
                 start: int = 0, with_row: bool = False) -> None:
        self.info, self.split, self.seed, self.counter = info, split, seed, counter
        self.with_paths, self.with_row = with_paths, with_row
        # The split's file list travels with the loader (Ray Data puts it in the object store once per
        # operator); the stream's rows are only positions (c2s.data.positions), never a row per epoch x file.
        self.pairs, self.start = [(str(i), str(m)) for i, m in pairs], int(start)
        self.data_cfg = dict(data_cfg)
        self.skip = data_cfg.get("on_bad_sample", "error") == "skip"

    def __call__(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        position = self.start + int(row["id"])
        epoch, item = stream_position(position, len(self.pairs))
        image_path, label_path = (Path(p) for p in self.pairs[item])
        try:
            image, label = decode_pair(self.info, image_path, label_path)
        except BadSampleError as err:
            if not self.skip:
                raise
            import ray

            # Blocking on purpose: bad samples are rare, and the count must be complete when the
            # dataset has been consumed (a fire-and-forget call could still be in flight).
            ray.get(self.counter.add.remote(self.split, str(err)))
            return []
        image, label = augment(image, label, self.data_cfg, self.split, int(self.seed) + epoch, item)
        out = {"image": image, "label": label.astype(np.int64)}
        if self.with_paths:
            out.update(index=item, image_path=str(image_path), label_path=str(label_path))
        if self.with_row:
            out["row"] = position
        return [out]


def augment(image: np.ndarray, label: np.ndarray, data_cfg: Mapping[str, Any], split: str, seed: int,
            item: int) -> tuple[np.ndarray, np.ndarray]:
    """A decoded pair through the split's pipeline, with the generator the readers key by ``(seed, item)``.

    ``seed`` is the reader seed of the row's epoch (``train.seed + epoch``), ``item`` its file index. Keyed
    per row: the same rows whatever the scheduling, block sizes or number of tasks, a fresh augmentation
    every epoch, and epoch e of a stream equal to a one-epoch dataset built with seed + e (how the token
    cache builds its epoch e). The token cache stores only ``(epoch, item)`` and calls this again
    (:func:`replay_sample`) to get back, bit for bit, the pixels and mask the teacher saw.
    """
    rng = np.random.default_rng((int(seed), int(item)))
    if split == "train":
        return train_transform(image, label, data_cfg, rng)
    return eval_transform(image, label, data_cfg, rng)


def replay_sample(info: DatasetInfo, data_cfg: Mapping[str, Any], pairs: Sequence[tuple[Any, Any]], seed: int,
                  epoch: int, item: int, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Row ``item`` of epoch ``epoch`` of a dataset built with reader seed ``seed`` (:func:`build_dataset`),
    decoded from its source files again: ``(image uint8 (H, W, 3), label int64 (H, W) in class ids)``,
    equal bit for bit to what the readers produced (same decode, same :func:`augment`)."""
    if not 0 <= int(item) < len(pairs):
        raise IndexError(f"replay: item {item} of split {split!r}, which has {len(pairs)} pairs")
    image_path, label_path = (Path(p) for p in pairs[int(item)])
    image, label = decode_pair(info, image_path, label_path)
    image, label = augment(image, label, data_cfg, split, int(seed) + int(epoch), int(item))
    return image, label.astype(np.int64)


def stream_position(position: int, n_items: int) -> tuple[int, int]:
    """Position ``p`` of a multi-epoch stream over ``n_items`` files -> ``(epoch, item) = (p // n, p % n)``.

    Epoch-major, file order within an epoch: no per-epoch decision depends on anything but ``p`` and ``n``.
    """
    if n_items <= 0 or position < 0:
        raise ValueError(f"stream position {position} over {n_items} items: expected position >= 0 and "
                         "at least one item")
    return position // n_items, position % n_items


def build_dataset(data_cfg: Mapping[str, Any], root: Path, split: str, *, seed: int = 0,
                  limit: int | None = None, with_paths: bool = False, start: int = 0, stop: int | None = None,
                  with_row: bool = False) -> Any:
    """A ``ray.data.Dataset`` of ``{"image", "label"}`` rows for ``split``.

    ``data_cfg`` is the config's ``data`` section (``dataset`` names the catalog entry; ``num_cpus`` is
    what each read/transform task asks Ray for). ``train`` applies the training pipeline (fixed shapes
    ``data.crop_size``), any other split the evaluation pipeline. ``limit`` keeps the first ``limit`` pairs
    in file order (``n`` pairs below). ``with_paths`` adds ``index``, ``image_path`` and ``label_path``
    columns (off by default: string columns do not batch into tensors).

    Rows are positions ``start .. stop - 1`` (default: ``0 .. n - 1``, one epoch) of an epoch-major stream:
    position ``p`` is file ``p % n`` of epoch ``p // n`` (:func:`stream_position`), augmented with the
    generator keyed by ``(seed + p // n, p % n)``. So one dataset can cover every epoch a run needs (one
    pipeline, no restart per epoch), a run resumed at position ``start`` sees the rows an uninterrupted run
    would, and positions ``e*n .. (e+1)*n - 1`` equal the one-epoch dataset built with ``seed + e`` (the
    token cache's epoch ``e``). ``with_row`` adds the position as an int64 ``row`` column.
    """
    import ray

    info = get_dataset_info(str(data_cfg["dataset"]))
    policy = str(data_cfg.get("on_bad_sample", "error"))
    _check_policy(policy)
    listing = list_split(info, Path(root), split)
    pairs = listing.pairs[:limit] if limit is not None else listing.pairs
    if not pairs:
        raise FileNotFoundError(f"{root}: split {split!r} of {info.name} has no image/mask pairs "
                                f"(run `c2s data check {root} --dataset {info.ref}`)")
    stop = len(pairs) if stop is None else int(stop)
    if not 0 <= int(start) < stop:
        raise ValueError(f"build_dataset: rows start={start} .. stop={stop} is empty or negative "
                         f"(split {split!r} has {len(pairs)} pairs per epoch)")
    rows = stop - int(start)
    counter = _counter_actor() if policy == "skip" else None
    loader = _Loader(info, data_cfg, split, seed, counter, with_paths, pairs, int(start), with_row)
    num_cpus = float(data_cfg.get("num_cpus", 0.25))
    # About 32 rows per read/transform task (at least 2 tasks, at most 10,000): enough tasks for
    # fractional-CPU parallelism and streaming, few enough that a small (test) dataset does not pay a task
    # start-up per row and a many-epoch stream over a big folder does not plan millions of tasks.
    blocks = max(1, min(rows, 10_000, max(2, math.ceil(rows / 32))))
    # Not ray.data.range: its read tasks ask for a whole CPU each and then do not fuse with the loader, which
    # can leave a 2-CPU node with training workers and a teacher actor unable to schedule any read.
    from c2s.data.positions import Positions

    positions = ray.data.read_datasource(Positions(rows), override_num_blocks=blocks, num_cpus=num_cpus)
    return positions.flat_map(loader, num_cpus=num_cpus)
