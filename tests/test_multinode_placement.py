"""Issue 18.1 on a simulated 3-node cluster (tests/multinode_cluster.py, run in a subprocess with its own
``ray.cluster_utils.Cluster``; the session's local Ray is untouched).

Three 1-CPU nodes; toy_tiny with 2 training workers of 1 CPU each, one teacher actor (0.5) and two data
tasks (0.25): 3 CPU asked, 3 in all, so the job runs only with one worker per node. A job whose single
1.5-CPU worker fits the cluster's total but no node is refused before fit() with both sides printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]


def run_scenario(name: str, out: Path, cache_root: Path, timeout: int = 540) -> dict:
    env = {**os.environ, "C2S_CACHE": str(cache_root)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "multinode_cluster.py"), name, str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    result_file = out / "result.json"
    assert result_file.is_file(), f"scenario {name} wrote no result (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    result = json.loads(result_file.read_text())
    assert "exception" not in result, result["exception"]
    return result


def test_job_spreads_over_nodes_and_unplaceable_job_fails_before_fit(cache_root, tmp_path):
    result = run_scenario("placement", tmp_path / "out", cache_root)
    spread = result["spread"]
    assert spread["step"] == 3
    assert len(spread["nodes"]) == 3
    assert len(spread["worker_nodes"]) == 2  # the two training workers ran on two different nodes
    assert set(spread["worker_nodes"]) <= set(spread["nodes"])
    refused = result["refused"]["error"]
    assert refused.startswith("the job cannot be placed on this cluster's nodes: train worker needs {CPU: 1.5} "
                              "but no node has that much (largest per node: {CPU: 1})")
    assert "Asked: 1 x train worker {CPU: 1.5}, 1 x teacher actor {CPU: 0.5}, 2 x data task {CPU: 0.25}" in refused
    assert refused.count(": {CPU: 1}") == 3  # the three nodes, each with its CPU
    assert not (tmp_path / "out" / "refused" / "metrics.jsonl").exists()  # nothing was trained
