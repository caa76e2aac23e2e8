"""CLIP once per sweep: the trials of a sweep read token caches instead of each starting a CLIP actor pool.

None of a sweep's usual knobs (τ, α, β, bank size, the student, the ablations' losses) changes what the
teacher computes, so running CLIP once per distinct token-cache key (c2s/teacher/cache.py: dataset, data
pipeline, teacher, mining, seed) and letting every trial read that cache gives the same tokens as the live
pool at a fraction of the teacher's work.

**The default.** A spec that sets ``teacher.cache`` nowhere (shared overrides, variants, space) gets
``teacher.cache = true`` on every trial that needs the teacher, with ``teacher.cache_epochs`` = the epochs
the trial's run spans (:func:`c2s.train.pipeline.stream_epochs`), unless the spec sets it: cached epoch *e*
is the live stream's epoch *e* (tests/train/test_stream.py), so a cache that covers the run feeds the trial the
augmentations the live pool would have. A spec that wants the live teacher says ``teacher.cache: false``
(sweeps/toy_live_vs_cached.yaml does, for one of its variants).

**Counted.** :func:`prepare_token_caches` builds each distinct cache once, with progress, before any trial
starts, and reports the images CLIP encoded per build; ``trials.parquet`` has each trial's own count
(``teacher_images``: 0 for a trial that read a cache).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from c2s.config import load_config
from c2s.sweep.spec import SweepSpec, TrialSpec

CACHE_KEYS = ("teacher.cache", "teacher.cache_epochs")


def spec_sets(spec: SweepSpec, key: str) -> bool:
    """True when the spec sets ``key`` anywhere: shared overrides, a variant or a space dimension."""
    return (key in spec.trial_overrides() or any(key in v for v in spec.variants.values())
            or any(d.key == key for d in spec.space))


def with_token_cache_default(spec: SweepSpec, trials: Sequence[TrialSpec],
                             log: Callable[[str], None] = print) -> list[TrialSpec]:
    """``trials`` with the sweep's default applied (module docstring); unchanged when the spec sets
    ``teacher.cache`` itself. Resolves the trials' inputs (the toy world is made here when missing)."""
    from c2s.data.catalog import get_dataset_info, list_split
    from c2s.inputs import resolve_inputs
    from c2s.train.pipeline import needs_teacher, stream_epochs

    if spec_sets(spec, "teacher.cache"):
        return list(trials)
    sizes: dict[tuple[str, str], int] = {}  # (dataset, root) -> training images, listed once
    out = []
    for t in trials:
        cfg = load_config(spec.base, t.overrides)
        if not needs_teacher(cfg):
            out.append(t)
            continue
        extra: dict[str, Any] = {"teacher.cache": True}
        if not spec_sets(spec, "teacher.cache_epochs"):
            inputs = resolve_inputs(cfg)
            where = (str(cfg.data.dataset), str(inputs.data_root))
            if where not in sizes:
                info = get_dataset_info(cfg.data.dataset)
                sizes[where] = len(list_split(info, inputs.data_root, "train").pairs)
            train = cfg.train
            extra["teacher.cache_epochs"] = stream_epochs(int(train.iters), int(train.batch_size),
                                                          int(train.workers), sizes[where])
        out.append(dataclasses.replace(t, overrides={**t.overrides, **extra}))
    changed = sum(a is not b for a, b in zip(trials, out, strict=True))
    if changed:
        epochs = sorted({t.overrides.get("teacher.cache_epochs") for t in out if t.overrides.get("teacher.cache")})
        log(f"[sweep {spec.name}] teacher: token caches (CLIP once per distinct cache key) for {changed} "
            f"trial(s), cache_epochs {', '.join(map(str, epochs))}; set teacher.cache: false in the spec for "
            "the live pool")
    return out


def prepare_token_caches(spec: SweepSpec, trials: Sequence[TrialSpec],
                         log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Build (once) every token cache the trials read (``teacher.cache = true``), before any trial starts;
    one entry per distinct cache: its folder, whether it was built now, and the images CLIP encoded."""
    from c2s.inputs import resolve_inputs
    from c2s.teacher.cache import build_token_cache, cache_dir
    from c2s.train.pipeline import repeats_epochs

    built: dict[str, dict[str, Any]] = {}
    for t in trials:
        cfg = load_config(spec.base, t.overrides)
        if not repeats_epochs(cfg):  # reads no token cache
            continue
        inputs = resolve_inputs(cfg)
        folder = cache_dir(cfg, inputs.data_root, inputs.cache_root)
        if folder.name in built:
            built[folder.name]["trials"].append(t.trial_id)
            continue
        folder, manifest = build_token_cache(cfg, inputs.data_root, inputs.cache_root, log=True)
        calls = manifest["teacher_calls"] if manifest["built"] else {"batches": 0, "images": 0}
        built[folder.name] = {"cache_dir": str(folder), "built": manifest["built"], "teacher_calls": calls,
                              "trials": [t.trial_id]}
        if not manifest["built"]:
            log(f"[sweep {spec.name}] token cache {folder.name} exists ({manifest['rows']} rows); reused")
    return list(built.values())
