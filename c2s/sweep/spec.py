"""Sweep specs: ``sweeps/*.yaml`` -> a validated :class:`SweepSpec` -> trials (or a Ray Tune param space).

A spec names a base config and what to vary over it::

    name: tau
    base: toy_c2s                 # a config name under c2s/configs/, or a path to a .py config
    overrides: {train.iters: 300} # dotted key -> value, applied to every trial
    space:                        # dotted key -> one of:
      loss.tau: {grid: [0.03, 0.07, 0.2]}    #   grid: every value (cartesian product over grid keys)
      # loss.alpha: {choice: [0.5, 1.0]}     #   choice / uniform / loguniform: sampled num_samples
      # optim.lr: {loguniform: [1e-5, 1e-3]} #   times per grid point (random search)
    variants:                     # named rows (ablations): name -> dotted overrides
      baseline: {distill.enabled: false, latent.enabled: false}
    seeds: [0, 1]                 # every point runs once per seed (goes to train.seed)
    metric: hIoU                  # sIoU | uIoU | hIoU | mIoU ; mode: max | min
    scheduler: none               # none | asha | {kind: asha, grace_period: .., reduction_factor: .., max_t: ..}
    max_concurrent: 1
    resources: {train_workers: 1, cpus_per_worker: 0.5, teacher_actors: [1, 1], teacher_cpus: 0.5}
    max_failures: 1

Everything is validated before any trial starts: every dotted key must exist in the resolved base config
with a value of the right type (the config loader's :class:`~c2s.config.ConfigError` suggests the closest
keys); an unknown spec key, an empty space or an empty grid is an error that names it.

This module imports Ray only inside :func:`tune_param_space` and :func:`tune_scheduler`.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import math
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from c2s.config import ConfigError, apply_overrides, config_path, flatten, load_config, parse_value, yaml_load

SWEEPS_DIR = Path(__file__).resolve().parents[2] / "sweeps"  # the repo's provided specs
METRICS = ("sIoU", "uIoU", "hIoU", "mIoU")
MODES = ("max", "min")
SPACE_KINDS = ("grid", "choice", "uniform", "loguniform")
SCHEDULERS = ("none", "asha")
SPEC_KEYS = ("name", "description", "base", "overrides", "space", "variants", "num_samples", "search_seed",
             "seeds", "metric", "mode", "scheduler", "max_concurrent", "resources", "max_failures")
SCHEDULER_KEYS = ("kind", "grace_period", "reduction_factor", "max_t", "brackets")
# spec resources key -> the config key it sets in every trial
RESOURCE_KEYS: dict[str, str] = {
    "train_workers": "train.workers",
    "cpus_per_worker": "train.cpus_per_worker",
    "gpus_per_worker": "train.gpus_per_worker",
    "teacher_actors": "teacher.actors",
    "teacher_cpus": "teacher.num_cpus",
    "teacher_gpus": "teacher.num_gpus",
}
# resources that are not config keys: the Tune trial's own driver function (it builds the TorchTrainer)
DRIVER_KEYS = ("driver_cpus",)
# The trial's driver function mostly waits on its TorchTrainer, but Ray Tune cannot place a trial that asks for
# nothing: {"CPU": 0} becomes an empty bundle, which ray/air/execution/resources/request.py refuses
# ("Cannot initialize a ResourceRequest with an empty head and zero worker bundles"). So > 0, and this default.
DRIVER_CPUS_DEFAULT = 0.25


class SpecError(ConfigError):
    """A sweep spec is invalid; the message names the file, the key and what was expected."""


@dataclass(frozen=True)
class Dim:
    """One dimension of the search space: ``kind`` in :data:`SPACE_KINDS` over ``values``
    (``grid``/``choice``: the values; ``uniform``/``loguniform``: ``[lo, hi]``)."""

    key: str
    kind: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Scheduler:
    """``kind`` none or asha; ASHA stops trials early on the spec's metric, time measured in train steps."""

    kind: str = "none"
    grace_period: int | None = None
    reduction_factor: float = 2.0
    max_t: int | None = None
    brackets: int = 1


