"""The running cluster as the placement preflight sees it (``c2s.train.placement.Cluster``), read from Ray.

Running nodes come from ``ray.nodes()`` (alive rows, total ``Resources``); node types the autoscaler may still
launch from Ray's GCS cluster config or, when that is empty (Ray 2.60's own autoscaler never writes it), from
the autoscaler config ``ray up`` leaves on the head node (see c2s/train/placement.py for both sources).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from c2s.train.placement import (
    Cluster,
    Node,
    node_types_from_autoscaling_config,
    node_types_from_cluster_config,
)

# Where `ray up` puts the bootstrapped cluster config on the head node (ray/autoscaler/_private/commands.py).
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"
HEAD_RESOURCE = "node:__internal_head__"


def nodes_from_rows(rows: Sequence[Mapping[str, Any]]) -> list[Node]:
    """Alive ``ray.nodes()`` rows as :class:`Node` (the head named ``<address> (head)``), the head first and
    the others by name: ``ray.nodes()`` has no fixed order, and the preflight's messages list these nodes."""
    nodes = []
    for row in rows:
        if not row.get("Alive"):
            continue
        res = {k: float(v) for k, v in (row.get("Resources") or {}).items() if not k.startswith("node:")}
        head = HEAD_RESOURCE in (row.get("Resources") or {})
        name = f"{row.get('NodeManagerAddress')} {'(head)' if head else str(row.get('NodeID', ''))[:8]}"
        nodes.append(Node(name, res))
    return sorted(nodes, key=lambda node: (not node.name.endswith(" (head)"), node.name))


def read_autoscaling_config(path: Path) -> dict[str, Any]:
    """The autoscaler's cluster config (YAML, or the JSON ``ray up`` writes); errors name the file."""
    import yaml

    from c2s.errors import PreflightError

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise PreflightError(f"cannot read the autoscaler's cluster config {path} ({err}); the preflight reads "
                             "it to learn which node types the autoscaler may launch") from err
    if not isinstance(data, dict):
        raise PreflightError(f"{path}: expected a cluster config mapping (available_node_types, max_workers), "
                             f"got {type(data).__name__}")
    return data


def cluster_from_ray(bootstrap: str | os.PathLike = BOOTSTRAP_CONFIG) -> Cluster:
    """Running nodes plus launchable node types of the connected Ray cluster (``ray.init`` done)."""
    import ray
    import ray._private.state

    nodes = nodes_from_rows(ray.nodes())
    config = ray._private.state.state.get_cluster_config()
    if config is not None and len(config.node_group_configs):
        return Cluster(nodes, node_types_from_cluster_config(config.node_group_configs, nodes),
                       source="Ray's GCS cluster config")
    path = Path(bootstrap).expanduser()
    if path.is_file():
        types, max_new = node_types_from_autoscaling_config(read_autoscaling_config(path), nodes)
        return Cluster(nodes, types, max_new, source=str(path))
    return Cluster(nodes, source=f"Ray reports no autoscaler node types and there is no {BOOTSTRAP_CONFIG}")
