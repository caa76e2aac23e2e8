"""tools/mutate.py (``make mutate``): its snapshot must run the unit tests it selected. When the tests moved
into tests/<room>/ their shared helpers (joblog.py, toy_run.py) stayed in tests/ and were not copied, so
conftest.py failed to import in the snapshot and mutmut checked no mutant at all (found 2026-12-05)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def _mutate_module():
    spec = importlib.util.spec_from_file_location("mutate_tool", TOOLS / "mutate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_selected_test_file_exists_and_the_snapshot_collects_them(tmp_path):
    mutate = _mutate_module()
    tests = mutate.test_files()
    assert [t for t in mutate.TEST_FILES if t not in tests] == []  # none silently dropped as missing
    assert "method/test_objective_settings.py" in tests  # c2s/method/settings.py's tests
    work = tmp_path / "mutate"
    mutate.snapshot(work, list(mutate.MODULES), tests)
    assert (work / "tests" / "joblog.py").is_file() and (work / "plugins" / "mutate_order.py").is_file()
    # pytest as mutmut runs it in the snapshot (its setup.cfg), collection only
    proc = subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "tests", "-m", "not integration and not slow",
                           "-p", "no:cacheprovider", "-p", "no:timeout"],
                          cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    collected = int(re.search(r"(\d+) tests? collected", proc.stdout).group(1))
    assert collected >= 250, proc.stdout[-500:]  # the unit tests of the core modules (290 on 2026-12-05)
