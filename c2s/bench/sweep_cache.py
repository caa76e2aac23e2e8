"""``c2s bench sweep-cache``: a 4-trial toy sweep (loss.tau × 4) without and with the teacher token cache.

τ does not change what CLIP computes, so with ``teacher.cache = true`` the sweep runs CLIP once (to build the
cache, before the trials) instead of once per trial. Both sweeps use the same tiny config: the random-weight
test CLIP, a small toy world, ``--iters`` steps per trial, one local Ray (or the cluster's). The sweep without
the cache runs first (it also generates the toy world and the text embeddings both sweeps then share); the
cache lives in a fresh cache root under the output folder, so its build is counted.

CLIP calls are counted by the teacher actors themselves (images and batches; c2s.teacher.tokens). Prints a
line per trial and a JSON line LAST::

    {"bench": "sweep-cache", "wall_s_without_cache": .., "wall_s_with_cache": .., "teacher_calls_without_cache":
     .., "teacher_calls_with_cache": .., "teacher_calls_ratio": .., "results_without_cache": [..], ...}

``teacher_calls_ratio`` = images CLIP processed with the cache / without (target <= 0.25 for 4 trials).
``--cache-epochs`` defaults to the epochs one trial trains, so the cache holds as many augmented epochs as
one trial consumes (without the cache every trial's epochs re-run CLIP, with the same augmentation seed).
``results_*`` hold each trial's final metrics, last and mean training loss: the two sweeps see the same
rows (same seeds) in a different order, so they agree up to batch-order noise. About 8 trial start-ups
dominate the wall time (~7-12 min on 2 shared CPU cores).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

TAUS = (0.03, 0.05, 0.1, 0.2)
TINY: dict[str, Any] = {
    "teacher.arch": "c2s-test-vit", "teacher.checkpoint": None, "teacher.allow_random": True, "teacher.image_size": 32,
    "teacher.dense_size": 48, "teacher.batch_size": 4, "model.embed_dim": 64,
    "model.pretrained": None,  # random init: the toy backbone's minute of pretraining is not under test "data.num_cpus": 0.25,
    "train.batch_size": 4, "bank.size": 12, "train.log_interval": 1, "optim.warmup_iters": 1,
}
RESOURCES = {"driver_cpus": 0.25, "train_workers": 1, "cpus_per_worker": 0.5, "teacher_actors": [1, 1],
             "teacher_cpus": 0.5}


def bench_spec(name: str, *, cache: bool, iters: int, images: int, cache_epochs: int, cache_root: Path) -> Any:
    """The bench's sweep spec (a validated :class:`~c2s.sweep.spec.SweepSpec`)."""
    from c2s.sweep.spec import parse_spec

    overrides = {**TINY, "data.world.images_train": images, "data.world.images_val": 4, "train.iters": iters,
                 "train.checkpoint_interval": iters, "train.eval_interval": iters, "teacher.cache": cache,
                 "teacher.cache_epochs": cache_epochs, "cache_root": str(cache_root)}
    return parse_spec({"name": name, "base": "toy_c2s", "overrides": overrides,
                       "space": {"loss.tau": {"grid": list(TAUS)}}, "seeds": [0], "metric": "hIoU",
                       "resources": dict(RESOURCES), "max_concurrent": 1, "max_failures": 0})


def _results(sweep_dir: Path) -> list[dict[str, Any]]:
    """Per trial: tau, status, final metrics, the last logged training loss, CLIP calls during training."""
    from c2s.sweep.tables import load_tables
    from c2s.teacher.tokens import read_call_counts

    tables = load_tables(sweep_dir)
    trials, curves = tables["trials"], tables["curves"]
    out = []
    for row in trials.sort_values("trial_id").to_dict("records"):
        train = curves[(curves.trial_id == row["trial_id"]) & (curves.kind == "train")].sort_values("step")
        out.append({
            "trial_id": row["trial_id"], "loss.tau": float(row["cfg.loss.tau"]), "status": row["status"],
            **{m: _num(row[f"final_{m}"]) for m in ("sIoU", "uIoU", "hIoU", "mIoU")},
            "final_loss": _num(train["loss"].iloc[-1]) if len(train) else None,
            "mean_train_loss": _num(train["loss"].mean()) if len(train) else None,
            "teacher_calls_in_training": read_call_counts(Path(row["run_dir"]) / "teacher_calls"),
        })
    return out


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return round(value, 4) if math.isfinite(value) else None


