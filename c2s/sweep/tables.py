"""A sweep's results as three versioned Parquet tables under its directory (schema: ``docs/tables.md``).

- ``trials.parquet``: one row per (trial_id, seed): status, error, every override as a typed ``cfg.*`` column,
  final and best sIoU / uIoU / hIoU / mIoU, best step, wall time, GPU hours;
- ``curves.parquet``: one row per logged or evaluated step of each trial: loss components, lr, throughput,
  teacher wait, and eval metrics on eval rows;
- ``per_class.parquet``: one row per class of each completed trial: seen/unseen, IoU.

Each table is *upserted* by (trial_id, seed): writing a trial again replaces its rows (a resumed sweep adds
no duplicates), and every write goes through :func:`c2s.paths.atomic_path` (a crash leaves the old file).
Inputs, per trial run directory (written by the training job)::

    metrics.jsonl            one JSON object per line; log rows {step, loss, loss_global, ..., lr, ...},
                             eval rows {step, sIoU, uIoU, hIoU, mIoU, "kind": "eval"}
    final/metrics.json       {"sIoU", "uIoU", "hIoU", "mIoU", "step", optional "wall_s", "gpu_hours",
                              "params_m", "gflops"}
    final/per_class.parquet  columns class (str), seen (bool), iou (float)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from c2s.paths import atomic_path
from c2s.sweep.spec import TrialSpec
from c2s.teacher.calls import read_call_counts

SCHEMA_VERSION = 1
METADATA_KEY = b"c2s.schema_version"
TABLE_KEY = b"c2s.table"
METRICS = ("sIoU", "uIoU", "hIoU", "mIoU")
STATUSES = ("completed", "failed", "running", "stopped")  # stopped: early-stopped by ASHA
CFG_PREFIX = "cfg."
KEY = ("trial_id", "seed")

TRIALS_FIELDS: list[pa.Field] = [
    pa.field("sweep", pa.string()),
    pa.field("trial_id", pa.string()),
    pa.field("point_id", pa.string()),
    pa.field("label", pa.string()),
    pa.field("variant", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("status", pa.string()),
    pa.field("error", pa.string()),
    pa.field("run_dir", pa.string()),
    pa.field("base", pa.string()),
    *[pa.field(f"final_{m}", pa.float64()) for m in METRICS],
    pa.field("final_step", pa.int64()),
    pa.field("best_metric", pa.string()),
    *[pa.field(f"best_{m}", pa.float64()) for m in METRICS],
    pa.field("best_step", pa.int64()),
    pa.field("wall_s", pa.float64()),
    pa.field("gpu_hours", pa.float64()),
    pa.field("params_m", pa.float64()),
    pa.field("gflops", pa.float64()),
    pa.field("teacher_images", pa.int64()),  # images this trial's live CLIP pool encoded (0: read a cache)
]
LOSS_COLUMNS = ("loss", "loss_global", "loss_local", "loss_pixel", "loss_nel", "loss_ce")
CURVES_FIELDS: list[pa.Field] = [
    pa.field("sweep", pa.string()),
    pa.field("trial_id", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("step", pa.int64()),
    pa.field("kind", pa.string()),
    *[pa.field(c, pa.float64()) for c in LOSS_COLUMNS],
    pa.field("lr", pa.float64()),
    pa.field("images_per_s", pa.float64()),
    pa.field("teacher_wait_frac", pa.float64()),
    *[pa.field(m, pa.float64()) for m in METRICS],
]
PER_CLASS_FIELDS: list[pa.Field] = [
    pa.field("sweep", pa.string()),
    pa.field("trial_id", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("class", pa.string()),
    pa.field("seen", pa.bool_()),
    pa.field("iou", pa.float64()),
]
TABLES: dict[str, list[pa.Field]] = {"trials": TRIALS_FIELDS, "curves": CURVES_FIELDS, "per_class": PER_CLASS_FIELDS}


class TableError(ValueError):
    """A run directory or a table on disk does not match the documented contract; names file and column."""


@dataclass
class RunRows:
    """The rows one trial contributes to each table."""

    trials: list[dict[str, Any]] = field(default_factory=list)
    curves: list[dict[str, Any]] = field(default_factory=list)
    per_class: list[dict[str, Any]] = field(default_factory=list)


def table_path(sweep_dir: str | os.PathLike, name: str) -> Path:
    """``SWEEP_DIR/<name>.parquet`` for ``name`` in trials / curves / per_class."""
    if name not in TABLES:
        raise TableError(f"unknown table {name!r}; expected one of {', '.join(TABLES)}")
    return Path(sweep_dir) / f"{name}.parquet"


# ---------------------------------------------------------------------------------------------- reading runs


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def read_metrics_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl``; a missing file is no rows, a bad line is an error naming it.

    A truncated *last* line (the job was killed mid-write) is skipped.
    """
    p = Path(path)
    if not p.is_file():
        return []
    lines = p.read_text().splitlines()
    rows: list[dict[str, Any]] = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if i == len(lines):
                break
            raise TableError(f"{p}:{i}: not a JSON object: {err}") from err
        if not isinstance(row, dict) or "step" not in row:
            raise TableError(f"{p}:{i}: expected a JSON object with a 'step' key, got {line[:80]!r}")
        rows.append(row)
    return rows


