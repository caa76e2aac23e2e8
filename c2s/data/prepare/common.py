"""What every ``c2s data prepare`` converter shares: streaming archive members, a process pool with a bounded
queue, progress lines, atomic outputs, and the manifest that marks a finished run.

Resuming: every output file is written under ``OUT/.c2s-prepare-tmp/`` and renamed into place, so a file at
its final path is complete; an interrupted run leaves only finished files (and the temp folder, cleared at
the next start) and the next run skips what exists. The manifest ``OUT/.c2s-prepare.json`` is written last,
atomically: with it present (same dataset, same archive names and sizes) the run says so and does nothing.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import shutil
import sys
import tarfile
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

MANIFEST = ".c2s-prepare.json"
TMP_DIR = ".c2s-prepare-tmp"


class PrepareError(RuntimeError):
    """An archive or annotation is not what the converter expects; the message names the file and member."""


def default_workers() -> int:
    """The usable CPUs minus the one the reading process keeps busy (streaming members, writing copies); on
    2 CPUs that is 1, i.e. no pool: measured faster there (9.7 s vs 11.1 s for 2,400 SBD masks)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus - 1)


# --- atomic outputs ---------------------------------------------------------------------------------------
def _tmp_path(out: Path, final: Path) -> Path:
    return out / TMP_DIR / f"{os.getpid()}-{final.name}"


def write_bytes(out: Path, final: Path, data: bytes) -> None:
    """Write ``data`` to ``final`` (under ``out``) through a temp file and one rename: never half a file."""
    tmp = _tmp_path(out, final)
    tmp.write_bytes(data)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)


def write_png(out: Path, final: Path, mask: np.ndarray) -> None:
    """A single-channel uint8 PNG (mode L), as mmseg's converters save with ``Image.fromarray(mask)``."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8)).save(buf, "PNG")
    write_bytes(out, final, buf.getvalue())


def write_lines(out: Path, final: Path, lines: list[str]) -> None:
    write_bytes(out, final, "".join(f"{line}\n" for line in lines).encode())


def start_output(out: Path) -> None:
    """Create ``out``; clear temp files an interrupted run left (finished outputs are kept)."""
    if out.exists() and not out.is_dir():
        raise PrepareError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / TMP_DIR, ignore_errors=True)
    (out / TMP_DIR).mkdir()


# --- manifest ------------------------------------------------------------------------------------------------
def input_fingerprint(paths: list[Path]) -> list[dict[str, Any]]:
    return [{"name": p.name, "size": p.stat().st_size} for p in paths]


def finished_manifest(out: Path, dataset: str, inputs: list[Path]) -> dict[str, Any] | None:
    """The manifest of a finished run of ``dataset`` from the same archives, else None; a manifest of another
    dataset or of other archives is an error (the folder would mix two preparations)."""
    path = out / MANIFEST
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    if manifest.get("dataset") != dataset or manifest.get("inputs") != input_fingerprint(inputs):
        raise PrepareError(f"{out} already holds a finished preparation of {manifest.get('dataset')!r} from "
                           f"{[i['name'] for i in manifest.get('inputs', [])]}; choose another --out, or delete "
                           f"{path} to prepare into it again")
    return manifest


def write_manifest(out: Path, dataset: str, inputs: list[Path], counts: dict[str, Any]) -> None:
    data = {"dataset": dataset, "inputs": input_fingerprint(inputs), "counts": counts,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_bytes(out, out / MANIFEST, json.dumps(data, indent=2).encode())
    shutil.rmtree(out / TMP_DIR, ignore_errors=True)


# --- progress ------------------------------------------------------------------------------------------------
class Progress:
    """One line every ``every_s`` seconds on stderr (long work only) and a closing line once any was printed."""

    def __init__(self, label: str, total: int | None = None, *, quiet: bool = False, every_s: float = 5.0,
                 fraction: Callable[[], float] | None = None) -> None:
        self.label, self.total, self.quiet, self.every_s, self.fraction = label, total, quiet, every_s, fraction
        self.done = 0
        self.t0 = self.last = time.monotonic()
        self.printed = False

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if not self.quiet and now - self.last >= self.every_s:
            self.last, self.printed = now, True
            self._line(now)

    def close(self) -> None:
        if not self.quiet and self.printed:
            self._line(time.monotonic())

    def _line(self, now: float) -> None:
        rate = self.done / max(now - self.t0, 1e-9)
        where = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        if self.fraction is not None:
            where += f" ({100 * self.fraction():.0f}% of the archive read)"
        print(f"{self.label}: {where}, {rate:.0f}/s", file=sys.stderr, flush=True)


# --- parallel work -------------------------------------------------------------------------------------------
def _run_batch(batch: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
    return [fn(*args) for fn, args in batch]


class Pool:
    """``submit(fn, *args)`` to a spawn process pool (``workers > 1``) or inline. Tasks travel in batches of
    ``batch`` (one conversion takes a few ms, about the cost of a round trip to a worker) with at most
    ``4 * workers`` batches in flight, so a streamed archive is never held in memory; ``on_done`` runs per
    finished task in the calling process (progress, counts). A worker's exception is re-raised by
    :meth:`submit` or :meth:`drain`."""

    def __init__(self, workers: int, on_done: Callable[[Any], None], batch: int = 16) -> None:
        self.workers, self.on_done, self.batch_size = max(1, workers), on_done, batch
        self.pending: deque[Future] = deque()
        self.batch: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        # spawn, not fork: the caller may run threads (as c2s data check does).
        self.executor = (ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
                         if self.workers > 1 else None)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self.executor is None:
            self.on_done(fn(*args))
            return
        self.batch.append((fn, args))
        if len(self.batch) >= self.batch_size:
            self._flush()
        while len(self.pending) > 4 * self.workers:
            self._finish(self.pending.popleft())

    def here(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` in this process: plain copies, whose bytes would cost more to send to a worker than to
        write (the workers keep converting meanwhile)."""
        self.on_done(fn(*args))

    def drain(self) -> None:
        self._flush()
        while self.pending:
            self._finish(self.pending.popleft())

    def _flush(self) -> None:
        if self.batch and self.executor is not None:
            self.pending.append(self.executor.submit(_run_batch, self.batch))
            self.batch = []

    def _finish(self, future: Future) -> None:
        for result in future.result():
            self.on_done(result)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)


