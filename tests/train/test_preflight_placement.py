"""Placement preflight (c2s/train/placement.py): bundles packed per node, not against the cluster's totals."""

from __future__ import annotations

import pytest

from c2s.config import load_config
from c2s.errors import PreflightError
from c2s.train.placement import Bundle, Cluster, Node, NodeType, job_bundles, place, unplaceable_message
from c2s.train.resolve import check_placement, check_resources, job_parts, resources_needed


def _cpu(*amounts: float) -> list[Bundle]:
    return [Bundle(f"b{i}", {"CPU": a}) for i, a in enumerate(amounts)]


def test_a_worker_cannot_be_split_over_two_half_free_nodes():
    cluster = Cluster([Node("10.0.0.1 (head)", {"CPU": 0.5}), Node("10.0.0.2 aaaa", {"CPU": 0.5})])
    bundles = job_bundles({"train worker": (1, {"CPU": 1.0, "GPU": 0.0})})
    check_resources({"CPU": 1.0}, {"CPU": 1.0})  # the old totals check let this job through
    assert place(bundles, cluster) is None
    with pytest.raises(PreflightError) as err:
        check_placement(bundles, cluster)
    msg = str(err.value)
    assert ("the job cannot be placed on this cluster's nodes: train worker needs {CPU: 1} but no node has that "
            "much (largest per node: {CPU: 0.5})") in msg
    assert "Asked: 1 x train worker {CPU: 1}" in msg
    assert "running nodes [10.0.0.1 (head): {CPU: 0.5}; 10.0.0.2 aaaa: {CPU: 0.5}]" in msg
    assert "Lower train.workers" in msg


def test_exact_packing_where_first_fit_decreasing_fails():
    # FFD puts 5,4 on node a and 4,3,2 on node b, leaving the last 2 nowhere; a:5+3+2, b:4+4+2 fits.
    cluster = Cluster([Node("a", {"CPU": 10}), Node("b", {"CPU": 10})])
    placement = place(_cpu(5, 4, 4, 3, 2, 2), cluster)
    assert placement is not None
    per_node = {"a": 0.0, "b": 0.0}
    for label, node in placement.where.items():
        per_node[node] += {"b0": 5, "b1": 4, "b2": 4, "b3": 3, "b4": 2, "b5": 2}[label]
    assert per_node == {"a": 10.0, "b": 10.0}
    assert place(_cpu(5, 4, 4, 3, 2, 2, 1), cluster) is None  # 21 > 20


def test_every_bundle_fits_alone_but_not_together():
    cluster = Cluster([Node("a", {"CPU": 1.5}), Node("b", {"CPU": 1.5})])
    bundles = _cpu(1, 1, 1)
    assert place(bundles, cluster) is None
    assert "every bundle fits some node, but not all of them together" in unplaceable_message(bundles, cluster)


def test_gpu_and_cpu_counted_together_per_node():
    cluster = Cluster([Node("a", {"CPU": 8, "GPU": 1}), Node("b", {"CPU": 1, "GPU": 1})])
    ok = [Bundle("w1", {"CPU": 4, "GPU": 1}), Bundle("w2", {"CPU": 1, "GPU": 1})]
    assert dict(place(ok, cluster).where) == {"w1": "a", "w2": "b"}
    assert place([Bundle("w1", {"CPU": 4, "GPU": 1}), Bundle("w2", {"CPU": 4, "GPU": 1})], cluster) is None


def test_autoscaled_node_types_count_with_their_limits():
    head_only = [Node("10.0.0.1 (head)", {"CPU": 0})]
    gpu = NodeType("gpu_worker", {"CPU": 8, "GPU": 1}, launchable=8)
    parts = {"train worker": (2, {"CPU": 4, "GPU": 1}), "teacher actor": (2, {"CPU": 1, "GPU": 0.5}),
             "data task": (2, {"CPU": 0.25, "GPU": 0})}
    bundles = job_bundles(parts)
    assert place(bundles, Cluster(head_only)) is None  # what a totals check of a fresh cluster sees
    placement = place(bundles, Cluster(head_only, [gpu]))
    # each worker takes a whole GPU, so the two half-GPU actors need a third node
    assert dict(placement.launched) == {"gpu_worker": 3}
    assert place(bundles, Cluster(head_only, [gpu], max_new_nodes=2)) is None
    assert place(bundles, Cluster(head_only, [NodeType("gpu_worker", {"CPU": 8, "GPU": 1}, launchable=2)])) is None
    assert dict(place(bundles, Cluster(head_only, [NodeType("g", {"CPU": 8, "GPU": 1}, -1)])).launched) == {"g": 3}
    msg = unplaceable_message(bundles, Cluster(head_only, [gpu], max_new_nodes=2))
    assert "autoscaler may launch [gpu_worker: 8 more x {CPU: 8, GPU: 1}], at most 2 new node(s) in all" in msg