def read_final_metrics(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``final/metrics.json`` of a run, or ``None`` when the run has not finished."""
    p = Path(run_dir) / "final" / "metrics.json"
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise TableError(f"{p}: not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise TableError(f"{p}: expected a JSON object with sIoU, uIoU, hIoU, mIoU, step")
    return data


def _best(evals: Sequence[Mapping[str, Any]], metric: str, mode: str) -> Mapping[str, Any] | None:
    """The eval row with the best ``metric`` (ties: the earliest step)."""
    scored = [(v, int(r["step"]), r) for r in evals if (v := _finite(r.get(metric))) is not None]
    if not scored:
        return None
    if mode == "max":
        return max(scored, key=lambda t: (t[0], -t[1]))[2]
    return min(scored, key=lambda t: (t[0], t[1]))[2]


def cfg_columns(trial: TrialSpec) -> dict[str, Any]:
    """``cfg.<dotted key>`` -> value for every override of the trial except ``train.seed`` (the ``seed``
    column).  Lists/tuples/dicts become JSON strings, so every column has one scalar type."""
    out: dict[str, Any] = {}
    for key, value in trial.overrides.items():
        if key == "train.seed":
            continue
        if isinstance(value, (list, tuple, dict)):
            value = json.dumps(value, sort_keys=True)
        out[CFG_PREFIX + key] = value
    return out


def collect_trial_row(run_dir: str | os.PathLike | None, trial: TrialSpec, *, sweep: str,
                      status: str | None = None, error: str | None = None, metric: str = "hIoU",
                      mode: str = "max", wall_s: float | None = None, gpu_hours: float | None = None,
                      gpus: float | None = None) -> dict[str, Any]:
    """The ``trials.parquet`` row of one trial and seed.

    ``status`` defaults to ``completed`` when ``final/metrics.json`` exists, ``failed`` when ``error`` is
    given, else ``running``.  Best = the eval row (``metrics.jsonl`` rows with ``kind == "eval"``, plus the
    final metrics) with the best ``metric``; its four metrics and step are ``best_*``.  ``wall_s`` and
    ``gpu_hours`` come from the arguments, else ``final/metrics.json``; without either, ``gpu_hours`` is
    ``wall_s × gpus / 3600`` when ``gpus`` (GPUs the trial held) is given.
    """
    final = read_final_metrics(run_dir) if run_dir is not None else None
    evals = [r for r in read_metrics_jsonl(Path(run_dir) / "metrics.jsonl") if r.get("kind") == "eval"] \
        if run_dir is not None else []
    if status is None:
        status = "completed" if final is not None else ("failed" if error else "running")
    if status not in STATUSES:
        raise TableError(f"trial {trial.trial_id}: status must be one of {', '.join(STATUSES)}, got {status!r}")
    if status == "completed" and final is None:
        raise TableError(f"trial {trial.trial_id}: status completed but {run_dir}/final/metrics.json is missing")
    row: dict[str, Any] = {
        "sweep": sweep, "trial_id": trial.trial_id, "point_id": trial.point_id, "label": trial.label,
        "variant": trial.variant, "seed": int(trial.seed), "status": status,
        "error": error, "run_dir": str(run_dir) if run_dir is not None else None, "base": trial.base,
    }
    final = final or {}
    for m in METRICS:
        row[f"final_{m}"] = _finite(final.get(m))
    row["final_step"] = int(final["step"]) if final.get("step") is not None else None
    candidates = list(evals)
    if final and final.get("step") is not None:
        candidates.append({**final, "step": int(final["step"])})
    best = _best(candidates, metric, mode)
    row["best_metric"] = metric
    for m in METRICS:
        row[f"best_{m}"] = _finite(best.get(m)) if best is not None else None
    row["best_step"] = int(best["step"]) if best is not None else None
    wall = wall_s if wall_s is not None else _finite(final.get("wall_s"))
    gh = gpu_hours if gpu_hours is not None else _finite(final.get("gpu_hours"))
    if gh is None and wall is not None and gpus is not None:
        gh = wall * gpus / 3600.0
    row["wall_s"] = wall
    row["gpu_hours"] = gh
    row["params_m"] = _finite(final.get("params_m"))
    row["gflops"] = _finite(final.get("gflops"))
    row["teacher_images"] = read_call_counts(Path(run_dir) / "teacher_calls")["images"] if run_dir is not None else 0
    row.update(cfg_columns(trial))
    return row


def collect_curves(run_dir: str | os.PathLike, trial: TrialSpec, *, sweep: str) -> list[dict[str, Any]]:
    """``curves.parquet`` rows from ``metrics.jsonl``: one per line; ``kind`` is ``eval`` or ``train``.

    Known columns are typed (docs/tables.md); any other numeric key is kept as an extra float64 column.
    """
    known = {f.name for f in CURVES_FIELDS}
    rows = []
    for raw in read_metrics_jsonl(Path(run_dir) / "metrics.jsonl"):
        row: dict[str, Any] = {"sweep": sweep, "trial_id": trial.trial_id, "seed": int(trial.seed),
                               "step": int(raw["step"]), "kind": str(raw.get("kind") or "train")}
        for key, value in raw.items():
            if key in ("step", "kind", "sweep", "trial_id", "seed"):
                continue
            if key in known or (isinstance(value, (int, float)) and not isinstance(value, bool)):
                row[key] = _finite(value)
        rows.append(row)
    return rows


def collect_per_class(run_dir: str | os.PathLike, trial: TrialSpec, *, sweep: str) -> list[dict[str, Any]]:
    """``per_class.parquet`` rows from ``final/per_class.parquet`` (columns class, seen, iou); none if absent."""
    p = Path(run_dir) / "final" / "per_class.parquet"
    if not p.is_file():
        return []
    try:
        table = pq.read_table(p)
    except pa.ArrowInvalid as err:  # not parquet, or cut short: name the file (the recorder logs it, goes on)
        raise TableError(f"{p}: not a readable parquet table ({err})") from err
    missing = [c for c in ("class", "seen", "iou") if c not in table.column_names]
    if missing:
        raise TableError(f"{p}: missing column(s) {', '.join(missing)}; expected class (str), seen (bool), iou (float)")
    out = []
    for cls, seen, iou in zip(table["class"].to_pylist(), table["seen"].to_pylist(), table["iou"].to_pylist()):
        out.append({"sweep": sweep, "trial_id": trial.trial_id, "seed": int(trial.seed), "class": str(cls),
                    "seen": bool(seen), "iou": _finite(iou)})
    return out


def collect_run(run_dir: str | os.PathLike | None, trial: TrialSpec, *, sweep: str, **trial_kwargs: Any) -> RunRows:
    """All three tables' rows for one trial (``trial_kwargs`` go to :func:`collect_trial_row`).

    ``run_dir`` None (a trial that failed before it had a directory) gives only the trials row.
    """
    rows = RunRows(trials=[collect_trial_row(run_dir, trial, sweep=sweep, **trial_kwargs)])
    if run_dir is not None:
        rows.curves = collect_curves(run_dir, trial, sweep=sweep)
        rows.per_class = collect_per_class(run_dir, trial, sweep=sweep)
    return rows


# ---------------------------------------------------------------------------------------------- arrow tables


def _infer_type(name: str, values: Iterable[Any]) -> pa.DataType:
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.string() if name.startswith(CFG_PREFIX) else pa.float64()
    if kinds <= {bool}:
        return pa.bool_()
    if kinds <= {int}:
        return pa.int64()
    if kinds <= {int, float}:
        return pa.float64()
    if kinds <= {str}:
        return pa.string()
    raise TableError(f"column {name!r} mixes value types {sorted(k.__name__ for k in kinds)}; "
                     "a column must hold one type")


def schema_for(name: str, rows: Sequence[Mapping[str, Any]]) -> pa.Schema:
    """The table's fixed fields, then the extra columns found in ``rows`` (sorted), with version metadata."""
    fields = list(TABLES[name])
    fixed = {f.name for f in fields}
    extra = sorted({k for r in rows for k in r if k not in fixed})
    fields += [pa.field(k, _infer_type(k, (r.get(k) for r in rows))) for k in extra]
    return pa.schema(fields, metadata={METADATA_KEY: str(SCHEMA_VERSION).encode(), TABLE_KEY: name.encode()})


def to_arrow(name: str, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows -> a typed Arrow table with :func:`schema_for`'s schema (missing keys are null)."""
    schema = schema_for(name, rows)
    columns = {}
    for f in schema:
        values = [r.get(f.name) for r in rows]
        if pa.types.is_floating(f.type):
            values = [None if v is None else float(v) for v in values]
        try:
            columns[f.name] = pa.array(values, type=f.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as err:
            raise TableError(f"{name}.parquet column {f.name!r} expects {f.type}: {err}") from err
    return pa.table(columns, schema=schema)


def read_table(sweep_dir: str | os.PathLike, name: str) -> pa.Table | None:
    """Read ``SWEEP_DIR/<name>.parquet`` (``None`` if absent); refuse another schema version."""
    path = table_path(sweep_dir, name)
    if not path.is_file():
        return None
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    version = meta.get(METADATA_KEY)
    if version is None or int(version) != SCHEMA_VERSION:
        raise TableError(f"{path}: schema version {version.decode() if version else 'missing'}, this c2s reads "
                         f"version {SCHEMA_VERSION}; re-collect the sweep's tables (or use a matching c2s)")
    return table


def _key_strings(table: pa.Table) -> list[str]:
    return [f"{t}\x1f{s}" for t, s in zip(table["trial_id"].to_pylist(), table["seed"].to_pylist())]


def upsert(sweep_dir: str | os.PathLike, name: str, rows: Sequence[Mapping[str, Any]],
           keys: Iterable[tuple[str, int]] | None = None) -> Path:
    """Replace the rows of every (trial_id, seed) in ``keys`` (default: those in ``rows``) by ``rows`` and
    write ``SWEEP_DIR/<name>.parquet`` atomically.  Returns the path.

    A column new to the file (a new override) is added with nulls for old rows; a column whose type changed
    is an error naming it.  Rows are sorted by trial_id, seed (and step / class).
    """
    path = table_path(sweep_dir, name)
    new = to_arrow(name, rows)
    key_set = {f"{t}\x1f{int(s)}" for t, s in keys} if keys is not None else set(_key_strings(new))
    old = read_table(sweep_dir, name)
    if old is not None and old.num_rows:
        keep = pc.invert(pc.is_in(pa.array(_key_strings(old)), value_set=pa.array(sorted(key_set), pa.string())))
        old = old.filter(keep)
        for f in new.schema:  # an all-null column, new or stored, takes the other side's type
            if f.name not in old.column_names or old.schema.field(f.name).type == f.type:
                continue
            stored = old.schema.field(f.name).type
            if new[f.name].null_count == new.num_rows:
                i = new.schema.get_field_index(f.name)
                new = new.set_column(i, pa.field(f.name, stored), pa.nulls(new.num_rows, stored))
            elif old[f.name].null_count == old.num_rows:
                # e.g. a sweep whose base sets a key to null and whose later trials set a number:
                # sweeps/additions.yaml's distill.local_false_negative_cos (null, then 0.95)
                i = old.schema.get_field_index(f.name)
                old = old.set_column(i, pa.field(f.name, f.type), pa.nulls(old.num_rows, f.type))
        try:
            merged = pa.concat_tables([old, new], promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise TableError(f"{path}: new rows do not match the stored column types: {err}") from err
        # keep the column order fixed fields first, extras sorted
        merged_rows_schema = schema_for(name, [dict.fromkeys(merged.column_names)])
        order = [f.name for f in merged_rows_schema]
        merged = merged.select(order).replace_schema_metadata(new.schema.metadata)
    else:
        merged = new
    sort = [(c, "ascending") for c in ("trial_id", "seed", "step", "kind", "class") if c in merged.column_names]
    merged = merged.sort_by(sort)
    with atomic_path(path) as tmp:
        pq.write_table(merged, tmp)
    return path


def write_run(sweep_dir: str | os.PathLike, rows: RunRows | Sequence[RunRows]) -> dict[str, Path]:
    """Upsert one or more trials' :class:`RunRows` into all three tables; a trial's old curves and
    per-class rows are replaced even when it now has none (e.g. rerun and failed early)."""
    batch = [rows] if isinstance(rows, RunRows) else list(rows)
    keys = [(r["trial_id"], int(r["seed"])) for b in batch for r in b.trials]
    out = {}
    for name in TABLES:
        table_rows = [r for b in batch for r in getattr(b, name)]
        out[name] = upsert(sweep_dir, name, table_rows, keys=keys)
    return out


def load_tables(sweep_dir: str | os.PathLike) -> dict[str, Any]:
    """The three tables as pandas DataFrames (empty frames with the fixed columns for absent files)."""
    import pandas as pd

    out = {}
    for name in TABLES:
        table = read_table(sweep_dir, name)
        if table is None:
            table = pa.schema(TABLES[name]).empty_table()
        out[name] = table.to_pandas() if table.num_rows else pd.DataFrame(
            {f.name: pd.Series(dtype=f.type.to_pandas_dtype()) for f in table.schema})
    return out


__all__ = [
    "SCHEMA_VERSION", "METRICS", "STATUSES", "CFG_PREFIX", "TABLES", "TableError", "RunRows", "table_path",
    "read_metrics_jsonl", "read_final_metrics", "cfg_columns", "collect_trial_row", "collect_curves",
    "collect_per_class", "collect_run", "schema_for", "to_arrow", "read_table", "upsert", "write_run",
    "load_tables",
]
