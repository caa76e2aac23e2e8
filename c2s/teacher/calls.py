"""Per-actor CLIP call counters: each teacher actor writes ``calls_dir/<actor id>.calls.json``; the training
loop (rank 0, the elastic pool's per-interval activity) and the driver (``summary.json``) read them, and
:class:`CallProgress` turns them into progress lines while a token cache is built.

Standard library only, so the training workers, which never run CLIP, do not import torch's vision stack
or open_clip to read a few JSON files (open_clip costs ~2.7 s of every process start here).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

CALLS_SUFFIX = ".calls.json"


def write_call_count(calls_dir: str | os.PathLike, name: str, batches: int, images: int,
                     device: str | None = None) -> None:
    """Write one counter's totals (and the device the actor runs CLIP on) to ``calls_dir/<name>.calls.json``
    (atomic rename; overwritten each call)."""
    folder = Path(calls_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"
    record = {"batches": int(batches), "images": int(images), **({"device": device} if device else {})}
    tmp.write_text(json.dumps(record))
    os.replace(tmp, folder / f"{name}{CALLS_SUFFIX}")


def read_counters(calls_dir: str | os.PathLike) -> dict[str, dict]:
    """``{actor id: its counter record}`` for every actor that wrote to ``calls_dir`` (empty when the folder
    does not exist: CLIP was never called there). A file that is not JSON is named in the error."""
    folder = Path(calls_dir)
    records = {}
    for path in sorted(folder.glob(f"*{CALLS_SUFFIX}")) if folder.is_dir() else []:
        try:
            records[path.name.removesuffix(CALLS_SUFFIX)] = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: teacher call counter is not valid JSON ({err}); expected "
                             '{"batches": int, "images": int}') from err
    return records


def read_call_counts(calls_dir: str | os.PathLike) -> dict[str, int]:
    """``{"batches", "images"}`` the teacher processed, summed over every actor that wrote to ``calls_dir``
    (zeros when the folder does not exist: CLIP was never called there)."""
    records = read_counters(calls_dir).values()
    return {key: sum(int(r.get(key, 0)) for r in records) for key in ("batches", "images")}


def read_actor_devices(calls_dir: str | os.PathLike) -> list[str]:
    """The distinct devices the actors that wrote to ``calls_dir`` ran CLIP on, e.g. ``["cuda (float16)"]``."""
    return sorted({str(r.get("device", "unknown")) for r in read_counters(calls_dir).values()})


def read_actor_batches(calls_dir: str | os.PathLike) -> dict[str, int]:
    """``{actor id: batches}`` from each actor's counter in ``calls_dir`` (empty when CLIP never ran there):
    how many actors the elastic pool has used so far, and which are still working between two reads."""
    return {name: int(r.get("batches", 0)) for name, r in read_counters(calls_dir).items()}


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def progress_line(what: str, images: int, total: int, elapsed_s: float) -> str:
    """One progress line of a long teacher run: the images CLIP encoded of ``total``, the time so far and, once
    CLIP has encoded some, the time left at the rate so far (pool start-up included, so it errs long)."""
    share = f" ({100.0 * images / total:.0f}%)" if total > 0 else ""
    line = f"{what}: CLIP encoded {images:,} / {total:,} images{share} in {_duration(elapsed_s)}"
    if images == 0:
        return line + ", the teacher pool is starting"
    if images < total:
        return line + f", about {_duration(elapsed_s * (total - images) / images)} left"
    return line


class CallProgress:
    """Prints :func:`progress_line` every ``interval_s`` while a teacher run writes counters to ``calls_dir``.

    A context manager around a blocking call (a token cache's ``write_parquet`` runs for minutes and prints
    nothing of its own): a daemon thread reads the actors' counters; leaving the block stops it. A counter it
    cannot read ends the reporting with one line saying why; the run itself goes on.
    """

    def __init__(self, calls_dir: str | os.PathLike, total: int, what: str, interval_s: float = 30.0,
                 emit: Callable[[str], None] | None = None) -> None:
        if interval_s <= 0:
            raise ValueError(f"progress interval must be > 0 seconds, got {interval_s}")
        self.calls_dir, self.total, self.what, self.interval_s = Path(calls_dir), int(total), what, interval_s
        self.emit = emit or (lambda line: print(line, flush=True))
        self.lines = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="c2s-call-progress", daemon=True)
        self._started = 0.0

    def __enter__(self) -> CallProgress:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                images = read_call_counts(self.calls_dir)["images"]
            except (OSError, ValueError) as err:
                self.emit(f"{self.what}: progress stops here, a teacher counter could not be read: {err}")
                return
            self.emit(progress_line(self.what, images, self.total, time.perf_counter() - self._started))
            self.lines += 1
