"""Where a run's results may go: decided on the driver before any worker starts (no Ray needed here).

Two ways to lose a run's results, both measured (issue 14, item 2):

- Under ``ray job submit`` the entrypoint runs in Ray's temporary package folder
  (``<ray temp>/session_*/runtime_resources/working_dir_files/_ray_pkg_*``), which Ray deletes with the
  session: a relative ``work_dir`` (the default ``runs``) or ``--run-dir`` lands there.
- On a cluster whose training workers run on other hosts, a node-local folder (the system temp dir) gets
  each node's writes on that node's own disk: the driver never sees the checkpoints or metrics.

:func:`check_run_location` and :func:`check_shared_storage` decide; :func:`under_ray_job` and
:func:`ray_session_root` read the process environment; ``c2s.train.trainer`` gathers the cluster facts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from c2s.errors import PreflightError

# Set by Ray's job supervisor for the entrypoint process only (ray/dashboard/modules/job/job_supervisor.py,
# _get_driver_env_vars): JSON with the job's metadata, which carries its submission id.
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
SHARED_EXAMPLE = "work_dir=/data/runs"


def under_ray_job(environ: Mapping[str, str] | None = None) -> bool:
    """True when this process is the entrypoint of a job submitted with ``ray job submit`` / the jobs SDK.

    Ray's job supervisor sets ``RAY_JOB_CONFIG_JSON_ENV_VAR`` for the entrypoint only (not for the tasks and
    actors it starts), so its presence is the signal.
    """
    return bool((os.environ if environ is None else environ).get(JOB_CONFIG_ENV))


def ray_session_root(cwd: Path) -> Path | None:
    """The ``session_*`` folder above Ray's package folder when ``cwd`` is inside one, else None."""
    parts = cwd.parts
    if "runtime_resources" not in parts:
        return None
    index = parts.index("runtime_resources")
    if index > 0 and parts[index - 1].startswith("session_"):
        return Path(*parts[:index])
    return Path(*parts[: index + 1])


def node_local_roots(extra: Iterable[str | Path] = ()) -> list[Path]:
    """Folders that are private to one host on every cluster: the system temp dir and RAM disks."""
    roots = [Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), *map(Path, extra)]
    return list(dict.fromkeys(Path(os.path.realpath(r)) for r in roots))


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_run_location(given: str | Path, *, key: str, under_job: bool, cwd: Path) -> None:
    """Refuse, under ``ray job submit``, a relative run location (``work_dir`` or ``--run-dir``).

    ``given`` is the value as the user wrote it (the default ``work_dir`` is ``runs``, relative).
    """
    if not under_job or Path(given).is_absolute():
        return
    where = cwd / given
    session = ray_session_root(cwd)
    place = (f"inside Ray's temporary package folder ({where}), which Ray deletes with the session"
             if session is not None else f"in the job's current directory on the head node ({where})")
    raise PreflightError(
        f"{key} = {str(given)!r} is a relative path: under `ray job submit` it resolves {place}, and the run's "
        f"checkpoints and metrics would be lost. Pass an absolute work_dir on storage every node mounts, "
        f"e.g. {SHARED_EXAMPLE}"
    )


def check_shared_storage(run_dir: Path, *, under_job: bool, cwd: Path, hosts: int,
                         local_roots: Iterable[Path], key: str = "work_dir") -> None:
    """Refuse a run directory that is temporary (under a job, inside Ray's session folder) or, when the
    training workers may run on another host (``hosts > 1``), on a node-local path.

    ``run_dir`` must be absolute (resolved). ``hosts``: how many hosts the run's workers may use (distinct
    node addresses, counting autoscaled nodes the workers need; see ``trainer.worker_hosts``).
    """
    run_dir = Path(os.path.realpath(run_dir))
    session = ray_session_root(cwd) if under_job else None
    if session is not None and _inside(run_dir, Path(os.path.realpath(session))):
        raise PreflightError(
            f"the run directory {run_dir} is inside Ray's session folder {session}, which Ray deletes with the "
            f"session: the run's results would be lost. Pass an absolute work_dir on storage every node mounts, "
            f"e.g. {SHARED_EXAMPLE}"
        )
    if hosts <= 1:
        return
    for root in local_roots:
        if _inside(run_dir, root):
            raise PreflightError(
                f"{key}: the run directory {run_dir} is under {root}, which is local to each node, but this "
                f"run's workers may run on {hosts} hosts: checkpoints and metrics written on another node "
                f"would never reach this one. Use shared storage every node mounts (NFS/EFS), e.g. {SHARED_EXAMPLE}"
            )


