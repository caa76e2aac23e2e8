"""A Ray Data source of row positions ``0 .. n - 1`` (column ``id``), read with the caller's CPU request.

``ray.data.range`` makes the same rows, but its read tasks always ask for one whole CPU, so they neither
fuse with a fractional-CPU map after them nor schedule on a small node whose CPUs the training workers
and teacher actors already hold. Written to Ray 2.60's public ``Datasource`` interface
(ray/data/datasource/datasource.py; modelled on ray/data/_internal/datasource/range_datasource.py).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

COLUMN = "id"


def _block(start: int, count: int) -> list[pa.Table]:
    return [pa.table({COLUMN: np.arange(start, start + count, dtype=np.int64)})]


class Positions(Datasource):
    """``n`` int64 positions split into contiguous, ordered read tasks (one block each)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        if int(n) <= 0:
            raise ValueError(f"Positions: n must be >= 1, got {n}")
        self.n = int(n)

    def estimate_inmemory_data_size(self) -> int:
        return 8 * self.n

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context=None) -> list[ReadTask]:
        tasks = max(1, min(int(parallelism), self.n))
        bounds = np.linspace(0, self.n, tasks + 1).astype(np.int64)
        schema = pa.schema([(COLUMN, pa.int64())])
        return [
            ReadTask(lambda start=int(a), count=int(b - a): _block(start, count),
                     BlockMetadata(num_rows=int(b - a), size_bytes=8 * int(b - a), input_files=None,
                                   exec_stats=None),
                     schema=schema, per_task_row_limit=per_task_row_limit)
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
