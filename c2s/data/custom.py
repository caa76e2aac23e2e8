"""A dataset declared in one YAML file, usable wherever a catalog name is (``data.dataset=path/to/mydata.yaml``,
``c2s data check ROOT --dataset path/to/mydata.yaml``).

The file resolves to the same :class:`c2s.data.catalog.DatasetInfo` the fixed datasets use, so the label
spaces, mmseg's listing order and the inductive rule (``DatasetInfo.to_train_labels``; only
``seen_classes`` reach the training text) are the catalog's own code, not a second copy::

    name: mydata
    classes: [road, car, person, bicycle, tree]   # class id = position in this list
    unseen: [bicycle, tree]                        # names; never labelled in training (inductive)
    layout:
      img_dir: {train: images/train, val: images/val}
      ann_dir: {train: masks/train, val: masks/val}
      img_suffix: .jpg
      seg_map_suffix: .png
      split: {train: null, val: null}              # optional split files; null = every pair in the folder
    reduce_zero_label: false                       # true: mask value 0 is background/ignore, ids shift by -1
    ignore_index: 255
    templates: single                              # or: ensemble

Mask values follow mmseg's ``BaseSegDataset`` + ``LoadAnnotations`` (``mmseg/datasets/basesegdataset.py``,
``mmseg/datasets/transforms/loading.py``): with ``reduce_zero_label`` 0 -> ignore and k -> k-1; without it the
value is the class id. ``ignore_index`` is the mask value meaning "not labelled" (255 is always accepted as
ignore too, as in the catalog). Every mistake is a :class:`DatasetFileError` naming the file and the key.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from c2s.config import ConfigError
from c2s.data.layout import DatasetInfo, Layout, SplitPart, SplitVariant

MAX_CLASSES = 254  # ids 0..253 stay clear of 255 (ignore) even after reduce_zero_label's +1
SPLITS = ("train", "val")
TEMPLATES = ("single", "ensemble")
_TOP_KEYS = {"name", "classes", "unseen", "layout", "reduce_zero_label", "ignore_index", "templates"}
_LAYOUT_KEYS = {"img_dir", "ann_dir", "img_suffix", "seg_map_suffix", "split"}


class DatasetFileError(ConfigError):
    """A dataset YAML file is invalid: the message names the file, the key and what was expected.

    A :class:`c2s.config.ConfigError`, so ``c2s`` prints it alone (no traceback) and exits with status 2.
    """


def is_dataset_file(ref: str | os.PathLike) -> bool:
    """True when ``data.dataset`` / ``--dataset`` names a YAML file rather than a catalog entry."""
    return str(ref).lower().endswith((".yaml", ".yml"))


def dataset_ref(ref: str) -> str:
    """A catalog name unchanged; a dataset file as an absolute path, so Ray workers and Tune trials (whose
    working directory may differ from the driver's) open the same file."""
    if not is_dataset_file(ref):
        return ref
    path = Path(ref).expanduser()
    if not path.is_file():
        raise DatasetFileError(f"data.dataset = {ref!r}: no such dataset file (relative to {Path.cwd()})")
    return str(path.resolve())


def load_dataset_file(path: str | os.PathLike):
    """The :class:`~c2s.data.catalog.DatasetInfo` a dataset YAML declares (parsed once per file version)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DatasetFileError(f"dataset file {str(path)!r} does not exist (relative to {Path.cwd()})")
    p = p.resolve()
    st = p.stat()
    return _load_cached(str(p), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _load_cached(path: str, _mtime_ns: int, _size: int):
    # The mtime/size arguments key the cache: an edited file is parsed again, an unchanged one is not
    # (`c2s data check` resolves the dataset once per checked pair, in every worker process).
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise DatasetFileError(f"{path}: not valid YAML: {err}") from err
    return parse_dataset(data, path)


def _fail(source: str, key: str, message: str) -> DatasetFileError:
    return DatasetFileError(f"{source}: {key}: {message}")


def _str_list(data: Mapping[str, Any], key: str, source: str, *, allow_empty: bool) -> tuple[str, ...]:
    value = data.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(source, key, f"expected a list of non-empty class names, got {value!r}")
    if not value and not allow_empty:
        raise _fail(source, key, "the list is empty")
    seen: set[str] = set()
    dupes = [v for v in value if v in seen or seen.add(v)]
    if dupes:
        raise _fail(source, key, f"duplicate names {sorted(set(dupes))}")
    return tuple(value)


def _split_map(layout: Mapping[str, Any], key: str, source: str, *, nullable: bool) -> dict[str, str | None]:
    value = layout.get(key, {s: None for s in SPLITS} if nullable else None)
    if value is None and nullable:
        value = {s: None for s in SPLITS}
    if not isinstance(value, Mapping):
        raise _fail(source, f"layout.{key}", f"expected a mapping {{train: ..., val: ...}}, got {value!r}")
    unknown = sorted(set(value) - set(SPLITS))
    if unknown:
        raise _fail(source, f"layout.{key}", f"unknown split(s) {unknown}; expected {list(SPLITS)}")
    out: dict[str, str | None] = {}
    for split in SPLITS:
        if split not in value:
            if nullable:
                out[split] = None
                continue
            raise _fail(source, f"layout.{key}.{split}", "missing (a folder relative to data.root)")
        v = value[split]
        if v is None and nullable:
            out[split] = None
        elif isinstance(v, str) and v.strip():
            if Path(v).is_absolute() or ".." in Path(v).parts:
                raise _fail(source, f"layout.{key}.{split}", f"{v!r} must be a path inside data.root "
                                                            "(relative, without '..')")
            out[split] = v.strip().strip("/")
        else:
            raise _fail(source, f"layout.{key}.{split}",
                        f"expected {'a file path or null' if nullable else 'a folder path'}, got {v!r}")
    return out


def _suffix(layout: Mapping[str, Any], key: str, source: str) -> str:
    value = layout.get(key)
    if not isinstance(value, str) or not value:
        raise _fail(source, f"layout.{key}", f"expected a file suffix such as '.png', got {value!r}")
    return value


def parse_dataset(data: Any, source: str = "<dataset>"):
    """Validate a parsed dataset YAML and build its DatasetInfo; every error names ``source`` and the key."""
    if not isinstance(data, Mapping):
        raise DatasetFileError(f"{source}: expected a mapping with keys {sorted(_TOP_KEYS)}, got {data!r}")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise _fail(source, unknown[0], f"unknown key (valid keys: {', '.join(sorted(_TOP_KEYS))})")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(source, "name", f"expected a non-empty name, got {name!r}")
    classes = _str_list(data, "classes", source, allow_empty=False)
    if len(classes) > MAX_CLASSES:
        raise _fail(source, "classes", f"{len(classes)} classes; at most {MAX_CLASSES} fit in 8-bit masks "
                                       "with 255 kept for ignore")
    unseen = _str_list(data, "unseen", source, allow_empty=True) if data.get("unseen") is not None else ()
    missing = [u for u in unseen if u not in classes]
    if missing:
        raise _fail(source, "unseen", f"{missing} not in classes")
    if len(unseen) == len(classes):
        raise _fail(source, "unseen", "every class is unseen: no seen class is left to train on")
    reduce_zero = data.get("reduce_zero_label", False)
    if not isinstance(reduce_zero, bool):
        raise _fail(source, "reduce_zero_label", f"expected true or false, got {reduce_zero!r}")
    ignore = data.get("ignore_index", 255)
    if not isinstance(ignore, int) or isinstance(ignore, bool) or not 0 <= ignore <= 255:
        raise _fail(source, "ignore_index", f"expected an integer in 0..255, got {ignore!r}")
    # raw mask value -> class id (None = ignore), as mmseg's LoadAnnotations reads the file
    raw_to_class: dict[int, int | None] = {0: None} if reduce_zero else {}
    raw_to_class.update({k + int(reduce_zero): k for k in range(len(classes))})
    if ignore in raw_to_class and raw_to_class[ignore] is not None:
        raise _fail(source, "ignore_index", f"{ignore} is also the mask value of class "
                                            f"{classes[raw_to_class[ignore]]!r}")
    if ignore not in raw_to_class:
        raw_to_class[ignore] = None
    templates = data.get("templates")
    if templates is not None and templates not in TEMPLATES:
        raise _fail(source, "templates", f"expected one of {list(TEMPLATES)}, got {templates!r}")
    layout = data.get("layout")
    if not isinstance(layout, Mapping):
        raise _fail(source, "layout", f"expected a mapping with {sorted(_LAYOUT_KEYS)}, got {layout!r}")
    unknown = sorted(set(layout) - _LAYOUT_KEYS)
    if unknown:
        raise _fail(source, f"layout.{unknown[0]}", f"unknown key (valid: {', '.join(sorted(_LAYOUT_KEYS))})")
    img_dir = _split_map(layout, "img_dir", source, nullable=False)
    ann_dir = _split_map(layout, "ann_dir", source, nullable=False)
    split_file = _split_map(layout, "split", source, nullable=True)
    splits = {s: (SplitVariant((SplitPart(img_dir[s], ann_dir[s], split_file[s]),), name=f"{Path(source).name}"),)
              for s in SPLITS}
    return DatasetInfo(name, classes, unseen, Layout(_suffix(layout, "img_suffix", source),
                                                     _suffix(layout, "seg_map_suffix", source), splits),
                       raw_to_class, ignore_index=ignore, templates=templates, source=source,
                       note=f"declared in {source}")


def check_folders(info, root: str | os.PathLike, splits: tuple[str, ...] = SPLITS) -> None:
    """For a YAML-declared dataset: every folder and split file its layout names exists under ``root``;
    otherwise a DatasetFileError naming the key (``layout.img_dir.train``) and the missing path."""
    if info.source is None:
        return
    root = Path(root)
    for split in (s for s in splits if s in info.layout.splits):
        (part,) = info.layout.splits[split][0].parts
        for key, rel, ok in (("img_dir", part.img_dir, Path.is_dir), ("ann_dir", part.ann_dir, Path.is_dir),
                             ("split", part.split_file, Path.is_file)):
            if rel is not None and not ok(root / rel):
                kind = "folder" if key != "split" else "split file"
                raise _fail(info.source, f"layout.{key}.{split}", f"{kind} {root / rel} does not exist "
                                                                  f"(data.root = {root})")
