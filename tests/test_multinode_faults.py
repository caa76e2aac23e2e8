"""Issue 18.2-18.4 and 18.6 on a simulated cluster (tests/multinode_cluster.py, a subprocess with its own
``ray.cluster_utils.Cluster``: a head with CPU 0 that runs only the driver, three 1-CPU nodes). A node is
killed without warning (``Cluster.remove_node(allow_graceful=False)``) once a checkpoint exists and training is
past it, and a fresh 1-CPU node is added so the job's resources fit again.
"""

from __future__ import annotations

import pytest
from multinode_cluster import run_scenario, shared_dir  # noqa: F401  (shared_dir: a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.multinode]


def test_losing_a_training_workers_node_restores_from_the_checkpoint(shared_dir, tmp_path):  # noqa: F811
    r = run_scenario("worker_node_loss", tmp_path / "out", shared_dir)
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
    assert r["train_worker_actors"] == 4  # 2 workers, then 2 new ones after the node died: one Train restart


def test_losing_the_teachers_node_keeps_every_step_once(shared_dir, tmp_path):  # noqa: F811
    """The teacher's node dies while its actor encodes the stream (before the first step: the actor encodes
    the whole toy stream ahead of training and is gone by then)."""
    r = run_scenario("teacher_node_loss", tmp_path / "out", shared_dir)
    assert any("TeacherActor" in name for name in r["killed"]["actors_there"])
    # Ray Data restarts its pool actors (max_restarts=-1, ray/data/.../actor_pool_map_operator.py) elsewhere
    # and retries the lost batch: the Train run never restarts (its two workers are the only ones)
    assert max(r["teacher_actor_restarts"].values()) >= 1
    assert r["train_worker_actors"] == 2
    assert r["step"] == r["iters"] == 10
    assert r["steps"] == list(range(1, 11))  # no step trained twice in the log, none skipped
    assert r["checkpoints"] == [2, 4, 6, 8, 10]
    assert r["trained_images"] == r["iters"] * r["batch_size"]


def test_sweep_node_loss_fails_only_its_trials_which_retry(shared_dir, tmp_path):  # noqa: F811
    r = run_scenario("sweep_node_loss", tmp_path / "out", shared_dir)
    assert "RayTrainWorker" in r["killed"]["actors_there"]
    assert r["summary"] == {"completed": 2, "failed": 0, "stopped": 0}
    assert r["rows"] == [["t000_s0", 0, "completed"], ["t000_s1", 1, "completed"]]  # one row each, no duplicates
    # the trial(s) that lost an actor with the node were retried by Tune (max_failures 1), at most the 2 running
    assert 1 <= len(r["retries"]) <= 2, r["log"]
    assert all(r["killed"]["node"] in line for line in r["retries"])  # each retry names the lost node's worker
