"""Issue 18 on a simulated cluster (tests/multinode/multinode_cluster.py: a subprocess with its own
``ray.cluster_utils.Cluster``; the session's local Ray is untouched). One cluster runs every scenario once
(module fixture); each test reads its scenario's part of the result.

The cluster: a head with CPU 0 that runs only the driver, and three 1-CPU nodes; toy_tiny with 2 training
workers of 1 CPU each, one teacher actor (0.5) and two data tasks (0.25): 3 CPU asked, 3 in all, so a job
runs only with one worker per node. In one run the teacher's node and then a training worker's node are
killed without warning (``Cluster.remove_node(allow_graceful=False)``), each replaced by a fresh one so the
job's resources fit again. The sweep runs on three
2-CPU nodes that replace the 1-CPU ones.
"""

from __future__ import annotations

import re

import multinode_cluster
import pytest
from conftest import warn_deprecations

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.multinode, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def scenarios():
    """Every scenario's result (or its traceback), from the one run of tests/multinode/multinode_cluster.py that
    tests/conftest.py started when collection ended."""
    running = multinode_cluster.RUNNING
    assert running is not None, "tests/conftest.py's pytest_collection_finish did not start the scenarios"
    try:
        yield running.wait()
    finally:
        found = running.deprecations()  # before stop() removes the driver's output
        running.stop()
        warn_deprecations("the multi-node scenarios", found)


def part(scenarios: dict, name: str) -> dict:
    result = scenarios.get(name)
    assert result is not None, f"scenario {name} did not run: {sorted(scenarios)}"
    assert "exception" not in result, result["exception"]
    return result


def test_job_spreads_over_nodes_and_unplaceable_job_fails_before_fit(scenarios):
    # 18.1, spread: the node-loss run's two 1-CPU workers ran on two different 1-CPU nodes before the kill
    run = part(scenarios, "node_loss")
    assert len(run["nodes"]) == 3
    assert len(run["worker_nodes_before_kill"]) == 2
    assert set(run["worker_nodes_before_kill"]) <= set(run["nodes"])
    # 18.1, refusal before fit(): one 1.5-CPU worker fits the cluster's 3 CPU but no node
    refused = part(scenarios, "refused")["error"]
    assert refused.startswith("the job cannot be placed on this cluster's nodes: train worker needs {CPU: 1.5} "
                              "but no node has that much (largest per node: {CPU: 1})")
    assert "Asked: 1 x train worker {CPU: 1.5}, 1 x teacher actor {CPU: 0.5}, 2 x data task {CPU: 0.25}" in refused
    # the head (listed first) and the three nodes, each with its CPU (they share this machine's address)
    assert re.search(r"running nodes \[\S+ \(head\): \{CPU: 0\}; \S+ \w{8}: \{CPU: 1\}; \S+ \w{8}: \{CPU: 1\}; "
                     r"\S+ \w{8}: \{CPU: 1\}\]", refused), refused


def test_losing_a_training_workers_node_restores_from_the_checkpoint(scenarios):
    r = part(scenarios, "node_loss")
    # 18.6: the workers cannot run beside the driver (head CPU 0): a run dir in the temp dir is refused first
    assert r["tmp_refused"].startswith("work_dir: the run directory ")
    assert "is under /tmp, which is local to each node, but this run's workers may run on 2 hosts" in r["tmp_refused"]
    assert "Use shared storage every node mounts (NFS/EFS), e.g. work_dir=/data/runs" in r["tmp_refused"]
    killed = r["killed"]
    assert "RayTrainWorker" in killed["actors_there"]
    assert killed["at_step"] > killed["checkpoints"][-1]  # steps after the last checkpoint were lost
    assert r["step"] == r["iters"] == 10
    assert r["steps"] == list(range(1, 11))  # every step once: the redone ones replaced, none duplicated
    assert r["trained_images"] == r["iters"] * r["batch_size"]
    # Restored from the checkpoint the controller had registered: none up to it was written twice (a restart
    # from step 0 writes them again); one after it may be, when the lost attempt had saved but not registered it.
    restored = killed["checkpoints"][-1]
    assert all(r["checkpoints"].count(step) == 1 for step in range(2, restored + 1, 2))
    assert sorted(set(r["checkpoints"])) == [2, 4, 6, 8, 10]
    assert killed["train_worker_actors"] == 2  # the teacher's node died earlier: no Train restart for that
    assert r["train_worker_actors"] == 4  # 2 workers, then 2 new ones after the node died: one Train restart
    # The restart continued from the restored checkpoint's CLS token bank (FIFO order kept), not the lost one's
    assert r["bank"]["restored_step"] == restored and r["bank"]["kept"] > 0 and r["bank"]["carried"], r["bank"]


def test_losing_the_teachers_node_keeps_every_step_once(scenarios):
    """The teacher's node dies while its actor encodes the stream (before the first step: the actor encodes
    the whole toy stream ahead of training and is gone by then); a worker's node dies later in the same run."""
    r = part(scenarios, "node_loss")
    killed = r["teacher_killed"]
    assert any("TeacherActor" in name for name in killed["actors_there"])
    assert "RayTrainWorker" not in killed["actors_there"]
    # Ray Data restarts its pool actors (max_restarts=-1, ray/data/.../actor_pool_map_operator.py) elsewhere
    # and retries the lost batch: the Train run does not restart for it (its two workers were still the only
    # ones when the worker's node was killed later, the previous test)
    assert max(r["teacher_actor_restarts"].values()) >= 1
    assert r["killed"]["train_worker_actors"] == 2
    assert r["killed"]["after_s"] > killed["after_s"]
    assert r["step"] == r["iters"] == 10
    assert r["steps"] == list(range(1, 11))  # no step trained twice in the log, none skipped
    assert r["trained_images"] == r["iters"] * r["batch_size"]


def test_sweep_node_loss_fails_only_its_trials_which_retry(scenarios):
    r = part(scenarios, "sweep_node_loss")
    killed = r["killed"]
    assert "RayTrainWorker" in killed["actors_there"]
    assert r["summary"] == {"completed": 2, "failed": 0, "stopped": 0}
    assert r["rows"] == [["t000_s0", 0, "completed"], ["t000_s1", 1, "completed"]]  # one row each, no duplicates
    # the trial(s) that lost an actor with the node were retried by Tune (max_failures 1), at most the 2 running
    assert 1 <= len(r["retries"]) <= 2, r["log"]
    if "ImplicitFunc" not in killed["actors_there"]:
        assert all(killed["node"] in line for line in r["retries"])  # each retry names the lost node's worker
    else:  # a trial's own actor died with the node: Tune names that actor, unavailable, not the node
        assert all(killed["node"] in line or "ActorUnavailableError" in line or "ActorDiedError" in line
                   for line in r["retries"]), r["retries"]


def test_the_simulated_cluster_leaves_rays_current_cluster_file_as_it_was(scenarios):
    """Ray's Cluster points /tmp/ray/ray_current_cluster at itself, so any `ray.init()` without an address on the
    machine would join it (and die with it); the scenarios put the file back, as they found it."""
    files = scenarios["address_file"]
    assert files["after"] == files["before"], files
