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

from collections.abc import Iterator, Mapping
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


def _counter_actor() -> Any:
    """The job-wide bad-sample counter (a named Ray actor, created on first use)."""
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

    return BadSampleCounter.options(name=COUNTER_NAME, namespace=COUNTER_NAMESPACE,
                                    get_if_exists=True).remote()


def _lookup_counter() -> Any | None:
    import ray

    try:
        return ray.get_actor(COUNTER_NAME, namespace=COUNTER_NAMESPACE)
    except ValueError:  # no such actor: nothing was ever skipped in skip mode
        return None


def bad_sample_counts() -> dict[str, int]:
    """``{split: number of skipped samples}`` so far in this Ray cluster's job ({} if none)."""
    import ray

    actor = _lookup_counter()
    return ray.get(actor.get.remote())[0] if actor is not None else {}


def bad_sample_examples() -> list[str]:
    """The first 20 skip messages (each names the image and mask files)."""
    import ray

    actor = _lookup_counter()
    return ray.get(actor.get.remote())[1] if actor is not None else []


class _Loader:
    """Per-row decode + pipeline, run inside Ray Data tasks. Pickled once per task, holds no Ray state."""

    def __init__(self, info: DatasetInfo, data_cfg: Mapping[str, Any], split: str, seed: int,
                 counter: Any | None, with_paths: bool) -> None:
        self.info, self.split, self.seed, self.counter = info, split, seed, counter
        self.with_paths = with_paths
        self.data_cfg = dict(data_cfg)
        self.skip = data_cfg.get("on_bad_sample", "error") == "skip"

    def __call__(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        image_path, label_path = Path(row["image_path"]), Path(row["label_path"])
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
        # Per-row generator keyed by (seed, row index): the same seed gives the same rows whatever the
        # scheduling, block sizes or number of tasks.
        rng = np.random.default_rng((int(self.seed), int(row["index"])))
        if self.split == "train":
            image, label = train_transform(image, label, self.data_cfg, rng)
        else:
            image, label = eval_transform(image, label, self.data_cfg, rng)
        out = {"image": image, "label": label.astype(np.int64)}
        if self.with_paths:
            out.update(index=int(row["index"]), image_path=str(image_path), label_path=str(label_path))
        return [out]


def build_dataset(data_cfg: Mapping[str, Any], root: Path, split: str, *, seed: int = 0,
                  limit: int | None = None, with_paths: bool = False) -> Any:
    """A ``ray.data.Dataset`` of ``{"image", "label"}`` rows for ``split``.

    ``data_cfg`` is the config's ``data`` section (``dataset`` names the catalog entry; ``num_cpus`` is
    what each read/transform task asks Ray for). ``train`` applies the training pipeline (fixed shapes
    ``data.crop_size``), any other split the evaluation pipeline. ``seed`` fixes the augmentation (pass
    a new one per epoch); ``limit`` keeps the first ``limit`` pairs in file order. ``with_paths`` adds
    ``index``, ``image_path`` and ``label_path`` columns (off by default: string columns do not batch
    into tensors).
    """
    import ray

    info = get_dataset_info(str(data_cfg["dataset"]))
    policy = str(data_cfg.get("on_bad_sample", "error"))
    _check_policy(policy)
    listing = list_split(info, Path(root), split)
    pairs = listing.pairs[:limit] if limit is not None else listing.pairs
    if not pairs:
        raise FileNotFoundError(f"{root}: split {split!r} of {info.name} has no image/mask pairs "
                                f"(run `c2s data check {root} --dataset {info.name}`)")
    items = [{"image_path": str(i), "label_path": str(m), "index": k} for k, (i, m) in enumerate(pairs)]
    counter = _counter_actor() if policy == "skip" else None
    loader = _Loader(info, data_cfg, split, seed, counter, with_paths)
    num_cpus = float(data_cfg.get("num_cpus", 0.25))
    # About 32 rows per block, 2..64 blocks: enough tasks for fractional-CPU parallelism and streaming on
    # big folders, few enough that a small (test) dataset does not pay a task start-up per row.
    blocks = max(1, min(len(items), 64, max(2, len(items) // 32)))
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    return ds.flat_map(loader, num_cpus=num_cpus)
