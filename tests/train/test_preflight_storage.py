"""Storage preflight beyond the run directory (c2s/train/storage.py): inputs every node reads, sweeps' --out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from c2s.config import load_config
from c2s.errors import PreflightError
from c2s.sweep import run as sweep_run
from c2s.train.storage import JOB_CONFIG_ENV, check_shared_inputs, cluster_hosts, job_input_paths

ROOTS = [Path("/tmp"), Path("/dev/shm")]


def _cfg(**paths):
    cfg = load_config("toy_tiny", [])
    cfg.data.root = paths.get("data", "/data/toy")
    cfg.teacher.checkpoint = paths.get("teacher", "/data/clip.pt")
    cfg.model.pretrained = paths.get("backbone")
    return cfg


def test_inputs_every_node_reads_are_listed_by_key():
    cfg = _cfg(backbone="/data/mit_b4.pth")
    assert job_input_paths(cfg, Path("/cache"), cached=False) == {
        "data.root": Path("/data/toy"), "teacher.checkpoint": Path("/data/clip.pt"),
        "model.pretrained": Path("/data/mit_b4.pth")}
    cfg.data.dataset = "/data/mine.yaml"
    cfg.teacher.checkpoint = None
    assert job_input_paths(cfg, Path("/cache"), cached=True) == {
        "data.root": Path("/data/toy"), "model.pretrained": Path("/data/mit_b4.pth"),
        "data.dataset": Path("/data/mine.yaml"), "cache_root (token cache)": Path("/cache")}


def test_node_local_inputs_refused_on_several_hosts_naming_every_key():
    paths = job_input_paths(_cfg(data="/tmp/toy", teacher="/data/clip.pt"), Path("/dev/shm/c2s"), cached=True)
    check_shared_inputs(paths, hosts=1, local_roots=ROOTS)  # one host: its temp dir is as good as any
    with pytest.raises(PreflightError) as err:
        check_shared_inputs(paths, hosts=2, local_roots=ROOTS)
    msg = str(err.value)
    assert msg.startswith("this job may run on 2 hosts, but data.root = '/tmp/toy' is under /tmp; "
                          "cache_root (token cache) = '/dev/shm/c2s' is under /dev/shm, which is local to each node")
    assert "teacher.checkpoint = " not in msg
    assert "Put it on storage every node mounts (NFS/EFS)" in msg and "cache_root=/data/c2s-cache" in msg
    check_shared_inputs({"data.root": Path("/data/toy")}, hosts=3, local_roots=ROOTS)


def test_cluster_hosts_counts_addresses_and_growth():
    rows = [{"Alive": True, "NodeManagerAddress": "10.0.0.1"}, {"Alive": True, "NodeManagerAddress": "10.0.0.1"},
            {"Alive": False, "NodeManagerAddress": "10.0.0.2"}]
    assert cluster_hosts(rows, may_grow=False) == 1  # ray.cluster_utils.Cluster: nodes on one host share its disk
    assert cluster_hosts(rows, may_grow=True) == 2
    assert cluster_hosts(rows + [{"Alive": True, "NodeManagerAddress": "10.0.0.3"}], may_grow=False) == 2


def test_sweep_out_relative_under_a_submitted_job_is_refused(monkeypatch, tmp_path, capsys):
    """jobs/sweep.py calls c2s.sweep.run.main: --out goes through the training job's run-location check."""
    monkeypatch.setenv(JOB_CONFIG_ENV, json.dumps({"submission_id": "raysubmit_1"}))
    monkeypatch.chdir(tmp_path)

    def must_not_run(*args, **kwargs):
        raise AssertionError("run_sweep was reached")

    monkeypatch.setattr(sweep_run, "run_sweep", must_not_run)
    assert sweep_run.main(["tau", "--out", "sweeps/tau"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("c2s sweep: --out = 'sweeps/tau' is a relative path: under `ray job submit` it resolves "
                          f"in the job's current directory on the head node ({tmp_path}/sweeps/tau)")
    assert sweep_run.main(["tau"]) == 2  # the default <work_dir>/sweeps/tau, work_dir "runs"
    assert "c2s sweep: work_dir = 'runs' is a relative path" in capsys.readouterr().err
