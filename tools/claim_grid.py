"""The demo's claim over several draws: ``c2s demo`` for every toy CLIP seed x run seed, one table.

    python tools/claim_grid.py --out <dir> [--clip-seeds 0 1] [--run-seeds 0 1] [overrides ...]

One ``c2s demo`` per draw (``toy_clip.seed=S train.seed=R`` after ``overrides``), each in its own process and
folder ``<dir>/clip<S>_seed<R>/`` (with ``demo.log`` and ``command.json``); a draw whose ``demo.json`` is already
there from the same command is read, not run again, so an interrupted grid goes on where it stopped (another
command's draw there is an error). Toy CLIPs, the world and the
backbone come from ``$C2S_CACHE`` as the demo's do: the first draw of a toy CLIP seed pretrains it (minutes).

Prints one JSON line per draw (both runs' sIoU / uIoU / hIoU, the claim: C2S minus baseline on uIoU and hIoU,
and the toy CLIP's zero-shot accuracies) and a summary last: the smallest and the mean claim over the draws whose
toy CLIP meets the accuracy goal (>= 0.99 over all classes, >= 0.98 unseen), and on how many the claim reaches
``--goal`` on both IoUs. Why a grid: one draw's claim ranged from +2.2 to +23.3 uIoU over five draws at the
configs' learning rate (docs/demo.md#the-claim-over-toy-clips-and-seeds), so a lever judged on one draw is
judged on chance.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ACC_GOAL = (0.99, 0.98)  # the toy CLIP's zero-shot accuracy goal: all classes, unseen (issue 27)
IOUS = ("sIoU", "uIoU", "hIoU")


def draw_dir(out: Path, clip_seed: int, run_seed: int) -> Path:
    return out / f"clip{clip_seed}_seed{run_seed}"


def draw_command(out: Path, clip_seed: int, run_seed: int, overrides: Sequence[str]) -> list[str]:
    """The draw's ``c2s demo`` command: the user's overrides first, the draw's seeds last (they win)."""
    return [sys.executable, "-m", "c2s.cli", "demo", "--out", str(draw_dir(out, clip_seed, run_seed)),
            *overrides, f"toy_clip.seed={clip_seed}", f"train.seed={run_seed}"]


def clip_accuracy(overrides: Sequence[str], clip_seed: int) -> dict[str, float]:
    """The zero-shot accuracies recorded beside the draw's cached toy CLIP (all classes, unseen)."""
    from c2s.demo import demo_configs
    from c2s.paths import cache_root
    from c2s.world.clip import load_metrics, teacher_dir

    cfg = demo_configs([*overrides, f"toy_clip.seed={clip_seed}"], num_cpus=2)["c2s"]  # the demo's own config
    metrics = load_metrics(teacher_dir(cfg, cache_root(cfg, env=os.environ)) / "open_clip.pt")
    return {"acc": float(metrics["zero_shot_acc"]), "acc_unseen": float(metrics["zero_shot_acc_unseen"])}


def draw_row(clip_seed: int, run_seed: int, result: dict[str, Any], acc: dict[str, float]) -> dict[str, Any]:
    """One draw: the demo's JSON (``{"baseline": {...}, "c2s": {...}}``, IoUs in percent) and its CLIP's
    accuracies -> the row printed, with the claim rounded to 0.01."""
    base, c2s = result["baseline"], result["c2s"]
    return {
        "toy_clip_seed": clip_seed, "train_seed": run_seed,
        "baseline": {k: base[k] for k in IOUS}, "c2s": {k: c2s[k] for k in IOUS},
        "claim_uIoU": round(c2s["uIoU"] - base["uIoU"], 2), "claim_hIoU": round(c2s["hIoU"] - base["hIoU"], 2),
        "clip_acc": acc["acc"], "clip_acc_unseen": acc["acc_unseen"],
        "clip_meets_goal": acc["acc"] >= ACC_GOAL[0] and acc["acc_unseen"] >= ACC_GOAL[1],
    }


def summarise(rows: Sequence[dict[str, Any]], goal: float) -> dict[str, Any]:
    """The claim over the draws whose toy CLIP meets the accuracy goal: smallest and mean on each IoU, and how
    many reach ``goal`` on both. Draws whose CLIP misses the goal are counted, not summarised."""
    valid = [r for r in rows if r["clip_meets_goal"]]
    out: dict[str, Any] = {"draws": len(rows), "draws_clip_meets_goal": len(valid), "goal": goal}
    if not valid:
        return out
    for key in ("claim_uIoU", "claim_hIoU"):
        values = [r[key] for r in valid]
        out[f"min_{key}"] = round(min(values), 2)
        out[f"mean_{key}"] = round(sum(values) / len(values), 2)
    out["draws_reaching_goal"] = sum(r["claim_uIoU"] >= goal and r["claim_hIoU"] >= goal for r in valid)
    return out


