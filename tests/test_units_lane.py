"""tests/units_lane.py on a hand-built session: two Ray-free modules go to the niced lane, a ``ray``-marked one
stays; the lane's result joins the session's exit status and summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from units_lane import warnings_summary

TESTS = Path(__file__).resolve().parent

CONFTEST = f'''
import sys
sys.path.insert(0, {str(TESTS)!r})
from units_lane import UnitsLane

def pytest_configure(config):
    config.addinivalue_line("markers", "ray: stays in the session")
    config.pluginmanager.register(
        UnitsLane(config, lambda items: [i for i in items if i.get_closest_marker("ray") is None]), "lane")
'''

RECORD = '''
import json, os
from pathlib import Path

def record(name):
    Path(__file__).with_name(name + ".json").write_text(json.dumps({"pid": os.getpid(), "nice": os.nice(0)}))
'''


def _session(root: Path, files: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    (root / "conftest.py").write_text(CONFTEST)
    (root / "record.py").write_text(RECORD)
    for name, text in files.items():
        (root / name).write_text(text)
    # The lane's folder comes from tempfile.mkdtemp, and a failed or stopped lane keeps it for its log: TMPDIR
    # keeps those of these hand-built sessions under the test's own tmp_path, not the machine's /tmp.
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--rootdir={root}",
                           "-o", "pythonpath=.", *args, str(root)], cwd=root, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TMPDIR": str(tmp)})


def _kept_logs(root: Path) -> list[Path]:
    return sorted((root / "tmp").glob("c2s-units-lane-*/lane.log"))


UNIT = "from record import record\n\ndef test_unit():\n    record('unit')\n"
UNIT_TWO = "def test_one():\n    pass\n\ndef test_two():\n    pass\n"
RAY = ("import pytest\nfrom record import record\n\n@pytest.mark.ray\ndef test_ray():\n    record('ray')\n")


def test_ray_free_modules_run_niced_in_another_process_and_are_counted(tmp_path):
    done = _session(tmp_path, {"test_a_unit.py": UNIT, "test_b_unit.py": UNIT_TWO, "test_c_ray.py": RAY})
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    unit, ray = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("unit", "ray"))
    assert unit["pid"] != ray["pid"]
    base = os.nice(0)  # 19 already when this test itself runs in make test's lane
    assert (unit["nice"], ray["nice"]) == (min(base + 19, 19), base)
    assert "1 passed" in out  # the session ran only the ray-marked test
    assert "[units lane] 3 tests in 2 modules beside the session, nice 19: 3 passed" in out
    assert _kept_logs(tmp_path) == []  # a lane that passed leaves no folder behind


def test_a_lanes_warnings_reach_the_sessions_output(tmp_path):
    warns = ("import warnings\n\ndef test_warns():\n    warnings.warn('a warning raised in the lane', UserWarning)\n"
             "\ndef test_quiet():\n    pass\n")
    done = _session(tmp_path, {"test_a_warns.py": warns, "test_c_ray.py": RAY})
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "[units lane] 2 tests in 1 modules beside the session, nice 19: 2 passed, 1 warning" in out
    section = out[out.index("units lane: warnings summary"):out.index("[units lane] 2 tests")]
    assert "test_a_warns.py::test_warns" in section
    assert section.count("UserWarning: a warning raised in the lane") == 1
    assert "test_quiet" not in section and "-- Docs:" not in section


def test_a_lane_without_warnings_prints_no_warnings_section(tmp_path):
    done = _session(tmp_path, {"test_a_unit.py": UNIT, "test_c_ray.py": RAY})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "units lane: warnings summary" not in done.stdout


def test_the_warnings_summary_is_read_from_header_to_docs_link():
    log = ["..  [100%]", "==== warnings summary ====", "t.py::a", "  t.py:4: UserWarning: w", "    warn('w')", "",
           "-- Docs: https://docs.pytest.org/en/stable/how-to/capture-warnings.html", "==== slowest 10 durations ====",
           "2 passed, 1 warning in 0.01s"]
    assert warnings_summary(log) == ["t.py::a", "  t.py:4: UserWarning: w", "    warn('w')"]
    assert warnings_summary(["..", "2 passed in 0.01s"]) == []


def test_a_failing_lane_fails_the_session_and_prints_its_failure(tmp_path):
    bad = "def test_bad():\n    assert 1 + 1 == 3\n"
    done = _session(tmp_path, {"test_a_unit.py": UNIT, "test_b_bad.py": bad, "test_c_ray.py": RAY})
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "units lane FAILED (exit 1)" in out
    assert "FAILED test_b_bad.py::test_bad - assert (1 + 1) == 3" in out
    assert (tmp_path / "ray.json").is_file()  # the session's own tests ran all the same
    kept = _kept_logs(tmp_path)  # the failed lane's log stays for its reader, at the path the summary names
    assert len(kept) == 1 and f"its log {kept[0]}" in out
    assert "1 failed, 1 passed" in kept[0].read_text()


def test_a_module_split_between_lane_and_session_is_refused(tmp_path):
    mixed = UNIT + "\n\n" + RAY.replace("test_ray", "test_ray_too").replace("from record import record\n", "")
    done = _session(tmp_path, {"test_a_mixed.py": "import pytest\n" + mixed})
    assert done.returncode == 4, done.stdout + done.stderr
    assert "module " in done.stderr and "test_a_mixed.py has tests both in the lane and in the session" in done.stderr


def test_a_session_stopped_by_its_first_failure_stops_the_lane_without_waiting(tmp_path):
    # The lane's test would sleep past this test's 300 s bound: a session that waited for it would time out.
    slow = "import time\n\ndef test_slow():\n    time.sleep(600)\n"
    ray_bad = RAY.replace("record('ray')", "record('ray')\n    assert False, 'the first failure'")
    done = _session(tmp_path, {"test_a_slow.py": slow, "test_c_ray.py": ray_bad}, "-x")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "[units lane] stopped, the session stopped early: its log" in out
    kept = _kept_logs(tmp_path)
    assert len(kept) == 1 and kept[0].read_text().endswith("[units lane] stopped, the session stopped early\n")
