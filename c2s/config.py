"""Configs: mmengine-style ``.py`` files with ``_base_`` inheritance, plus dotted overrides.

One resolved config flows from the entrypoint down; no module reads global state on its own.

    cfg = load_config("toy_c2s", ["loss.tau=0.05", "bank.size=48"])
    cfg.loss.tau  # 0.05

A config is named by a path to a ``.py`` file or by a name under ``c2s/configs/`` (``toy_c2s`` or
``students/segformer_b4``).  Overrides may only set keys that exist in the resolved config, and the new
value must have the type of the old one (an int is accepted for a float, ``null`` for anything whose
default is ``None``); otherwise :class:`ConfigError` names the key and suggests the closest valid ones.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from mmengine.config import Config, ConfigDict

CONFIG_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A config file, key or value is invalid; the message names it and what was expected."""


def config_path(name_or_path: str | os.PathLike) -> Path:
    """Resolve a config name (``toy_c2s``) or a file path to an existing ``.py`` file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".py" and candidate.is_file():
        return candidate.resolve()
    named = CONFIG_DIR / f"{name_or_path}.py"
    if named.is_file():
        return named
    available = sorted(str(p.relative_to(CONFIG_DIR).with_suffix("")) for p in CONFIG_DIR.rglob("*.py")
                       if not p.name.startswith("_") and "_base_" not in p.parts)
    close = difflib.get_close_matches(str(name_or_path), available, n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"config {str(name_or_path)!r} is neither an existing .py file nor a name under {CONFIG_DIR}.{hint} "
        f"Available: {', '.join(available)}"
    )


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys: ``{"loss": {"tau": 0.07}}`` -> ``{"loss.tau": 0.07}``."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``2e-3`` (no dot) as a string; users write learning rates that way. Floats here follow
    YAML 1.2: ``2e-3``, ``1E5``, ``.5``, ``-3.0e+2`` are floats."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+][0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 floats (``1e-4`` is a float); used for overrides and sweep specs."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def parse_value(text: str) -> Any:
    """Parse an override's value as YAML scalars/lists: ``0.07``, ``2e-3``, ``true``, ``null``, ``[2, 4]``,
    ``foo``."""
    try:
        return yaml_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse override value {text!r}: {err}") from err


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check_type(key: str, old: Any, new: Any) -> Any:
    """Return ``new`` coerced to the type of ``old``, or raise :class:`ConfigError` naming ``key``."""
    if old is None or new is None:
        return new
    if isinstance(old, bool):
        if isinstance(new, bool):
            return new
    elif isinstance(old, int):
        if isinstance(new, int) and not isinstance(new, bool):
            return new
    elif isinstance(old, float):
        if isinstance(new, (int, float)) and not isinstance(new, bool):
            return float(new)
    elif isinstance(old, str):
        if isinstance(new, str):
            return new
    elif isinstance(old, (list, tuple)):
        if isinstance(new, (list, tuple)):
            return type(old)(new)
    elif isinstance(old, Mapping):
        if isinstance(new, Mapping):
            return new
    else:
        return new
    raise ConfigError(
        f"config key {key!r} expects {_type_name(old)} (current value {old!r}), got {_type_name(new)} {new!r}"
    )


def _unknown_key_error(key: str, valid: Iterable[str]) -> ConfigError:
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
    # Also compare the last component alone, so a bare "tau" or "loss.temperature" still finds "loss.tau".
    leaf = key.rsplit(".", 1)[-1]
    by_leaf = [v for v in valid if difflib.SequenceMatcher(None, leaf, v.rsplit(".", 1)[-1]).ratio() >= 0.75]
    suggestions = list(dict.fromkeys(close + by_leaf))[:5]
    hint = f" Closest valid keys: {', '.join(suggestions)}." if suggestions else ""
    return ConfigError(f"unknown config key {key!r}.{hint}")


def apply_overrides(cfg: ConfigDict, overrides: Iterable[str] | Mapping[str, Any]) -> ConfigDict:
    """Apply dotted overrides (``["loss.tau=0.05"]`` or ``{"loss.tau": 0.05}``) to a copy of ``cfg``."""
    cfg = copy.deepcopy(cfg)
    if isinstance(overrides, Mapping):
        items = list(overrides.items())
    else:
        items = []
        for text in overrides:
            if "=" not in text:
                raise ConfigError(f"override {text!r} must look like key=value (e.g. loss.tau=0.07)")
            key, value = text.split("=", 1)
            items.append((key.strip(), parse_value(value)))
    flat = flatten(cfg)
    for key, value in items:
        parts = key.split(".")
        node: Any = cfg
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, Mapping) or part not in node:
                raise _unknown_key_error(key, flat)
            node = node[part]
            if not isinstance(node, Mapping):
                raise ConfigError(f"config key {'.'.join(parts[: i + 1])!r} is a value, not a section; cannot set {key!r}")
        leaf = parts[-1]
        if not isinstance(node, Mapping) or leaf not in node:
            raise _unknown_key_error(key, flat)
        node[leaf] = check_type(key, node[leaf], value)
    return cfg


def load_config(name_or_path: str | os.PathLike, overrides: Iterable[str] | Mapping[str, Any] = ()) -> ConfigDict:
    """Load a config by name or path, resolve ``_base_``, apply and validate dotted overrides."""
    path = config_path(name_or_path)
    try:
        raw = Config.fromfile(str(path))
    except (SyntaxError, KeyError, FileNotFoundError, TypeError) as err:
        raise ConfigError(f"cannot load config {path}: {err}") from err
    cfg = ConfigDict(raw.to_dict())
    cfg = apply_overrides(cfg, overrides)
    cfg.pop("filename", None)
    return cfg


def to_dict(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A plain, JSON-able ``dict`` copy (tuples become lists) for checkpoints and Ray."""
    return json.loads(json.dumps(cfg.to_dict() if isinstance(cfg, ConfigDict) else dict(cfg), default=list))


def from_dict(data: Mapping[str, Any]) -> ConfigDict:
    """Rebuild a config from :func:`to_dict`'s output (e.g. the copy stored in a checkpoint)."""
    return ConfigDict(copy.deepcopy(dict(data)))


def config_hash(cfg: Mapping[str, Any], keys: Iterable[str] | None = None) -> str:
    """Stable short hash of the whole config or of the listed dotted keys (cache keys)."""
    flat = flatten(to_dict(cfg))
    if keys is not None:
        flat = {k: flat.get(k) for k in keys}
    blob = json.dumps(flat, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def dump_config(cfg: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write the resolved config as JSON (readable, and reloadable with :func:`from_dict`)."""
    Path(path).write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True))
