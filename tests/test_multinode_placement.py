"""Issue 18.1 on a simulated 3-node cluster (tests/multinode_cluster.py, run in a subprocess with its own
``ray.cluster_utils.Cluster``; the session's local Ray is untouched).

Three 1-CPU nodes; toy_tiny with 2 training workers of 1 CPU each, one teacher actor (0.5) and two data
tasks (0.25): 3 CPU asked, 3 in all, so the job runs only with one worker per node. A job whose single
1.5-CPU worker fits the cluster's total but no node is refused before fit() with both sides printed.
"""

from __future__ import annotations

import re

import pytest
from multinode_cluster import run_scenario, shared_dir  # noqa: F401  (shared_dir: a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.multinode]


def test_job_spreads_over_nodes_and_unplaceable_job_fails_before_fit(shared_dir, tmp_path):  # noqa: F811
    result = run_scenario("placement", tmp_path / "out", shared_dir)
    spread = result["spread"]
    assert spread["step"] == 3
    assert len(spread["nodes"]) == 3
    assert len(spread["worker_nodes"]) == 2  # the two training workers ran on two different nodes
    assert set(spread["worker_nodes"]) <= set(spread["nodes"])
    refused = result["refused"]["error"]
    assert refused.startswith("the job cannot be placed on this cluster's nodes: train worker needs {CPU: 1.5} "
                              "but no node has that much (largest per node: {CPU: 1})")
    assert "Asked: 1 x train worker {CPU: 1.5}, 1 x teacher actor {CPU: 0.5}, 2 x data task {CPU: 0.25}" in refused
    # the three nodes, each with its CPU (they share this machine's address)
    assert re.search(r"running nodes \[\S+ \(head\): \{CPU: 1\}; \S+ \w{8}: \{CPU: 1\}; \S+ \w{8}: \{CPU: 1\}\]",
                     refused), refused
    assert not (shared_dir / "refused" / "metrics.jsonl").exists()  # nothing was trained
