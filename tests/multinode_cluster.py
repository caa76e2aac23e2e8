"""Scenarios on a simulated multi-node cluster (``ray.cluster_utils.Cluster``: one raylet per node on this
machine, CPU only), run in a subprocess by tests/test_multinode_*.py so that the test session's own local
Ray (tests/conftest.py) is never touched: ``python tests/multinode_cluster.py SCENARIO OUT_DIR``.

Each scenario starts its own cluster, prints progress, writes ``OUT_DIR/result.json`` and shuts the cluster
down. Nodes get whole CPUs (Ray's ``num_cpus`` of a node is an integer); toy_tiny's parts are fractions.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# toy_tiny with whole-CPU training workers: on 1-CPU nodes no node can hold two of them.
SPREAD = ["train.workers=2", "train.cpus_per_worker=1.0", "teacher.actors=[1,1]", "teacher.num_cpus=0.5",
          "data.num_cpus=0.25", "train.max_failures=0"]


def start_cluster(cpus: list[int]):
    """Head with ``cpus[0]`` CPUs, one node per further entry; the driver (this process) joins the head."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus[0], "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=c) for c in cpus[1:]]
    cluster.wait_for_nodes()
    # Ray's own actors (Train's placement-group cleaner) must find this cluster, not another Ray on the machine.
    os.environ["RAY_ADDRESS"] = cluster.address
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    from c2s.train.trainer import job_runtime_env

    ray.init(address=cluster.address, log_to_driver=False, runtime_env=job_runtime_env() or None)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    return cluster, nodes


def actor_nodes(class_fragment: str) -> list[str]:
    """Node ids of ALIVE actors whose class name contains ``class_fragment`` (GCS actor table, no dashboard)."""
    import ray._private.state

    return [a["Address"]["NodeID"] for a in ray._private.state.actors().values()
            if a["State"] == "ALIVE" and class_fragment in a["ActorClassName"]]


def scenario_placement(out: Path) -> dict[str, Any]:
    """Issue 18.1: 2 workers (1 CPU each) + a teacher actor + 2 data tasks on three 1-CPU nodes (3 CPU asked,
    3 CPU in all: the job fits only spread one worker per node); then a job whose single 1.5-CPU worker fits the
    cluster's total (2.5 of 3 CPU) but no node is refused before fit()."""
    from c2s.config import load_config
    from c2s.train.resolve import PreflightError
    from c2s.train.trainer import run_training

    t0 = time.perf_counter()
    cluster, _ = start_cluster([1, 1, 1])
    result: dict[str, Any] = {"cluster_start_s": round(time.perf_counter() - t0, 1)}
    try:
        seen_workers: set[str] = set()
        stop = threading.Event()

        def watch() -> None:  # where the training workers run (actor table), while fit() runs
            while not stop.is_set():
                seen_workers.update(actor_nodes("RayTrainWorker"))
                stop.wait(0.5)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        t1 = time.perf_counter()
        summary = run_training(load_config("toy_tiny", [*SPREAD, "train.iters=3", "train.checkpoint_interval=3"]),
                               out / "spread")
        stop.set()
        watcher.join()
        result["spread"] = {"wall_s": round(time.perf_counter() - t1, 1), "step": summary.get("step"),
                            "worker_nodes": sorted(seen_workers),
                            "nodes": sorted(n["NodeID"] for n in __import__("ray").nodes() if n["Alive"])}
        t2 = time.perf_counter()
        try:
            run_training(load_config("toy_tiny", ["train.workers=1", "train.cpus_per_worker=1.5",
                                                  "teacher.num_cpus=0.5", "data.num_cpus=0.25"]), out / "refused")
            result["refused"] = {"error": None}
        except PreflightError as err:
            result["refused"] = {"error": str(err), "wall_s": round(time.perf_counter() - t2, 2)}
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
    return result


SCENARIOS = {"placement": scenario_placement}


def main(argv: list[str]) -> int:
    name, out = argv[0], Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        result = SCENARIOS[name](out)
    except Exception:  # the test reads the traceback from result.json rather than a bare exit status
        result = {"exception": traceback.format_exc()}
    result["scenario_wall_s"] = round(time.perf_counter() - started, 1)
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