@dataclass
class SweepSpec:
    """A validated sweep spec (see the module docstring for the YAML form)."""

    name: str
    base: str
    path: Path | None = None
    description: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    space: list[Dim] = field(default_factory=list)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_samples: int = 1
    search_seed: int = 0
    seeds: list[int] = field(default_factory=lambda: [0])
    metric: str = "hIoU"
    mode: str = "max"
    scheduler: Scheduler = field(default_factory=Scheduler)
    max_concurrent: int = 1
    resources: dict[str, Any] = field(default_factory=dict)
    max_failures: int = 1

    @property
    def is_random(self) -> bool:
        """True when some dimension is sampled (choice / uniform / loguniform) rather than enumerated."""
        return any(d.kind != "grid" for d in self.space)

    def sets(self, key: str) -> bool:
        """True when the spec itself sets ``key``: in ``overrides``, ``resources``, a variant or the space."""
        return (key in self.overrides or any(ck == key for rk, ck in RESOURCE_KEYS.items() if rk in self.resources)
                or any(key in v for v in self.variants.values()) or any(d.key == key for d in self.space))

    def trial_overrides(self) -> dict[str, Any]:
        """Overrides shared by every trial: ``overrides``, the config keys ``resources`` sets, and the sweep's
        default ``teacher.cache: true`` where the spec sets it nowhere (CLIP once per sweep,
        c2s/sweep/tokens.py; it changes nothing for trials that do not need the teacher)."""
        shared = dict(self.overrides)
        for rkey, ckey in RESOURCE_KEYS.items():
            if rkey in self.resources:
                shared[ckey] = self.resources[rkey]
        if not self.sets("teacher.cache"):
            shared["teacher.cache"] = True
        return shared

    def base_config(self) -> Any:
        """The resolved base config with the shared overrides applied (a ``ConfigDict``)."""
        return load_config(self.base, self.trial_overrides())


@dataclass(frozen=True)
class TrialSpec:
    """One trial = one point of the space (or variant) run with one seed.

    ``params`` holds what varies between points (variant overrides + space values); ``overrides`` is the
    complete set of dotted overrides to apply to ``base`` (shared ones, then ``params``, then
    ``train.seed``); ``base`` is the spec's base config.  ``trial_id`` is ``t{point:03d}_s{seed}``;
    ``point_id`` is ``t{point:03d}``.
    """

    trial_id: str
    point_id: str
    label: str
    variant: str | None
    seed: int
    params: dict[str, Any]
    overrides: dict[str, Any]
    base: str | None = None


def _where(path: Path | None) -> str:
    return f"sweep spec {path}" if path is not None else "sweep spec"


