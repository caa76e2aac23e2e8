"""Issue 18's scenarios on ONE simulated multi-node cluster (``ray.cluster_utils.Cluster``: one raylet per node
on this machine, CPU only), run in a subprocess by tests/multinode/test_multinode.py so that the test session's own
local Ray (tests/conftest.py) is never touched: ``python tests/multinode/multinode_cluster.py OUT_DIR WORK_DIR``.

Started by tests/conftest.py when a session collects multinode tests (class Scenarios), beside the unit tests.
One cluster for all of them (a cluster start and a driver's imports cost ~15 s each here): a head with no
CPU (the driver only) and three 1-CPU nodes for the placement checks and one run that loses the teacher's
node and then a training worker's (a killed node is replaced by a fresh one), then three 2-CPU nodes instead for the sweep. Each scenario's result, or its
traceback, goes under its name in ``OUT_DIR/result.json``. Nodes get whole CPUs (Ray's ``num_cpus`` of a
node is an integer); toy_tiny's parts are fractions.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

# toy_tiny with whole-CPU training workers: on 1-CPU nodes no node can hold two of them.
SPREAD = ["train.workers=2", "train.cpus_per_worker=1.0", "teacher.actors=[1,1]", "teacher.num_cpus=0.5",
          "data.num_cpus=0.25", "train.max_failures=0"]


# Cluster writes its head's address to Ray's /tmp/ray/ray_current_cluster (ray/cluster_utils.py) and deletes the
# file when it stops: until then every `ray.init()` without an address on this machine joined this simulated
# cluster (2026-12-05: a developer's sweeps did, and all their trials died with it). Put back what was there.
ADDRESS_FILE = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"


def _address_file_text() -> str | None:
    return ADDRESS_FILE.read_text() if ADDRESS_FILE.is_file() else None


def _restore_address_file(text: str | None) -> None:
    if text is None:
        ADDRESS_FILE.unlink(missing_ok=True)
    else:
        ADDRESS_FILE.write_text(text)


def start_cluster(cpus: list[int]):
    """Head with ``cpus[0]`` CPUs, one node per further entry; the driver (this process) joins the head."""
    import ray
    from ray.cluster_utils import Cluster

    before = _address_file_text()
    # A node killed without warning is declared dead by the GCS's health checks: by default 5 failed checks 3 s
    # apart (src/ray/common/ray_config_def.h: health_check_period_ms 3000, health_check_failure_threshold 5).
    # Checks 1 s apart, dead after 3: the node-loss scenario's two kills took 55.6 s against 77.1 s (2026-12-06,
    # scenarios alone on this machine). A check still waits its own 10 s timeout, so a loaded node is not lost.
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": cpus[0], "include_dashboard": False,
        "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}})
    _restore_address_file(before)
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


class SimCluster:
    """The simulated cluster and its current worker nodes (a killed node is replaced by a fresh one)."""

    def __init__(self, cpus: list[int]):
        self._address_before = _address_file_text()
        self.cluster, self.nodes = start_cluster(cpus)

    def replace(self, victim, num_cpus: int) -> None:
        """Kill ``victim`` without warning and add a fresh node (main thread only: Ray's Node registers a
        SIGTERM handler)."""
        self.cluster.remove_node(victim, allow_graceful=False)
        self.nodes = [n for n in self.nodes if n is not victim] + [self.cluster.add_node(num_cpus=num_cpus)]

    def reshape(self, num_cpus: int) -> None:
        """Every worker node replaced by one with ``num_cpus`` (stopped gracefully: nothing runs on them)."""
        old = list(self.nodes)
        self.nodes = [self.cluster.add_node(num_cpus=num_cpus) for _ in old]
        for node in old:
            self.cluster.remove_node(node)
        self.cluster.wait_for_nodes()

    def shutdown(self) -> None:
        import ray

        ray.shutdown()
        self.cluster.shutdown()
        _restore_address_file(self._address_before)  # Cluster.shutdown deletes the file, whoever wrote it


def scenario_refused(sim: SimCluster, out: Path) -> dict[str, Any]:
    """Issue 18.1, the refusal: a job whose single 1.5-CPU worker fits the cluster's total (2.5 of 3 CPU) but
    no node is refused before fit(), with both sides printed. (The spread half of 18.1 is the worker-loss
    run: its two 1-CPU workers can only run on two different 1-CPU nodes.)"""
    from c2s.config import load_config
    from c2s.errors import PreflightError
    from c2s.train.trainer import run_training

    t0 = time.perf_counter()
    try:
        run_training(load_config("toy_tiny", ["train.workers=1", "train.cpus_per_worker=1.5",
                                              "teacher.num_cpus=0.5", "data.num_cpus=0.25"]), WORK / "refused")
        return {"error": None}
    except PreflightError as err:
        return {"error": str(err), "wall_s": round(time.perf_counter() - t0, 2)}


_STEP_OF: dict[Path, int] = {}


def _checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the checkpoints under ``run_dir`` (Train V2 names them by time; the step is in state.pt)."""
    from c2s.train.checkpoint import load_state

    for state in run_dir.glob("checkpoint_*/state.pt"):
        if state not in _STEP_OF:
            try:
                _STEP_OF[state] = int(load_state(state.parent)["step"])
            except (RuntimeError, EOFError, OSError, KeyError, ValueError):  # still being written: next poll
                continue
    return sorted(step for state, step in _STEP_OF.items() if state.parent.parent == run_dir and state.exists())