def test_job_parts_match_the_totals_of_resources_needed():
    cfg = load_config("toy_tiny", ["train.workers=2", "teacher.actors=[1,3]"])
    for with_teacher in (True, False):
        bundles = job_bundles(job_parts(cfg, with_teacher))
        totals = {r: sum(b.resources.get(r, 0.0) for b in bundles) for r in ("CPU", "GPU")}
        assert totals == pytest.approx(resources_needed(cfg, with_teacher))
    labels = [b.label for b in job_bundles(job_parts(cfg, True))]
    assert labels == ["train worker 1", "train worker 2", "teacher actor 1", "teacher actor 2", "teacher actor 3",
                      "data task 1", "data task 2"]
    assert job_bundles({"trial driver": (1, {"CPU": 0.0, "GPU": 0.0})}) == []


def _sweep_spec(**kw):
    from c2s.sweep.spec import parse_spec

    # the live CLIP pool (teacher.cache: false): its actors are part of what is placed
    return parse_spec({"name": "t", "base": "toy_c2s", "overrides": {"train.iters": 300, "teacher.cache": False},
                       "space": {"loss.tau": {"grid": [0.05, 0.1]}}, "max_concurrent": 2,
                       "resources": {"train_workers": 1, "cpus_per_worker": 1.0, "teacher_actors": [1, 1],
                                     "teacher_cpus": 0.25, "driver_cpus": 0.25}, **kw}, "sweeps/test.yaml")


def test_sweep_trials_are_packed_per_node():
    from c2s.sweep.spec import ClusterFitError, check_cluster_fits
    from c2s.sweep.spec import resources_needed as sweep_needed

    s = _sweep_spec()
    need = sweep_needed(s)  # per trial 1 + 0.25 + 2 x 0.25 + 0.25 (the trial's driver) = 2 CPU; two trials at once
    assert need["CPU"] == pytest.approx(4.0)
    # 4 CPU in all, but a worker leaves 0.2 of a 1.2-CPU node, too little for a 0.25-CPU data task
    four = Cluster([Node("a (head)", {"CPU": 1.2}), Node("b", {"CPU": 1.2}), Node("c", {"CPU": 1.2}),
                    Node("d", {"CPU": 0.4})])
    check_cluster_fits(need, {"CPU": 4.0})  # the totals alone let it through
    with pytest.raises(ClusterFitError) as err:
        check_cluster_fits(need, {"CPU": 4.0}, cluster=four, spec=s)
    assert "the sweep (max_concurrent 2 trials at once) cannot be placed on this cluster's nodes" in str(err.value)
    assert "2 x trial 2 data task {CPU: 0.25}" in str(err.value)
    check_cluster_fits(need, {"CPU": 4.5}, cluster=Cluster([Node("a (head)", {"CPU": 2}), Node("b", {"CPU": 2.5})]),
                       spec=s)


def test_sweep_on_a_fresh_autoscaling_cluster_counts_launchable_nodes(capsys):
    from c2s.sweep.spec import ClusterFitError, check_cluster_fits
    from c2s.sweep.spec import resources_needed as sweep_needed

    s = _sweep_spec()
    need = sweep_needed(s)
    head = [Node("10.0.0.1 (head)", {"CPU": 0})]
    with pytest.raises(ClusterFitError, match=r"but the cluster has CPU=0, GPU=0; short of CPU"):
        check_cluster_fits(need, {"CPU": 0.0}, cluster=Cluster(head), spec=s)
    cluster = Cluster(head, [NodeType("cpu_worker", {"CPU": 2}, launchable=4)], source="test")
    check_cluster_fits(need, {"CPU": 0.0}, cluster=cluster, spec=s)
    assert "fits once the autoscaler launches 2 x cpu_worker (from test)" in capsys.readouterr().out
    small = Cluster(head, [NodeType("cpu_worker", {"CPU": 2}, launchable=1)], source="test")
    with pytest.raises(ClusterFitError, match=r"the cluster has CPU=2, GPU=0 \(counting nodes the autoscaler may "
                                              r"launch\); short of CPU.* Lower max_concurrent to 1"):
        check_cluster_fits(need, {"CPU": 0.0}, cluster=small, spec=s)
