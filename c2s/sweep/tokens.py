"""CLIP once per sweep: the trials of a sweep read token caches instead of each starting a CLIP actor pool.

None of a sweep's usual knobs (τ, α, β, bank size, the student, the ablations' losses) changes what the
teacher computes, so running CLIP once per distinct token-cache key (c2s/teacher/cache.py: dataset, data
pipeline, teacher, mining, seed) and letting every trial read that cache gives the same tokens as the live
pool at a fraction of the teacher's work.

**The default.** A spec that sets ``teacher.cache`` nowhere (shared overrides, variants, space) gets
``teacher.cache = true`` (``SweepSpec.trial_overrides``, so resources and placement count no CLIP actor) and,
on every trial that needs the teacher, ``teacher.cache_epochs`` = the epochs
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


def with_token_cache_default(spec: SweepSpec, trials: Sequence[TrialSpec],
                             log: Callable[[str], None] = print) -> list[TrialSpec]:
    """``trials`` with ``teacher.cache_epochs`` set to the epochs each run spans where the spec left both
    ``teacher.cache`` (``SweepSpec.trial_overrides`` defaults it to true) and ``teacher.cache_epochs`` to the
    sweep; unchanged otherwise. Resolves the trials' inputs (the toy world is made here when missing)."""
    from c2s.data.catalog import get_dataset_info, list_split
    from c2s.inputs import resolve_inputs
    from c2s.train.pipeline import repeats_epochs, stream_epochs

    if spec.sets("teacher.cache") or spec.sets("teacher.cache_epochs"):
        return list(trials)
    sizes: dict[tuple[str, str], int] = {}  # (dataset, root) -> training images, listed once
    out = []
    for t in trials:
        cfg = load_config(spec.base, t.overrides)
        if not repeats_epochs(cfg):  # the trial reads no token cache (it does not need the teacher)
            out.append(t)
            continue
        inputs = resolve_inputs(cfg)
        where = (str(cfg.data.dataset), str(inputs.data_root))
        if where not in sizes:
            sizes[where] = len(list_split(get_dataset_info(cfg.data.dataset), inputs.data_root, "train").pairs)
        train = cfg.train
        epochs = stream_epochs(int(train.iters), int(train.batch_size), int(train.workers), sizes[where])
        out.append(dataclasses.replace(t, overrides={**t.overrides, "teacher.cache_epochs": epochs}))
    changed = [t for a, t in zip(trials, out, strict=True) if a is not t]
    if changed:
        epochs = sorted({t.overrides["teacher.cache_epochs"] for t in changed})
        log(f"[sweep {spec.name}] teacher: token caches (CLIP once per distinct cache key) for {len(changed)} "
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
