"""Node types the autoscaler may launch, read as Ray 2.60 exposes them; no Ray cluster is started.

- ray/_private/state.py ``GlobalState.get_cluster_config`` returns an ``autoscaler_pb2.ClusterConfig`` (or None)
  whose ``node_group_configs`` carry name/resources/min_count/max_count (-1 = unlimited); the fake below is
  Ray's own protobuf class, filled as ray/autoscaler/v2/autoscaler.py ``_autoscaling_config_to_cluster_config``
  fills it (head type left out).
- ray/autoscaler/_private/commands.py ``_set_up_config_for_head_node`` writes the bootstrapped cluster config as
  JSON to ``~/ray_bootstrap_config.yaml`` on the head (resources filled in by the cloud provider).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from ray.core.generated import autoscaler_pb2

import c2s.train.cluster as cluster_mod
from c2s.errors import PreflightError
from c2s.train.placement import Node, job_bundles, node_types_from_autoscaling_config, place
from c2s.train.resolve import check_placement

REPO = Path(__file__).resolve().parents[2]
HEAD_ROW = {"Alive": True, "NodeID": "h" * 56, "NodeManagerAddress": "10.0.0.1",
            "Resources": {"CPU": 0.0, "memory": 1e10, "node:10.0.0.1": 1.0, "node:__internal_head__": 1.0}}


def _cluster_config(max_count: int) -> autoscaler_pb2.ClusterConfig:
    config = autoscaler_pb2.ClusterConfig()
    group = autoscaler_pb2.NodeGroupConfig(name="gpu_worker", min_count=0, max_count=max_count)
    group.resources["CPU"] = 8
    group.resources["GPU"] = 1
    config.node_group_configs.append(group)
    return config


@pytest.fixture
def fake_ray(monkeypatch):
    """ray.nodes() and GlobalState.get_cluster_config() answering as a fresh autoscaling cluster's would."""
    import ray
    import ray._private.state

    answers = {"nodes": [HEAD_ROW], "config": None}
    monkeypatch.setattr(ray, "nodes", lambda: answers["nodes"])
    monkeypatch.setattr(ray._private.state.state, "get_cluster_config", lambda: answers["config"])
    return answers


def _bundles():
    return job_bundles({"train worker": (2, {"CPU": 4, "GPU": 1}), "data task": (2, {"CPU": 0.25, "GPU": 0})})


def test_gcs_cluster_config_node_groups_make_a_fresh_cluster_placeable(fake_ray, tmp_path, capsys):
    fake_ray["config"] = _cluster_config(max_count=4)
    cluster = cluster_mod.cluster_from_ray(bootstrap=tmp_path / "absent.yaml")
    assert [n.name for n in cluster.nodes] == ["10.0.0.1 (head)"]
    assert cluster.nodes[0].resources == {"CPU": 0.0, "memory": 1e10}
    assert [(t.name, dict(t.resources), t.launchable) for t in cluster.node_types] == \
        [("gpu_worker", {"CPU": 8.0, "GPU": 1.0}, 4)]
    placement = check_placement(_bundles(), cluster)
    assert dict(placement.launched) == {"gpu_worker": 2}
    assert "fits once the autoscaler launches 2 x gpu_worker (from Ray's GCS cluster config)" in capsys.readouterr().out


def test_running_nodes_of_a_group_count_against_its_max_count(fake_ray, tmp_path):
    worker = {"Alive": True, "NodeID": "w" * 56, "NodeManagerAddress": "10.0.0.2",
              "Resources": {"CPU": 8.0, "GPU": 1.0, "memory": 3e10, "node:10.0.0.2": 1.0}}
    fake_ray["nodes"] = [HEAD_ROW, worker, {**worker, "Alive": False}]
    fake_ray["config"] = _cluster_config(max_count=1)
    cluster = cluster_mod.cluster_from_ray(bootstrap=tmp_path / "absent.yaml")
    assert [t.launchable for t in cluster.node_types] == [0]
    assert place(_bundles(), cluster) is None  # one running gpu_worker, none more may start
    fake_ray["config"] = _cluster_config(max_count=-1)
    assert [t.launchable for t in cluster_mod.cluster_from_ray(bootstrap=tmp_path / "absent.yaml").node_types] == [-1]


def test_without_any_source_the_refusal_says_so(fake_ray, tmp_path):
    cluster = cluster_mod.cluster_from_ray(bootstrap=tmp_path / "absent.yaml")
    assert cluster.node_types == ()
    with pytest.raises(PreflightError) as err:
        check_placement(_bundles(), cluster)
    assert ("no node types the autoscaler may launch (Ray reports no autoscaler node types and there is no "
            "~/ray_bootstrap_config.yaml)") in str(err.value)
    assert "train worker 1 needs {CPU: 4, GPU: 1} but no node has that much (largest per node: {CPU: 0, GPU: 0})" \
        in str(err.value)


def test_bootstrap_config_of_the_repos_cluster_yaml(fake_ray, tmp_path):
    """cluster.yaml as `ray up` leaves it on the head: JSON, gpu_worker's `resources: {}` filled by the AWS
    provider (g5.2xlarge: 8 vCPU, 1 GPU)."""
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    assert config["available_node_types"]["gpu_worker"]["resources"] == {}
    types, _ = node_types_from_autoscaling_config(config, [Node("10.0.0.1 (head)", {"CPU": 0})])
    assert types == []  # unknown resources are never counted on
    config["available_node_types"]["gpu_worker"]["resources"] = {"CPU": 8, "GPU": 1}
    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text(json.dumps(config))
    cluster = cluster_mod.cluster_from_ray(bootstrap=path)
    assert [(t.name, t.launchable) for t in cluster.node_types] == [("gpu_worker", 8)]
    assert cluster.max_new_nodes == 8 and cluster.source == str(path)
    assert dict(place(_bundles(), cluster).launched) == {"gpu_worker": 2}
    config["max_workers"] = 1
    path.write_text(json.dumps(config))
    assert place(_bundles(), cluster_mod.cluster_from_ray(bootstrap=path)) is None


def test_unreadable_bootstrap_config_names_the_file(fake_ray, tmp_path):
    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(PreflightError, match=r"ray_bootstrap_config.yaml: expected a cluster config mapping"):
        cluster_mod.cluster_from_ray(bootstrap=path)
    path.write_text("{unclosed: [")
    with pytest.raises(PreflightError, match=r"cannot read the autoscaler's cluster config .*ray_bootstrap_config"):
        cluster_mod.cluster_from_ray(bootstrap=path)


def test_running_nodes_are_listed_head_first_whatever_ray_nodes_order():
    from c2s.train.cluster import nodes_from_rows

    def row(node_id, head=False, alive=True):
        resources = {"CPU": 1.0, f"node:{node_id}": 1.0, **({"node:__internal_head__": 1.0} if head else {})}
        return {"Alive": alive, "NodeID": node_id * 4, "NodeManagerAddress": "10.0.0.1", "Resources": resources}

    rows = [row("cc"), row("aa", head=True), row("dd", alive=False), row("bb")]
    for order in (rows, rows[::-1]):
        nodes = nodes_from_rows(order)
        assert [n.name for n in nodes] == ["10.0.0.1 (head)", "10.0.0.1 bbbbbbbb", "10.0.0.1 cccccccc"]
        assert all(n.resources == {"CPU": 1.0} for n in nodes)  # node:<id> markers are not resources