def _bank_at(run_dir: Path, step: int):
    """The CLS token bank (oldest first) in the newest checkpoint of ``step`` under ``run_dir``."""
    from c2s.method.bank import ClsTokenBank
    from c2s.train.checkpoint import load_state

    _checkpoint_steps(run_dir)  # reads each new checkpoint's step once, into _STEP_OF
    # Train V2 names checkpoint folders by time, so the last one of a step is the newest.
    folders = sorted(state.parent for state, s in _STEP_OF.items()
                     if state.parent.parent == run_dir and s == step and state.exists())
    objective = load_state(folders[-1])["objective"]
    bank = ClsTokenBank(*objective["bank.tokens"].shape)
    bank.load_state_dict({k.removeprefix("bank."): v for k, v in objective.items() if k.startswith("bank.")})
    return bank.get()


def _registered_steps(run_dir: Path) -> list[int]:
    """Steps of the checkpoints Ray Train's controller has registered (its checkpoint_manager_snapshot.json):
    a restart restores only these, not a state.pt that is on disk but not yet registered."""
    path = run_dir / "checkpoint_manager_snapshot.json"
    try:
        snapshot = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):  # absent, or being rewritten
        return []
    return sorted(int(c["metrics"]["step"]) for c in snapshot.get("checkpoint_results", []))