def _calls(results: list[dict[str, Any]], extra: dict[str, int] | None = None) -> dict[str, int]:
    total = dict(extra or {"batches": 0, "images": 0})
    for r in results:
        for k in ("batches", "images"):
            total[k] = total.get(k, 0) + int(r["teacher_calls_in_training"][k])
    return total


def _max_diff(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str) -> float | None:
    diffs = [abs(x[key] - y[key]) for x, y in zip(a, b) if x[key] is not None and y[key] is not None]
    return round(max(diffs), 4) if diffs else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="c2s bench sweep-cache", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for both sweeps and the fresh cache root (default: a new temporary folder)")
    parser.add_argument("--iters", type=int, default=6, help="training steps per trial (default 6 = 1 epoch)")
    parser.add_argument("--images", type=int, default=24, help="toy training images (default 24)")
    parser.add_argument("--cache-epochs", type=int, default=None,
                        help="augmented epochs in the cache (default: the epochs one trial trains)")
    args = parser.parse_args(argv)

    from c2s.sweep.run import _init_ray, run_sweep

    out = args.out or Path(tempfile.mkdtemp(prefix="c2s-bench-sweep-cache-"))
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"c2s bench sweep-cache: --out {out} is not empty; give a new folder")
    batch = int(TINY["train.batch_size"])
    epochs_per_trial = math.ceil(args.iters * batch / args.images)
    cache_epochs = args.cache_epochs or epochs_per_trial
    cache_root = out / "cache"
    _init_ray()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    runs: dict[str, dict[str, Any]] = {}
    for label, cache in (("without_cache", False), ("with_cache", True)):
        spec = bench_spec(f"bench_{label}", cache=cache, iters=args.iters, images=args.images,
                          cache_epochs=cache_epochs, cache_root=cache_root)
        print(f"[bench sweep-cache] sweep {label}: 4 trials (loss.tau in {list(TAUS)}), {args.iters} steps x "
              f"{batch} images each", flush=True)
        started = time.perf_counter()
        summary = run_sweep(spec, out / label, log=lambda line: print(line, flush=True))
        wall = time.perf_counter() - started
        built = [c for c in summary["token_caches"] if c["built"]]
        build_calls = {"batches": sum(c["teacher_calls"]["batches"] for c in built),
                       "images": sum(c["teacher_calls"]["images"] for c in built)}
        results = _results(out / label)
        runs[label] = {"wall_s": round(wall, 1), "summary": summary, "results": results,
                       "calls": _calls(results, build_calls), "build_calls": build_calls}

    without, with_ = runs["without_cache"], runs["with_cache"]
    ratio = (with_["calls"]["images"] / without["calls"]["images"]) if without["calls"]["images"] else None
    line = {
        "bench": "sweep-cache", "trials": len(TAUS), "space": {"loss.tau": list(TAUS)}, "iters": args.iters,
        "images_train": args.images, "epochs_per_trial": epochs_per_trial, "cache_epochs": cache_epochs,
        "wall_s_without_cache": without["wall_s"], "wall_s_with_cache": with_["wall_s"],
        "teacher_calls_without_cache": without["calls"], "teacher_calls_with_cache": with_["calls"],
        "teacher_calls_cache_build": with_["build_calls"],
        "teacher_calls_ratio": round(ratio, 4) if ratio is not None else None,
        "completed": {k: v["summary"]["completed"] for k, v in runs.items()},
        "results_without_cache": without["results"], "results_with_cache": with_["results"],
        "max_abs_diff_hIoU": _max_diff(without["results"], with_["results"], "hIoU"),
        "max_abs_diff_final_loss": _max_diff(without["results"], with_["results"], "final_loss"),
        "max_abs_diff_mean_train_loss": _max_diff(without["results"], with_["results"], "mean_train_loss"),
        "load_avg_1m": round(load, 2) if load is not None else None, "out": str(out),
    }
    import ray

    ray.shutdown()  # nothing of Ray's (raylet warnings at exit) prints after the JSON line
    print(json.dumps(line), flush=True)
    return 0
