"""`c2s demo` trains the baseline and the C2S student side by side on one local Ray (no Ray needed here)."""

from __future__ import annotations

import threading

import pytest

from c2s.config import load_config
from c2s.demo import ROWS, run_side_by_side, side_by_side_cpus


def demo_configs(*overrides: str):
    return {name: load_config(config, list(overrides)) for name, config in ROWS}


def test_local_ray_gets_what_both_runs_ask_for_together():
    # baseline: worker 0.5 + 2 data tasks x 0.25 = 1.0; C2S adds its teacher actor (0.5): 1.5; together 2.5 -> 3
    assert side_by_side_cpus(demo_configs()) == 3
    # data tasks at 0.5: 1.5 + 2.0 = 3.5 -> 4; a pool of up to two actors: 1.0 + 2.0 = 3
    assert side_by_side_cpus(demo_configs("data.num_cpus=0.5")) == 4
    assert side_by_side_cpus(demo_configs("teacher.actors=[1,2]")) == 3
    assert side_by_side_cpus(demo_configs("train.cpus_per_worker=1.0")) == 4  # exactly 4.0 stays 4


def test_runs_overlap_in_time():
    """Each job waits for the other to have started: only concurrent runs both see the other."""
    started = {"a": threading.Event(), "b": threading.Event()}

    def job(me: str, other: str):
        started[me].set()
        return {"saw_other": started[other].wait(timeout=10)}

    results = run_side_by_side({"a": lambda: job("a", "b"), "b": lambda: job("b", "a")}, abort=lambda: None)
    assert results == {"a": {"saw_other": True}, "b": {"saw_other": True}}
    assert list(results) == ["a", "b"]


def test_first_failure_aborts_the_other_run_and_reaches_the_caller():
    aborted = threading.Event()
    other_ended = threading.Event()

    def failing():
        raise ValueError("data.root = '/nope' does not exist")

    def long_run():
        # stands in for a fit() that only ends when Ray shuts down
        assert aborted.wait(timeout=30), "abort was never called"
        other_ended.set()
        raise RuntimeError("ray shut down")

    with pytest.raises(ValueError, match="/nope"):
        run_side_by_side({"baseline": failing, "c2s": long_run}, abort=aborted.set)
    assert aborted.is_set() and other_ended.is_set()


def test_all_results_when_nothing_fails():
    calls = []
    results = run_side_by_side({"x": lambda: calls.append("x") or {"hIoU": 1.0}, "y": lambda: {"hIoU": 2.0}},
                               abort=lambda: calls.append("abort"))
    assert results == {"x": {"hIoU": 1.0}, "y": {"hIoU": 2.0}}
    assert "abort" not in calls
