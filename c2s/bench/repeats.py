"""Repeated, interleaved timings for the ``c2s bench`` commands, and how they are summarised.

Each round runs every variant once, in the same order (A B C, A B C, ...), so a burst of load from another
process hits every variant alike instead of one variant's whole series. Each variant gets the median of
its repeats and the spread (min, max and the quartiles), and comparisons are ratios of medians.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from c2s.config import ConfigError

MIN_REPEATS = 5


def bench_device(name: str | None) -> torch.device:
    """``--device`` of a bench: ``auto``/None -> cuda when available, else cpu; ``cuda[:N]`` refused in one line
    (a ConfigError, which the CLI prints alone) where torch sees no CUDA device, instead of torch's traceback."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: torch sees no CUDA device on this machine "
                          f"(torch.cuda.is_available() is False); use --device cpu")
    return device


def sync(device: torch.device | str | None) -> None:
    """Wait for queued CUDA work, so a wall-clock time covers the kernels it launched."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(variants: Mapping[str, Callable[[], object]], repeats: int, *, warmup: int = 1,
                device: torch.device | str | None = None,
                log: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Wall seconds of each variant over ``repeats`` rounds (after ``warmup`` untimed rounds).

    ``variants`` maps a name to a zero-argument callable; round ``r`` runs them all in their order.
    """
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(warmup + repeats):
        timed = r >= warmup
        for name, fn in variants.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            elapsed = time.perf_counter() - start
            if timed:
                times[name].append(elapsed)
            if log is not None:
                label = f"round {r - warmup + 1}/{repeats}" if timed else f"warm-up {r + 1}/{warmup}"
                log(f"[bench] {label} {name:<16} {elapsed:9.4f} s")
    return times


def parse_with_quick(parser: Any, argv: list[str] | None, quick: Mapping[str, Any]) -> Any:
    """Parse ``argv``; with ``--quick``, the values in ``quick`` replace the defaults only, never a flag
    given on the command line."""
    args = parser.parse_args(argv)
    if args.quick:
        given = flags_given(parser, argv)
        for key, value in quick.items():
            if key not in given:
                setattr(args, key, value)
    return args


def flags_given(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """The destinations of the options on the command line itself, a value equal to the default included
    (``--quick --batch 2`` keeps batch 2 where the default is 2 and ``--quick`` sets 1): ``argv`` parsed again by
    a copy of ``parser`` whose defaults are all ``argparse.SUPPRESS``, so only given options land in it."""
    bare = copy.deepcopy(parser)
    for action in bare._actions:  # argparse has no public way to suppress every default of a built parser
        action.default = argparse.SUPPRESS
    return set(vars(bare.parse_args(argv)))


def spread(times: list[float]) -> dict[str, float]:
    """``median``, ``min``, ``max``, ``q1``, ``q3`` (inclusive quartiles) and ``n`` of a series of times."""
    if not times:
        raise ValueError("no timings to summarise")
    ordered = sorted(times)
    q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else ordered * 3
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1], "q1": q1, "q3": q3,
            "n": len(ordered)}


def flat(name: str, times: list[float], significant: int = 6) -> dict[str, float]:
    """``{name}_median_s``, ``{name}_min_s``, ``{name}_max_s``, ``{name}_q1_s``, ``{name}_q3_s`` (JSON keys).

    Rounded to ``significant`` significant digits, not decimals: a 3 ms forward rounded to 5 decimals lost 0.16%
    of its value, more than a ratio recomputed from the JSON can absorb (CI run of stop 21)."""
    s = spread(times)
    return {f"{name}_{k}_s": float(f"{s[k]:.{significant}g}") for k in ("median", "min", "max", "q1", "q3")}


def describe(name: str, times: list[float], per: float = 1.0, unit: str = "s") -> str:
    """One console line: median and spread of ``times / per``."""
    s = {k: v / per if k != "n" else v for k, v in spread(times).items()}
    return (f"{name:>18}: median {s['median']:9.4f} {unit}  (min {s['min']:.4f}, q1 {s['q1']:.4f}, "
            f"q3 {s['q3']:.4f}, max {s['max']:.4f}; n={s['n']})")


def environment(device: torch.device | str) -> dict[str, Any]:
    """Where the numbers come from: device (and GPU name), torch threads, CPU model and count, load."""
    device = torch.device(device)
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1m_at_start": load,
        "torch": torch.__version__,
    }


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