def _closest(word: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(valid), n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def _err(path: Path | None, key: str, msg: str) -> SpecError:
    return SpecError(f"{_where(path)}: {key!r} {msg}")


def _as_int(path: Path | None, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _err(path, key, f"must be an integer >= {minimum}, got {value!r}")
    return value


def _as_number(path: Path | None, key: str, value: Any, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise _err(path, key, f"must be a number >= {minimum}, got {value!r}")
    return float(value)


def _as_mapping(path: Path | None, key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _err(path, key, f"must be a mapping of dotted config keys to values, got {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


def _check_keys(path: Path | None, section: str, cfg: Any, values: Mapping[str, Any]) -> None:
    """Apply ``values`` to ``cfg``; re-raise a :class:`ConfigError` naming the spec file and section."""
    try:
        apply_overrides(cfg, values)
    except ConfigError as err:
        raise SpecError(f"{_where(path)}: in {section}: {err}") from err


def _parse_dim(path: Path | None, key: str, raw: Any) -> Dim:
    where = f"space.{key}"
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise _err(path, where, f"must be a mapping with exactly one of {', '.join(SPACE_KINDS)}, got {raw!r}")
    (kind, values), = raw.items()
    if kind not in SPACE_KINDS:
        raise _err(path, where, f"has unknown kind {kind!r}; expected one of {', '.join(SPACE_KINDS)}."
                   f"{_closest(str(kind), SPACE_KINDS)}")
    if not isinstance(values, (list, tuple)):
        raise _err(path, f"{where}.{kind}", f"must be a list, got {values!r}")
    if kind in ("grid", "choice"):
        if not values:
            raise _err(path, f"{where}.{kind}", "is empty; give at least one value")
        return Dim(key, kind, tuple(values))
    if (len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values)
            or not values[0] < values[1]):
        raise _err(path, f"{where}.{kind}", f"must be [lo, hi] with numbers lo < hi, got {values!r}")
    if kind == "loguniform" and values[0] <= 0:
        raise _err(path, f"{where}.{kind}", f"needs lo > 0, got {values!r}")
    return Dim(key, kind, (float(values[0]), float(values[1])))


def _parse_scheduler(path: Path | None, raw: Any, iters: int) -> Scheduler:
    if raw is None or raw == "none":
        return Scheduler()
    if isinstance(raw, str):
        raw = {"kind": raw}
    if not isinstance(raw, Mapping):
        raise _err(path, "scheduler", f"must be 'none', 'asha' or a mapping with kind: asha, got {raw!r}")
    for key in raw:
        if key not in SCHEDULER_KEYS:
            raise _err(path, f"scheduler.{key}", f"is not a scheduler key; expected one of "
                       f"{', '.join(SCHEDULER_KEYS)}.{_closest(str(key), SCHEDULER_KEYS)}")
    kind = raw.get("kind", "asha")
    if kind not in SCHEDULERS:
        raise _err(path, "scheduler.kind", f"must be one of {', '.join(SCHEDULERS)}, got {kind!r}."
                   f"{_closest(str(kind), SCHEDULERS)}")
    if kind == "none":
        return Scheduler()
    max_t = _as_int(path, "scheduler.max_t", raw.get("max_t", iters), 1)
    grace = _as_int(path, "scheduler.grace_period", raw.get("grace_period", max(1, max_t // 4)), 1)
    if grace > max_t:
        raise _err(path, "scheduler.grace_period", f"({grace}) must be <= scheduler.max_t ({max_t})")
    rf = _as_number(path, "scheduler.reduction_factor", raw.get("reduction_factor", 2.0))
    if rf <= 1:
        raise _err(path, "scheduler.reduction_factor", f"must be > 1, got {rf}")
    brackets = _as_int(path, "scheduler.brackets", raw.get("brackets", 1), 1)
    return Scheduler("asha", grace, rf, max_t, brackets)


def _parse_resources(path: Path | None, raw: Any) -> dict[str, Any]:
    raw = _as_mapping(path, "resources", raw)
    valid = list(RESOURCE_KEYS) + list(DRIVER_KEYS)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in valid:
            raise _err(path, f"resources.{key}", f"is not a resources key; expected one of {', '.join(valid)}."
                       f"{_closest(key, valid)}")
        if key == "train_workers":
            out[key] = _as_int(path, f"resources.{key}", value, 1)
        elif key == "teacher_actors":
            if (not isinstance(value, (list, tuple)) or len(value) != 2
                    or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
                    or not 0 <= value[0] <= value[1]):
                raise _err(path, f"resources.{key}", f"must be [min, max] integers with 0 <= min <= max, got {value!r}")
            out[key] = [int(value[0]), int(value[1])]
        else:
            out[key] = _as_number(path, f"resources.{key}", value)
            if key == "driver_cpus" and not out[key] > 0:
                raise _err(path, f"resources.{key}", f"must be > 0, got {value!r}: Ray Tune cannot place a trial "
                           "whose driver asks for no resource (an empty bundle); e.g. 0.01 for a driver that "
                           "only waits")
    return out


def apply_updates(raw: Mapping[str, Any], updates: Iterable[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Apply command-line updates to a raw spec: ``base=coco_stuff164k_segformer_b4``,
    ``overrides.data.root=/data/coco``, ``seeds=[0,1,2]``, ``max_concurrent=2``.

    The first dotted component is the spec key; for ``overrides`` / ``resources`` / ``scheduler`` the rest is
    the key inside it (``overrides.train.iters=40000`` sets ``overrides["train.iters"]``).
    """
    out = copy.deepcopy(dict(raw))
    items = list(updates.items()) if isinstance(updates, Mapping) else []
    if not isinstance(updates, Mapping):
        for text in updates:
            if "=" not in text:
                raise SpecError(f"spec update {text!r} must look like key=value (e.g. base=coco_stuff164k_segformer_b4)")
            key, value = text.split("=", 1)
            items.append((key.strip(), parse_value(value)))
    for key, value in items:
        head, _, rest = key.partition(".")
        if head not in SPEC_KEYS:
            raise SpecError(f"spec update {key!r}: {head!r} is not a spec key.{_closest(head, SPEC_KEYS)}")
        if rest:
            section = out.get(head)
            if isinstance(section, str) and head == "scheduler":
                section = {"kind": section}
            section = dict(section) if isinstance(section, Mapping) else {}
            section[rest] = value
            out[head] = section
        else:
            out[head] = value
    return out


def parse_spec(raw: Mapping[str, Any], path: str | os.PathLike | None = None) -> SweepSpec:
    """Validate a raw spec mapping (from YAML) against its base config; raise :class:`SpecError`."""
    p = Path(path) if path is not None else None
    if not isinstance(raw, Mapping):
        raise SpecError(f"{_where(p)}: must be a YAML mapping of spec keys, got {type(raw).__name__}")
    for key in raw:
        if key not in SPEC_KEYS:
            raise _err(p, str(key), f"is not a spec key; expected one of {', '.join(SPEC_KEYS)}."
                       f"{_closest(str(key), SPEC_KEYS)}")
    for key in ("name", "base"):
        if not isinstance(raw.get(key), str) or not raw.get(key):
            raise _err(p, key, f"is required and must be a non-empty string, got {raw.get(key)!r}")
    base = raw["base"]
    if p is not None and base.endswith(".py") and not Path(base).is_absolute() and (p.parent / base).is_file():
        base = str((p.parent / base).resolve())
    try:
        config_path(base)
    except ConfigError as err:
        raise SpecError(f"{_where(p)}: 'base': {err}") from err

    resources = _parse_resources(p, raw.get("resources"))
    spec = SweepSpec(name=raw["name"], base=base, path=p, description=str(raw.get("description") or ""),
                     overrides=_as_mapping(p, "overrides", raw.get("overrides")), resources=resources)
    clash = sorted(set(spec.overrides) & {RESOURCE_KEYS[k] for k in resources if k in RESOURCE_KEYS})
    if clash:
        raise _err(p, "resources", f"sets {', '.join(clash)}, which overrides also sets; set it in one place")

    try:
        cfg = load_config(base)
    except ConfigError as err:
        raise SpecError(f"{_where(p)}: 'base' {base!r}: {err}") from err
    _check_keys(p, "overrides/resources", cfg, spec.trial_overrides())
    cfg = apply_overrides(cfg, spec.trial_overrides())

    space_raw = _as_mapping(p, "space", raw.get("space"))
    variants_raw = _as_mapping(p, "variants", raw.get("variants"))
    if "space" in raw and not space_raw:
        raise _err(p, "space", "is empty; give at least one dotted key, or drop 'space' and use 'variants'")
    if "variants" in raw and not variants_raw:
        raise _err(p, "variants", "is empty; give at least one named row, or drop 'variants'")
    if not space_raw and not variants_raw:
        raise _err(p, "space", "is missing: a sweep needs a non-empty 'space' or 'variants'")
    for key, dim_raw in space_raw.items():
        dim = _parse_dim(p, key, dim_raw)
        if key == "train.seed":
            raise _err(p, "space.train.seed", "is set by 'seeds'; list the seeds there")
        if dim.kind in ("grid", "choice"):
            for value in dim.values:
                _check_keys(p, f"space.{key}", cfg, {key: value})
        else:
            flat = flatten(cfg)
            if key not in flat:
                _check_keys(p, f"space.{key}", cfg, {key: dim.values[0]})  # the loader's unknown-key error
            old = flat[key]
            if isinstance(old, bool) or not isinstance(old, float):
                raise _err(p, f"space.{key}", f"uses {dim.kind}, which samples floats, but the config value "
                           f"is {type(old).__name__} {old!r}; use grid or choice")
        spec.space.append(dim)
    for name, overrides in variants_raw.items():
        ov = _as_mapping(p, f"variants.{name}", overrides)
        bad = sorted(set(ov) & set(space_raw))
        if bad:
            raise _err(p, f"variants.{name}", f"sets {', '.join(bad)}, which 'space' also varies")
        if "train.seed" in ov:
            raise _err(p, f"variants.{name}.train.seed", "is set by 'seeds'; list the seeds there")
        _check_keys(p, f"variants.{name}", cfg, ov)
        spec.variants[name] = ov

    spec.num_samples = _as_int(p, "num_samples", raw.get("num_samples", 1), 1)
    if spec.num_samples > 1 and not spec.is_random:
        raise _err(p, "num_samples", f"is {spec.num_samples} but nothing in 'space' is sampled "
                   "(choice/uniform/loguniform); repeat runs with 'seeds' instead")
    spec.search_seed = _as_int(p, "search_seed", raw.get("search_seed", 0), 0)
    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (not isinstance(seeds, (list, tuple)) or not seeds
            or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds)):
        raise _err(p, "seeds", f"must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise _err(p, "seeds", f"has duplicates: {seeds!r}")
    spec.seeds = [int(s) for s in seeds]
    spec.metric = raw.get("metric", "hIoU")
    if spec.metric not in METRICS:
        raise _err(p, "metric", f"must be one of {', '.join(METRICS)}, got {spec.metric!r}."
                   f"{_closest(str(spec.metric), METRICS)}")
    spec.mode = raw.get("mode", "max")
    if spec.mode not in MODES:
        raise _err(p, "mode", f"must be one of {', '.join(MODES)}, got {spec.mode!r}")
    spec.scheduler = _parse_scheduler(p, raw.get("scheduler"), int(cfg.train.iters))
    spec.max_concurrent = _as_int(p, "max_concurrent", raw.get("max_concurrent", 1), 1)
    spec.max_failures = _as_int(p, "max_failures", raw.get("max_failures", 1), 0)
    return spec


def load_spec(path: str | os.PathLike, updates: Iterable[str] | Mapping[str, Any] = ()) -> SweepSpec:
    """Read and validate ``sweeps/NAME.yaml`` (a path, or a bare name looked up under ``sweeps/``).

    ``updates`` are command-line spec edits (see :func:`apply_updates`), e.g. ``["base=voc12_segnext_b"]``.
    """
    p = Path(path)
    if not p.is_file() and p.suffix == "" and (SWEEPS_DIR / f"{p}.yaml").is_file():
        p = SWEEPS_DIR / f"{p}.yaml"
    if not p.is_file():
        available = [x.stem for x in spec_paths()]
        hint = f" Available under {SWEEPS_DIR}: {', '.join(available)}." if available else ""
        raise SpecError(f"sweep spec {str(path)!r} is not a file.{_closest(p.stem, available)}{hint}")
    try:
        raw = yaml_load(p.read_text())
    except yaml.YAMLError as err:
        raise SpecError(f"sweep spec {p}: not valid YAML: {err}") from err
    if raw is None:
        raise SpecError(f"sweep spec {p}: is empty; expected a mapping with at least name, base and space/variants")
    if updates:
        raw = apply_updates(raw, updates)
    return parse_spec(raw, p)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _sample(dim: Dim, rng: random.Random) -> Any:
    if dim.kind == "choice":
        return dim.values[rng.randrange(len(dim.values))]
    lo, hi = dim.values
    if dim.kind == "uniform":
        return rng.uniform(lo, hi)
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def expand_points(spec: SweepSpec) -> list[tuple[str | None, dict[str, Any]]]:
    """The sweep's points in a stable order: variants × grid product × ``num_samples`` random draws.

    Returns ``(variant name or None, params)`` per point.  Random dimensions are drawn with a
    ``random.Random(spec.search_seed)``, so the same spec always gives the same points (and trial ids).
    """
    grid = [d for d in spec.space if d.kind == "grid"]
    sampled = [d for d in spec.space if d.kind != "grid"]
    rng = random.Random(spec.search_seed)
    variants: list[tuple[str | None, dict[str, Any]]] = list(spec.variants.items()) or [(None, {})]
    points: list[tuple[str | None, dict[str, Any]]] = []
    for name, vov in variants:
        for combo in itertools.product(*(d.values for d in grid)):
            for _ in range(spec.num_samples if sampled else 1):
                params = dict(vov)
                params.update({d.key: v for d, v in zip(grid, combo)})
                params.update({d.key: _sample(d, rng) for d in sampled})
                points.append((name, params))
    return points


def point_label(variant: str | None, params: Mapping[str, Any], spec: SweepSpec) -> str:
    """A human label: the variant name, then ``key=value`` for each space key (not the variant's keys)."""
    parts = [variant] if variant else []
    parts += [f"{d.key}={_fmt(params[d.key])}" for d in spec.space if d.key in params]
    return ", ".join(parts) if parts else "default"


def expand_trials(spec: SweepSpec) -> list[TrialSpec]:
    """Every trial of the sweep: each point of :func:`expand_points` once per seed, ids ``t003_s1``."""
    shared = spec.trial_overrides()
    trials: list[TrialSpec] = []
    for i, (variant, params) in enumerate(expand_points(spec)):
        point_id = f"t{i:03d}"
        for seed in spec.seeds:
            overrides = {**shared, **params, "train.seed": seed}
            trials.append(TrialSpec(trial_id=f"{point_id}_s{seed}", point_id=point_id,
                                    label=point_label(variant, params, spec), variant=variant, seed=seed,
                                    params=dict(params), overrides=overrides, base=spec.base))
    return trials


def tune_param_space(spec: SweepSpec) -> dict[str, Any]:
    """A Ray Tune ``param_space`` (flat dotted keys) for the spec; pass ``TuneConfig(num_samples=
    spec.num_samples)``.  Grid keys, seeds and variant names become ``tune.grid_search``; choice / uniform /
    loguniform become ``tune.choice`` / ``tune.uniform`` / ``tune.loguniform``; shared overrides are constants.

    A trial's config maps back to overrides with :func:`overrides_from_tune_config`.
    """
    from ray import tune

    space: dict[str, Any] = dict(spec.trial_overrides())
    if spec.variants:
        space["variant"] = tune.grid_search(list(spec.variants))
    for dim in spec.space:
        if dim.kind == "grid":
            space[dim.key] = tune.grid_search(list(dim.values))
        elif dim.kind == "choice":
            space[dim.key] = tune.choice(list(dim.values))
        elif dim.kind == "uniform":
            space[dim.key] = tune.uniform(*dim.values)
        else:
            space[dim.key] = tune.loguniform(*dim.values)
    space["train.seed"] = tune.grid_search(list(spec.seeds))
    return space


def overrides_from_tune_config(spec: SweepSpec, config: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a Tune trial config from :func:`tune_param_space` back into dotted config overrides."""
    config = dict(config)
    variant = config.pop("variant", None)
    out = dict(spec.variants.get(variant, {})) if variant is not None else {}
    out.update(config)
    return out


def tune_scheduler(spec: SweepSpec, time_attr: str = "step") -> Any:
    """``None`` or a ``ray.tune.schedulers.ASHAScheduler`` on the spec's metric, time in train steps."""
    if spec.scheduler.kind == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    s = spec.scheduler
    return ASHAScheduler(time_attr=time_attr, metric=spec.metric, mode=spec.mode, max_t=s.max_t,
                         grace_period=s.grace_period, reduction_factor=s.reduction_factor,
                         brackets=s.brackets)


def _num(value: Any) -> float:
    return float(value) if value is not None else 0.0


def trial_resources(spec: SweepSpec, cfg: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """What one trial asks of the cluster, part by part: ``{"train workers": {"CPU": .., "GPU": ..}, ...}``.

    ``cfg`` is a trial's resolved config (e.g. ``spec.base_config()``).  Counted as the training job's own
    preflight counts (``c2s.train.resolve.resources_needed``): training workers, teacher actors at their
    maximum (none with ``teacher.cache = true``), two Ray Data tasks of ``data.num_cpus``; plus the Tune
    trial's driver function (``resources.driver_cpus``).
    """
    from c2s.train.pipeline import starts_teacher_pool
    from c2s.train.resolve import resource_parts

    # A baseline trial (no distillation, no latent embeddings) starts no CLIP actor: nothing reserved for one.
    parts = resource_parts(cfg, with_teacher=starts_teacher_pool(cfg))
    parts["trial driver"] = {"CPU": _num(spec.resources.get("driver_cpus", DRIVER_CPUS_DEFAULT)), "GPU": 0.0}
    return parts


def resources_needed(spec: SweepSpec, cfg: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Cluster resources the sweep needs at full concurrency.

    Returns ``{"CPU": total, "GPU": total, "per_trial": {"CPU", "GPU"}, "max_concurrent": n,
    "parts": trial_resources(...)}`` where total = ``min(max_concurrent, number of trials)`` × per trial.
    With ``cfg`` None the spec's base config (with its shared overrides) is used; the largest needs over
    all trials are taken when the space or variants change resource keys.
    """
    configs = [cfg] if cfg is not None else [load_config(spec.base, t.overrides) for t in _resource_trials(spec)]
    per_trial = {"CPU": 0.0, "GPU": 0.0}
    parts: dict[str, dict[str, float]] = {}
    for c in configs:
        p = trial_resources(spec, c)
        totals = {r: sum(v[r] for v in p.values()) for r in ("CPU", "GPU")}
        if not parts or totals["CPU"] > per_trial["CPU"]:
            parts = p
        per_trial = {r: max(per_trial[r], totals[r]) for r in ("CPU", "GPU")}
    n = min(spec.max_concurrent, max(1, len(expand_points(spec)) * len(spec.seeds)))
    return {"CPU": n * per_trial["CPU"], "GPU": n * per_trial["GPU"], "per_trial": per_trial,
            "max_concurrent": n, "parts": parts}


def _resource_trials(spec: SweepSpec) -> list[TrialSpec]:
    """One trial per distinct set of resource-related overrides (usually just the first trial)."""
    keys = set(RESOURCE_KEYS.values()) | {"teacher.cache", "data.num_cpus"}
    seen: dict[tuple, TrialSpec] = {}
    for t in expand_trials(spec):
        sig = tuple(sorted((k, repr(v)) for k, v in t.overrides.items() if k in keys))
        seen.setdefault(sig, t)
    return list(seen.values())


class ClusterFitError(RuntimeError):
    """The sweep asks for more than the cluster has; it would hang instead of failing, so it fails here."""


def check_cluster_fits(needed: Mapping[str, Any], available: Mapping[str, Any], *, cluster: Any = None,
                       spec: SweepSpec | None = None) -> None:
    """Raise :class:`ClusterFitError` printing both sides when ``needed`` (from :func:`resources_needed`)
    exceeds ``available`` (``ray.cluster_resources()``) for CPU or GPU.

    With ``cluster`` (``c2s.train.placement.Cluster``, from ``c2s.train.cluster.cluster_from_ray``) and
    ``spec``: nodes the autoscaler may still launch count towards ``available``, and ``max_concurrent``
    trials' bundles (workers, actors, data tasks, trial driver) must also pack onto the nodes one by one."""
    available = dict(available)
    grows = cluster is not None and any(t.launchable != 0 for t in cluster.node_types)
    if grows:
        for t in cluster.node_types:
            for r in ("CPU", "GPU"):
                more = math.inf if t.launchable < 0 else t.launchable * float(t.resources.get(r, 0.0))
                available[r] = float(available.get(r, 0.0)) + more
    short = [r for r in ("CPU", "GPU")
             if float(needed.get(r, 0.0)) > float(available.get(r, 0.0)) + 1e-9]
    per = needed.get("per_trial", {})
    n = needed.get("max_concurrent", 1)
    hint = _fit_hint(per, available)
    if short:
        parts = needed.get("parts", {})
        detail = "; ".join(f"{name}: {v['CPU']:g} CPU, {v['GPU']:g} GPU" for name, v in parts.items())
        raise ClusterFitError(
            f"the sweep needs {', '.join(f'{r}={float(needed.get(r, 0.0)):g}' for r in ('CPU', 'GPU'))} "
            f"(max_concurrent {n} × per trial CPU={per.get('CPU', 0):g} GPU={per.get('GPU', 0):g} [{detail}]) "
            f"but the cluster has {', '.join(f'{r}={float(available.get(r, 0.0)):g}' for r in ('CPU', 'GPU'))}"
            f"{' (counting nodes the autoscaler may launch)' if grows else ''}; "
            f"short of {', '.join(short)}. Ray would wait forever for the missing resources.{hint} "
            "or add nodes."
        )
    if cluster is None or spec is None:
        return
    from c2s.errors import PreflightError
    from c2s.train.pipeline import starts_teacher_pool
    from c2s.train.placement import job_bundles
    from c2s.train.resolve import check_placement, job_parts

    # The trial config with the largest needs (as resources_needed picks), n copies of its bundles.
    best = max((load_config(spec.base, t.overrides) for t in _resource_trials(spec)),
               key=lambda c: sum(v[r] for v in trial_resources(spec, c).values() for r in ("CPU", "GPU")))
    trial = {**job_parts(best, with_teacher=starts_teacher_pool(best)),
             "trial driver": (1, {"CPU": _num(spec.resources.get("driver_cpus", DRIVER_CPUS_DEFAULT)), "GPU": 0.0})}
    bundles = job_bundles({f"trial {i + 1} {name}": part for i in range(int(n)) for name, part in trial.items()})
    try:
        check_placement(bundles, cluster, what=f"the sweep (max_concurrent {n} trials at once)",
                        hint=(hint.strip() or "Lower the per-trial resources") + " or add nodes.")
    except PreflightError as err:
        raise ClusterFitError(str(err)) from None


def _fit_hint(per: Mapping[str, Any], available: Mapping[str, Any]) -> str:
    fit = [int(float(available.get(r, 0.0)) // per[r]) for r in ("CPU", "GPU")
           if per.get(r) and math.isfinite(float(available.get(r, 0.0)))]
    return (f" Lower max_concurrent to {min(fit)}" if fit and min(fit) >= 1 else
            " Lower the per-trial resources (train_workers, cpus_per_worker, teacher_actors, teacher_cpus,"
            " data.num_cpus)")


def spec_paths(folder: str | os.PathLike = SWEEPS_DIR) -> list[Path]:
    """The ``*.yaml`` specs in ``folder``, sorted."""
    return sorted(Path(folder).glob("*.yaml"))


__all__: Sequence[str] = (
    "METRICS", "SPEC_KEYS", "RESOURCE_KEYS", "Dim", "Scheduler", "SweepSpec", "TrialSpec", "SpecError",
    "ClusterFitError", "SWEEPS_DIR", "apply_updates", "parse_spec", "load_spec", "expand_points", "expand_trials",
    "point_label", "tune_param_space", "overrides_from_tune_config", "tune_scheduler", "trial_resources",
    "resources_needed", "check_cluster_fits", "spec_paths",
)
