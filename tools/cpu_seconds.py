"""CPU-seconds of a command and everything it starts, Ray's processes included.

    python tools/cpu_seconds.py -- make demo

Ray's raylet, workers and actors are not the command's waited-for children, so ``time``'s user+sys misses
them. This reads the machine's busy time from /proc/stat (user + nice + system + irq + softirq + steal)
before and after instead: run it on a quiet machine, and compare two commands measured back to back in the
same hour (this machine's speed moves by the hour; the ratio of two such runs is what carries over).
Last line: ``{"command": ..., "rc": ..., "wall_s": ..., "machine_cpu_s": ..., "children_cpu_s": ...,
"idle_cpu_s": ..., "load_before": ...}``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (guest time is inside user)
IDLE_FIELDS = (3, 4)  # idle iowait


def cpu_times() -> tuple[float, float]:
    """(busy, idle) seconds of all CPUs since boot, from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return sum(fields[i] for i in BUSY_FIELDS) / tick, sum(fields[i] for i in IDLE_FIELDS) / tick


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1:]
    if not argv:
        print("usage: python tools/cpu_seconds.py -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    busy0, idle0 = cpu_times()
    t0 = time.perf_counter()
    rc = subprocess.call(argv)
    wall = time.perf_counter() - t0
    busy1, idle1 = cpu_times()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"command": " ".join(argv), "rc": rc, "wall_s": round(wall, 1),
                      "machine_cpu_s": round(busy1 - busy0, 1), "idle_cpu_s": round(idle1 - idle0, 1),
                      "children_cpu_s": round(children.ru_utime + children.ru_stime, 1),
                      "load_before": round(load_before, 2), "cpus": os.cpu_count()}))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
