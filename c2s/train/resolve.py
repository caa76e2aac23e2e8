"""What a job checks on the driver BEFORE any actor or worker starts, after its inputs (c2s/inputs.py):
the text embeddings (seen for training, all for evaluation) and the Ray resources the job will ask for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from c2s.errors import PreflightError
from c2s.inputs import JobInputs


def text_embeddings_for(cfg, inputs: JobInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """(seen (Ns,D), all (N,D)) text embeddings. The seen ones are what training receives."""
    from c2s.data.catalog import get_dataset_info
    from c2s.teacher.clip import load_teacher
    from c2s.teacher.text import text_embeddings

    info = get_dataset_info(cfg.data.dataset)
    teacher = load_teacher(cfg.teacher, device="cpu")
    templates = cfg.teacher.templates
    seen = text_embeddings(teacher, info.seen_classes, templates, inputs.cache_root)
    every = text_embeddings(teacher, info.classes, templates, inputs.cache_root)
    if seen.shape[1] != int(cfg.model.embed_dim):
        raise PreflightError(f"model.embed_dim = {cfg.model.embed_dim} but the teacher {cfg.teacher.arch} "
                             f"embeds in {seen.shape[1]} dims; set model.embed_dim={seen.shape[1]}")
    del teacher
    return seen, every


def resource_parts(cfg: Mapping[str, Any], with_teacher: bool) -> dict[str, dict[str, float]]:
    """What a training job asks for at once, part by part: training workers, teacher actors (at the
    pool's maximum, none without a teacher) and two Ray Data tasks. Sweeps add their driver to this."""
    train, teacher = cfg["train"], cfg["teacher"]
    workers = int(train["workers"])
    actors = int(teacher["actors"][1]) if with_teacher else 0
    return {
        "train workers": {"CPU": workers * float(train["cpus_per_worker"]),
                          "GPU": workers * float(train["gpus_per_worker"])},
        "teacher actors": {"CPU": actors * float(teacher["num_cpus"]), "GPU": actors * float(teacher["num_gpus"])},
        "data tasks": {"CPU": 2 * float(cfg["data"]["num_cpus"]), "GPU": 0.0},
    }


def job_parts(cfg: Mapping[str, Any], with_teacher: bool) -> dict[str, tuple[int, dict[str, float]]]:
    """The same parts as :func:`resource_parts`, per bundle: ``{"train worker": (count, {"CPU", "GPU"}), ...}``.
    Ray places each bundle on one node, so the placement preflight needs them one by one."""
    train, teacher = cfg["train"], cfg["teacher"]
    return {
        "train worker": (int(train["workers"]), {"CPU": float(train["cpus_per_worker"]),
                                                 "GPU": float(train["gpus_per_worker"])}),
        "teacher actor": (int(teacher["actors"][1]) if with_teacher else 0,
                          {"CPU": float(teacher["num_cpus"]), "GPU": float(teacher["num_gpus"])}),
        "data task": (2, {"CPU": float(cfg["data"]["num_cpus"]), "GPU": 0.0}),
    }


RESOURCE_HINT = ("Lower train.workers / train.cpus_per_worker / train.gpus_per_worker / teacher.actors / "
                 "teacher.num_cpus / teacher.num_gpus / data.num_cpus, or add nodes (or node types the "
                 "autoscaler may launch).")


def check_placement(bundles, cluster, *, what: str = "the job", hint: str = RESOURCE_HINT):
    """Fail before anything starts when ``bundles`` (c2s.train.placement.Bundle) cannot be placed on
    ``cluster``'s nodes, running or launchable; returns the Placement (None when the search was undecided,
    which never refuses a job). Prints the node types the placement needs the autoscaler to launch."""
    from c2s.train.placement import PlacementUndecided, place, unplaceable_message

    try:
        placement = place(bundles, cluster)
    except PlacementUndecided as err:
        print(f"[c2s] preflight: placement of {len(bundles)} bundles not decided ({err}); Ray will try", flush=True)
        return None
    if placement is None:
        raise PreflightError(f"{unplaceable_message(bundles, cluster, what)} {hint}")
    if placement.launched:
        new = ", ".join(f"{n} x {name}" for name, n in placement.launched.items())
        print(f"[c2s] preflight: {what} fits once the autoscaler launches {new} (from {cluster.source})",
              flush=True)
    return placement


def check_job_placement(cfg: Mapping[str, Any], with_teacher: bool):
    """:func:`check_placement` of a training job on the connected Ray cluster."""
    from c2s.train.cluster import cluster_from_ray
    from c2s.train.placement import job_bundles

    return check_placement(job_bundles(job_parts(cfg, with_teacher)), cluster_from_ray())


def resources_needed(cfg: Mapping[str, Any], with_teacher: bool) -> dict[str, float]:
    """CPU/GPU the job asks for at once: the sum of :func:`resource_parts`."""
    parts = resource_parts(cfg, with_teacher).values()
    return {r: sum(part[r] for part in parts) for r in ("CPU", "GPU")}


def check_resources(needed: Mapping[str, float], available: Mapping[str, float]) -> None:
    """Fail with both sides printed instead of letting Ray wait forever for resources it will never get."""
    short = {k: (v, float(available.get(k, 0.0))) for k, v in needed.items() if v > float(available.get(k, 0.0)) + 1e-9}
    if short:
        detail = ", ".join(f"{k}: needs {need:g}, cluster has {have:g}" for k, (need, have) in short.items())
        raise PreflightError(
            f"the job asks for more than the cluster has ({detail}). Asked: {dict(needed)}; cluster: "
            f"{ {k: available.get(k, 0.0) for k in needed} }. Lower train.workers / train.cpus_per_worker / "
            "teacher.actors / teacher.num_cpus / data.num_cpus, or add nodes."
        )