def job_input_paths(cfg, cache_root: Path, *, cached: bool) -> dict[str, Path]:
    """Files and folders the job's workers, teacher actors and data tasks open on whichever node they run,
    by config key: ``data.root``, a dataset file (``data.dataset``), ``teacher.checkpoint``,
    ``model.pretrained`` and, when training reads the token cache (``teacher.cache``), the cache root."""
    from c2s.data.custom import is_dataset_file

    paths = {"data.root": cfg.data.root, "teacher.checkpoint": cfg.teacher.checkpoint,
             "model.pretrained": cfg.model.get("pretrained")}
    if is_dataset_file(cfg.data.dataset):
        paths["data.dataset"] = cfg.data.dataset
    if cached:
        paths["cache_root (token cache)"] = cache_root
    return {key: Path(value) for key, value in paths.items() if value is not None}


def check_shared_inputs(paths: Mapping[str, Path], *, hosts: int, local_roots: Iterable[Path]) -> None:
    """Refuse, when the job may run on more than one host, inputs on a node-local path: another node would
    read its own (empty or stale) copy or none. Every offending key is named at once."""
    if hosts <= 1:
        return
    roots = list(local_roots)
    bad = []
    for key, path in paths.items():
        real = Path(os.path.realpath(path))
        root = next((r for r in roots if _inside(real, r)), None)
        if root is not None:
            bad.append(f"{key} = {str(path)!r} is under {root}")
    if bad:
        raise PreflightError(
            f"this job may run on {hosts} hosts, but {'; '.join(bad)}, which is local to each node: workers, "
            "teacher actors and data tasks on other nodes would not find it. Put it on storage every node mounts "
            "(NFS/EFS) and pass that path, e.g. data.root=/data/VOCaug teacher.checkpoint=/data/ViT-B-16.pt "
            "cache_root=/data/c2s-cache"
        )


def cluster_hosts(nodes: Iterable[Mapping], *, may_grow: bool) -> int:
    """Distinct addresses of alive ``ray.nodes()`` rows; at least 2 when the autoscaler may add nodes
    (``may_grow``): a sweep's trials go wherever resources are free, new nodes included."""
    hosts = len({n.get("NodeManagerAddress") for n in nodes if n.get("Alive")})
    return max(hosts, 2) if may_grow else hosts


def worker_hosts(nodes: Iterable[Mapping], driver_node_id: str, per_worker: Mapping[str, float]) -> int:
    """How many hosts a run's training workers may write from, from ``ray.nodes()`` rows.

    Distinct addresses of alive nodes (``ray.cluster_utils.Cluster`` starts several nodes on one host, which
    share its disk); at least 2 when one training worker (``per_worker``: CPU/GPU) does not fit on the
    driver's own node, e.g. a head with ``CPU: 0`` whose workers the autoscaler starts elsewhere.
    """
    alive = [n for n in nodes if n.get("Alive")]
    hosts = len({n.get("NodeManagerAddress") for n in alive})
    driver = next((n for n in alive if n.get("NodeID") == driver_node_id), None)
    if driver is not None:
        have = driver.get("Resources") or {}
        if any(float(amount) > float(have.get(name, 0.0)) + 1e-9 for name, amount in per_worker.items() if amount):
            hosts = max(hosts, 2)
    return hosts
