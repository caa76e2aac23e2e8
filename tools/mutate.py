"""Mutation testing of the core modules with mutmut, against the unit tests only (``make mutate``).

    python tools/mutate.py                          # fresh snapshot, every module, JSON line last
    python tools/mutate.py --modules c2s/metrics.py # one module
    python tools/mutate.py --resume                 # same snapshot: test the mutants not tested yet
    python tools/mutate.py --resume --survivors     # re-test only the survivors against the current tests
    python tools/mutate.py --summary                # only print the JSON line of what was measured

mutmut works on a snapshot of ``c2s/`` and ``tests/`` under ``build/mutate/`` (its ``mutants/`` copy lives
there), so the working tree is never modified and edits made while it runs do not leak into the result.
Tests: the unit test files that exercise the core modules (no Ray, no integration marker). Workers run
under mutmut's fork server (torch is not fork-safe once its thread pool started) with one torch thread
each. Results are cached by mutmut in the snapshot, so ``--resume`` after a timeout picks up where it
stopped (only the mutants without a verdict are tested). The last line printed is
``{"mutants": N, "killed": K, "killed_frac": K/N, "survivors_by_module": {...}}``; timeouts count as killed
(the mutant made the tests hang, which the tests detect), "no tests" and "suspicious" as survivors;
``timeouts`` says how many of the killed were timeouts.

Speed (about 3300 mutants; see the Makefile comment for a measured run): pytest's unraisable-exception
plugin is off (its exit-time gc.collect() over the fork server's heap cost 0.45 s per mutant), each mutant's
tests run fastest first (tools/mutate_order.py) so ``-x`` stops a killed mutant early, and the one test
that starts worker processes is deselected (DESELECT). Before the JSON line, stderr gets the run's wall and
CPU seconds: the CPU seconds, divided by the cores, are what the run costs on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("c2s/method/", "c2s/metrics.py", "c2s/train/checkpoint.py", "c2s/sweep/tables.py",
           "c2s/data/transforms.py")
# Unit test files that exercise the modules above (the integration tests start Ray: never here), plus every
# tests/*/test_*_edges.py (unit tests written to kill surviving mutants).
# Paths relative to tests/ (tests mirror the package: tests/<room>/).
TEST_FILES = ("method/test_bank.py", "method/test_latent.py", "method/test_losses.py", "method/test_objective.py",
              "method/test_global_distill.py", "test_metrics.py", "test_evaluate.py", "train/test_train_units.py",
              "sweep/test_sweep_tables.py", "sweep/test_report.py", "data/test_transforms.py",
              "method/test_feature_centering.py", "method/test_objective_settings.py", "train/test_damaged_checkpoint.py")


# Tests of the files above left out of the mutation run (each one still runs in `make test`): why, per test.
DESELECT = (
    # spawns two gloo worker processes (15 s alone, 60 s under load) for every mutant of metrics/transforms/classify
    # it reaches; the single-process tests of the same functions pin the values it compares
    "tests/test_evaluate.py::test_two_process_gloo_evaluation_equals_one_worker",
)


def test_files() -> list[str]:
    edges = sorted(str(p.relative_to(ROOT / "tests")) for p in (ROOT / "tests").rglob("test_*_edges.py"))
    return [t for t in (*TEST_FILES, *edges) if (ROOT / "tests" / t).exists()]
KILLED = {"killed", "timeout", "segfault", "caught by type check"}
RESULT_LINE = re.compile(r"^\s+(\S+): (.+)$")


def module_of(mutant: str) -> str:
    """``c2s.metrics.xǁConfusionMatrixǁupdate__mutmut_3`` / ``c2s.method.losses.x_info_nce__mutmut_1``
    -> ``c2s/metrics.py`` / ``c2s/method/losses.py``."""
    dotted = re.split(r"\.x[_ǁ]", mutant, maxsplit=1)[0]
    return dotted.replace(".", "/") + ".py"


def _globs(modules: list[str]) -> list[str]:
    return [m + "*" if m.endswith("/") else m for m in modules]


def copy_tests(work: Path, tests: list[str]) -> None:
    """The selected test files (and conftest.py) into the snapshot; mutmut copies them into mutants/ each run.
    Also the test-ordering plugin (tools/mutate_order.py), which mutmut's pytest imports from ``work/plugins``."""
    (work / "tests").mkdir(exist_ok=True)
    # the shared helpers beside conftest.py (joblog.py, toy_run.py, ...), imported through pytest's pythonpath
    helpers = sorted(p.name for p in (ROOT / "tests").glob("*.py") if not p.name.startswith("test_"))
    for name in [*helpers, *tests]:
        (work / "tests" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / "tests" / name, work / "tests" / name)
    (work / "plugins").mkdir(exist_ok=True)
    shutil.copy2(ROOT / "tools" / "mutate_order.py", work / "plugins" / "mutate_order.py")