def _train_steps(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a row being written
            continue
        if row.get("kind") == "train":
            rows.append(int(row["step"]))
    return rows


def run_killing(job, try_kill, poll_s: float = 0.3):
    """Run ``job()`` in a thread while this (main) thread calls ``try_kill()`` every ``poll_s`` until it returns
    True once: Ray's ``Cluster.add_node`` works only in the main thread. Returns the job's result or raises
    its exception."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = job()
        except BaseException as err:  # handed to the main thread  # noqa: BLE001
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    killed = False
    while thread.is_alive():
        if not killed:
            killed = try_kill()
        thread.join(poll_s)
    if "error" in box:
        raise box["error"]
    return box["value"]


def scenario_node_loss(sim: SimCluster, out: Path) -> dict[str, Any]:
    """Issue 18.3 then 18.2, in one run on the head with no CPU (the driver only) and three 1-CPU nodes. First the
    node running the teacher actor is killed without warning as soon as the actor runs (it encodes the stream
    ahead of training, so that is before step 1); then, once a checkpoint is registered and training is past
    it, the node running one training worker. Each killed node is replaced by a fresh 1-CPU node so the job's
    3 CPUs fit again. The job must finish with every step once in metrics.jsonl. Also records where the
    training workers ran before the kills (18.1: 2 workers of 1 CPU on 1-CPU nodes must spread). One run for
    both losses: each run costs ~20 s of start-up here."""
    import ray

    from c2s.config import load_config
    from c2s.errors import PreflightError
    from c2s.train.trainer import run_training

    result: dict[str, Any] = {"nodes": sorted(n.node_id for n in sim.nodes)}
    run_dir = WORK / "run-node-loss"
    iters = 10
    stop = threading.Event()

    def actors_on(node_id: str) -> list[str]:
        return sorted(a["ActorClassName"] for a in ray._private.state.actors().values()
                      if a["State"] == "ALIVE" and a["Address"]["NodeID"] == node_id)

    def try_kill() -> bool:
        done = _registered_steps(run_dir)
        steps = _train_steps(run_dir)
        if "teacher_killed" not in result:
            # The teacher: as soon as its actor runs (measured: it encodes the run's whole stream ahead of
            # training, and Ray Data ends the actor when the stream is done, before the first step's row).
            victims = [n for n in sim.nodes if n.node_id in set(actor_nodes("TeacherActor"))]
            if not victims:
                return False
            result["teacher_killed"] = {"node": victims[0].node_id, "at_step": steps[-1] if steps else 0,
                                        "after_s": round(time.perf_counter() - t1, 1),
                                        "actors_there": actors_on(victims[0].node_id),
                                        "train_worker_actors": len(workers_seen)}
            sim.replace(victims[0], num_cpus=1)
            return False
        # A worker: once a registered checkpoint is behind the last step.
        if not (steps and done and steps[-1] > done[-1]):
            return False
        victims = [n for n in sim.nodes if n.node_id in set(actor_nodes("RayTrainWorker"))]
        if not victims:
            return False
        victim = victims[0]
        result["worker_nodes_before_kill"] = sorted(worker_nodes)
        result["killed"] = {"node": victim.node_id, "at_step": steps[-1], "checkpoints": done,
                            "after_s": round(time.perf_counter() - t1, 1), "actors_there": actors_on(victim.node_id),
                            "train_worker_actors": len(workers_seen)}
        sim.replace(victim, num_cpus=1)
        return True

    workers_seen: set[str] = set()
    worker_nodes: set[str] = set()
    teacher_restarts: dict[str, int] = {}

    earlier = set(ray._private.state.actors())  # an earlier scenario's actors (dead now) stay in the table

    def watch_actors() -> None:  # training worker actors (a new one = a Train restart) and teacher restarts
        while not stop.is_set():
            for actor_id, a in ray._private.state.actors().items():
                if actor_id in earlier:
                    continue
                if "RayTrainWorker" in a["ActorClassName"]:
                    workers_seen.add(actor_id)
                    if a["State"] == "ALIVE" and "killed" not in result:
                        worker_nodes.add(a["Address"]["NodeID"])
                elif "TeacherActor" in a["ActorClassName"]:
                    teacher_restarts[actor_id] = max(teacher_restarts.get(actor_id, 0), int(a.get("NumRestarts", 0)))
            stop.wait(0.5)

    watcher = threading.Thread(target=watch_actors, daemon=True)
    try:
        # A slower teacher (larger dense pass, smaller calls) keeps its actor alive long enough to be killed.
        cfg = load_config("toy_tiny", [*SPREAD, f"train.iters={iters}", "train.checkpoint_interval=2",
                                       "train.max_failures=2", "train.num_to_keep=20", "train.log_interval=1",
                                       "teacher.dense_size=160", "teacher.batch_size=2"])
        # Issue 18.6: the head runs no worker (CPU 0), so the workers write from other nodes: a run directory
        # under the system temp dir is refused before anything starts (these nodes share one disk, real
        # ones would not).
        try:
            run_training(load_config("toy_tiny", SPREAD), out / "tmp-run")
            result["tmp_refused"] = None
        except PreflightError as err:
            result["tmp_refused"] = str(err)
        t1 = time.perf_counter()
        watcher.start()
        summary = run_killing(lambda: run_training(cfg, run_dir), try_kill)
        stop.set()
        watcher.join()
        result.update(train_worker_actors=len(workers_seen), teacher_actor_restarts=teacher_restarts,
                      wall_s=round(time.perf_counter() - t1, 1), step=summary.get("step"),
                      trained_images=summary.get("trained_images"), teacher_images=summary.get("teacher_images"),
                      steps=_train_steps(run_dir), checkpoints=_checkpoint_steps(run_dir),
                      batch_size=int(cfg.train.batch_size), iters=iters)
        if result.get("killed", {}).get("checkpoints"):
            # 18.2: the restarted workers start from the restored checkpoint's bank, not from the bank of the
            # lost attempt (which had enqueued the steps after it). Two steps later the oldest tokens of the
            # bank are the restored bank's newest: every step enqueues one global token per image.
            import torch

            restored = result["killed"]["checkpoints"][-1]
            before, after = _bank_at(run_dir, restored), _bank_at(run_dir, restored + 2)
            kept = len(after) - 2 * int(cfg.train.batch_size)
            result["bank"] = {"restored_step": restored, "sizes": [len(before), len(after)], "kept": kept,
                              "carried": kept > 0 and bool(torch.equal(after[:kept], before[-kept:]))}
    finally:
        stop.set()
    return result


SWEEP_TINY = {
    "teacher.arch": "c2s-test-vit", "teacher.checkpoint": None, "teacher.allow_random": True, "teacher.image_size": 32,
    "teacher.dense_size": 48, "teacher.batch_size": 4, "model.embed_dim": 64, "model.pretrained": None,
    "data.world.images_train": 24, "data.world.images_val": 4, "data.num_cpus": 0.25,
    "train.batch_size": 4, "bank.size": 12, "train.iters": 6, "train.log_interval": 1,
    "train.checkpoint_interval": 2, "train.eval_interval": 100, "optim.warmup_iters": 1,
    # Baseline trials (no teacher): the scenario is Tune's retry after a node loss; a trial without a token
    # cache to build first or CLIP actors to start has fewer processes to start on these 2 cores.
    "distill.enabled": False, "latent.enabled": False,
    # A worker lost with its node fails the trial (no restart inside Ray Train), so Tune's max_failures
    # retries it. With train.max_failures=1 Train restarts its workers itself and Tune never sees a failure
    # (measured: 4 trials completed, no Tune retry, the victim trial 188 s against 127-141 s for the others).
    "train.max_failures": 0,
}


def scenario_sweep_node_loss(sim: SimCluster, out: Path) -> dict[str, Any]:
    """Issue 18.4: 2 trials (2 seeds), max_concurrent 2, on the CPU-0 head + three 2-CPU nodes (a trial asks 1.75
    CPU: driver 0.25, worker 1, two data tasks 0.25). While two trials run, the node of one trial's training
    worker is killed (and a fresh node added); Tune retries the trial(s) that lost an actor (max_failures 1)
    and the sweep ends with every row completed once. A node that holds a training worker but no trial's own
    actor (Tune's ``ImplicitFunc``) is preferred: then every retry names the lost node; when the trial's own
    actor dies with it, Tune reports that actor as unavailable instead (measured once here).

    Not 1-CPU nodes: two trials ask 3.5 CPU. (An earlier variant read the token cache; Ray Data's read_parquet
    samples files with tasks of Ray's default 1 CPU, ray/data/_internal/datasource/parquet_datasource.py
    ``_fetch_file_infos``, and on 1-CPU nodes both trials waited there until killed: 416 s.)"""
    import pandas as pd
    import ray
    import yaml

    from c2s.sweep.run import run_sweep
    from c2s.sweep.spec import load_spec

    t0 = time.perf_counter()
    sim.reshape(num_cpus=2)
    result: dict[str, Any] = {"reshape_s": round(time.perf_counter() - t0, 1)}
    spec_file = WORK / "mn.yaml"
    spec_file.write_text(yaml.safe_dump({
        "name": "mn", "base": "toy_c2s", "overrides": SWEEP_TINY,
        "space": {"loss.tau": {"grid": [0.05]}}, "seeds": [0, 1], "metric": "hIoU", "max_concurrent": 2,
        "max_failures": 1, "resources": {"driver_cpus": 0.25, "train_workers": 1, "cpus_per_worker": 1.0,
                                         "teacher_actors": [1, 1], "teacher_cpus": 0.5}}, sort_keys=False))
    sweep_dir = WORK / "sweep"
    lines: list[str] = []

    def try_kill() -> bool:
        runs = sorted(d for d in (sweep_dir / "runs").glob("*") if d.is_dir()) if (sweep_dir / "runs").is_dir() else []
        ready = [d.name for d in runs if _registered_steps(d) and _train_steps(d)
                 and _train_steps(d)[-1] > _registered_steps(d)[-1] and not (d / "final").exists()]
        if not ready or sum(1 for line in lines if "start " in line) < 2:
            return False
        victims = [n for n in sim.nodes if n.node_id in set(actor_nodes("RayTrainWorker"))]
        if not victims:
            return False
        drivers = set(actor_nodes("ImplicitFunc"))
        victim = next((n for n in victims if n.node_id not in drivers), victims[0])
        result["killed"] = {
            "node": victim.node_id, "after_s": round(time.perf_counter() - t1, 1), "ready": ready,
            "actors_there": sorted(a["ActorClassName"] for a in ray._private.state.actors().values()
                                   if a["State"] == "ALIVE" and a["Address"]["NodeID"] == victim.node_id)}
        sim.replace(victim, num_cpus=2)
        return True

    t1 = time.perf_counter()
    summary = run_killing(lambda: run_sweep(load_spec(spec_file), sweep_dir,
                                            log=lambda line: (lines.append(line), print(line, flush=True))),
                          try_kill)
    trials = pd.read_parquet(sweep_dir / "trials.parquet")
    result.update(wall_s=round(time.perf_counter() - t1, 1), summary={k: summary[k] for k in
                                                                       ("completed", "failed", "stopped")},
                  rows=sorted(zip(trials["trial_id"], trials["seed"].astype(int), trials["status"])),
                  retries=[line for line in lines if " retry " in line or line.split("]")[-1].startswith(" retry")],
                  log=lines)
    return result


# In this order on one cluster: the 1-CPU-node scenarios first, then the sweep on 2-CPU nodes.
SCENARIOS = {"refused": scenario_refused,
             "node_loss": scenario_node_loss,
             "sweep_node_loss": scenario_sweep_node_loss}


class Scenarios:
    """This file's scenarios in a subprocess (its own cluster), started now and waited for later: tests/conftest.py
    starts it as soon as a session has collected multinode tests, so the cluster's ~3-5 minutes run beside
    the unit tests, which start no Ray, and tests/multinode/test_multinode.py's fixture waits for its result.

    ``work``: run directories and the toy cache, NOT under the system temp dir, which the storage preflight
    refuses when workers may run off the driver's node (these simulated nodes share one disk). ``out`` gets
    result.json and the subprocess's output (scenarios.log). ``timeout`` counts from the start.
    """

    def __init__(self, out: Path, work: Path, timeout: float = 1080.0) -> None:
        self.out, self.work, self.timeout = Path(out), Path(work), float(timeout)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        from conftest import WORKER_PYTHONWARNINGS

        env = dict(os.environ)
        env.pop("RAY_ADDRESS", None)
        # the driver and the cluster's processes (each inherits it) show deprecations; deprecations() names ours
        env["PYTHONWARNINGS"] = WORKER_PYTHONWARNINGS
        self.address_before = _address_file_text()
        self.log_path = self.out / "scenarios.log"
        self._log = self.log_path.open("w")
        self.started = time.monotonic()
        self.timing: dict[str, float] = {}  # wait(): seconds of the whole run, the wait, each scenario
        self.ray_logs_dir: str | None = None  # wait(): the cluster's Ray log folder, from result.json
        # its own session: a Ctrl-C in pytest's terminal reaches pytest, which stops this (stop()) in order
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(self.out), str(self.work)],
                                     cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait(self) -> dict[str, Any]:
        """``{scenario: result}`` from result.json, plus Ray's address file as it was before the start and is
        now, and how long the caller waited (``waited_s``) against the subprocess's whole run (``run_s``)."""
        t0 = time.monotonic()
        try:
            rc = self.proc.wait(timeout=max(1.0, self.timeout - (t0 - self.started)))
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"the multinode scenarios were still running {self.timeout:.0f} s after they "
                                 f"started; their output:\n{self._tail()}") from None
        result_file = self.out / "result.json"
        assert result_file.is_file(), f"the scenarios wrote no result (rc {rc}):\n{self._tail()}"
        results = json.loads(result_file.read_text())
        self.ray_logs_dir = results.get("ray_logs_dir")
        results["address_file"] = {"before": self.address_before, "after": _address_file_text()}
        results["waited_s"] = round(time.monotonic() - t0, 1)
        results["run_s"] = round(time.monotonic() - self.started, 1)
        self.timing = {k: results.get(k) for k in ("run_s", "waited_s", "cluster_start_s")} | {
            name: results[name]["scenario_wall_s"] for name in SCENARIOS if "scenario_wall_s" in results.get(name, {})}
        return results

    def deprecations(self) -> list[str]:
        """The deprecations a file of the repository caused in the driver (its output, ``out``) or in the
        cluster's processes (the log files of its Ray session, which main() names in result.json)."""
        from conftest import own_deprecations

        folders = [self.out] + ([Path(self.ray_logs_dir)] if self.ray_logs_dir else [])
        return sorted({line for folder in folders for line in own_deprecations(folder, REPO)})

    def _tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """End the subprocess if it still runs (SIGINT first: its ``finally`` shuts the cluster down and puts
        Ray's address file back), then remove ``work``, ``out`` and ``work``'s parent once empty. Safe to
        call twice."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.out, ignore_errors=True)
        with contextlib.suppress(OSError):  # the shared parent, once no other session's folder is in it
            self.work.parent.rmdir()


RUNNING: Scenarios | None = None  # set by tests/conftest.py when the session has multinode tests


WORK = Path()  # set by main: run directories and the cache, outside the node-local temp dir


def main(argv: list[str]) -> int:
    """``OUT_DIR WORK_DIR``: result.json goes to OUT_DIR; runs and the toy cache under WORK_DIR, which must not
    be under the system temp dir (on a cluster whose workers may run off the driver's node the storage
    preflight refuses node-local folders). A scenario that raises is recorded with its traceback and the
    next one still runs."""
    global WORK
    out, WORK = Path(argv[0]), Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ["C2S_CACHE"] = str(WORK / "cache")
    started = time.perf_counter()
    results: dict[str, Any] = {}
    sim = SimCluster([0, 1, 1, 1])
    results["cluster_start_s"] = round(time.perf_counter() - started, 1)
    results["ray_logs_dir"] = sim.cluster.head_node.get_logs_dir_path()
    try:
        for name, scenario in SCENARIOS.items():
            t0 = time.perf_counter()
            print(f"[multinode] {name}", flush=True)
            try:
                results[name] = scenario(sim, out)
            except Exception:  # the test reads the traceback from result.json rather than a bare exit status
                results[name] = {"exception": traceback.format_exc()}
            results[name]["scenario_wall_s"] = round(time.perf_counter() - t0, 1)
            (out / "result.json").write_text(json.dumps(results, indent=2))
    finally:
        sim.shutdown()
    results["wall_s"] = round(time.perf_counter() - started, 1)
    (out / "result.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
