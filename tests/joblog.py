"""Reading a submitted job's log the way a test should: by what c2s prints, not by how many lines there are.

A job's log is the driver's stdout plus whatever Ray forwards from other processes of the cluster. On a
clean-clone `make test` (2026-12-05) an unrelated Ray worker of the test head died mid-job (abseil's
``[mutex.cc : 1957] RAW: Check ... failed: Lock: Mutex corrupt``, SIGABRT, a stack dump) and its 14 lines
landed in the log of a job that SUCCEEDED; a test counting all lines failed on them. So tests sort the lines:

- ``c2s``: what c2s itself prints (``[c2s] ...``, ``[<run>] step ...``, ``jobs/*.py: error: ...``, the final
  JSON summary): asserted exactly;
- ``forbidden``: Ray output c2s promises to keep out of the console (Train's per-report dumps, Ray Data's
  per-operator progress bars): asserted absent;
- ``crash``: another process's fatal-signal dump or failed check: never asserted on, but named in the failure
  text of whatever assertion fails, so a red run says "Ray crashed a process" instead of a side effect;
- ``other``: the rest (Ray's own start-up lines), neither counted nor asserted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Train V2's per-report line and its TrainingReport repr; Ray Data's per-operator progress bars (tqdm-style
# "N/M [00:01<00:00, 3.47 row/s]" and the "Running Dataset" / "- Op: Tasks: ..." status lines of
# ray/data/_internal/progress_bar.py and execution/streaming_executor.py in Ray 2.60).
FORBIDDEN = re.compile(r"TrainingReport\(|Reporting training result"
                       r"|\d+(?:\.\d+)?[kM]?\s*row/s\]|\[\d\d:\d\d<[\d:?]+,|Running Dataset[:.]"
                       r"|^\s*(?:\(\w+[^)]*\)\s*)?- [\w>()\->]+: Tasks: \d+")
# A process dying on a signal or a failed check: abseil's RAW check, glog's "Check failed", Ray's and abseil's
# "*** SIGxxx received" banners, the stack frames that follow them, the C++ "terminate called" line.
CRASH = re.compile(r"\bRAW: Check\b|Check failed|\*\*\* SIG[A-Z]+ received|\*\*\* Aborted at|^\s*(?:\(\w+[^)]*\)\s*)?"
                   r"(?:PC: )?@\s+0x[0-9a-f]+|terminate called|Fatal Python error|core dumped")


@dataclass
class JobLog:
    c2s: list[str] = field(default_factory=list)
    forbidden: list[str] = field(default_factory=list)
    crash: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    def context(self) -> str:
        """Text for a failure message: a named crash first, then the log's tail."""
        head = ""
        if self.crash:
            head = (f"NOTE: a Ray process crashed during the job ({len(self.crash)} crash line(s)); the lines "
                    "below are not c2s's:\n  " + "\n  ".join(self.crash[:6]) + "\n")
        return head + "c2s lines:\n  " + "\n  ".join(self.c2s[-30:])


def is_c2s_line(line: str, run_name: str | None) -> bool:
    text = line.strip()
    return (text.startswith("[c2s]") or (run_name is not None and text.startswith(f"[{run_name}]"))
            or (text.startswith(("jobs/", "c2s ")) and ": error: " in text)
            or (text.startswith("{") and text.endswith("}") and '"run_dir"' in text))


def read_job_log(logs: str, run_name: str | None = None) -> JobLog:
    """Sort every line of ``logs`` (a job's log) into c2s / forbidden / crash / other."""
    out = JobLog()
    for line in logs.splitlines():
        if is_c2s_line(line, run_name):
            out.c2s.append(line)
        elif FORBIDDEN.search(line):
            out.forbidden.append(line)
        elif CRASH.search(line):
            out.crash.append(line)
        else:
            out.other.append(line)
    return out
