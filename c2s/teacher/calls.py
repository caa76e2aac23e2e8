"""Per-actor CLIP call counters: each teacher actor writes ``calls_dir/<actor id>.calls.json``; the training
loop (rank 0, the elastic pool's per-interval activity) and the driver (``summary.json``) read them.

Standard library only, so the training workers, which never run CLIP, do not import torch's vision stack
or open_clip to read a few JSON files (open_clip costs ~2.7 s of every process start here).
"""

from __future__ import annotations

import json
import os
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
