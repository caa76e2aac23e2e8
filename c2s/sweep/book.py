"""The results book: ``docs/results.md``, written from the sweeps' tables kept under ``docs/results/``.

    c2s report --collect runs/sweeps/tau   # keep a finished sweep: its tables, command and commit -> docs/results/tau/
    c2s report --book                      # write docs/results.md (and its plots) from docs/results/
    c2s report --book --check              # rebuild into a temporary folder; exit 1 where the book differs

``docs/results/<name>/`` (``<name>``: the sweep directory's name) holds what ``--collect`` copied and wrote:
``trials.parquet`` and ``per_class.parquet`` (docs/tables.md; curves are not kept), ``sweep.json`` (the trials
and ``--set`` updates, as ``c2s sweep`` wrote it) and ``provenance.json`` (command, commit, dates, wall time,
images CLIP encoded); and what ``--book`` writes: ``summary.csv`` (the numbers of the book's table) and
``metric_vs_<key>.png`` (the plots). The book is a function of those files and c2s/sweep/paper.py only (no
clock, no git), so tests/sweep/test_book.py rebuilds it and finds it unchanged.

Each section is a paper table (or a sensitivity sweep) with the sweeps that reproduce it: a collected sweep
shows its mean ± std over seeds beside the paper's numbers and the verdict of every comparison the paper
draws; a planned sweep with no tables shows "not run yet" and the commands that run it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from c2s.sweep import paper
from c2s.sweep.causes import cause_of
from c2s.sweep.report import (
    MODEL_KEY,
    TABLE_METRICS,
    completed,
    failed_table,
    format_pm,
    metric_vs_figure,
    summarize,
    swept_columns,
    to_markdown,
)
from c2s.sweep.tables import CFG_PREFIX, TableError, load_tables, read_table

INPUTS = ("trials.parquet", "per_class.parquet", "sweep.json", "provenance.json")
SUMMARY = "summary.csv"
PLOT_PREFIX = "metric_vs_"
RUN_ROOT = "runs/sweeps"  # where the commands the book shows put a sweep (the toy configs' work_dir)
SEEDS3 = ("seeds=[0,1,2]",)
LITERAL = ("overrides.loss.learn_logit_bias=false", "overrides.distill.global_pool=paper",
           "overrides.distill.local_false_negative_cos=null")


@dataclass(frozen=True)
class Planned:
    """A sweep the book expects: folder ``name`` under docs/results/, run as ``spec`` with ``updates``."""

    name: str
    spec: str
    updates: tuple[str, ...] = SEEDS3
    why: str = ""


@dataclass(frozen=True)
class Section:
    """One page of the book: a paper table (or the settings a sensitivity sweep varies) and its sweeps."""

    title: str
    specs: tuple[str, ...]  # sweep names (the trials' `sweep` column) whose collected tables it shows
    planned: tuple[Planned, ...]
    table: paper.Table | None = None
    settings: tuple[str, ...] = ()  # paper.SETTINGS keys
    claims: tuple[paper.Claim, ...] = ()  # comparisons beyond the paper's (c2s's own)
    intro: str = ""

    def all_claims(self) -> tuple[paper.Claim, ...]:
        return (self.table.claims if self.table else ()) + self.claims


def _planned(spec: str, *extra: Planned) -> tuple[Planned, ...]:
    return (Planned(spec, f"sweeps/{spec}.yaml"), *extra)


LIVE, CACHE = "live teacher", "token cache"
# A row of another collected sweep (matched on its variant): "@<folder>:<variant>".
FULL_C2S = "baseline + distillation + latent embedding"
LITERAL_FULL = f"@ablation_modules_literal:{FULL_C2S}"
ADDITIONS = ("+ learned logit bias", "+ cosine global pooling", "+ local false negatives")  # sweeps/additions.yaml
SECTIONS: tuple[Section, ...] = (
    Section(paper.TABLE3.title.rstrip("."), ("ablation_modules",), _planned(
        "ablation_modules",
        Planned("ablation_modules_clip1", "sweeps/ablation_modules.yaml", SEEDS3 + ("overrides.toy_clip.seed=1",),
                "Table 3 over a second, independently trained toy CLIP (`toy_clip.seed=1`)."),
        Planned("ablation_modules_literal", "sweeps/ablation_modules.yaml", SEEDS3 + LITERAL,
                "Table 3 in the paper's literal form: c2s's three additions to the method (a learned logit bias, "
                "cosine global pooling, local false negatives; docs/decisions.md) off.")), paper.TABLE3,
            intro="Measured in [table3-toy.md](table3-toy.md): the toy world's unseen classes are compositions of "
                  "seen colours and shapes, so the baseline catches up by step 600 of a longer run (3 seeds; by step "
                  "900 it leads by 3.1-3.5 hIoU on each; with the distillation weight decayed to 0 over that run, "
                  "distillation keeps its early gain and ends level, +0.5 to +1.0) and these 300-step tables "
                  "measure how soon distillation brings zero-shot reading; the latent embeddings add nothing "
                  "because ZegCLIP's NEL already pushes the seen classes down on the unannotated objects (with "
                  "`loss.nel_mode=present` they add +3.3 hIoU, 3 seeds)."),
    Section("c2s's additions, one at a time", ("additions",), _planned("additions"),
            claims=tuple(paper.Claim(a, ">", LITERAL_FULL, "hIoU", "c2s turns it on by default because it improves "
                                     "the paper's literal method (docs/decisions.md); here alone, against Table 3's "
                                     "literal full row", source="c2s") for a in ADDITIONS),
            intro="Not in the paper: Table 3's full C2S in the paper's literal form (`ablation_modules_literal` "
                  "above) with one of c2s's three additions to the method turned back on at a time, to show what "
                  "each buys on its own (why each exists: docs/decisions.md)."),
    Section(paper.TABLE4.title.rstrip("."), ("ablation_distill",), _planned("ablation_distill"), paper.TABLE4,
            intro="Why the pairwise losses cost the seen classes here and not in the paper (they read seen objects "
                  "as the unseen class of the same colour; the toy world's split puts an unseen class one "
                  "attribute from every seen one), measured: [table4-toy.md](table4-toy.md)."),
    Section(paper.TABLE5.title.rstrip("."), ("ablation_calibration",), _planned("ablation_calibration"),
            paper.TABLE5, intro="Why no calibration of the latent embeddings moves the toy world's numbers (NEL's "
                                "negatives already do their work), measured: "
                                "[table3-toy.md](table3-toy.md#2-the-latent-embeddings-add-nothing)."),
    Section(paper.TABLE6.title.rstrip("."), ("ablation_generator",), _planned("ablation_generator"), paper.TABLE6),
    Section("Sensitivity: τ", ("tau",), _planned("tau"), settings=("loss.tau",)),
    Section("Sensitivity: α × β", ("alpha_beta",), _planned("alpha_beta"), settings=("loss.alpha", "loss.beta")),
    Section("Sensitivity: bank size", ("bank_size",), _planned("bank_size"), settings=("bank.size",)),
    Section("Backbones: Tables 1-2", ("backbones",), _planned("backbones"), paper.TABLE2,
            intro="The toy world runs the students' tiny variants; the paper's rows are the full-size students "
                  "(Table 1's COCO-Stuff columns, Table 2's parameters, GFLOPs and FPS). Why SETR comes last "
                  "here (its 16-pixel patches make a 6 × 6 grid of the 96-pixel toy images; 30% of its "
                  "seen-object pixels read as background), measured: [backbones-toy.md](backbones-toy.md)."),
    Section("Live teacher vs token cache", ("toy_live_vs_cached",), _planned("toy_live_vs_cached"),
            claims=tuple(paper.Claim(LIVE, "≈", CACHE, m, "the claim must not depend on where the teacher's "
                                     "tokens come from (sweeps/toy_live_vs_cached.yaml)", source="c2s")
                         for m in TABLE_METRICS),
            intro="Not in the paper: c2s's check that the token cache (what every sweep reads by default) "
                  "gives the live teacher's results."),
)


# ---------------------------------------------------------------------------------------------- collect


def _git(where: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_commit() -> tuple[str | None, bool | None]:
    """The commit of the c2s checkout this process imports, and whether tracked files differ from it."""
    where = Path(__file__).resolve().parent
    sha = _git(where, "rev-parse", "HEAD")
    status = _git(where, "status", "--porcelain", "--untracked-files=no") if sha else None
    return sha, (bool(status) if status is not None else None)


def spec_display(spec_path: str | None, name: str) -> str:
    """How the book writes the spec of a sweep: ``sweeps/<file>`` for a spec from a ``sweeps/`` folder."""
    if not spec_path:
        return name
    p = Path(spec_path)
    return f"sweeps/{p.name}" if p.parent.name == "sweeps" else str(p)


def sweep_command(spec: str, updates: Sequence[str], name: str) -> str:
    """``c2s sweep SPEC --set U ... --out runs/sweeps/NAME``, quoted for a shell."""
    return shlex.join(["c2s", "sweep", spec, *[w for u in updates for w in ("--set", u)], "--out",
                       f"{RUN_ROOT}/{name}"])


def _last_summary(path: Path) -> dict[str, Any]:
    """The sweep's summary: the last JSON object line of its console log (``c2s sweep``'s last line)."""
    for line in reversed(path.read_text().splitlines()):
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and "wall_s" in data:
            return data
    raise TableError(f"{path}: no JSON line with 'wall_s' (expected the log of `c2s sweep`, whose last line "
                     "is its summary)")


def _started(sweep_dir: Path) -> str | None:
    """When the sweep first started: the earliest ``tune-YYYYmmdd-HHMMSS`` folder (the machine's local time)."""
    stamps = sorted(m.group(1) for p in sweep_dir.glob("tune-*") if (m := re.fullmatch(r"tune-(\d{8}-\d{6})", p.name)))
    if not stamps:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.strptime(stamps[0], "%Y%m%d-%H%M%S"))


