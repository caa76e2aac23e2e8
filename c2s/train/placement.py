"""Preflight placement: can the job's bundles be placed on the cluster's nodes, one bundle per node slot?

A job asks Ray for *bundles* (one per training worker, teacher actor, Ray Data task, sweep trial driver), and
Ray places each bundle on ONE node: two nodes with 0.5 CPU each cannot host a worker that needs 1 CPU, though
the cluster's total is 1 CPU. :func:`place` bin-packs the bundles onto the nodes' total resources (what the
node can ever offer, so the verdict does not depend on what else runs at this instant) and onto nodes the
autoscaler may still launch; :func:`check_placement` fails with both sides printed.

Nodes the autoscaler may launch (a fresh autoscaling cluster has only its head, often with ``CPU: 0``):

- Ray's GCS cluster config (``ray._private.state.state.get_cluster_config()``, ray/_private/state.py, an
  ``autoscaler_pb2.ClusterConfig`` whose ``node_group_configs`` carry ``name``, ``resources``, ``min_count``,
  ``max_count`` with -1 = unlimited). Ray Data's autoscaler reads it the same way
  (ray/data/_internal/cluster_autoscaler/util.py, ``is_autoscaling_enabled``). In Ray 2.60 nothing in the open
  source autoscaler writes it (only later versions' ray/autoscaler/v2/autoscaler.py ``_report_cluster_config``
  does, from ``available_node_types`` minus the head type), so on a ``ray up`` cluster it is usually empty;
- the autoscaler's own config: ``ray up`` copies the bootstrapped cluster YAML (node resources filled in by
  the cloud provider, JSON text) to ``~/ray_bootstrap_config.yaml`` on the head node
  (ray/autoscaler/_private/commands.py, ``_set_up_config_for_head_node``), where a submitted job's driver runs.
  :func:`node_types_from_autoscaling_config` reads that schema (``available_node_types``, ``max_workers``).

This module needs no Ray: ``c2s.train.cluster`` gathers the facts from a running cluster.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

EPS = 1e-9
# Search steps before giving up on an exact answer; the packings c2s asks about need a few hundred.
SEARCH_BUDGET = 200_000


@dataclasses.dataclass(frozen=True)
class Bundle:
    """One thing Ray places on one node: ``label`` names it in messages (``train worker 2``)."""

    label: str
    resources: Mapping[str, float]


@dataclasses.dataclass(frozen=True)
class Node:
    """A node that runs now: ``resources`` are its totals (``ray.nodes()[i]["Resources"]``)."""

    name: str
    resources: Mapping[str, float]


@dataclasses.dataclass(frozen=True)
class NodeType:
    """A node type the autoscaler may launch: ``launchable`` more nodes of it (-1: no limit)."""

    name: str
    resources: Mapping[str, float]
    launchable: int


@dataclasses.dataclass(frozen=True)
class Cluster:
    """What the preflight knows: running nodes, launchable node types, and a cap on new nodes (-1: none)."""

    nodes: Sequence[Node]
    node_types: Sequence[NodeType] = ()
    max_new_nodes: int = -1
    source: str = ""  # where the node types came from, for messages


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where each bundle went (node name per bundle label) and how many new nodes of each type it uses."""

    where: Mapping[str, str]
    launched: Mapping[str, int]


class PlacementUndecided(RuntimeError):
    """The exact search ran out of budget: the caller must not refuse the job on this."""


def job_bundles(parts: Mapping[str, tuple[int, Mapping[str, float]]]) -> list[Bundle]:
    """Expand ``{"train worker": (2, {"CPU": 1, "GPU": 0}), ...}`` to labelled bundles; empty ones are dropped
    (a bundle asking for nothing needs no node, e.g. a trial driver with ``driver_cpus: 0``)."""
    out = []
    for name, (count, res) in parts.items():
        res = {k: float(v) for k, v in res.items() if float(v) > 0}
        if not res:
            continue
        out.extend(Bundle(f"{name} {i + 1}" if count > 1 else name, res) for i in range(int(count)))
    return out