def snapshot(work: Path, modules: list[str], tests: list[str]) -> None:
    """Fresh copy of the package and the selected tests plus mutmut's configuration (setup.cfg)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "c2s", work / "c2s", ignore=ignore)
    copy_tests(work, tests)
    lines = "\n    ".join
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = c2s\n"
        f"only_mutate =\n    {lines(_globs(modules))}\n"
        # the folder, not the file list: the snapshot's tests/ holds only the selected files, and a test file added
        # on --resume is then new tests (stats collected for them) rather than a changed selection (mutmut would
        # reset every cached verdict)
        "pytest_add_cli_args_test_selection =\n    tests\n"
        "pytest_add_cli_args =\n    -m\n    not integration and not slow\n    -p\n    no:cacheprovider\n"
        "    -p\n    no:timeout\n"
        # pytest's unraisable-exception plugin gc.collect()s at exit: 0.45 s per mutant on the forked copy of the
        # fork server's heap (torch + the mutated modules), 8x a small test's run. It only turns unraisable
        # exceptions into warnings, which no setting here makes an error, so no verdict depends on it.
        "    -p\n    no:unraisableexception\n"
        "    -p\n    mutate_order\n"  # tools/mutate_order.py (copy_tests, _env): fastest tests first
        + "".join(f"    --deselect\n    {t}\n" for t in DESELECT)
        + "process_isolation = forkserver\n"
        "use_git_change_detection = false\n"
        # mutmut stops a mutant's tests after (estimated test time + timeout_constant) x 15 s of WALL time and
        # calls it a timeout (= killed). With the default constant (1 s) a mutant starved of CPU by other work
        # on this 2-core machine "times out" in 20 s although its tests pass: 10 s keeps those honest. The
        # tested code has no unbounded loop (one `for _ in range(10)`), so no mutant should truly hang.
        "timeout_constant = 10\n"
        # per-mutant wall times in mutants/mutmut-debug.log (the fork server's "Completed ..." lines)
        "log_to_file = true\n"
        "\n[tool:pytest]\n"
        "pythonpath = tests\n"  # as pyproject.toml's: the tests import the helpers in tests/ by name
        "markers =\n    integration: starts a local Ray\n    slow: slow\n"
        "filterwarnings = ignore::DeprecationWarning\n"
    )


def results(work: Path, mutmut: Path) -> dict[str, str]:
    out = subprocess.run([str(mutmut), "results", "--all", "true"], cwd=work, capture_output=True, text=True,
                         check=True, env=_env(work))
    found = {}
    for line in out.stdout.splitlines():
        match = RESULT_LINE.match(line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def summary(found: dict[str, str], modules: list[str]) -> dict:
    """JSON summary over the mutants of ``modules`` that mutmut checked."""
    prefixes = tuple(modules)
    per_module: dict[str, dict[str, int]] = {}
    survivors: dict[str, list[str]] = {}
    timeouts = 0
    for name, status in sorted(found.items()):
        module = module_of(name)
        if not module.startswith(prefixes) or status == "not checked":
            continue
        counts = per_module.setdefault(module, {"mutants": 0, "killed": 0})
        counts["mutants"] += 1
        if status in KILLED:
            counts["killed"] += 1
            timeouts += status == "timeout"
        else:
            survivors.setdefault(module, []).append(name)
    n = sum(c["mutants"] for c in per_module.values())
    k = sum(c["killed"] for c in per_module.values())
    return {
        "mutants": n,
        "killed": k,
        "killed_frac": round(k / n, 4) if n else None,
        "timeouts": timeouts,  # counted as killed above
        "per_module": {m: {**c, "killed_frac": round(c["killed"] / c["mutants"], 4)} for m, c in per_module.items()},
        "not_checked": sum(1 for name, s in found.items() if s == "not checked" and module_of(name).startswith(prefixes)),
        "survivors_by_module": survivors,
    }


def _env(work: Path) -> dict[str, str]:
    # one torch/OpenMP thread per mutant worker: mutmut runs several workers side by side
    path = os.pathsep.join(p for p in (str(work.resolve() / "plugins"), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "PYTHONPATH": path}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", nargs="+", default=list(MODULES), help="files or folders/ under c2s/")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "mutate", help="snapshot folder")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested in parallel")
    parser.add_argument("--resume", action="store_true", help="keep the snapshot and mutmut's cached results")
    parser.add_argument("--summary", action="store_true", help="only summarise the results already measured")
    parser.add_argument("--survivors", action="store_true",
                        help="with --resume: re-test only the named modules' surviving mutants against the current "
                             "tests (the quick loop after writing tests against them)")
    args = parser.parse_args(argv)
    if args.survivors and not args.resume:
        parser.error("--survivors re-tests the survivors of an earlier run: give --resume too")
    bad = [m for m in args.modules if not (ROOT / m).exists() or not m.startswith("c2s/")]
    if bad:
        parser.error(f"--modules {bad}: expected paths under c2s/ that exist (e.g. {MODULES[1]})")
    mutmut = Path(sys.executable).with_name("mutmut")
    if not mutmut.exists():
        parser.error(f"{mutmut} not found: install the dev extra (pip install -e '.[dev]')")
    tests = test_files()
    if not args.summary:
        if not (args.resume and (args.work / "setup.cfg").exists()):
            snapshot(args.work, list(MODULES), tests)  # all modules in one snapshot: chunks share it
        else:
            # the library stays as snapshotted (its mutants are cached); the tests are the working tree's, so
            # tests written against survivors count on the next chunk. The named modules' mutants are re-tested.
            copy_tests(args.work, tests)
        # mutmut re-tests every mutant it is given by name (cached verdict or not); without names it tests only
        # the mutants that have no verdict yet. So: a resumed run over every module passes no names, a resumed
        # run over some modules the names of their unchecked mutants.
        names: list[str] | None = [m.rstrip("/").removesuffix(".py").replace("/", ".") + ".*" for m in args.modules]
        if args.survivors:
            names = [n for survivors in summary(results(args.work, mutmut), args.modules)["survivors_by_module"].values()
                     for n in survivors]
        elif args.resume and set(args.modules) == set(MODULES):
            names = None
        elif args.resume:
            names = [n for n, s in results(args.work, mutmut).items()
                     if s == "not checked" and module_of(n).startswith(tuple(args.modules))]
        if names is None or names:
            start, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
            run = subprocess.run([str(mutmut), "run", "--max-children", str(args.max_children), *(names or [])],
                                 cwd=args.work, env=_env(args.work))
            if run.returncode not in (0, 1):  # 1: mutmut exits non-zero when mutants survive
                print(f"mutmut run exited with {run.returncode} (see the output above)", file=sys.stderr)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            # CPU seconds of mutmut and every process it waited for: what the run costs on an idle machine
            # (wall ~ CPU / cores), whatever else was running beside it
            print(f"mutmut run: {time.monotonic() - start:.0f} s wall, {cpu:.0f} s CPU", file=sys.stderr)
    if not (args.work / "mutants").is_dir():
        print(f"no mutmut results under {args.work}: run without --summary first", file=sys.stderr)
        return 2
    result = summary(results(args.work, mutmut), args.modules)
    print(json.dumps(result))
    if not result["mutants"]:
        print("no mutant of these modules was checked: did the unit tests pass in the snapshot? (mutmut needs a "
              "green run first; see its output above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
