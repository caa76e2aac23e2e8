"""Hand-made sweep directories, as `c2s sweep` leaves them, without Ray: the trials of a spec under sweeps/,
each run directory with final/metrics.json and final/per_class.parquet, collected into trials / curves /
per_class tables by c2s.sweep.tables, plus sweep.json and a tune-<time> folder.

A test gives each trial its (sIoU, uIoU); hIoU is their harmonic mean, per-class IoUs spread around them with
offsets that sum to zero (so the mean of the unseen classes' IoU is the trial's uIoU exactly).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from c2s.sweep.spec import TrialSpec, expand_trials, load_spec
from c2s.sweep.tables import collect_run, write_run

SEEN = ("red circle", "red square", "red triangle", "green circle", "green square", "green cross", "blue circle",
        "blue triangle", "blue cross", "yellow square", "yellow triangle", "yellow cross", "purple circle",
        "purple square", "purple triangle", "background")
UNSEEN = ("red cross", "green triangle", "blue square", "yellow circle", "purple cross")  # toy_stuff's
UNSEEN_OFFSETS = (-4.0, -2.0, 0.0, 2.0, 4.0)
Score = Callable[[TrialSpec], tuple[float, float]]  # trial -> (sIoU, uIoU)


def hiou(s: float, u: float) -> float:
    return 2 * s * u / (s + u) if s + u else 0.0


def _seen_offsets() -> list[float]:
    half = [0.5 * (i + 1) for i in range(len(SEEN) // 2)]
    return [-x for x in half] + half


def write_run_dir(run: Path, s: float, u: float, wall_s: float = 60.0, unseen_shift: Sequence[float] = ()) -> None:
    """final/metrics.json and final/per_class.parquet of a finished trial with seen/unseen mIoU ``s``/``u``;
    ``unseen_shift`` (zero-sum) moves single unseen classes without changing ``u``."""
    (run / "final").mkdir(parents=True, exist_ok=True)
    shift = list(unseen_shift) or [0.0] * len(UNSEEN)
    seen_iou = [s + o for o in _seen_offsets()]
    unseen_iou = [u + o + d for o, d in zip(UNSEEN_OFFSETS, shift)]
    miou = (sum(seen_iou) + sum(unseen_iou)) / (len(SEEN) + len(UNSEEN))
    (run / "final" / "metrics.json").write_text(json.dumps(
        {"sIoU": s, "uIoU": u, "hIoU": hiou(s, u), "mIoU": miou, "step": 300, "wall_s": wall_s}))
    pq.write_table(pa.table({"class": list(SEEN) + list(UNSEEN), "seen": [True] * len(SEEN) + [False] * len(UNSEEN),
                             "iou": seen_iou + unseen_iou}), run / "final" / "per_class.parquet")


def make_sweep(root: Path, spec_name: str, score: Score, *, updates: Sequence[str] = (), name: str | None = None,
               failed: Sequence[str] = (), shift: Callable[[TrialSpec], Sequence[float]] | None = None) -> Path:
    """A sweep directory ``root/<name or spec name>`` for ``sweeps/<spec_name>.yaml`` with ``updates``:
    every trial completed with ``score(trial)``, except the trial ids in ``failed``."""
    spec = load_spec(spec_name, list(updates))
    sweep_dir = root / (name or spec.name)
    rows = []
    for t in expand_trials(spec):
        if t.trial_id in failed:
            rows.append(collect_run(None, t, sweep=spec.name, status="failed", error="RuntimeError: boom"))
            continue
        run = sweep_dir / "runs" / t.trial_id
        s, u = score(t)
        write_run_dir(run, s, u, wall_s=100.0, unseen_shift=shift(t) if shift else ())
        rows.append(collect_run(run, t, sweep=spec.name, metric=spec.metric, mode=spec.mode))
    write_run(sweep_dir, rows)
    (sweep_dir / "sweep.json").write_text(json.dumps(
        {"name": spec.name, "spec": str(spec.path), "base": spec.base, "updates": list(updates),
         "trials": {t.trial_id: t.overrides for t in expand_trials(spec)}}, indent=2))
    (sweep_dir / "tune-20250301-093000").mkdir()
    return sweep_dir


def by_variant(table: dict[str, tuple[float, float]], noise: float = 1.0) -> Score:
    """(sIoU, uIoU) per variant, seed 0 / 1 / 2 at -noise / 0 / +noise (so std over 3 seeds = noise)."""
    return lambda t: tuple(v + noise * (t.seed - 1) for v in table[str(t.variant)])


def by_param(key: str, table: dict[float, tuple[float, float]], noise: float = 1.0) -> Score:
    return lambda t: tuple(v + noise * (t.seed - 1) for v in table[t.params[key]])
