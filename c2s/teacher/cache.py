"""The shared teacher token cache: CLIP's outputs for a fixed number of augmented epochs, as Parquet.

τ, α, β, the bank size and the student do not change what CLIP computes, so every run (and every sweep
trial) that shares the dataset, the data pipeline, the teacher, latent-class mining and the augmentation
seed can read the same tokens instead of running the CLIP actor pool again::

    c2s tokens toy_c2s teacher.cache_epochs=2          # materialise once (jobs/tokens.py for ray job submit)
    c2s train toy_c2s teacher.cache=true loss.tau=0.05  # reads the cache; no CLIP actor is started

Layout (version 2): ``<cache_root>/tokens/<key>/`` holds ``manifest.json`` (key inputs, rows, CLIP calls,
the source listing's fingerprint) and ``data/*.parquet`` (zstd) with the columns of :data:`STORED_COLUMNS`:
no pixels. A row stores what the augmentation needs to run again, ``(epoch, item)`` (the readers key a row's
generator by ``(train.seed + epoch, item)``: c2s.data.readers.augment), and the teacher's outputs: tokens in
fp16, region ids int16, and the pseudo mask's latent part as uint8 (the seen part IS the replayed label, so
it is not stored twice). Reading (:func:`read_token_cache`) decodes the source image and mask again and
replays the augmentation (:func:`replay_batch`), bit for bit the pixels and mask the teacher saw, and
gives the columns of :data:`TOKEN_COLUMNS` in the live path's dtypes. Version 1 stored the augmented
pixels (39 KB of a toy world's 40 KB per row; about 0.8 MB at 512x512); it is refused, never misread.
Epoch ``e`` is the training
pipeline run with reader seed ``train.seed + e`` (so several cached epochs are several different
augmentations, and cached epoch ``e`` holds the images and labels of the live stream's epoch ``e``:
c2s.data.readers.build_dataset). The folder is written under a temporary name and renamed into place when complete
(:func:`c2s.paths.atomic_path`): a crashed build leaves no cache behind.

The key (:func:`cache_key`) hashes exactly what changes the tokens: dataset name, the resolved data root,
the data pipeline config (minus ``num_cpus``), the teacher config minus its pool/resource keys
(:data:`POOL_KEYS`; ``precision=auto`` is resolved to what the pool's device would use), a fingerprint of
the teacher checkpoint file, the mining config (``mining.edges`` only when it is not ``"tokens"``, so caches
built before that key keep their keys), the seen split, ``train.seed`` and ``teacher.cache_epochs``.

On a multi-node cluster the cache root must be storage every node reads (a shared filesystem).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

CACHE_VERSION = 2
# what training reads (the live path's columns and dtypes)
TOKEN_COLUMNS = ("image", "label", "global", "local", "local_ids", "local_valid", "pseudo_mask")
# what the Parquet files hold (version 2), and the dtype each is stored in
STORED_DTYPES = {"epoch": np.int32, "item": np.int32, "global": np.float16, "local": np.float16,
                 "local_ids": np.int16, "local_valid": np.bool_, "latent_mask": np.uint8}
STORED_COLUMNS = tuple(STORED_DTYPES)
PARQUET_COMPRESSION = "zstd"
# teacher.* keys that choose how many actors run where, not what they compute
POOL_KEYS = ("actors", "num_gpus", "num_cpus", "batch_size", "cache", "cache_epochs", "torch_threads",
             "simulate_delay_s")
DATA_RESOURCE_KEYS = ("num_cpus", "root")
MANIFEST = "manifest.json"


class TokenCacheError(FileNotFoundError):
    """The token cache a run asks for is missing or unreadable; the message says how to build it."""


def _plain(value: Any) -> Any:
    """Config values -> JSON-stable plain values (tuples become lists, mappings sorted by key)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _checkpoint_fingerprint(checkpoint: str | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    p = Path(checkpoint)
    if not p.is_file():
        raise TokenCacheError(f"teacher.checkpoint = {checkpoint!r} does not exist; the token cache key "
                              "fingerprints the weights file (resolve the config's inputs first)")
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_key_inputs(cfg: Mapping[str, Any], data_root: str | os.PathLike, *,
                     version: int = CACHE_VERSION) -> dict[str, Any]:
    """Everything the cached tokens depend on (see the module docstring), as a JSON-able dict.

    ``cfg`` must have ``teacher.checkpoint`` resolved (:func:`c2s.train.resolve.resolve_inputs`).
    """
    from c2s.data.catalog import get_dataset_info

    data, teacher = cfg["data"], cfg["teacher"]
    info = get_dataset_info(str(data["dataset"]))
    teacher_part = {k: v for k, v in teacher.items() if k not in POOL_KEYS and k != "checkpoint"}
    if teacher_part.get("precision") == "auto":
        teacher_part["precision"] = "fp16" if float(teacher["num_gpus"]) > 0 else "fp32"
    return _plain({
        "version": int(version),
        "dataset": data["dataset"],
        "data_root": str(Path(data_root).resolve()),
        "data": {k: v for k, v in data.items() if k not in DATA_RESOURCE_KEYS},
        "teacher": teacher_part,
        "teacher_checkpoint": _checkpoint_fingerprint(teacher.get("checkpoint")),
        "mining": _mining_part(cfg["mining"]),
        "seen_classes": list(info.seen_classes),
        "train_seed": int(cfg["train"]["seed"]),
        "cache_epochs": int(teacher["cache_epochs"]),
    })


def _mining_part(mining: Mapping[str, Any]) -> dict[str, Any]:
    """The mining section as hashed: ``edges`` only when it is not ``"tokens"``, the value every cache built
    before the key existed was mined with, so those caches keep their keys."""
    part = dict(mining)
    if part.get("edges", "tokens") == "tokens":
        part.pop("edges", None)
    return part


def cache_key(cfg: Mapping[str, Any], data_root: str | os.PathLike, *, version: int = CACHE_VERSION) -> str:
    """A 20-hex-digit hash of :func:`cache_key_inputs` (the format version is one of the inputs, so a new
    format never lands in an old cache's folder)."""
    blob = json.dumps(cache_key_inputs(cfg, data_root, version=version), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cache_dir(cfg: Mapping[str, Any], data_root: str | os.PathLike, root: str | os.PathLike, *,
              version: int = CACHE_VERSION) -> Path:
    """``<root>/tokens/<key>`` (``root`` is the cache root); ``version`` < :data:`CACHE_VERSION` gives where an
    older c2s kept the same config's cache (to refuse it by name)."""
    return Path(root) / "tokens" / cache_key(cfg, data_root, version=version)


def old_cache_dirs(cfg: Mapping[str, Any], data_root: str | os.PathLike, root: str | os.PathLike) -> list[Path]:
    """Existing cache folders an older c2s built for this config (older format versions)."""
    return [d for v in range(1, CACHE_VERSION) if (d := cache_dir(cfg, data_root, root, version=v)).is_dir()]


def source_fingerprint(info: Any, data_root: str | os.PathLike) -> dict[str, Any]:
    """The training split's file list as the readers see it: the count and a hash of every pair's paths
    (relative to the data root) and byte sizes. The cache stores item indices into this list, so a folder
    whose files were added, removed or replaced since the build would replay other pixels: refused."""
    from c2s.data.catalog import list_split

    root = Path(data_root)
    digest = hashlib.sha256()
    pairs = list_split(info, root, "train").pairs
    for image_path, label_path in pairs:
        for f in (Path(image_path), Path(label_path)):
            rel = os.path.relpath(f, root)
            digest.update(f"{rel}\0{f.stat().st_size}\n".encode())
    return {"items": len(pairs), "sha256": digest.hexdigest()}


def read_manifest(path: str | os.PathLike) -> dict[str, Any] | None:
    """The cache folder's manifest, or None when the folder holds no complete cache."""
    p = Path(path) / MANIFEST
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise TokenCacheError(f"{p}: not valid JSON ({err}); delete {Path(path)} and rebuild with `c2s tokens`") \
            from err
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        raise TokenCacheError(old_version_message(Path(path), data.get("version") if isinstance(data, dict) else "?"))
    return data


def old_version_message(folder: Path, version: Any) -> str:
    return (f"token cache {folder} is format version {version}; this c2s reads version {CACHE_VERSION} (version 2 "
            "stores the augmentation's seed and replays the pixels instead of storing them). Rebuild it with "
            "`c2s tokens CONFIG <the same overrides>` (it goes to a new folder), then delete "
            f"{folder}")


def _epoch_fn(batch: dict[str, np.ndarray], info: Any, epoch: int) -> dict[str, np.ndarray]:
    from c2s.data.labels import seen_labels

    batch = seen_labels(batch, info)
    batch["epoch"] = np.full(len(batch["label"]), epoch, dtype=np.int64)
    # a one-epoch dataset: the stream position is the file index the readers keyed the augmentation by
    batch["item"] = batch.pop("row")
    return batch


def to_storage(batch: dict[str, np.ndarray], ignore_index: int) -> dict[str, np.ndarray]:
    """``map_batches`` stage after the teacher: the row as stored (:data:`STORED_DTYPES`), pixels dropped.

    The pseudo mask keeps every seen label (c2s.teacher.mining), so only its latent part is stored, with
    ``ignore_index`` on seen pixels; :func:`replay_batch` puts the replayed labels back. Checked here, not
    assumed: a mask that breaks the rule, ids uint8 cannot hold, or tokens fp16 cannot hold are errors.
    """
    label, pseudo = np.asarray(batch["label"]), np.asarray(batch["pseudo_mask"])
    seen = label != ignore_index
    if not np.array_equal(pseudo[seen], label[seen]):
        raise ValueError("token cache: the teacher's pseudo_mask differs from the seen label on seen pixels; "
                         "the cache stores only its latent part and cannot hold this mask")
    latent = np.where(seen, ignore_index, pseudo)
    if latent.min(initial=0) < 0 or latent.max(initial=0) > 255:
        raise ValueError(f"token cache: pseudo_mask ids span {latent.min()}..{latent.max()}; uint8 storage holds "
                         "0..255 (mining.k_max + seen classes must stay below teacher.ignore_index)")
    out = {"epoch": batch["epoch"], "item": batch["item"], "global": batch["global"], "local": batch["local"],
           "local_ids": batch["local_ids"], "local_valid": batch["local_valid"], "latent_mask": latent}
    with np.errstate(over="ignore"):  # an fp16 overflow becomes inf, refused just below
        out = {k: np.asarray(v).astype(STORED_DTYPES[k]) for k, v in out.items()}
    for k in ("global", "local"):
        if not np.isfinite(out[k]).all():
            raise ValueError(f"token cache: teacher {k!r} tokens overflow fp16 (max |x| "
                             f"{np.abs(np.asarray(batch[k])).max():.4g}); expected L2-normalised tokens")
    return out


def replay_batch(batch: Mapping[str, np.ndarray], info: Any, data_cfg: Mapping[str, Any],
                 pairs: list[tuple[str, str]], seed: int, ignore_index: int) -> dict[str, np.ndarray]:
    """``map_batches`` stage reading the cache: stored rows -> the training rows the teacher saw
    (:data:`TOKEN_COLUMNS`, the live path's dtypes). Image and label come from the source files again
    through the readers' own decode and augmentation (c2s.data.readers.replay_sample, reader seed
    ``seed + epoch``), then the seen-label rule; the pseudo mask is the replayed label plus the stored
    latent part."""
    from c2s.data.labels import seen_labels
    from c2s.data.readers import replay_sample

    images, labels = [], []
    for epoch, item in zip(np.asarray(batch["epoch"]), np.asarray(batch["item"])):
        image, label = replay_sample(info, data_cfg, pairs, seed, int(epoch), int(item))
        images.append(image)
        labels.append(label)
    label = seen_labels({"label": np.stack(labels)}, info)["label"]
    latent = np.asarray(batch["latent_mask"]).astype(np.int64)
    return {
        "image": np.stack(images), "label": label,
        "global": np.asarray(batch["global"]).astype(np.float32),
        "local": np.asarray(batch["local"]).astype(np.float32),
        "local_ids": np.asarray(batch["local_ids"]).astype(np.int64),
        "local_valid": np.asarray(batch["local_valid"]).astype(bool),
        "pseudo_mask": np.where(label != ignore_index, label, latent),
    }


def build_token_cache(cfg: Any, data_root: str | os.PathLike, root: str | os.PathLike, *,
                      force: bool = False, log: bool = True, progress_s: float = 30.0
                      ) -> tuple[Path, dict[str, Any]]:
    """Materialise the cache for ``cfg`` (inputs resolved) unless it exists; returns (folder, manifest).

    Runs the training pipeline's readers and the CLIP actor pool (teacher.* sizes it) on Ray for
    ``teacher.cache_epochs`` epochs and writes every row's tokens. ``manifest["teacher_calls"]`` counts the
    batches / images CLIP processed; ``manifest["built"]`` is True when this call built it. With ``log``, a
    line every ``progress_s`` seconds says how many of the images CLIP has encoded (:class:`CallProgress`).
    """

    from c2s.data.catalog import get_dataset_info
    from c2s.data.readers import build_dataset
    from c2s.paths import atomic_path
    from c2s.teacher.calls import CallProgress
    from c2s.teacher.tokens import TeacherActor, map_batches_kwargs, read_call_counts
    from c2s.train.cluster import cluster_from_ray
    from c2s.train.placement import job_bundles
    from c2s.train.resolve import check_placement, job_parts

    final = cache_dir(cfg, data_root, root)
    existing = read_manifest(final)
    if existing is not None and not force:
        return final, {**existing, "built": False}
    epochs = int(cfg.teacher.cache_epochs)
    if epochs < 1:
        raise ValueError(f"teacher.cache_epochs must be >= 1, got {epochs}")
    info = get_dataset_info(str(cfg.data.dataset))
    # The pool and the data tasks, placed per node (the cache build runs no training workers).
    parts = {k: v for k, v in job_parts(cfg, with_teacher=True).items() if k != "train worker"}
    check_placement(job_bundles(parts), cluster_from_ray(), what="the token cache build")
    started = time.perf_counter()
    seed = int(cfg.train.seed)
    source = source_fingerprint(info, data_root)
    if log:
        print(f"[c2s] token cache {final.name}: running the teacher ({cfg.teacher.arch}) over {epochs} epoch(s) of "
              f"{info.name} train (seeds {seed}..{seed + epochs - 1}) -> {final}", flush=True)
    with atomic_path(final) as tmp:
        tmp.mkdir()
        parts = []
        for epoch in range(epochs):
            ds = build_dataset(cfg.data, Path(data_root), "train", seed=seed + epoch, with_row=True)
            parts.append(ds.map_batches(_epoch_fn, fn_kwargs={"info": info, "epoch": epoch}, batch_format="numpy",
                                        num_cpus=float(cfg.data.num_cpus)))
        ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
        ds = ds.map_batches(TeacherActor, **map_batches_kwargs(cfg, len(info.seen_ids), tmp / "teacher_calls"))
        ds = ds.map_batches(to_storage, fn_kwargs={"ignore_index": int(cfg.teacher.ignore_index)},
                            batch_format="numpy", num_cpus=float(cfg.data.num_cpus))
        with (CallProgress(tmp / "teacher_calls", epochs * int(source["items"]), f"[c2s] token cache {final.name}",
                           progress_s) if log else contextlib.nullcontext()):
            ds.write_parquet(str(tmp / "data"), compression=PARQUET_COMPRESSION,
                             ray_remote_args={"num_cpus": float(cfg.data.num_cpus)})
        rows_per_epoch = _rows_per_epoch(tmp / "data")
        manifest = {
            "version": CACHE_VERSION, "key": final.name, "inputs": cache_key_inputs(cfg, data_root),
            "epochs": epochs, "rows": int(sum(rows_per_epoch.values())),
            "rows_per_epoch": {str(k): v for k, v in sorted(rows_per_epoch.items())},
            "source": source,
            "teacher_calls": read_call_counts(tmp / "teacher_calls"),
            "wall_s": round(time.perf_counter() - started, 3), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        if manifest["rows"] == 0:
            raise TokenCacheError(f"token cache {final}: the pipeline produced no rows (data.root = {data_root})")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    if log:
        calls = manifest["teacher_calls"]
        print(f"[c2s] token cache {final.name}: {manifest['rows']} rows, CLIP ran on {calls['images']} images "
              f"({calls['batches']} batches) in {manifest['wall_s']:.1f}s", flush=True)
    return final, {**manifest, "built": True}


def _rows_per_epoch(folder: Path) -> dict[int, int]:
    import pyarrow.parquet as pq

    counts: dict[int, int] = {}
    for f in sorted(folder.glob("*.parquet")):
        epochs = pq.read_table(f, columns=["epoch"])["epoch"].to_numpy()
        for e, n in zip(*np.unique(epochs, return_counts=True)):
            counts[int(e)] = counts.get(int(e), 0) + int(n)
    return counts


def read_token_cache(cfg: Mapping[str, Any], data_root: str | os.PathLike, root: str | os.PathLike) -> Any:
    """A Ray Dataset of the cached training rows (:data:`TOKEN_COLUMNS`, all epochs) for ``cfg``.

    Raises :class:`TokenCacheError` telling the user how to build it when it does not exist.
    """
    import ray

    folder, info, pairs = _checked_cache(cfg, data_root, root)
    # The stored columns by select_columns, not read_parquet's deprecated columns= (Ray 2.60: ray/data/read_api.py
    # applies columns= as this very select_columns after the read, and warns).
    ds = ray.data.read_parquet(str(folder / "data"), num_cpus=float(cfg["data"]["num_cpus"]))
    ds = ds.select_columns(list(STORED_COLUMNS))
    return ds.map_batches(replay_batch, batch_format="numpy", num_cpus=float(cfg["data"]["num_cpus"]),
                          fn_kwargs={"info": info, "data_cfg": dict(cfg["data"]), "pairs": pairs,
                                     "seed": int(cfg["train"]["seed"]),
                                     "ignore_index": int(cfg["teacher"]["ignore_index"])})


def load_token_cache(cfg: Mapping[str, Any], data_root: str | os.PathLike, root: str | os.PathLike
                     ) -> dict[str, np.ndarray]:
    """Every cached row, replayed, as arrays ``(N, ...)`` of :data:`TOKEN_COLUMNS` plus ``epoch`` and
    ``item``, in file order (no Ray: probes such as tools/offline_c2s.py)."""
    import pyarrow.dataset as pads

    folder, info, pairs = _checked_cache(cfg, data_root, root)
    table = pads.dataset(str(folder / "data")).to_table(columns=list(STORED_COLUMNS))
    stored = {}
    for name in STORED_COLUMNS:
        column = table.column(name).combine_chunks()
        meta = table.schema.field(name).metadata or {}
        if b"ARROW:extension:metadata" in meta:  # Ray's fixed-shape tensor extension: flat values + shape
            shape = json.loads(meta[b"ARROW:extension:metadata"])
            stored[name] = column.values.to_numpy(zero_copy_only=False).reshape(len(table), *shape)
        else:
            stored[name] = column.to_numpy(zero_copy_only=False)
    rows = replay_batch(stored, info, dict(cfg["data"]), pairs, int(cfg["train"]["seed"]),
                        int(cfg["teacher"]["ignore_index"]))
    return {**rows, "epoch": stored["epoch"], "item": stored["item"]}


def _checked_cache(cfg: Mapping[str, Any], data_root: str | os.PathLike, root: str | os.PathLike
                   ) -> tuple[Path, Any, list[tuple[str, str]]]:
    """(folder, dataset info, the training split's pairs) of a complete, current-format cache whose source
    files are the ones it was built from; :class:`TokenCacheError` saying what to do otherwise."""
    from c2s.data.catalog import get_dataset_info, list_split

    folder = cache_dir(cfg, data_root, root)
    if not folder.is_dir():
        old = old_cache_dirs(cfg, data_root, root)
        if old:
            manifest = old[-1] / MANIFEST
            version = json.loads(manifest.read_text()).get("version", "?") if manifest.is_file() else "?"
            raise TokenCacheError(old_version_message(old[-1], version))
    manifest = read_manifest(folder)
    if manifest is None:
        raise TokenCacheError(
            f"teacher.cache = true but there is no token cache for this config at {folder} (key inputs: dataset "
            f"{cfg['data']['dataset']!r}, data root {data_root}, teacher {cfg['teacher']['arch']!r}, mining, "
            f"train.seed {cfg['train']['seed']}, teacher.cache_epochs {cfg['teacher']['cache_epochs']}). Build it "
            "first with `c2s tokens CONFIG <the same overrides>` (or jobs/tokens.py), or set teacher.cache=false")
    info = get_dataset_info(str(cfg["data"]["dataset"]))
    now = source_fingerprint(info, data_root)
    if manifest.get("source") != now:
        raise TokenCacheError(
            f"token cache {folder} was built from {manifest.get('source', {}).get('items')} training pairs under "
            f"{data_root} (listing sha256 {manifest.get('source', {}).get('sha256')}); the folder now lists "
            f"{now['items']} (sha256 {now['sha256']}). The cache replays pixels from those files by index, so "
            "it would read other images: rebuild it with `c2s tokens CONFIG <the same overrides> --force`")
    pairs = [(str(i), str(m)) for i, m in list_split(info, Path(data_root), "train").pairs]
    return folder, info, pairs


def ensure_token_cache(cfg: Any, data_root: str | os.PathLike, root: str | os.PathLike, *,
                       log: bool = True) -> tuple[Path, dict[str, Any]]:
    """The cache folder for ``cfg``, built first when missing (see :func:`build_token_cache`)."""
    return build_token_cache(cfg, data_root, root, log=log)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="c2s tokens", description="Materialise the teacher's tokens for teacher.cache_epochs augmented "
        "epochs to a Parquet cache under <cache_root>/tokens/<key>/ (reused by every run with teacher.cache=true "
        "and the same dataset, data pipeline, teacher, mining and train.seed).")
    parser.add_argument("config", help="config name under c2s/configs or a .py path")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. teacher.cache_epochs=4")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache exists")
    args = parser.parse_args(argv)
    if "=" in args.config:
        parser.error(f"the first argument must be a config name, got the override {args.config!r}")
    return args


def main(argv: list[str]) -> int:
    from c2s.config import load_config
    from c2s.inputs import resolve_inputs
    from c2s.raystart import init_ray

    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    inputs = resolve_inputs(cfg)
    init_ray()
    folder, manifest = build_token_cache(cfg, inputs.data_root, inputs.cache_root, force=args.force)
    if not manifest["built"]:
        print(f"[c2s] token cache {folder.name} exists ({manifest['rows']} rows); --force rebuilds it", flush=True)
    print(json.dumps({"cache_dir": str(folder), "key": folder.name, "built": manifest["built"],
                      "epochs": manifest["epochs"], "rows": manifest["rows"],
                      "teacher_calls": manifest["teacher_calls"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
