"""Where a run's results may go (c2s/train/storage.py): unit tests, no Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from c2s.errors import PreflightError
from c2s.train.storage import (
    check_run_location,
    check_shared_storage,
    node_local_roots,
    ray_session_root,
    under_ray_job,
    worker_hosts,
)

PKG = Path("/tmp/ray/session_2026-11-25_18-00-00_1_42/runtime_resources/working_dir_files/_ray_pkg_abc")


def test_under_ray_job_reads_the_supervisors_variable():
    job_env = {"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps({"metadata": {"job_submission_id": "raysubmit_1"}})}
    assert under_ray_job(job_env)
    assert not under_ray_job({"RAY_ADDRESS": "127.0.0.1:6379"})  # a plain driver connected to a cluster
    assert not under_ray_job({})


def test_session_root_of_the_package_folder():
    assert ray_session_root(PKG) == Path("/tmp/ray/session_2026-11-25_18-00-00_1_42")
    assert ray_session_root(Path("/home/me/c2s")) is None


def test_relative_work_dir_refused_under_a_job_only():
    with pytest.raises(PreflightError) as err:
        check_run_location("runs", key="work_dir", under_job=True, cwd=PKG)
    message = str(err.value)
    assert message.startswith("work_dir = 'runs' is a relative path: under `ray job submit` it resolves inside "
                              f"Ray's temporary package folder ({PKG / 'runs'}), which Ray deletes with the session")
    assert "Pass an absolute work_dir on storage every node mounts, e.g. work_dir=/data/runs" in message
    with pytest.raises(PreflightError, match=r"--run-dir = 'out/r1' is a relative path.*job's current directory"):
        check_run_location("out/r1", key="--run-dir", under_job=True, cwd=Path("/home/ray"))
    check_run_location("runs", key="work_dir", under_job=False, cwd=PKG)  # c2s train on a laptop: fine
    check_run_location("/data/runs", key="work_dir", under_job=True, cwd=PKG)


def test_run_dir_inside_the_ray_session_is_refused_under_a_job():
    with pytest.raises(PreflightError, match="inside Ray's session folder"):
        check_shared_storage(PKG / "runs" / "r1", under_job=True, cwd=PKG, hosts=1, local_roots=[])
    # Outside the session folder, one host: any local path is fine (a single-machine `ray start --head`).
    check_shared_storage(Path("/tmp/c2s/runs/r1"), under_job=True, cwd=PKG, hosts=1,
                         local_roots=node_local_roots())


def test_node_local_work_dir_refused_on_several_hosts():
    roots = node_local_roots()
    assert Path("/tmp").resolve() in roots
    with pytest.raises(PreflightError) as err:
        check_shared_storage(Path("/tmp/runs/r1"), under_job=False, cwd=Path("/home/me"), hosts=3, local_roots=roots)
    assert "is under /tmp, which is local to each node, but this run's workers may run on 3 hosts" in str(err.value)
    assert "Use shared storage every node mounts" in str(err.value)
    with pytest.raises(PreflightError, match="may run on 2 hosts"):
        check_shared_storage(Path("/var/tmp/r1"), under_job=False, cwd=Path("/home/me"), hosts=2, local_roots=roots)
    check_shared_storage(Path("/data/runs/r1"), under_job=True, cwd=PKG, hosts=3, local_roots=roots)
    check_shared_storage(Path("/tmp/runs/r1"), under_job=False, cwd=Path("/home/me"), hosts=1, local_roots=roots)


def _node(node_id, address, cpu, gpu=0.0, alive=True):
    return {"NodeID": node_id, "NodeManagerAddress": address, "Alive": alive,
            "Resources": {"CPU": cpu, **({"GPU": gpu} if gpu else {})}}


def test_worker_hosts_counts_addresses_and_workers_that_cannot_run_beside_the_driver():
    one_machine = [_node("a", "10.0.0.1", 2), _node("b", "10.0.0.1", 2)]  # ray.cluster_utils.Cluster
    assert worker_hosts(one_machine, "a", {"CPU": 1}) == 1
    two = [_node("a", "10.0.0.1", 2), _node("b", "10.0.0.2", 8, 1), _node("c", "10.0.0.3", 8, alive=False)]
    assert worker_hosts(two, "a", {"CPU": 1}) == 2
    # cluster.yaml's head: CPU 0, GPU workers not started yet -> they will run elsewhere.
    head_only = [_node("h", "10.0.0.1", 0)]
    assert worker_hosts(head_only, "h", {"CPU": 4, "GPU": 1}) == 2
    assert worker_hosts([_node("h", "10.0.0.1", 8, 1)], "h", {"CPU": 4, "GPU": 1}) == 1