def _params_m(trials: pd.DataFrame) -> dict[str, float]:
    """Parameters (M) per student of a sweep that varies ``model.name`` (c2s.student.zoo), for the book."""
    from c2s.sweep.report import _zoo_params_m

    if MODEL_KEY not in trials or MODEL_KEY not in swept_columns(trials):
        return {}
    out = {}
    for name in trials[MODEL_KEY].dropna().unique():
        rows = trials[trials[MODEL_KEY] == name]
        value = rows["params_m"].dropna().mean() if "params_m" in rows else math.nan
        value = value if not math.isnan(value) else _zoo_params_m(str(name), rows)
        if value is not None and not math.isnan(value):
            out[str(name)] = round(float(value), 3)
    return out


def collect(sweep_dir: str | os.PathLike, results_dir: str | os.PathLike = "docs/results", *,
            name: str | None = None, summary: str | os.PathLike | None = None,
            commit: str | None = None) -> Path:
    """Copy a sweep's trials and per-class tables and its ``sweep.json`` to ``results_dir/<name>/`` and write
    ``provenance.json``: the command, the commit (``--commit``, else the sweep.json's, else this checkout's
    HEAD), when it started and was collected, wall time (``summary``: the sweep's console log) and the
    images CLIP encoded. Returns the folder."""
    src = Path(sweep_dir)
    if read_table(src, "trials") is None:
        raise TableError(f"{src}: no trials.parquet; expected a sweep directory written by `c2s sweep`")
    if not (src / "sweep.json").is_file():
        raise TableError(f"{src}: no sweep.json; the book shows the command a sweep ran, which it records")
    state = json.loads((src / "sweep.json").read_text())
    name = name or src.resolve().name
    if not re.fullmatch(r"[\w.-]+", name):
        raise TableError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (it names a folder)")
    out = Path(results_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    for file in ("trials.parquet", "per_class.parquet", "sweep.json"):
        if (src / file).is_file():
            shutil.copyfile(src / file, out / file)
        else:
            (out / file).unlink(missing_ok=True)
    trials = load_tables(src)["trials"]
    (out / "provenance.json").write_text(json.dumps(
        provenance(src, state, trials, name, summary=summary, commit=commit), indent=2, sort_keys=True) + "\n")
    return out


def provenance(src: Path, state: dict[str, Any], trials: pd.DataFrame, name: str, *,
               summary: str | os.PathLike | None = None, commit: str | None = None) -> dict[str, Any]:
    """The record ``collect`` writes beside the tables (see :func:`collect`)."""
    spec = spec_display(state.get("spec"), str(state.get("name") or name))
    updates = [str(u) for u in state.get("updates") or []]
    sha, dirty, source = commit, None, "--commit"
    if sha is None and state.get("commit"):
        sha, dirty, source = str(state["commit"]), state.get("dirty"), "sweep.json"
    if sha is None:
        (sha, dirty), source = code_commit(), "the c2s checkout that collected it"
    log = _last_summary(Path(summary)) if summary else {}
    live = int(pd.to_numeric(trials.get("teacher_images"), errors="coerce").fillna(0).sum()) \
        if "teacher_images" in trials else 0
    builds = (log.get("teacher_images") or {}).get("cache_builds")
    return {
        "name": name, "sweep": str(state.get("name") or name), "spec": spec, "updates": updates,
        "command": sweep_command(spec, updates, name), "commit": sha, "dirty": dirty, "commit_source": source,
        "started": _started(src), "collected_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "wall_s": log.get("wall_s"), "trial_wall_s": round(float(trials["wall_s"].fillna(0).sum()), 1),
        "trials": len(trials), "completed": int((trials["status"] == "completed").sum()),
        "teacher_images": {"cache_builds": builds, "trials": live,
                           "total": None if builds is None else int(builds) + live},
        "params_m": _params_m(trials), "source_dir": str(src.resolve()),
    }


# ---------------------------------------------------------------------------------------------- loading


@dataclass
class Collected:
    """A sweep kept under docs/results/<name>/."""

    name: str
    folder: Path
    trials: pd.DataFrame
    per_class: pd.DataFrame
    state: dict[str, Any] = field(default_factory=dict)
    prov: dict[str, Any] = field(default_factory=dict)

    @property
    def sweep(self) -> str:
        names = self.trials["sweep"].dropna().unique() if "sweep" in self.trials else []
        return str(names[0]) if len(names) else str(self.prov.get("sweep") or self.state.get("name") or self.name)

    @property
    def done(self) -> pd.DataFrame:
        return completed(self.trials)


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def load_collected(results_dir: Path) -> dict[str, Collected]:
    """Every ``results_dir/<name>/`` with a trials.parquet, by name (sorted)."""
    out = {}
    for folder in sorted(p for p in results_dir.iterdir() if (p / "trials.parquet").is_file()) \
            if results_dir.is_dir() else []:
        tables = load_tables(folder)
        out[folder.name] = Collected(folder.name, folder, tables["trials"], tables["per_class"],
                                     _json(folder / "sweep.json"), _json(folder / "provenance.json"))
    return out


# ---------------------------------------------------------------------------------------------- numbers


def family(name: Any) -> str:
    """A student's family: ``segformer_tiny`` / ``segformer_b4`` -> ``segformer`` (Table 2's rows)."""
    return str(name).split("_")[0]


def stats(c: Collected, column: str) -> dict[str, paper.Stat]:
    """Mean/std over seeds per value of ``column`` (per student family for ``cfg.model.name``)."""
    done = c.done
    if done.empty or column not in done:
        return {}
    if column == MODEL_KEY:
        done = done.assign(**{MODEL_KEY: done[MODEL_KEY].map(family)})
    summary = summarize(done, column)
    out = {}
    for _, r in summary.iterrows():
        for m in TABLE_METRICS:
            out.setdefault(str(r[column]), {})[m] = paper.Stat(float(r[f"{m}_mean"]), float(r[f"{m}_std"]),
                                                               int(r["n_seeds"]))
    return out


def summary_frame(c: Collected) -> pd.DataFrame:
    """The numbers the book shows for a sweep (also ``summary.csv``): one row per variant / point."""
    keys = swept_columns(c.trials)
    if "variant" in c.trials and c.trials["variant"].notna().any():
        return summarize(c.trials, ["variant"] + keys)
    return summarize(c.trials, keys, sort_by_value=True) if keys else summarize(c.trials, "label")


# ---------------------------------------------------------------------------------------------- Markdown


def slug(heading: str) -> str:
    """GitHub's anchor of a heading (as tests/test_docs_commands.py checks links)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def num(value: float, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def pm(stat: paper.Stat | None) -> str:
    if stat is None or math.isnan(stat.mean):
        return "–"
    return num(stat.mean) if math.isnan(stat.std) else f"{stat.mean:.1f} ± {stat.std:.1f}"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes = int(round(float(seconds) / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def count(n: Any) -> str:
    return "–" if n is None else f"{int(n):,}"


def status_of(c: Collected | None) -> str:
    if c is None:
        return "not run yet"
    seeds = sorted(int(s) for s in c.done["seed"].unique())
    return f"{len(seeds)} seed(s), {len(c.done)} of {len(c.trials)} trial runs completed"


def provenance_lines(c: Collected) -> list[str]:
    """Status, commit, dates, wall time, CLIP images, and the commands (from sweep.json's spec and updates)."""
    p = c.prov
    spec = p.get("spec") or spec_display(c.state.get("spec"), c.sweep)
    command = p.get("command") or sweep_command(spec, [str(u) for u in c.state.get("updates") or []], c.name)
    sha = p.get("commit")
    commit = f"`{sha[:12]}`" + (" (with uncommitted changes)" if p.get("dirty") else "") if sha else "unknown"
    images = p.get("teacher_images") or {}
    wall = p.get("wall_s")
    wall_text = duration(wall) if wall is not None else f"{duration(p.get('trial_wall_s'))} (trials, summed)"
    return [
        f"{status_of(c)}; final evaluation, mean ± std over seeds. Commit {commit}, started "
        f"{p.get('started') or '–'}, collected {p.get('collected_utc') or '–'} UTC; wall time {wall_text}; "
        f"images CLIP encoded: {count(images.get('total'))} (cache builds {count(images.get('cache_builds'))}, "
        f"live in trials {count(images.get('trials'))}).", "",
        "```bash", command, f"c2s report --collect {RUN_ROOT}/{c.name}", "```", "",
    ]


def claim_cell(verdict: paper.Verdict, left: paper.Stat, right: paper.Stat) -> str:
    if verdict.holds is None:
        return "no data"
    return f"{num(left.mean)} vs {num(right.mean)}, Δ {verdict.delta:+.1f} (spread {verdict.spread:.1f}): " \
           f"**{verdict.word}**"


def resolve(ref: str, metric: str, own: dict[str, dict[str, paper.Stat]],
            others: dict[str, dict[str, dict[str, paper.Stat]]]) -> paper.Stat:
    """Our number for a claim's side: a row of this sweep, ``<table>:<row>`` of that table's own sweep, or
    ``@<folder>:<variant>`` of another collected sweep."""
    source, key = (others.get(ref.split(":", 1)[0], {}), ref.split(":", 1)[1]) if ":" in ref else (own, ref)
    return source.get(key, {}).get(metric, paper.Stat(math.nan))


@dataclass(frozen=True)
class Tally:
    """A page's comparisons: how many agree of how many have numbers, and each disagreeing (claim, sweep)."""

    agree: int = 0
    total: int = 0
    disagree: tuple[tuple[str, str], ...] = ()

    @property
    def explained(self) -> int:
        return sum(cause_of(claim, sweep) is not None for claim, sweep in self.disagree)


def claims_block(section: Section, sweeps: Sequence[Collected],
                 others: dict[str, dict[str, dict[str, paper.Stat]]]) -> tuple[list[str], Tally]:
    """The comparisons table: the paper's numbers, then one column per collected sweep; and its tally."""
    claims = section.all_claims()
    if not claims:
        return [], Tally()
    table = section.table
    column = table.match if table else "variant"
    own = {c.name: stats(c, column) for c in sweeps}
    rows, agree, total, disagree = [], 0, 0, []
    label = lambda ref: row_label(table, ref)  # noqa: E731
    for claim in claims:
        said = f"\"{claim.says}\"" if claim.source == "text" else claim.says
        said += f" ({claim.note})" if claim.note else ""
        text = claim.text(label)
        cells = [text, said, claim.source]
        if table is not None:
            left, right = (paper.paper_stat(table, claim.left, claim.metric),
                           paper.paper_stat(table, claim.right, claim.right_metric or claim.metric))
            cells.append(f"{num(left.mean)} vs {num(right.mean)}")
        for c in sweeps:
            left = resolve(claim.left, claim.metric, own[c.name], others)
            right = resolve(claim.right, claim.right_metric or claim.metric, own[c.name], others)
            verdict = paper.holds(claim.op, left, right)
            agree, total = agree + bool(verdict.holds), total + (verdict.holds is not None)
            if verdict.holds is False:
                disagree.append((text, c.name))
            cells.append(claim_cell(verdict, left, right))
        rows.append(cells)
    headers = ["comparison", "the paper says" if table else "the claim", "source"] + \
        (["paper"] if table else []) + [f"`{c.name}`" for c in sweeps]
    return [f"Comparisons (`>`: higher mean; `≈`: within max({paper.SIMILAR_POINTS:g} points, the seeds' spread); "
            f"`≫`: at least {paper.MUCH_POINTS:g} points higher; spread = the two rows' std summed):", "",
            md_table(headers, rows), "", *causes_lines(disagree)], Tally(agree, total, tuple(disagree))


def causes_lines(disagree: Sequence[tuple[str, str]]) -> list[str]:
    """Under the comparisons: the disagreeing cells grouped by their measured cause (c2s.sweep.causes), each
    comparison with the sweeps where it disagrees; the ones without a cause last, marked."""
    if not disagree:
        return []
    groups: dict[tuple[str, str] | None, dict[str, list[str]]] = {}  # (why, where): claim -> sweeps
    for claim, sweep in disagree:
        cause = cause_of(claim, sweep)
        key = (cause.why, cause.where) if cause else None
        groups.setdefault(key, {}).setdefault(claim, []).append(f"`{sweep}`")
    lines = ["Why they disagree here (measured; c2s/sweep/causes.py):", ""]
    for key in sorted(groups, key=lambda k: k is None):
        cells = "; ".join(f"{claim} ({', '.join(sweeps)})" for claim, sweeps in groups[key].items())
        why = f"{key[0]} ([{key[1].split('#')[0]}]({key[1]}))" if key else "**cause not measured yet**"
        lines.append(f"- {cells}: {why}.")
    return lines + [""]


def row_label(table: paper.Table | None, ref: str) -> str:
    """How a claim names a row: the variant itself, a student by its paper name, another table's with it."""
    if ref.startswith("@"):
        owner, key = ref[1:].split(":", 1)
        return f"{key} (`{owner}`)"
    if ":" in ref:
        owner, key = ref.split(":", 1)
        return f"{key} ({paper.TABLES[owner].title.split(':')[0]})"
    if table is not None and table.match == MODEL_KEY:
        return table.row(ref).name
    return ref


def paper_block(table: paper.Table) -> list[str]:
    names = {"params_m": "Parameter (M)", "gflops": "GFLOPs", "fps": "FPS"}
    rows = [[r.name, *[num(r.values[c]) for c in table.columns]] for r in table.rows]
    return [f"The paper ({table.where}; {table.setting}):", "",
            md_table(["row"] + [names.get(c, c) for c in table.columns], rows)]


def ours_vs_paper(c: Collected, table: paper.Table) -> list[str]:
    """Our mean ± std beside the paper's number, per row of the paper (and any row only we have)."""
    ours = stats(c, table.match)
    keys = [r.key for r in table.rows] + [k for k in ours if k not in {r.key for r in table.rows}]
    headers, rows = ["backbone" if table.match == MODEL_KEY else "row"], []
    metric_cols = [m for m in table.columns if m in TABLE_METRICS]
    extra = [c_ for c_ in table.columns if c_ not in TABLE_METRICS]
    params = _params_by_family(c) if "params_m" in extra else {}
    names = _names_by_family(c) if table.match == MODEL_KEY else {}
    for m in metric_cols:
        headers += [m, "paper"]
    headers += (["Parameter (M)", "paper", "GFLOPs (paper)", "FPS (paper)"] if extra else []) + ["seeds"]
    for key in keys:
        printed = next((r for r in table.rows if r.key == key), None)
        stat = ours.get(key, {})
        name = printed.name if printed else key
        cells: list[Any] = [f"{name} (ours: `{names[key]}`)" if key in names else name]
        for m in metric_cols:
            cells += [pm(stat.get(m)), num(printed.values[m]) if printed else "–"]
        if extra:
            cells += [num(params.get(key, math.nan), 2),
                      *[num(printed.values[x]) if printed else "–" for x in ("params_m", "gflops", "fps")]]
        cells.append(stat[metric_cols[0]].seeds if stat else 0)
        rows.append(cells)
    return [md_table(headers, rows)]


def _names_by_family(c: Collected) -> dict[str, str]:
    """``segformer`` -> ``segformer_tiny``: the student a sweep ran for each of the paper's backbones."""
    names = sorted(c.trials[MODEL_KEY].dropna().unique()) if MODEL_KEY in c.trials else []
    out: dict[str, list[str]] = {}
    for name in names:
        out.setdefault(family(name), []).append(str(name))
    return {k: ", ".join(v) for k, v in out.items()}


def _params_by_family(c: Collected) -> dict[str, float]:
    return {family(k): float(v) for k, v in (c.prov.get("params_m") or {}).items()}


def sweep_table(c: Collected) -> list[str]:
    """A sweep's own table (no paper rows): the swept keys / variants, mean ± std, seeds."""
    return [to_markdown(format_pm(summary_frame(c)))]


def plots(c: Collected, section: Section) -> list[str]:
    """Write ``metric_vs_<key>.png`` for each numeric swept key (a dashed line at the paper's value of it,
    where it states one); the Markdown image lines."""
    import matplotlib.pyplot as plt

    lines = []
    if c.done.empty:
        return lines
    for col in swept_columns(c.trials):
        series = c.trials[col]
        if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        key = col[len(CFG_PREFIX):]
        png = c.folder / f"{PLOT_PREFIX}{key}.png"
        fig = metric_vs_figure(c.trials, col)
        stated = paper.SETTINGS.get(key) if key in section.settings else None
        if stated is not None and stated.value is not None:
            for ax in fig.axes:
                ax.axvline(stated.value, color="gray", linestyle="--", linewidth=1, label=f"paper: {stated.value:g}")
            fig.axes[-1].legend(fontsize=7)
        fig.savefig(png, dpi=90, metadata={"Software": None})
        plt.close(fig)
        lines += [f"![{key}]({c.folder.parent.name}/{c.name}/{png.name})", ""]
    return lines


def value_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def best_lines(c: Collected, section: Section) -> list[str]:
    """Per metric: the best point (mean ± std), the runner-up, and where the paper's stated value ranks."""
    frame = summary_frame(c)
    keys = [k for k in frame.columns if k.startswith(CFG_PREFIX)]
    if frame.empty or not keys:
        return []
    label = lambda r: ", ".join(f"{k[len(CFG_PREFIX):]} = {value_text(r[k])}" for k in keys)  # noqa: E731
    lines = []
    for m in TABLE_METRICS:
        ranked = frame.sort_values([f"{m}_mean"] + keys, ascending=[False] + [True] * len(keys))
        best = ranked.iloc[0]
        text = f"- best {m}: {label(best)} ({pm(paper.Stat(best[f'{m}_mean'], best[f'{m}_std']))})"
        if len(ranked) > 1:
            nxt = ranked.iloc[1]
            text += f"; next {label(nxt)} ({pm(paper.Stat(nxt[f'{m}_mean'], nxt[f'{m}_std']))})"
        lines.append(text)
    for key in section.settings:
        value = paper.SETTINGS[key].value
        col = CFG_PREFIX + key
        if value is not None and col in frame:
            hit = frame[frame[col] == value]
            if len(hit):
                h = hit.iloc[0]
                rank = int((frame["hIoU_mean"] > h["hIoU_mean"]).sum()) + 1
                lines.append(f"- the paper's {key} = {value:g}: hIoU {pm(paper.Stat(h['hIoU_mean'], h['hIoU_std']))}, "
                             f"rank {rank} of {len(frame)}")
    return lines + [""]


def unseen_block(c: Collected) -> list[str]:
    """Unseen classes' IoU per point (mean over seeds), folded."""
    if c.per_class.empty or c.done.empty:
        return []
    runs = c.done[["trial_id", "seed", "point_id", "label"]]
    unseen = c.per_class[~c.per_class["seen"].astype(bool)].merge(runs, on=["trial_id", "seed"])
    if unseen.empty:
        return []
    order = list(dict.fromkeys(runs.sort_values("point_id", kind="stable")["label"]))
    table = unseen.groupby(["class", "label"])["iou"].mean().unstack("label").reindex(columns=order)
    rows = [[cls, *[num(v) for v in r]] for cls, r in table.sort_index().iterrows()]
    return ["<details><summary>Unseen classes: IoU per class, mean over seeds</summary>", "",
            md_table(["class"] + order, rows), "</details>", ""]


def failed_block(c: Collected) -> list[str]:
    failed = failed_table(c.trials)
    if failed.empty:
        return []
    rows = [[r.get("trial_id"), r.get("label"), r.get("seed"), r.get("status"), str(r.get("error") or "")[:160]]
            for r in failed.to_dict("records")]
    return [f"{len(failed)} trial run(s) did not complete (never averaged):", "",
            md_table(["trial", "point", "seed", "status", "error"], rows)]


def not_run_block(plan: Planned) -> list[str]:
    return ["Not run yet. Run it (a CPU machine: see [sweeps.md](sweeps.md)), keep its tables, rebuild this page:",
            "", "```bash", sweep_command(plan.spec, plan.updates, plan.name),
            f"c2s report --collect {RUN_ROOT}/{plan.name}", "c2s report --book", "```", ""]


def settings_lines(section: Section) -> list[str]:
    lines, said = [], {}
    for key in section.settings:  # keys the paper states in one sentence share a line
        said.setdefault(paper.SETTINGS[key].says, []).append(paper.SETTINGS[key])
    for says, settings in said.items():
        values = [f"sets {s.key} = {s.value:g}" if s.value is not None else f"gives no value for {s.key}"
                  for s in settings]
        lines.append(f"- The paper ({settings[0].where}): \"{says}\"; it {' and '.join(values)}, and shows no "
                     "sensitivity study.")
    return lines + [""] if lines else []


def sweep_block(c: Collected, section: Section, plan: Planned | None) -> list[str]:
    lines = [f"### `{c.name}`", ""] + ([plan.why, ""] if plan and plan.why else [])
    lines += provenance_lines(c)
    if section.table is not None:
        lines += ours_vs_paper(c, section.table)
    else:
        lines += sweep_table(c)
    lines += [""] + (best_lines(c, section) if section.table is None else []) + plots(c, section) + unseen_block(c) + failed_block(c)
    summary_frame(c).to_csv(c.folder / SUMMARY, index=False, float_format="%.4f")
    return lines


def section_sweeps(section: Section, collected: dict[str, Collected]) -> list[tuple[str, Planned | None,
                                                                                     Collected | None]]:
    """The section's sweeps in order: planned ones (collected or not), then other collected folders of its specs."""
    out = [(p.name, p, collected.get(p.name)) for p in section.planned]
    planned = {p.name for p in section.planned}
    out += [(n, None, c) for n, c in collected.items() if n not in planned and c.sweep in section.specs]
    return out


def section_block(section: Section, collected: dict[str, Collected],
                  others: dict[str, dict[str, dict[str, paper.Stat]]]) -> tuple[list[str], str]:
    """A section's Markdown and its one-line status for the page list."""
    entries = section_sweeps(section, collected)
    have = [c for _, _, c in entries if c is not None]
    lines = [f"## {section.title}", ""] + ([section.intro, ""] if section.intro else [])
    lines += paper_block(section.table) if section.table is not None else []
    lines += settings_lines(section)
    claims, tally = claims_block(section, have, others)
    lines += claims
    for name, plan, c in entries:
        if c is None:
            lines += [f"### `{name}`", ""] + ([plan.why, ""] if plan.why else []) + not_run_block(plan)
        else:
            lines += sweep_block(c, section, plan)
    runs = ", ".join(f"`{n}`: {status_of(c)}" for n, _, c in entries)
    verdicts = f"{tally.agree} of {tally.total} comparisons agree" if tally.total else ("–" if have else "not run yet")
    if tally.disagree:
        verdicts += f"; causes measured for {tally.explained} of {len(tally.disagree)} disagreements"
    return lines, f"| [{section.title}](#{slug(section.title)}) | {runs} | {verdicts} |"


def other_block(collected: dict[str, Collected]) -> list[str]:
    """Collected sweeps of specs no section names: their own tables."""
    known = {s for section in SECTIONS for s in section.specs} | {p.name for s in SECTIONS for p in s.planned}
    rest = [c for n, c in collected.items() if n not in known and c.sweep not in known]
    if not rest:
        return []
    lines = ["## Other sweeps", ""]
    empty = Section("Other sweeps", (), ())
    for c in rest:
        lines += sweep_block(c, empty, None)
    return lines


HEADER = """# Results book

Every ablation of the paper (Tables 3-6), the student backbones (Tables 1-2) and the sensitivity sweeps (τ,
α × β, bank size), run on the toy world, beside the paper's numbers. `c2s report --book` writes this page from
the sweeps' tables kept under `docs/results/` (trials and per-class tables, each sweep's command and commit)
and the paper's numbers in `c2s/sweep/paper.py` (each with its table and section); tests/sweep/test_book.py
rebuilds it and fails when it differs, so it cannot drift from its data. Do not edit it by hand.

```bash
c2s report --collect runs/sweeps/tau   # keep a finished sweep's tables, command and commit under docs/results/tau/
c2s report --book                      # rebuild this page and its plots from docs/results/
```

Ours: the final evaluation of each trial, mean ± std over seeds (std with ddof=1), completed trials only, in
percent. The paper's: single runs as printed (COCO-Stuff; the toy world is COCO-Stuff-like, every pixel
labelled, but far smaller: compare directions, not levels). A verdict is computed from the means; "within
seed spread" marks a difference no larger than the two rows' std summed. Under each page's comparisons, every
one that disagrees is listed with the cause measured for it and the page that measured it
(`c2s/sweep/causes.py`; "cause not measured yet" where none is). The paper shows no sensitivity
study; those sections show ours beside what it states. [analysis.md](analysis.md) asks these tables further
questions in pandas and DuckDB.
"""


def cross_sweep_stats(collected: dict[str, Collected]) -> dict[str, dict[str, dict[str, paper.Stat]]]:
    """What a claim may name outside its own sweep: each paper table's first sweep by the table's key
    (``<table>:<row>``), and every collected sweep by ``@<folder>`` (``@<folder>:<variant>``)."""
    others = {}
    for section in SECTIONS:
        if section.table is not None and section.planned and section.planned[0].name in collected:
            others[section.table.key] = stats(collected[section.planned[0].name], section.table.match)
    others.update({f"@{name}": stats(c, "variant") for name, c in collected.items()})
    return others


def render(results_dir: Path) -> str:
    """The book's Markdown; writes each collected sweep's summary.csv and plots on the way."""
    collected = load_collected(results_dir)
    for c in collected.values():
        for stale in [c.folder / SUMMARY, *c.folder.glob(f"{PLOT_PREFIX}*.png")]:
            stale.unlink(missing_ok=True)
    others = cross_sweep_stats(collected)
    bodies, index = [], []
    for section in SECTIONS:
        lines, entry = section_block(section, collected, others)
        bodies += lines
        index.append(entry)
    pages = ["## Pages", "", "| page | sweeps | comparisons |", "|---|---|---|", *index, ""]
    text = "\n".join([HEADER, *pages, *bodies, *other_block(collected)])
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


def build_book(results_dir: str | os.PathLike = "docs/results") -> Path:
    """Write ``<results_dir>.md`` (docs/results.md) and each sweep's summary.csv and plots; return the page."""
    results_dir = Path(results_dir)
    if not results_dir.parent.is_dir():
        raise TableError(f"{results_dir.parent}/ does not exist; run from the repository's root or pass --results")
    page = results_dir.with_suffix(".md")
    page.write_text(render(results_dir))
    return page


def _generated(folder: Path) -> list[Path]:
    return sorted([*folder.glob(SUMMARY), *folder.glob(f"{PLOT_PREFIX}*.png")])


def check_book(results_dir: str | os.PathLike = "docs/results") -> list[str]:
    """Rebuild the book from the tables under ``results_dir`` in a temporary folder and list every way the
    committed page and files differ (empty: up to date). Plots are compared by name, CSVs byte for byte."""
    results_dir = Path(results_dir)
    page = results_dir.with_suffix(".md")
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / results_dir.name
        copy.mkdir()
        for folder in sorted(p for p in results_dir.iterdir() if p.is_dir()) if results_dir.is_dir() else []:
            for name in INPUTS:
                if (folder / name).is_file():
                    (copy / folder.name).mkdir(exist_ok=True)
                    shutil.copyfile(folder / name, copy / folder.name / name)
        fresh = build_book(copy)
        if not page.is_file():
            problems.append(f"{page} does not exist")
        elif page.read_bytes() != fresh.read_bytes():
            old, new = page.read_text().splitlines(), fresh.read_text().splitlines()
            line = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
            problems.append(f"{page} differs from a rebuild at line {line + 1}: "
                            f"{(old[line] if line < len(old) else '<end>')[:100]!r} vs "
                            f"{(new[line] if line < len(new) else '<end>')[:100]!r}")
        for folder in sorted(p for p in copy.iterdir() if p.is_dir()):
            want = {p.name: p for p in _generated(folder)}
            have = {p.name: p for p in _generated(results_dir / folder.name)}
            for name in sorted(set(want) ^ set(have)):
                problems.append(f"{results_dir / folder.name / name}: "
                                f"{'missing' if name in want else 'not written by a rebuild'}")
            for name in sorted(n for n in set(want) & set(have) if n.endswith(".csv")):
                if want[name].read_bytes() != have[name].read_bytes():
                    problems.append(f"{results_dir / folder.name / name} differs from a rebuild")
    return problems


# ---------------------------------------------------------------------------------------------- command line


def parse_args(argv: list[str]) -> argparse.Namespace:
    """``c2s report``'s arguments: a plain ``SWEEP_DIR`` report (c2s/sweep/report.py), ``--collect`` or ``--book``."""
    from c2s.sweep import report

    parser = argparse.ArgumentParser(
        prog="c2s report", description=report.__doc__.split("\n\n")[0],
        epilog="--collect SWEEP_DIR keeps a sweep's tables under docs/results/<name>/; --book writes "
               "docs/results.md from them (c2s/sweep/book.py)")
    parser.add_argument("sweep_dir", nargs="?", help="the sweep's directory (holds trials.parquet)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--collect", action="store_true", help="copy SWEEP_DIR's trials and per-class tables, "
                      "sweep.json and a provenance.json (command, commit, wall time) to RESULTS/<name>/")
    mode.add_argument("--book", action="store_true", help="write RESULTS.md (docs/results.md) from RESULTS/")
    parser.add_argument("--results", default="docs/results", help="the book's tables (default docs/results)")
    parser.add_argument("--check", action="store_true", help="with --book: rebuild in a temporary folder and "
                        "exit 1 if the committed book differs")
    parser.add_argument("--name", default=None, help="with --collect: the folder's name (default SWEEP_DIR's)")
    parser.add_argument("--summary", default=None, help="with --collect: the sweep's console log, whose last "
                        "JSON line gives its wall time and the images CLIP encoded for its caches")
    parser.add_argument("--commit", default=None, help="with --collect: the commit the sweep ran (default: "
                        "sweep.json's, else this checkout's HEAD)")
    parser.add_argument("--out", default=None, help="output folder (default SWEEP_DIR/report)")
    parser.add_argument("--which", choices=("final", "best"), default="final",
                        help="final evaluation, or the best evaluation step by the sweep metric")
    parser.add_argument("--decimals", type=int, default=None, help="digits after the point (default: auto)")
    args = parser.parse_args(argv)
    if args.book and args.sweep_dir is not None:
        parser.error("--book reads every sweep under --results; it takes no SWEEP_DIR")
    if not args.book and args.sweep_dir is None:
        parser.error("SWEEP_DIR is required (or --book)")
    if args.check and not args.book:
        parser.error("--check goes with --book")
    return args


def main(argv: list[str]) -> int:
    """``c2s report SWEEP_DIR ...`` (c2s/sweep/report.py), ``--collect SWEEP_DIR``, ``--book [--check]``."""
    args = parse_args(argv)
    if not (args.book or args.collect):
        from c2s.sweep import report

        return report.main(argv)
    try:
        if args.collect:
            out = collect(args.sweep_dir, args.results, name=args.name, summary=args.summary, commit=args.commit)
            print(f"kept {args.sweep_dir}'s tables under {out}/; now: c2s report --book")
            return 0
        if args.check:
            problems = check_book(args.results)
            for line in problems:
                print(f"c2s report --book --check: {line}", file=sys.stderr)
            print("rebuild it: c2s report --book" if problems else "the book is up to date")
            return 1 if problems else 0
        print(f"wrote {build_book(args.results)} from {args.results}/")
        return 0
    except TableError as err:
        print(f"c2s report: {err}", file=sys.stderr)
        return 2


__all__ = ["SECTIONS", "Section", "Planned", "collect", "provenance", "build_book", "check_book", "render",
           "sweep_command", "spec_display", "parse_args", "main"]
