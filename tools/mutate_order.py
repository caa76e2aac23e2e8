"""pytest plugin for ``make mutate`` (loaded by tools/mutate.py's mutmut configuration): run each mutant's
tests fastest first, by the per-test durations mutmut recorded in its stats run. mutmut runs pytest with
``-x``, so a killed mutant then costs its cheapest failing test rather than whichever test its (unordered)
set listed first; a surviving mutant runs every test either way, so no verdict changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_durations: dict[str, float] | None = None


def _load() -> dict[str, float]:
    global _durations
    if _durations is None:
        stats = Path("mutmut-stats.json")  # pytest runs in the snapshot's mutants/ folder
        if not stats.is_file():
            return {}  # mutmut's own stats run, before any duration is known: keep pytest's order
        # read once: the fork server's warm-up collection caches it for every forked mutant run
        _durations = json.loads(stats.read_text()).get("duration_by_test", {})
    return _durations


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    durations = _load()
    if durations:
        items.sort(key=lambda item: durations.get(item.nodeid, 0.0))
