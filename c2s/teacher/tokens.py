"""The teacher's per-batch tokens: a plain function, and the Ray Data actor that wraps it.

    out = teacher_tokens(teacher, {"image": ..., "label": ...}, num_seen, cfg)      # no Ray
    ds = ds.map_batches(TeacherActor, **map_batches_kwargs(cfg, num_seen))          # the CLIP actor pool

Input batch (numpy): ``image`` uint8 (B, H, W, 3), ``label`` int (B, H, W) in SEEN-index space (unseen
and background already 255 = ignore). Output: the same batch plus

    global       (B, D)      float32   C_g, L2-normalised
    local        (B, L, D)   float32   C_l, one per region of the pseudo mask, zero rows where invalid
    local_ids    (B, L)      int64     the region's id in the pseudo mask (seen c or latent num_seen + j); -1 pad
    local_valid  (B, L)      bool      False on padding
    pseudo_mask  (B, H, W)   int64     Y_p: seen labels, latent num_seen + j, the rest ignore

with L = teacher.max_regions (fixed shapes keep Ray Data blocks columnar). Regions are ordered by id; when
an image has more than L regions the L largest are kept. The teacher never sees a class name.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

# The counters live in a module without torch or open_clip: the training loop and the driver read them.
from c2s.teacher.calls import (  # noqa: F401  (re-exported)
    CALLS_SUFFIX,
    read_actor_batches,
    read_actor_devices,
    read_call_counts,
    read_counters,
    write_call_count,
)
from c2s.teacher.mining import mine_latent_classes

if TYPE_CHECKING:
    from c2s.teacher.clip import Teacher

PAD_ID = -1


def _section(cfg: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    if name not in cfg:
        raise ValueError(f"config has no {name!r} section (expected the full config with teacher.* and mining.*)")
    return cfg[name]


def validate_batch(batch: Mapping[str, Any], num_seen: int, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Check and stack a batch: returns images uint8 (B, H, W, 3) and labels int64 (B, H, W).

    Raises ValueError naming the sample and what was expected.
    """
    for key in ("image", "label"):
        if key not in batch:
            raise ValueError(f"teacher batch has no {key!r} column (got {sorted(batch)})")
    images, labels = list(batch["image"]), list(batch["label"])
    if len(images) != len(labels):
        raise ValueError(f"teacher batch: {len(images)} images but {len(labels)} labels")
    for i, (img, lab) in enumerate(zip(images, labels)):
        img, lab = np.asarray(img), np.asarray(lab)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"sample {i}: image must be 3-channel uint8 (H, W, 3), got {img.dtype} {img.shape}")
        if lab.shape != img.shape[:2]:
            raise ValueError(f"sample {i}: label size {lab.shape} differs from image size {img.shape[:2]}")
        if not np.issubdtype(lab.dtype, np.integer):
            raise ValueError(f"sample {i}: label must be an integer array, got {lab.dtype}")
        bad = (lab != ignore_index) & ((lab < 0) | (lab >= num_seen))
        if bad.any():
            ids = np.unique(lab[bad])[:10].tolist()
            raise ValueError(f"sample {i}: label ids {ids} outside the seen classes [0, {num_seen}) and the "
                             f"ignore index {ignore_index}")
        if img.shape != np.asarray(images[0]).shape:
            raise ValueError(f"sample {i}: image size {img.shape} differs from sample 0's "
                             f"{np.asarray(images[0]).shape}; a teacher batch needs one size")
    return np.stack(images), np.stack([np.asarray(lab, dtype=np.int64) for lab in labels])


