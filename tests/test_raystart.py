"""c2s.raystart.init_ray: which Ray a c2s command runs on. Ray's own ``ray.init`` is a stand-in here that
records its arguments (no Ray starts)."""

from __future__ import annotations

import pytest

from c2s import raystart


@pytest.fixture
def calls(monkeypatch):
    import ray

    seen: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: seen.append(kwargs))
    return seen


def test_without_ray_address_a_ray_of_its_own(calls, monkeypatch):
    """Never Ray's implicit join of /tmp/ray/ray_current_cluster: sweeps started beside the test suite joined
    its simulated multi-node cluster that way and every trial died when it shut down."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    raystart.init_ray(num_cpus=2)
    (call,) = calls
    assert call["address"] == "local" and call["num_cpus"] == 2 and call["log_to_driver"] is False


@pytest.mark.parametrize("address", ["auto", "http://127.0.0.1:8265", "10.0.0.1:6379"])
def test_ray_address_names_the_cluster_to_join(calls, monkeypatch, address):
    monkeypatch.setenv("RAY_ADDRESS", address)
    raystart.init_ray(log_to_driver=False)
    (call,) = calls
    assert call["address"] == address and "num_cpus" not in call and call["log_to_driver"] is False
