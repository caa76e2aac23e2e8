"""Progress lines of a long teacher run (c2s.teacher.calls.CallProgress), from the actors' counter files."""

from __future__ import annotations

import threading

import pytest

from c2s.teacher.calls import CallProgress, progress_line, write_call_count


def test_progress_line_counts_shares_and_estimates_the_time_left():
    assert progress_line("[c2s] token cache k", 0, 16000, 12.4) == (
        "[c2s] token cache k: CLIP encoded 0 / 16,000 images (0%) in 12 s, the teacher pool is starting")
    # 4,000 of 16,000 in 100 s: 12,000 left at 40 images/s = 300 s = 5.0 min
    assert progress_line("k", 4000, 16000, 100.0) == "k: CLIP encoded 4,000 / 16,000 images (25%) in 100 s, about 5.0 min left"
    # 1,000 of 1,200 in 150 s: 200 left at 6.67/s = 30 s
    assert progress_line("k", 1000, 1200, 150.0) == "k: CLIP encoded 1,000 / 1,200 images (83%) in 2.5 min, about 30 s left"
    assert progress_line("k", 48, 48, 7.0) == "k: CLIP encoded 48 / 48 images (100%) in 7 s"


def test_call_progress_reports_the_counters_the_actors_write(tmp_path):
    lines: list[str] = []
    seen = threading.Event()

    def emit(line: str) -> None:
        lines.append(line)
        if "12 / 48" in line:
            seen.set()

    with CallProgress(tmp_path / "calls", 48, "build", interval_s=0.02, emit=emit) as progress:
        while not lines:  # no counter folder yet: the pool is starting
            seen.wait(0.01)
        write_call_count(tmp_path / "calls", "actor-a", 2, 8)
        write_call_count(tmp_path / "calls", "actor-b", 1, 4)  # two actors: their images add up
        assert seen.wait(10.0), lines
    assert lines[0].startswith("build: CLIP encoded 0 / 48 images (0%)") and lines[0].endswith("pool is starting")
    assert any(line.startswith("build: CLIP encoded 12 / 48 images (25%) in ") and line.endswith(" left")
               for line in lines), lines
    count = len(lines)
    assert progress.lines == count and not progress._thread.is_alive()  # leaving the block stopped it


def test_an_unreadable_counter_stops_the_progress_with_one_line_naming_it(tmp_path):
    (tmp_path / "calls").mkdir()
    (tmp_path / "calls" / "actor-a.calls.json").write_text("{not json")
    lines: list[str] = []
    with CallProgress(tmp_path / "calls", 48, "build", interval_s=0.01, emit=lines.append) as progress:
        progress._thread.join(10.0)  # it ends by itself after the one line
    assert len(lines) == 1 and progress.lines == 0
    assert lines[0].startswith("build: progress stops here, a teacher counter could not be read: ")
    assert "actor-a.calls.json" in lines[0]


def test_a_progress_interval_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="progress interval must be > 0 seconds, got 0"):
        CallProgress(tmp_path, 48, "build", interval_s=0)