def run_draw(out: Path, clip_seed: int, run_seed: int, overrides: Sequence[str], timeout_s: float) -> dict:
    """The draw's demo.json, running the demo first unless it is there already."""
    folder = draw_dir(out, clip_seed, run_seed)
    result, recorded = folder / "demo.json", folder / "command.json"
    command = draw_command(out, clip_seed, run_seed, overrides)[1:]  # without the interpreter's path
    if recorded.is_file() and json.loads(recorded.read_text()) != command:
        raise SystemExit(f"claim_grid: {folder} holds a draw of another command ({recorded}: "
                         f"{' '.join(json.loads(recorded.read_text()))}); give another --out")
    if result.is_file() and recorded.is_file():
        return json.loads(result.read_text())
    if folder.exists():  # an interrupted draw: its checkpoints would stop a new demo in the same folder
        aside = folder.with_name(f"{folder.name}.partial-{time.strftime('%Y%m%d-%H%M%S')}")
        folder.rename(aside)
        print(f"[grid] {folder} had no demo.json (interrupted?): moved to {aside}, running the draw again",
              file=sys.stderr, flush=True)
    folder.mkdir(parents=True)
    recorded.write_text(json.dumps(command))
    with open(folder / "demo.log", "w") as log:
        proc = subprocess.run([sys.executable, *command], stdout=log,
                              stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
    if proc.returncode != 0 or not result.is_file():
        raise SystemExit(f"claim_grid: the demo of toy_clip.seed={clip_seed} train.seed={run_seed} failed "
                         f"(exit {proc.returncode}); its log: {folder / 'demo.log'}")
    return json.loads(result.read_text())


def is_override(word: str) -> bool:
    """A dotted ``key=value`` override (``optim.lr=6e-4``), not an option (``--goal=10``), a seed or a path with an
    ``=`` in it (``/tmp/lr=2e-3``)."""
    return re.match(r"[A-Za-z_]\w*(\.\w+)*=", word) is not None


# The options that take exactly one word: that word is the option's value, even when it looks like an override
# (``--out grid_lr=2e-3`` is a folder). The seed lists take ints, which never look like one.
_ONE_VALUE_OPTIONS = ("--out", "--goal", "--timeout-s")


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``argv`` as (what argparse reads, the dotted overrides), each in its order: a ``key=value`` word is an
    override wherever it stands, unless it is the value of an option in ``_ONE_VALUE_OPTIONS``."""
    options: list[str] = []
    overrides: list[str] = []
    is_value = False
    for word in argv:
        (options if is_value or not is_override(word) else overrides).append(word)
        is_value = word in _ONE_VALUE_OPTIONS
    return options, overrides


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the grid's folder (one sub-folder per draw)")
    parser.add_argument("--clip-seeds", type=int, nargs="+", default=[0, 1], help="toy_clip.seed values")
    parser.add_argument("--run-seeds", type=int, nargs="+", default=[0, 1], help="train.seed values")
    parser.add_argument("--goal", type=float, default=15.0, help="the claim, in IoU points (default 15)")
    parser.add_argument("--timeout-s", type=float, default=1800.0, help="per demo (default 1800)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides for every draw's demo, e.g. optim.lr=6e-4")
    # An override after --run-seeds would be read as one more seed ("invalid int value"), so the key=value words
    # are taken out before argparse sees the options, wherever they stand.
    options, overrides = split_overrides(argv)
    args = parser.parse_args(options)
    args.overrides = [*args.overrides, *overrides]
    draws = [(s, r) for s in args.clip_seeds for r in args.run_seeds]
    started = time.perf_counter()
    rows = []
    for i, (clip_seed, run_seed) in enumerate(draws, start=1):
        print(f"[grid] {i}/{len(draws)} toy_clip.seed={clip_seed} train.seed={run_seed} "
              f"({time.perf_counter() - started:.0f} s so far)", file=sys.stderr, flush=True)
        result = run_draw(args.out, clip_seed, run_seed, args.overrides, args.timeout_s)
        row = draw_row(clip_seed, run_seed, result, clip_accuracy(args.overrides, clip_seed))
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = summarise(rows, args.goal)
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    (args.out / "grid.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
