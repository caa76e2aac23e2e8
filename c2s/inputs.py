"""A job's three inputs, named in its config and resolved on the driver before anything starts.

=====================  ==========  =====================================================================
key                    is a        null means
=====================  ==========  =====================================================================
``data.root``          folder      not given: an error
``teacher.checkpoint`` file        not given: an error, unless ``teacher.allow_random`` (tests, benches)
``model.pretrained``   file        random initialisation of the student's backbone
=====================  ==========  =====================================================================

Each takes a local path or a provider reference ``<scheme>:<name>``, as open_clip takes ``hf-hub:`` and
``local-dir:``. Providers are the small table :func:`providers` reads from the "c2s.providers" entry point
(c2s/plugins.py): ``{scheme: {name: (key, make)}}``, where ``make(cfg, cache_root) -> Path`` returns the
file or folder, made once and cached. The toy world provides ``toy:world``, ``toy:clip`` and
``toy:backbone`` (c2s/world/providers.py); nothing here knows it.

:func:`resolve_inputs` replaces every reference in ``cfg`` by the path it resolves to, so Ray workers and
actors receive concrete files.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from c2s import plugins
from c2s.errors import PreflightError
from c2s.paths import cache_root

PLUGIN_GROUP = "c2s.providers"
INPUT_KEYS = ("data.root", "teacher.checkpoint", "model.pretrained")
# `scheme:name`, the scheme at least two letters so a Windows drive (C:\data) is never read as one.
_REFERENCE = re.compile(r"^(?P<scheme>[a-z][a-z0-9_-]+):(?P<name>[A-Za-z0-9_.-]+)$")

Make = Callable[[Any, Path], Path]


@dataclasses.dataclass(frozen=True)
class JobInputs:
    data_root: Path
    teacher_checkpoint: str | None
    cache_root: Path


def providers() -> dict[str, dict[str, tuple[str, Make]]]:
    """``{scheme: {name: (config key it provides, make)}}`` from every installed package."""
    table: dict[str, dict[str, tuple[str, Make]]] = {}
    for scheme, entries in plugins.load(PLUGIN_GROUP):
        table[scheme] = dict(entries)
    return table


def references() -> list[str]:
    """Every provider reference that can be written, ``toy:world`` style."""
    return [f"{scheme}:{name}" for scheme, names in providers().items() for name in names]


def parse_reference(value: Any) -> tuple[str, str] | None:
    """``"toy:clip"`` -> ``("toy", "clip")``; a local path (or anything else) -> None."""
    match = _REFERENCE.match(value) if isinstance(value, str) else None
    return (match["scheme"], match["name"]) if match else None


def provide(key: str, value: str, cfg: Any, root: Path) -> Path:
    """The path the reference ``value`` of config key ``key`` resolves to (made on first use)."""
    scheme, name = parse_reference(value)
    table = providers()
    if scheme not in table or name not in table[scheme]:
        known = ", ".join(references()) or "none installed"
        raise PreflightError(f"{key} = {value!r}: no provider for {value!r} (known references: {known}; "
                             f"or pass a local path){plugins.none_installed_hint(PLUGIN_GROUP)}")
    provides, make = table[scheme][name]
    if provides != key:
        raise PreflightError(f"{key} = {value!r}: {value!r} provides {provides}, not {key}")
    return Path(make(cfg, root))


def _old_spelling(key: str, value: Any) -> str | None:
    """The reference ``value`` used to stand for (``model.pretrained="toy"`` -> ``toy:backbone``)."""
    if not isinstance(value, str) or ":" in value or Path(value).expanduser().exists():
        return None
    names = providers().get(value, {})
    matches = [f"{value}:{name}" for name, (provides, _) in names.items() if provides == key]
    return matches[0] if len(matches) == 1 else None


def _get(cfg: Any, key: str) -> Any:
    section, leaf = key.split(".")
    return cfg[section].get(leaf)


def _set(cfg: Any, key: str, value: str) -> None:
    section, leaf = key.split(".")
    cfg[section][leaf] = value


def _check(key: str, value: Any, cfg: Any) -> str | None:
    """The checked, absolute form of ``value`` for ``key`` (None where null is allowed)."""
    if value is None:
        if key == "data.root":
            raise PreflightError(f"data.root is not set; point it at your {cfg.data.dataset} folder (check it first "
                                 f"with `c2s data check ROOT --dataset {cfg.data.dataset}`), or name a provided "
                                 f"one ({', '.join(references()) or 'none installed'})")
        if key == "teacher.checkpoint" and not cfg.teacher.get("allow_random", False):
            raise PreflightError("teacher.checkpoint is not set: pass a local open_clip weights file "
                                 "(teacher.checkpoint=/path/to/ViT-B-16.pt); the hub is never used")
        return None
    path = Path(str(value)).expanduser()
    if key == "data.root":
        if not path.is_dir():
            raise PreflightError(f"data.root = {value!r} does not exist or is not a directory")
    elif key == "teacher.checkpoint":
        from c2s.teacher.checkpoint import TeacherCheckpointError, check_path

        try:  # names a directory or an empty file as such, not as "does not exist"
            check_path(path)
        except TeacherCheckpointError as err:
            raise PreflightError(str(err)) from err
        return str(value)  # the file as named: its origin (an OpenAI archive, open_clip's dir) is read from it
    elif not path.is_file():
        raise PreflightError(f"model.pretrained = {value!r} does not exist (expected a local backbone state dict, "
                             "a provider reference, or null for random initialisation)")
    return str(path.resolve())  # workers run in another directory than the driver


def resolve_references(cfg: Any, root: Path) -> None:
    """One loop over :data:`INPUT_KEYS`: each reference is made (once, cached under ``root``) and replaced by
    its path; each value is checked. Errors name the key, the value and what was expected."""
    for key in INPUT_KEYS:
        value = _get(cfg, key)
        new = _old_spelling(key, value)
        if new is not None:
            raise PreflightError(f"{key} = {value!r} is the old spelling; write {key}={new}")
        if parse_reference(value) is not None:
            value = str(provide(key, value, cfg, root))
        value = _check(key, value, cfg)
        if value is not None:
            _set(cfg, key, value)


def resolve_inputs(cfg: Any) -> JobInputs:
    """Resolve and check the job's inputs (the keys above, then a dataset file's folders) on the driver.

    Mutates ``cfg`` so its three keys hold concrete paths and ``data.dataset`` an absolute dataset file.
    """
    root = cache_root(cfg)
    resolve_references(cfg, root)
    prepare_dataset_file(cfg)
    return JobInputs(Path(cfg.data.root), cfg.teacher.get("checkpoint"), root)


def prepare_dataset_file(cfg: Any) -> None:
    """For a dataset file (c2s/data/custom.py): makes ``data.dataset`` absolute (workers and trials open the
    same file), checks its folders under ``data.root`` and that ``teacher.templates`` agrees with the file's
    ``templates`` (the config key stays the one knob; a disagreement is an error rather than one silently
    winning). Catalog names pass."""
    from c2s.data.catalog import get_dataset_info
    from c2s.data.custom import DatasetFileError, check_folders, dataset_ref, is_dataset_file

    if not is_dataset_file(cfg.data.dataset):
        return
    cfg.data.dataset = dataset_ref(cfg.data.dataset)
    info = get_dataset_info(cfg.data.dataset)
    check_folders(info, cfg.data.root)
    if info.templates is not None and info.templates != cfg.teacher.templates:
        raise DatasetFileError(f"{info.source}: templates: {info.templates!r}, but teacher.templates = "
                               f"{cfg.teacher.templates!r}; pass teacher.templates={info.templates} or remove "
                               "templates from the dataset file")