def select_regions(pseudo: torch.Tensor, max_regions: int, ignore_index: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Regions of a pseudo-mask batch (B, H, W) -> masks bool (R, H, W), image_index (R,), ids (R,),
    slot (R,) (position within the image's L slots). Per image: the max_regions largest, ordered by id."""
    masks, index, ids, slots = [], [], [], []
    for b in range(pseudo.shape[0]):
        present, counts = torch.unique(pseudo[b][pseudo[b] != ignore_index], return_counts=True)
        if len(present) > max_regions:
            keep = torch.sort(-counts, stable=True).indices[:max_regions]
            present = present[keep.sort().values]
        masks.append(pseudo[b][None] == present[:, None, None])
        index.append(torch.full_like(present, b))
        ids.append(present)
        slots.append(torch.arange(len(present), device=pseudo.device))
    return torch.cat(masks), torch.cat(index), torch.cat(ids), torch.cat(slots)


def teacher_tokens(teacher: Teacher, batch: Mapping[str, Any], num_seen: int, cfg: Mapping[str, Any]) -> dict:
    """One batch -> the batch plus global / local / local_ids / local_valid / pseudo_mask (module docstring).

    cfg: the full config (teacher.* and mining.*). Three CLIP calls per batch: global, dense, all regions.
    """
    tcfg, mcfg = _section(cfg, "teacher"), _section(cfg, "mining")
    ignore = int(tcfg.get("ignore_index", 255))
    max_regions = int(tcfg["max_regions"])
    images_np, labels_np = validate_batch(batch, num_seen, ignore)
    bsz = images_np.shape[0]
    images = torch.from_numpy(images_np)
    labels = torch.from_numpy(labels_np).to(teacher.device)

    global_tok = teacher.encode_global(images)
    dense = teacher.encode_dense(images)
    pseudo = torch.stack([mine_latent_classes(dense[b], labels[b], num_seen, mcfg, ignore) for b in range(bsz)])

    local = torch.zeros(bsz, max_regions, teacher.embed_dim)
    local_ids = torch.full((bsz, max_regions), PAD_ID, dtype=torch.long)
    local_valid = torch.zeros(bsz, max_regions, dtype=torch.bool)
    masks, index, ids, slots = select_regions(pseudo, max_regions, ignore)
    if len(ids):
        tokens = teacher.encode_regions(images, masks, index).cpu()
        index, slots = index.cpu(), slots.cpu()
        local[index, slots] = tokens
        local_ids[index, slots] = ids.cpu()
        local_valid[index, slots] = True

    out = dict(batch)
    out.update({
        "global": global_tok.cpu().numpy().astype(np.float32),
        "local": local.numpy(),
        "local_ids": local_ids.numpy(),
        "local_valid": local_valid.numpy(),
        "pseudo_mask": pseudo.cpu().numpy().astype(np.int64),
    })
    return out


def _actor_has_gpu() -> bool:
    import ray

    return ray.is_initialized() and len(ray.get_gpu_ids()) > 0


class TeacherActor:
    """Callable class for ``Dataset.map_batches(batch_format="numpy")``: CLIP loaded once per actor.

    cfg_dict: the full config as a plain dict (``c2s.config.to_dict``); num_seen: number of seen classes.
    Runs on cuda when torch sees a GPU and Ray gave this actor one, else on CPU.

    calls_dir: when given, the actor counts the batches and images it ran CLIP on and keeps the totals in
    ``calls_dir/<actor id>.calls.json`` (:func:`read_call_counts` sums them), so a job or benchmark can
    say how often CLIP ran.
    """

    def __init__(self, cfg_dict: dict, num_seen: int, calls_dir: str | None = None) -> None:
        from c2s.config import from_dict

        self.cfg = from_dict(cfg_dict)
        self.num_seen = int(num_seen)
        threads = int(self.cfg.teacher.get("torch_threads", 0))
        if threads > 0:
            # Fractional-CPU actors share cores with training workers; torch's default would oversubscribe.
            torch.set_num_threads(threads)
        device = "cuda" if torch.cuda.is_available() and _actor_has_gpu() else "cpu"
        # open_clip is imported here, in the actor: the Train controller that plans this stage (and the
        # driver) load this module only to name the class.
        from c2s.teacher.clip import load_teacher

        self.teacher = load_teacher(self.cfg.teacher, device)
        # where CLIP runs, in the actor's counter file (summary.json's teacher_devices): worker prints do not
        # reach a local run's console
        dtype = str(next(self.teacher.model.parameters()).dtype).removeprefix("torch.")
        self.device_desc = f"{device} ({dtype})"
        self.calls_dir = calls_dir
        self.counter_name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.batches = self.images = 0

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        delay = float(self.cfg.teacher.get("simulate_delay_s", 0.0))
        if delay > 0:
            time.sleep(delay)  # teacher.simulate_delay_s: a slow teacher on purpose (tests of the elastic pool)
        out = teacher_tokens(self.teacher, batch, self.num_seen, self.cfg)
        self.batches += 1
        self.images += len(out["global"])
        if self.calls_dir is not None:
            write_call_count(self.calls_dir, self.counter_name, self.batches, self.images, self.device_desc)
        return out


def map_batches_kwargs(cfg: Mapping[str, Any], num_seen: int,
                       calls_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Keyword arguments for ``ds.map_batches(TeacherActor, **kwargs)`` from teacher.* (pool size, resources).

    ``calls_dir``: where the actors count their CLIP calls (see :class:`TeacherActor`); None counts nothing.
    """
    import ray.data

    from c2s.config import to_dict

    tcfg = cfg["teacher"]
    lo, hi = (int(v) for v in tcfg["actors"])
    return {
        "fn_constructor_args": (to_dict(cfg), int(num_seen), str(calls_dir) if calls_dir is not None else None),
        "batch_size": int(tcfg["batch_size"]),
        "batch_format": "numpy",
        "compute": ray.data.ActorPoolStrategy(min_size=lo, max_size=hi),
        "num_cpus": float(tcfg["num_cpus"]),
        "num_gpus": float(tcfg["num_gpus"]),
    }
