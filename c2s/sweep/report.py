"""``c2s report SWEEP_DIR``: paper-shaped tables and plots from a sweep's Parquet tables.

Writes under ``SWEEP_DIR/report/`` (Markdown + CSV per table, PNG plots, ``README.md`` with everything):

- ``ablation``: one row per variant (Tables 3-6) × hIoU / sIoU / uIoU as mean ± std over seeds;
- ``sensitivity_<keys>``: one row per value of the swept hyperparameter(s) (τ, α, β, bank size, ...);
- ``backbones``: one row per ``model.name`` with parameters (M) and GFLOPs beside the metrics (Table 2);
- ``failed``: trials that did not complete (never part of a mean);
- ``metric_vs_<key>.png``: each metric against each swept numeric hyperparameter, seed std as error bars;
- ``loss_curves.png``: each logged loss component against the step, one line per point (Fig. 5).

CSV files hold the numbers (``<metric>_mean``, ``<metric>_std``, ``n_seeds``); Markdown shows ``mean ± std``
(std over seeds with ddof=1; a single seed shows the mean alone).

The results book across sweeps (c2s/sweep/book.py, which ``c2s report`` runs and which hands it a plain
``c2s report SWEEP_DIR``): ``--collect SWEEP_DIR`` keeps a sweep's tables under ``docs/results/<name>/``;
``--book`` writes ``docs/results.md`` from them.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from c2s.sweep.tables import CFG_PREFIX, LOSS_COLUMNS, TableError, load_tables

TABLE_METRICS = ("hIoU", "sIoU", "uIoU")
MODEL_KEY = CFG_PREFIX + "model.name"
NICKNAMES = {"loss.tau": "τ", "loss.alpha": "α", "loss.beta": "β", "bank.size": "bank size",
             "model.name": "backbone"}
FAILED_COLUMNS = ("trial_id", "label", "seed", "status", "error")


def completed(trials: pd.DataFrame) -> pd.DataFrame:
    """Only the trials whose status is ``completed``."""
    return trials[trials["status"] == "completed"]


def summarize(trials: pd.DataFrame, by: str | Sequence[str], metrics: Sequence[str] = TABLE_METRICS,
              which: str = "final", sort_by_value: bool = False) -> pd.DataFrame:
    """Mean and std (ddof=1) over seeds of ``<which>_<metric>`` per group of ``by``, completed trials only.

    Columns: the ``by`` columns, then ``<metric>_mean``, ``<metric>_std`` per metric, then ``n_seeds``.
    Rows follow the spec's order (first point_id), or the ``by`` values when ``sort_by_value``.
    """
    by = [by] if isinstance(by, str) else list(by)
    done = completed(trials)
    cols = [f"{which}_{m}" for m in metrics]
    missing = [c for c in by + cols if c not in done.columns]
    if missing:
        raise TableError(f"trials table has no column(s) {', '.join(missing)}")
    if done.empty:
        return pd.DataFrame(columns=by + [f"{m}_{s}" for m in metrics for s in ("mean", "std")] + ["n_seeds"])
    if "point_id" in done:
        done = done.sort_values(["point_id", "seed"], kind="stable")  # groups in the spec's order
    grouped = done.groupby(by, sort=False, dropna=False)
    out = pd.DataFrame({
        **{f"{m}_{stat}": getattr(grouped[f"{which}_{m}"], stat)() for m in metrics for stat in ("mean", "std")},
        "n_seeds": grouped.size(),
    })
    out = out.reset_index()
    if sort_by_value:
        out = out.sort_values(by, kind="stable")
    return out.reset_index(drop=True)


def _decimals(summary: pd.DataFrame, metrics: Sequence[str]) -> int:
    values = pd.concat([summary[f"{m}_mean"] for m in metrics if f"{m}_mean" in summary]).dropna().abs()
    return 3 if len(values) and values.max() <= 1.0 else 1


def format_pm(summary: pd.DataFrame, metrics: Sequence[str] = TABLE_METRICS, decimals: int | None = None) -> pd.DataFrame:
    """``summarize``'s numbers as ``"42.3 ± 0.5"`` strings (one column per metric, ``n_seeds`` kept).

    ``decimals`` None: 1 when metrics are percentages, 3 when they are fractions (all ≤ 1).
    """
    d = _decimals(summary, metrics) if decimals is None else decimals
    out = summary[[c for c in summary.columns if not any(c in (f"{m}_mean", f"{m}_std") for m in metrics)]].copy()
    for m in metrics:
        def cell(row: pd.Series, m: str = m) -> str:
            mean, std = row[f"{m}_mean"], row[f"{m}_std"]
            if mean is None or (isinstance(mean, float) and math.isnan(mean)):
                return "–"
            if std is None or (isinstance(std, float) and math.isnan(std)):
                return f"{mean:.{d}f}"
            return f"{mean:.{d}f} ± {std:.{d}f}"
        out[m] = summary.apply(cell, axis=1) if len(summary) else pd.Series(dtype=str)
    cols = [c for c in out.columns if c != "n_seeds"] + (["n_seeds"] if "n_seeds" in out.columns else [])
    return out[cols]


def swept_columns(trials: pd.DataFrame) -> list[str]:
    """``cfg.*`` columns that vary across trials.  When the sweep has variants, only the columns that vary
    *within* a variant (the space's keys) count; the variant's own keys are in its name."""
    cfg = [c for c in trials.columns if c.startswith(CFG_PREFIX)]
    varying = [c for c in cfg if trials[c].nunique(dropna=False) > 1]
    if "variant" in trials and trials["variant"].notna().any():
        varying = [c for c in varying if (trials.groupby("variant")[c].nunique(dropna=False) > 1).any()]
    return varying


def ablation_table(trials: pd.DataFrame, which: str = "final", metrics: Sequence[str] = TABLE_METRICS) -> pd.DataFrame | None:
    """Tables 3-6: one row per variant (plus any swept keys), mean/std over seeds; ``None`` without variants."""
    if "variant" not in trials or not trials["variant"].notna().any():
        return None
    by = ["variant"] + swept_columns(trials)
    return summarize(trials, by, metrics, which)


def sensitivity_table(trials: pd.DataFrame, which: str = "final", metrics: Sequence[str] = TABLE_METRICS) -> pd.DataFrame | None:
    """One row per value of the swept hyperparameters (all swept keys but ``model.name``), sorted by value;
    ``None`` when the sweep varies nothing but variants or backbones."""
    keys = [c for c in swept_columns(trials) if c != MODEL_KEY]
    if not keys or ("variant" in trials and trials["variant"].notna().any()):
        return None
    extra = [MODEL_KEY] if MODEL_KEY in swept_columns(trials) else []
    return summarize(trials, extra + keys, metrics, which, sort_by_value=True)


def _zoo_params_m(name: str, rows: pd.DataFrame) -> float | None:
    """Parameters (millions) of student ``name`` from ``c2s.student.zoo.count_params`` (when that module
    exists), built with the trials' ``model.*`` settings resolved from their base config."""
    try:
        from c2s.student import zoo
    except ImportError:
        return None
    count = getattr(zoo, "count_params", None)
    if count is None:
        return None
    model: dict[str, Any] = {}
    base = rows["base"].dropna().iloc[0] if "base" in rows and rows["base"].notna().any() else None
    overrides = {c[len(CFG_PREFIX):]: rows[c].iloc[0] for c in rows.columns
                 if c.startswith(CFG_PREFIX + "model.") and pd.notna(rows[c].iloc[0])}
    if base is not None:
        from c2s.config import ConfigError, load_config

        try:
            model = dict(load_config(base, overrides).get("model", {}))
        except ConfigError:
            model = {}
    model.pop("name", None)
    model.pop("pretrained", None)
    try:
        return float(count(name, **model)) / 1e6
    except (KeyError, ValueError, TypeError, RuntimeError, ImportError):
        return None


def backbone_table(trials: pd.DataFrame, which: str = "final", metrics: Sequence[str] = TABLE_METRICS) -> pd.DataFrame | None:
    """Table 2's columns beside the metrics: backbone, Parameter (M), GFLOPs, hIoU, sIoU, uIoU, n_seeds.

    Parameters come from the ``params_m`` column, else ``c2s.student.zoo.count_params(name, **model)`` with
    the ``model`` section of the trials' base config (``base`` column) and ``cfg.model.*``; GFLOPs from
    the ``gflops`` column (empty when the job did not measure them).  ``None`` unless ``model.name`` varies.
    """
    if MODEL_KEY not in trials or MODEL_KEY not in swept_columns(trials):
        return None
    others = [c for c in swept_columns(trials) if c != MODEL_KEY]
    summary = summarize(trials, [MODEL_KEY] + others, metrics, which)
    done = completed(trials)
    params, gflops = [], []
    for name in summary[MODEL_KEY]:
        rows = done[done[MODEL_KEY] == name]
        p = rows["params_m"].dropna().mean() if "params_m" in rows else float("nan")
        if math.isnan(p):
            p = _zoo_params_m(str(name), rows) or float("nan")
        params.append(p)
        gflops.append(rows["gflops"].dropna().mean() if "gflops" in rows else float("nan"))
    summary.insert(1 + len(others), "params_m", params)
    summary.insert(2 + len(others), "gflops", gflops)
    return summary


def failed_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials that did not complete (failed or still running) with their error; never part of a mean."""
    cols = [c for c in FAILED_COLUMNS if c in trials.columns]
    return trials.loc[trials["status"] != "completed", cols].sort_values(["trial_id", "seed"]).reset_index(drop=True)


def _header(col: str) -> str:
    if col.startswith(CFG_PREFIX):
        key = col[len(CFG_PREFIX):]
        return f"{NICKNAMES[key]} ({key})" if key in NICKNAMES else key
    return {"params_m": "Parameter (M)", "gflops": "GFLOPs", "n_seeds": "seeds", "variant": "Methods"}.get(col, col)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 1 else f"{value:.3g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (no extra dependency)."""
    headers = [_header(str(c)) for c in df.columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in df.itertuples(index=False, name=None):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)


def _plain(value: float) -> str:
    """A swept value as written in a spec: ``0.07``, ``0.2``, ``24``, ``0.0001`` (no ``x10^n``)."""
    import numpy as np

    return np.format_float_positional(float(value), trim="-")


def _label_swept_values(ax: Any, values: Sequence[float]) -> None:
    """Ticks exactly at the swept ``values`` with plain labels, and no minor ticks.

    Matplotlib's log axis puts major ticks at decades and labels minor ticks (``3x10^-2`` over ``4x10^-2``)
    when the range is short, which labels neither the grid values nor legibly; fixed ticks label the values
    the sweep actually ran.
    """
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    ax.xaxis.set_major_locator(FixedLocator(list(values)))
    ax.xaxis.set_major_formatter(FixedFormatter([_plain(v) for v in values]))
    ax.xaxis.set_minor_locator(NullLocator())


def _tick_labels_overlap(fig: Any, *axes: Any) -> bool:
    """Whether any two visible x tick labels of one of ``axes`` overlap once drawn (one draw for all)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in axes:
        boxes = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()),
                       key=lambda b: b.x0)
        if any(a.x1 > b.x0 for a, b in zip(boxes, boxes[1:])):
            return True
    return False


def metric_vs_figure(trials: pd.DataFrame, key: str, which: str = "final",
                     metrics: Sequence[str] = TABLE_METRICS) -> Any:
    """The figure of :func:`plot_metric_vs` (a matplotlib ``Figure``; the caller closes it).

    The x axis is ticked at the swept values of ``key`` themselves (plain numbers), log-scaled for ``tau``,
    ``lr`` or positive values spanning >= 20x; labels that would still collide are rotated.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [c for c in swept_columns(trials) if c != key]
    if "variant" in trials and trials["variant"].notna().any():
        others = ["variant"] + others
    summary = summarize(trials, others + [key], metrics, which, sort_by_value=True)
    values = sorted(set(summary[key].astype(float)))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    groups = summary.groupby(others, sort=False, dropna=False) if others else [((), summary)]
    for name, grp in groups:
        grp = grp.sort_values(key)
        label = ", ".join(f"{_header(c)}={v}" for c, v in zip(others, name if isinstance(name, tuple) else (name,)))
        for ax, m in zip(axes[0], metrics):
            ax.errorbar(grp[key].astype(float), grp[f"{m}_mean"], yerr=grp[f"{m}_std"].fillna(0.0),
                        marker="o", capsize=3, label=label or None)
    for ax, m in zip(axes[0], metrics):
        ax.set_xlabel(_header(key))
        ax.set_ylabel(f"{m} ({which})")
        if key.endswith(("tau", "lr")) or all(v > 0 for v in values) and \
                max(values) / max(min(values), 1e-12) >= 20:
            ax.set_xscale("log")
        _label_swept_values(ax, values)  # after set_xscale, which installs its own locators
        ax.grid(alpha=0.3)
    if others:
        axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    if _tick_labels_overlap(fig, *axes[0]):
        for ax in axes[0]:
            ax.tick_params(axis="x", labelrotation=45)
        fig.tight_layout()
    return fig


def plot_metric_vs(trials: pd.DataFrame, key: str, path: str | os.PathLike, which: str = "final",
                   metrics: Sequence[str] = TABLE_METRICS) -> Path:
    """Each metric against the numeric column ``key``, mean over seeds with std error bars; one line per
    combination of the other swept keys (and variant). The x ticks are the swept values (see
    :func:`metric_vs_figure`)."""
    import matplotlib.pyplot as plt

    fig = metric_vs_figure(trials, key, which, metrics)
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_loss_curves(curves: pd.DataFrame, trials: pd.DataFrame, path: str | os.PathLike,
                     max_lines: int = 12) -> Path | None:
    """Fig. 5: each loss component against the step (train rows), mean over seeds, one line per point.
    ``None`` when no loss was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if curves.empty:
        return None
    train = curves[curves["kind"] != "eval"]
    comps = [c for c in LOSS_COLUMNS if c in train and train[c].notna().any()]
    if not comps:
        return None
    labels = trials[["trial_id", "seed", "label", "point_id"]].drop_duplicates(["trial_id", "seed"])
    train = train.merge(labels, on=["trial_id", "seed"], how="left")
    train["label"] = train["label"].fillna(train["trial_id"])
    points = list(dict.fromkeys(train.sort_values(["point_id", "step"])["label"]))[:max_lines]
    ncol = min(3, len(comps))
    nrow = math.ceil(len(comps) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.4 * ncol, 3.2 * nrow), squeeze=False)
    for ax, comp in zip(axes.flat, comps):
        for label in points:
            mean = train[train["label"] == label].groupby("step")[comp].mean().dropna()
            if len(mean):
                ax.plot(mean.index, mean.values, label=label)
        ax.set_title(comp)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(comps):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _write(df: pd.DataFrame, pretty: pd.DataFrame, out_dir: Path, name: str, title: str,
           sections: list[str], written: dict[str, Path]) -> None:
    csv, md = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    df.to_csv(csv, index=False)
    text = to_markdown(pretty)
    md.write_text(f"## {title}\n\n{text}")
    sections.append(f"## {title}\n\n{text}")
    written[f"{name}.csv"], written[f"{name}.md"] = csv, md


def write_report(sweep_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, which: str = "final",
                 decimals: int | None = None) -> dict[str, Path]:
    """Build every table and plot for ``sweep_dir``; return ``{file name: path}`` of what was written."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / "trials.parquet").is_file():
        raise TableError(f"{sweep_dir}: no trials.parquet; expected a sweep directory written by `c2s sweep`")
    if which not in ("final", "best"):
        raise TableError(f"which must be 'final' or 'best', got {which!r}")
    tables = load_tables(sweep_dir)
    trials, curves = tables["trials"], tables["curves"]
    out = Path(out_dir) if out_dir is not None else sweep_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    sweep = ", ".join(sorted(trials["sweep"].dropna().unique())) or sweep_dir.name
    n_done = int((trials["status"] == "completed").sum())
    sections = [f"# Sweep report: {sweep}\n\n{n_done} of {len(trials)} trial runs completed; metrics are the "
                f"{which} evaluation, mean ± std over seeds (failed trials are listed apart, never averaged).\n"]

    ablation = ablation_table(trials, which)
    if ablation is not None:
        _write(ablation, format_pm(ablation, decimals=decimals), out, "ablation", "Ablation", sections, written)
    sens = sensitivity_table(trials, which)
    if sens is not None:
        keys = [c[len(CFG_PREFIX):] for c in sens.columns if c.startswith(CFG_PREFIX)]
        name = "sensitivity_" + "__".join(_safe(k) for k in keys)
        _write(sens, format_pm(sens, decimals=decimals), out, name,
               "Sensitivity: " + ", ".join(_header(CFG_PREFIX + k) for k in keys), sections, written)
    backbones = backbone_table(trials, which)
    if backbones is not None:
        _write(backbones, format_pm(backbones, decimals=decimals), out, "backbones", "Backbones", sections, written)
    if ablation is None and sens is None and backbones is None:
        points = summarize(trials, "label", TABLE_METRICS, which)
        _write(points, format_pm(points, decimals=decimals), out, "points", "Points", sections, written)
    failed = failed_table(trials)
    if len(failed):
        _write(failed, failed.assign(error=failed["error"].fillna("").str.slice(0, 200)), out, "failed",
               "Trials that did not complete", sections, written)

    done = completed(trials)
    for col in swept_columns(trials):
        if pd.api.types.is_numeric_dtype(trials[col]) and not pd.api.types.is_bool_dtype(trials[col]) and len(done):
            png = plot_metric_vs(trials, col, out / f"metric_vs_{_safe(col[len(CFG_PREFIX):])}.png", which)
            written[png.name] = png
            sections.append(f"![{col}]({png.name})\n")
    curves_png = plot_loss_curves(curves, trials, out / "loss_curves.png")
    if curves_png is not None:
        written[curves_png.name] = curves_png
        sections.append(f"## Loss curves (Fig. 5)\n\n![loss curves]({curves_png.name})\n")
    index = out / "README.md"
    index.write_text("\n".join(sections))
    written["README.md"] = index
    return written


def main(argv: list[str]) -> int:
    """``c2s report SWEEP_DIR [--out DIR] [--which final|best] [--decimals N]``."""
    parser = argparse.ArgumentParser(prog="c2s report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", help="the sweep's directory (holds trials.parquet)")
    parser.add_argument("--out", default=None, help="output folder (default SWEEP_DIR/report)")
    parser.add_argument("--which", choices=("final", "best"), default="final",
                        help="final evaluation, or the best evaluation step by the sweep metric")
    parser.add_argument("--decimals", type=int, default=None, help="digits after the point (default: auto)")
    args = parser.parse_args(argv)
    try:
        written = write_report(args.sweep_dir, args.out, args.which, args.decimals)
    except TableError as err:
        print(f"c2s report: {err}", file=sys.stderr)
        return 2
    print(Path(written["README.md"]).read_text())
    print(f"wrote {len(written)} files under {Path(written['README.md']).parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