# --- archives ------------------------------------------------------------------------------------------------
def tar_members(path: Path, progress_label: str, *, quiet: bool = False) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """``(name, read)`` for every regular file of a tar/tar.gz, in archive order, read as a stream (mode
    ``r|*``: nothing is extracted to disk and the archive is read once). ``read()`` returns the member's bytes;
    a member nobody reads is skipped without being kept."""
    raw = open(path, "rb")  # noqa: SIM115 - closed below; its position measures progress
    size = max(path.stat().st_size, 1)
    progress = Progress(f"{progress_label}: members of {path.name}", quiet=quiet, fraction=lambda: raw.tell() / size)
    try:
        with tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                if member.isfile():
                    yield member.name, (lambda m=member: _read(tar, m, path))
                progress.advance()
    except (tarfile.TarError, EOFError, OSError) as err:
        raise PrepareError(f"{path}: cannot read the archive ({err}); is the download complete?") from err
    finally:
        progress.close()
        raw.close()


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> bytes:
    try:
        f = tar.extractfile(member)
        if f is None:
            raise PrepareError(f"{path}: member {member.name} cannot be read")
        return f.read()
    except (tarfile.TarError, EOFError, OSError) as err:
        raise PrepareError(f"{path}: cannot read the archive at {member.name} ({err}); is the download "
                           "complete?") from err


_ZIPS: dict[str, zipfile.ZipFile] = {}


def zip_read(zip_path: str, member: str) -> bytes:
    """A member's bytes; each process keeps its own open handle per archive (zip members are random access,
    so pool workers read in parallel without the bytes passing through the parent)."""
    zf = _ZIPS.get(zip_path)
    if zf is None:
        zf = _ZIPS[zip_path] = zipfile.ZipFile(zip_path)
    return zf.read(member)


def zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return [i.filename for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as err:
        raise PrepareError(f"{path}: cannot read the zip archive ({err}); is the download complete?") from err


def copy_zip_member(out: str, zip_path: str, member: str, final: str) -> str:
    """Pool task: copy one zip member to ``final`` (atomically). Returns ``final``."""
    write_bytes(Path(out), Path(final), zip_read(zip_path, member))
    return final


def check_inputs(paths: list[Path], flags: list[str]) -> None:
    for path, flag in zip(paths, flags):
        if not path.is_file():
            raise PrepareError(f"{flag} {path}: no such file")
