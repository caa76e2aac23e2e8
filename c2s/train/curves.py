"""TensorBoard curves beside ``metrics.jsonl``: every numeric field of every row, rank 0 only.

Tags are ``<kind>/<field>``: ``train/loss``, ``train/loss_global``, ..., ``train/lr``,
``train/images_per_s``, ``train/teacher_wait_frac`` and ``eval/sIoU``, ``eval/uIoU``, ``eval/hIoU``, ...
at the row's ``step``. Watch them with ``tensorboard --logdir runs/`` (``pip install tensorboard``).

Writer: tensorboardX (installed with ``ray[train]``). A resumed run writes a new event file that starts with
tensorboardX's ``purge_step`` marker, so TensorBoard hides the old file's points after the restored step
(the same steps are trained again). :func:`read_scalars` reads event files back the same way, for tests
and scripts, with the TFRecord framing of tensorboardX's ``record_writer.py`` and its ``event_pb2``.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

EVENT_GLOB = "events.out.tfevents.*"


def scalar_items(row: dict[str, Any]) -> list[tuple[str, float]]:
    """(tag, value) for each finite numeric field of a metrics row, ``step`` and ``kind`` excepted."""
    kind = str(row.get("kind", "train"))
    out = []
    for key, value in row.items():
        if key in ("step", "kind") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out.append((f"{kind}/{key}", float(value)))
    return out


class CurveWriter:
    """Appends metrics rows to TensorBoard event files in ``run_dir``.

    tensorboardX queues events to a writer thread that puts them on disk at most ``flush_secs`` after they
    arrive (event_file_writer.py) and at ``close()``: a live TensorBoard lags by up to 10 s; metrics.jsonl,
    written synchronously, stays the record."""

    def __init__(self, run_dir: Path, start_step: int = 0):
        from tensorboardX import SummaryWriter

        # purge_step: points at or after it from an earlier attempt are hidden (this attempt redoes them).
        self._writer = SummaryWriter(logdir=str(run_dir), purge_step=start_step + 1 if start_step else None,
                                     flush_secs=10)

    def add(self, row: dict[str, Any]) -> None:
        step = int(row["step"])
        for tag, value in scalar_items(row):
            self._writer.add_scalar(tag, value, global_step=step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _records(path: Path):
    """TFRecord framing: uint64 length, uint32 masked CRC of the length, data, uint32 masked CRC of data."""
    data = path.read_bytes()
    pos = 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[pos: pos + 8])
        start = pos + 12
        if start + length + 4 > len(data):
            break  # a record still being written
        yield data[start: start + length]
        pos = start + length + 4


def read_scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} from every event file in ``run_dir``, oldest file first, applying purge markers
    (a SessionLog START at step S drops the points at steps >= S read so far) as TensorBoard does."""
    from tensorboardX.proto.event_pb2 import Event, SessionLog

    curves: dict[str, dict[int, float]] = {}
    for path in sorted(Path(run_dir).glob(EVENT_GLOB)):
        for record in _records(path):
            event = Event.FromString(record)
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                for points in curves.values():
                    for step in [s for s in points if s >= event.step]:
                        del points[step]
            if event.HasField("summary"):
                for value in event.summary.value:
                    if value.HasField("simple_value"):
                        curves.setdefault(value.tag, {})[int(event.step)] = float(value.simple_value)
    return curves