def node_types_from_cluster_config(groups: Iterable[Any], running: Sequence[Node]) -> list[NodeType]:
    """Launchable types from Ray's GCS cluster config (``ClusterConfig.node_group_configs``: ``name``,
    ``resources``, ``max_count``; -1 = unlimited). Running nodes of the same resource shape count against
    ``max_count`` (Ray Data matches node groups to nodes by shape the same way)."""
    types = []
    for g in groups:
        res = {k: float(v) for k, v in dict(g.resources).items()}
        if not res or int(g.max_count) == 0:
            continue
        types.append(_launchable(str(g.name), res, int(g.max_count), running))
    return types


def node_types_from_autoscaling_config(config: Mapping[str, Any], running: Sequence[Node]) -> tuple[list[NodeType], int]:
    """Launchable types and the cap on new nodes from an autoscaler cluster config (cluster.yaml's schema:
    ``available_node_types.<name>.{resources, max_workers}``, ``head_node_type``, ``max_workers``).

    The head type is left out (it is running and never launched again). ``max_workers`` of a type is the
    most nodes of it, running ones included; the top-level ``max_workers`` caps worker nodes of all types.
    """
    head = config.get("head_node_type")
    available = config.get("available_node_types") or {}
    total_cap = int(config.get("max_workers", -1))
    types = []
    for name, spec in available.items():
        if name == head:
            continue
        res = {k: float(v) for k, v in (spec.get("resources") or {}).items()}
        if not any(v > 0 for v in res.values()):
            continue  # resources unknown (`{}` before the cloud provider fills them in): cannot count on it
        types.append(_launchable(str(name), res, int(spec.get("max_workers", total_cap)), running))
    workers_running = sum(1 for n in running if not n.name.endswith("(head)"))
    max_new = -1 if total_cap < 0 else max(0, total_cap - workers_running)
    return types, max_new


def _launchable(name: str, res: Mapping[str, float], max_count: int, running: Sequence[Node]) -> NodeType:
    if max_count < 0:
        return NodeType(name, res, -1)
    same = sum(1 for n in running if _same_shape(n.resources, res))
    return NodeType(name, res, max(0, max_count - same))


