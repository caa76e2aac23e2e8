"""The units lane: the session's Ray-free modules in a second pytest process at the lowest CPU priority.

``make test`` passes ``--units-lane``. A session's Ray tests leave CPU idle (actors start one after another,
each mostly imports on one core; a node-death time-out waits), while its unit tests keep both cores busy.
Run in one process, the unit tests shared the first minutes with the multinode scenarios' cluster and every
Ray test waited for them. In the lane they run beside the whole session under ``nice -n 19``: the Linux
scheduler gives them what the Ray tests leave, so the Ray tests keep nearly the whole machine (CFS weighs a
nice-19 thread 15 against 1024 at nice 0: Linux kernel/sched/core.c, ``sched_prio_to_weight``).

Measured 2026-12-06 on the 2-core machine, one after another, each from an empty torch compile cache as on a
new CI machine: one process 718.0 s of pytest; the lane with the quick Ray-free modules 697.2 s; the lane with
every Ray-free module (the slow ones too: the compiled objective, the ONNX export, the FLOP counts) 642.9 s,
the multinode scenarios 163.9 s against 218.0 s, the lane's 868 tests 487.7 s, all beside the Ray tests.

A test in the lane may wait for CPU while the Ray tests hold both cores, so nothing in it times its own work:
its subprocesses' time-outs (300 s) bound a hang, and speed targets stay in benchmarks.

The lane runs whole modules (every module whose tests all start no Ray: tests/conftest.py's ``_lane_items``) with
the session's ``-m``, ``-k`` and ``--timeout``, and logs to its own file. Its result joins the session's:
pytest's summary ends with the lane's last line (after the lane's warnings, if it had any), a failing lane
prints its failures and makes the session exit 1. A session that stops early (``-x``, ``--maxfail``, Ctrl-C)
stops the lane and says so.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

# How long the session waits for the lane: the lane starts with the session, and its modules took ~2.5 min alone
# and 8 min beside the Ray tests (2026-12-06), so only a hung lane (whose tests pytest-timeout bounds) reaches it.
FINISH_TIMEOUT_S = 1800


def warnings_summary(log: list[str]) -> list[str]:
    """The body of pytest's "warnings summary" section in a lane's log (each warning's test, place and message),
    without its header and its closing "-- Docs:" link; none when the lane warned nothing."""
    start = next((i for i, line in enumerate(log) if line.startswith("=") and " warnings summary " in line), None)
    if start is None:
        return []
    body = []
    for line in log[start + 1:]:
        if line.startswith("-- Docs:") or line.startswith("="):
            break
        body.append(line)
    while body and not body[-1].strip():
        body.pop()
    return body


class UnitsLane:
    """Pytest plugin: moves the items ``select(items)`` returns (whole modules) to a niced subprocess."""

    def __init__(self, config: pytest.Config, select: Callable[[list[pytest.Item]], list[pytest.Item]]) -> None:
        self.config, self.select = config, select
        self.files: list[str] = []
        self.count = 0
        self.proc: subprocess.Popen | None = None
        self.dir: Path | None = None
        self.started = 0.0
        self.rc: int | None = None
        self.stopped = ""  # why the lane was stopped before it finished, if it was

    @pytest.hookimpl(trylast=True)  # after tests/conftest.py's ordering
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if config.option.collectonly:  # list every test where it is
            return
        chosen = {id(item) for item in self.select(items)}
        lane = [item for item in items if id(item) in chosen]
        rest = [item for item in items if id(item) not in chosen]
        if not lane or not rest:  # nothing to run beside: one process, as without the lane
            return
        files = list(dict.fromkeys(str(item.path) for item in lane))
        split = sorted(set(files) & {str(item.path) for item in rest})
        if split:  # the lane runs whole files: a split module would run its other tests twice
            raise pytest.UsageError(f"--units-lane: module {split[0]} has tests both in the lane and in the session")
        self.files, self.count = files, len(lane)
        items[:] = rest

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not self.files:  # none moved: collect-only, or nothing to run beside
            return
        self.dir = Path(tempfile.mkdtemp(prefix="c2s-units-lane-"))
        opt = self.config.option
        args = ["nice", "-n", "19", sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider",
                f"--rootdir={self.config.rootpath}", f"--basetemp={self.dir / 'tmp'}", "--durations=10"]
        if opt.markexpr:
            args += ["-m", opt.markexpr]
        if opt.keyword:
            args += ["-k", opt.keyword]
        if getattr(opt, "timeout", None) is not None:
            args.append(f"--timeout={opt.timeout}")
        self.started = time.monotonic()
        with open(self.dir / "lane.log", "wb") as log:
            self.proc = subprocess.Popen([*args, *self.files], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.config.rootpath)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Wait for the lane; a failed lane fails the session. pytest returns ``session.exitstatus`` as read after
        this hook (pytest 9.2, _pytest/main.py ``wrap_session``), so setting it here sets the exit code."""
        if self.proc is None:
            return
        if session.shouldfail or session.shouldstop or exitstatus == pytest.ExitCode.INTERRUPTED:
            self._stop("the session stopped early")  # -x, --maxfail, Ctrl-C: no wait for the lane
            return
        try:
            self.rc = self.proc.wait(timeout=max(1.0, FINISH_TIMEOUT_S - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            self._stop(f"killed after {FINISH_TIMEOUT_S} s")
        if self.rc not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED) and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.rc is None or self.dir is None:
            return
        if self.stopped:
            terminalreporter.write_line(f"[units lane] {self.stopped}: its log {self.dir / 'lane.log'}")
            return
        log = (self.dir / "lane.log").read_text(errors="replace").splitlines()
        lines = [line for line in log if line.strip()]
        last = lines[-1] if lines else "(no output)"
        if self.rc == pytest.ExitCode.OK:
            warned = warnings_summary(log)
            if warned:  # the session's own summary shows only its warnings: the lane's would go unread
                terminalreporter.write_sep("=", "units lane: warnings summary")
                for line in warned:
                    terminalreporter.write_line(line)
            terminalreporter.write_line(f"[units lane] {self.count} tests in {len(self.files)} modules beside the "
                                        f"session, nice 19: {last.strip('= ')}")
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        terminalreporter.write_sep("=", f"units lane FAILED (exit {self.rc}): its log {self.dir / 'lane.log'}", red=True)
        start = next((i for i, line in enumerate(log) if "short test summary info" in line or "FAILURES" in line), 0)
        for line in log[start:]:
            terminalreporter.write_line(line)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.proc is not None and self.proc.poll() is None:  # an error before sessionfinish: stop the lane
            self.proc.kill()
            self.proc.wait()

    def _stop(self, why: str) -> None:
        self.proc.kill()
        self.rc, self.stopped = self.proc.wait(), f"stopped, {why}"
        with open(self.dir / "lane.log", "a") as log:
            log.write(f"[units lane] {self.stopped}\n")
