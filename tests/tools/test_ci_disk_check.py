""".ci/disk_check: CI's first stage. A CI run failed in pip with "[Errno 28] No space left on device" 87 s into
its install (2026-12-06); the check names the folder and the floor before the install starts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHECK = Path(__file__).resolve().parents[2] / ".ci" / "disk_check"


def run_check(floor_gb: int, tmpdir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "C2S_CI_MIN_FREE_GB": str(floor_gb), "TMPDIR": str(tmpdir)}
    return subprocess.run(["bash", str(CHECK)], capture_output=True, text=True, timeout=300, env=env)


def free_gb(path: Path) -> int:
    return shutil.disk_usage(path).free // 1024**3


def test_enough_disk_passes_and_says_how_much_is_free(tmp_path):
    proc = run_check(0, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[ci] disk: ")]
    # The clone, TMPDIR and ~/.cache: one line per filesystem, so 1 to 3; the first is the clone's.
    assert 1 <= len(lines) <= 3
    first = lines[0].split()
    assert abs(int(first[2]) - free_gb(CHECK.parents[1])) <= 1 and first[3:5] == ["GiB", "free"]


def test_too_little_disk_stops_naming_the_folder_and_the_floor(tmp_path):
    floor = free_gb(tmp_path) + 1000
    proc = run_check(floor, tmp_path)
    assert proc.returncode == 1
    assert f"{CHECK.parents[1]} has " in proc.stderr
    assert f"need at least {floor} GiB (C2S_CI_MIN_FREE_GB)" in proc.stderr