def _same_shape(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    keys = {k for k in (*a, *b) if k in ("CPU", "GPU") or k in b}
    return all(abs(float(a.get(k, 0.0)) - float(b.get(k, 0.0))) < EPS for k in keys)


def place(bundles: Sequence[Bundle], cluster: Cluster, budget: int = SEARCH_BUDGET) -> Placement | None:
    """An assignment of every bundle to a node (running, or a new node of a launchable type), or None when
    none exists. Exact: a depth-first search over bundles, largest first, that skips nodes (and new nodes of a
    type) in the same state as one already tried. Raises :class:`PlacementUndecided` past ``budget`` steps.
    """
    keys = sorted({k for b in bundles for k in b.resources})
    order = sorted(range(len(bundles)), key=lambda i: tuple(-bundles[i].resources.get(k, 0.0) for k in
                                                            ("GPU", "CPU", *keys)))
    slots: list[tuple[str, str | None, list[float]]] = [(n.name, None, [float(n.resources.get(k, 0.0)) for k in keys])
                                                         for n in cluster.nodes]
    for t in cluster.node_types:
        count = len(bundles) if t.launchable < 0 else min(t.launchable, len(bundles))
        slots.extend((f"new {t.name} node {i + 1}", t.name, [float(t.resources.get(k, 0.0)) for k in keys])
                     for i in range(count))
    used = [t is None for _, t, _ in slots]  # running nodes are "open"; new ones open on first use
    need = [[float(bundles[i].resources.get(k, 0.0)) for k in keys] for i in order]
    assign = [-1] * len(order)
    max_new = cluster.max_new_nodes
    steps = 0

    def dfs(pos: int, opened: int) -> bool:
        nonlocal steps
        if pos == len(order):
            return True
        steps += 1
        if steps > budget:
            raise PlacementUndecided(f"no answer after {budget} search steps")
        want = need[pos]
        tried: set[tuple] = set()
        # Identical bundles in slot order: trying them in every order would only repeat the same packings.
        start = assign[pos - 1] if pos and need[pos - 1] == want else 0
        for j, (_, kind, free) in enumerate(slots):
            if j < start:
                continue
            fresh = not used[j]
            if fresh and 0 <= max_new <= opened:
                continue
            state = (kind, fresh, tuple(round(f, 6) for f in free))
            if state in tried or any(w > f + EPS for w, f in zip(want, free)):
                continue
            tried.add(state)
            for r, w in enumerate(want):
                free[r] -= w
            used[j] = True
            assign[pos] = j
            if dfs(pos + 1, opened + fresh):
                return True
            used[j] = not fresh
            for r, w in enumerate(want):
                free[r] += w
        return False

    if not dfs(0, 0):
        return None
    where = {bundles[i].label: slots[assign[p]][0] for p, i in enumerate(order)}
    launched: dict[str, int] = {}
    for j in sorted(set(assign)):
        kind = slots[j][1]
        if kind is not None:
            launched[kind] = launched.get(kind, 0) + 1
    return Placement(where, launched)


def describe_bundles(bundles: Sequence[Bundle]) -> str:
    """``2 x train worker {CPU: 1}, 1 x teacher actor {CPU: 0.5}``: identical bundles of a part grouped."""
    groups: dict[tuple[str, tuple], int] = {}
    for b in bundles:
        part = b.label.rsplit(" ", 1)[0] if b.label.rsplit(" ", 1)[-1].isdigit() else b.label
        key = (part, tuple(sorted(b.resources.items())))
        groups[key] = groups.get(key, 0) + 1
    return ", ".join(f"{n} x {part} {_res(dict(res))}" for (part, res), n in groups.items())


def describe_cluster(cluster: Cluster, keys: Iterable[str]) -> str:
    keys = list(keys)
    nodes = "; ".join(f"{n.name}: {_res({k: float(n.resources.get(k, 0.0)) for k in keys})}" for n in cluster.nodes)
    text = f"running nodes [{nodes or 'none'}]"
    if cluster.node_types:
        types = "; ".join(f"{t.name}: {'unlimited' if t.launchable < 0 else t.launchable} more x "
                          f"{_res({k: float(t.resources.get(k, 0.0)) for k in keys})}" for t in cluster.node_types)
        cap = "" if cluster.max_new_nodes < 0 else f", at most {cluster.max_new_nodes} new node(s) in all"
        text += f"; autoscaler may launch [{types}]{cap} (from {cluster.source})"
    else:
        text += f"; no node types the autoscaler may launch{f' ({cluster.source})' if cluster.source else ''}"
    return text


def _res(res: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in res.items()) + "}"


def unplaceable_message(bundles: Sequence[Bundle], cluster: Cluster, what: str = "the job") -> str:
    """Both sides, and the first bundle no single node (running or launchable) can hold, if any."""
    keys = sorted({k for b in bundles for k in b.resources})
    shapes = [n.resources for n in cluster.nodes] + [t.resources for t in cluster.node_types if t.launchable != 0]
    alone = next((b for b in bundles if not any(all(v <= float(s.get(k, 0.0)) + EPS for k, v in b.resources.items())
                                                 for s in shapes)), None)
    largest = {k: max((float(s.get(k, 0.0)) for s in shapes), default=0.0) for k in keys}
    asked = {k: sum(float(b.resources.get(k, 0.0)) for b in bundles) for k in keys}
    have = {k: sum(float(n.resources.get(k, 0.0)) for n in cluster.nodes) for k in keys}
    why = (f"{alone.label} needs {_res(alone.resources)} but no node has that much (largest per node: {_res(largest)})"
           if alone is not None else f"every bundle fits some node, but not all of them together (in all: asked "
           f"{_res(asked)}, running nodes have {_res(have)})")
    return (f"{what} cannot be placed on this cluster's nodes: {why}. Ray places each worker/actor/task on ONE "
            f"node, so per-node resources count, not the cluster's total. Asked: {describe_bundles(bundles)}. "
            f"Cluster: {describe_cluster(cluster, keys)}.")
