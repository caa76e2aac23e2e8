"""The shared teacher token cache: CLIP's outputs for a fixed number of augmented epochs, as Parquet.

τ, α, β, the bank size and the student do not change what CLIP computes, so every run (and every sweep
trial) that shares the dataset, the data pipeline, the teacher, latent-class mining and the augmentation
seed can read the same tokens instead of running the CLIP actor pool again::

    c2s tokens toy_c2s teacher.cache_epochs=2          # materialise once (jobs/tokens.py for ray job submit)
    c2s train toy_c2s teacher.cache=true loss.tau=0.05  # reads the cache; no CLIP actor is started

Layout: ``<cache_root>/tokens/<key>/`` holds ``manifest.json`` (key inputs, rows, CLIP calls) and
``data/*.parquet`` with the columns of :data:`TOKEN_COLUMNS` plus ``epoch``. Epoch ``e`` is the training
pipeline run with reader seed ``train.seed + e`` (so several cached epochs are several different
augmentations, and cached epoch ``e`` holds the images and labels of the live stream's epoch ``e``:
c2s.data.readers.build_dataset). The folder is written under a temporary name and renamed into place when complete
(:func:`c2s.paths.atomic_path`): a crashed build leaves no cache behind.

The key (:func:`cache_key`) hashes exactly what changes the tokens: dataset name, the resolved data root,
the data pipeline config (minus ``num_cpus``), the teacher config minus its pool/resource keys
(:data:`POOL_KEYS`; ``precision=auto`` is resolved to what the pool's device would use), a fingerprint of
the teacher checkpoint file, the mining config, the seen split, ``train.seed`` and ``teacher.cache_epochs``.

On a multi-node cluster the cache root must be storage every node reads (a shared filesystem).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

CACHE_VERSION = 1
TOKEN_COLUMNS = ("image", "label", "global", "local", "local_ids", "local_valid", "pseudo_mask")
# teacher.* keys that choose how many actors run where, not what they compute
POOL_KEYS = ("actors", "num_gpus", "num_cpus", "batch_size", "cache", "cache_epochs", "torch_threads")
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


def cache_key_inputs(cfg: Mapping[str, Any], data_root: str | os.PathLike) -> dict[str, Any]:
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
        "version": CACHE_VERSION,
        "dataset": data["dataset"],
        "data_root": str(Path(data_root).resolve()),
        "data": {k: v for k, v in data.items() if k not in DATA_RESOURCE_KEYS},
        "teacher": teacher_part,
        "teacher_checkpoint": _checkpoint_fingerprint(teacher.get("checkpoint")),
        "mining": dict(cfg["mining"]),
        "seen_classes": list(info.seen_classes),
        "train_seed": int(cfg["train"]["seed"]),
        "cache_epochs": int(teacher["cache_epochs"]),
    })


def cache_key(cfg: Mapping[str, Any], data_root: str | os.PathLike) -> str:
    """A 20-hex-digit hash of :func:`cache_key_inputs`."""
    blob = json.dumps(cache_key_inputs(cfg, data_root), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cache_dir(cfg: Mapping[str, Any], data_root: str | os.PathLike, root: str | os.PathLike) -> Path:
    """``<root>/tokens/<key>`` (``root`` is the cache root)."""
    return Path(root) / "tokens" / cache_key(cfg, data_root)


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
        raise TokenCacheError(f"{p}: cache version {data.get('version') if isinstance(data, dict) else '?'}, this "
                              f"c2s reads version {CACHE_VERSION}; delete {Path(path)} and rebuild with `c2s tokens`")
    return data


def _epoch_fn(batch: dict[str, np.ndarray], info: Any, epoch: int) -> dict[str, np.ndarray]:
    from c2s.data.labels import seen_labels

    batch = seen_labels(batch, info)
    batch["epoch"] = np.full(len(batch["label"]), epoch, dtype=np.int64)
    return batch


def build_token_cache(cfg: Any, data_root: str | os.PathLike, root: str | os.PathLike, *,
                      force: bool = False, log: bool = True) -> tuple[Path, dict[str, Any]]:
    """Materialise the cache for ``cfg`` (inputs resolved) unless it exists; returns (folder, manifest).

    Runs the training pipeline's readers and the CLIP actor pool (teacher.* sizes it) on Ray for
    ``teacher.cache_epochs`` epochs and writes every row's tokens. ``manifest["teacher_calls"]`` counts the
    batches / images CLIP processed; ``manifest["built"]`` is True when this call built it.
    """

    from c2s.data.catalog import get_dataset_info
    from c2s.data.readers import build_dataset
    from c2s.paths import atomic_path
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
    if log:
        print(f"[c2s] token cache {final.name}: running the teacher ({cfg.teacher.arch}) over {epochs} epoch(s) of "
              f"{info.name} train (seeds {seed}..{seed + epochs - 1}) -> {final}", flush=True)
    with atomic_path(final) as tmp:
        tmp.mkdir()
        parts = []
        for epoch in range(epochs):
            ds = build_dataset(cfg.data, Path(data_root), "train", seed=seed + epoch)
            parts.append(ds.map_batches(_epoch_fn, fn_kwargs={"info": info, "epoch": epoch}, batch_format="numpy",
                                        num_cpus=float(cfg.data.num_cpus)))
        ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
        ds = ds.map_batches(TeacherActor, **map_batches_kwargs(cfg, len(info.seen_ids), tmp / "teacher_calls"))
        ds.write_parquet(str(tmp / "data"), ray_remote_args={"num_cpus": float(cfg.data.num_cpus)})
        rows_per_epoch = _rows_per_epoch(tmp / "data")
        manifest = {
            "version": CACHE_VERSION, "key": final.name, "inputs": cache_key_inputs(cfg, data_root),
            "epochs": epochs, "rows": int(sum(rows_per_epoch.values())),
            "rows_per_epoch": {str(k): v for k, v in sorted(rows_per_epoch.items())},
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

    folder = cache_dir(cfg, data_root, root)
    if read_manifest(folder) is None:
        raise TokenCacheError(
            f"teacher.cache = true but there is no token cache for this config at {folder} (key inputs: dataset "
            f"{cfg['data']['dataset']!r}, data root {data_root}, teacher {cfg['teacher']['arch']!r}, mining, "
            f"train.seed {cfg['train']['seed']}, teacher.cache_epochs {cfg['teacher']['cache_epochs']}). Build it "
            "first with `c2s tokens CONFIG <the same overrides>` (or jobs/tokens.py), or set teacher.cache=false")
    return ray.data.read_parquet(str(folder / "data"), columns=list(TOKEN_COLUMNS),
                                 num_cpus=float(cfg["data"]["num_cpus"]))


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
    from c2s.raystart import init_ray
    from c2s.train.resolve import resolve_inputs

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
