"""tools/cpu_seconds.py: the machine's busy CPU time over a command (Ray's processes included), its exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "cpu_seconds.py"


def run_tool(*command: str) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, str(TOOL), "--", *command], capture_output=True, text=True, timeout=300)
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


def test_busy_child_is_counted_and_the_exit_status_kept():
    # ~0.5 s of one core in a grandchild (what `time` of a Ray driver misses: not a waited-for child)
    busy = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', " \
           "'import time\\nt=time.process_time()\\nwhile time.process_time()-t<0.5: pass']).wait(); sys.exit(3)"
    rc, out = run_tool(sys.executable, "-c", busy)
    assert rc == 3 and out["rc"] == 3
    assert out["children_cpu_s"] >= 0.4  # the waited-for chain: the Python child and its own child
    assert out["machine_cpu_s"] >= 0.4 and out["machine_cpu_s"] + out["idle_cpu_s"] >= out["wall_s"] * 0.9
    assert out["cpus"] >= 1 and out["command"].startswith(sys.executable)


def test_no_command_is_a_usage_error():
    proc = subprocess.run([sys.executable, str(TOOL)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "usage: python tools/cpu_seconds.py -- COMMAND" in proc.stderr
