"""Toy-world backbone pretraining: the embedded default's stand-in for the ImageNet initialisation.

The paper's students (SegFormer-B4, SegNeXt-B, SETR-B) start from ImageNet-pretrained backbones, for the
baseline and for C2S alike (Table 3). A randomly initialised toy student does not learn object shape in the
demo's 300 steps (measured: a seen pixel's shape is right 33% of the time, chance 25%), so every row of the
toy Table 3 would mostly measure how fast a backbone learns shape from scratch. This module gives toy
students the analogue of ImageNet: supervised classification of object-centred crops from the world's
``pretrain`` image stream (the images the toy CLIP also learned from), **seen classes only**, labelled with
their colour and shape. Unseen-class objects are never shown, so no unseen label leaks into the student
(stricter than ImageNet, which contains some of COCO-Stuff's unseen classes).

    c2s world pretrain-student                       # once; cached under <cache>/toy_backbone/<key>/
    c2s train toy_c2s                                # model.pretrained="toy:backbone" resolves to that file

``model.pretrained="toy:backbone"`` is resolved on the driver by :func:`c2s.inputs.resolve_inputs` through
the ``toy:`` provider (c2s/world/providers.py), like ``teacher.checkpoint="toy:clip"``, so workers receive a
concrete file. The cache key hashes the
world, the ``toy_backbone`` section and the student's architecture keys.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from c2s.data.catalog import get_dataset_info
from c2s.paths import atomic_path
from c2s.world.classes import TOY_COLOURS, TOY_SHAPES, is_toy_world
from c2s.world.generate import ToySample, render_many, world_key

PRETRAIN_VERSION = 1
WEIGHTS_FILE = "backbone.pt"

DEFAULT_BACKBONE_PRETRAIN: dict[str, Any] = dict(
    steps=600,
    batch_size=64,
    lr=2e-3,  # peak of a one-cycle schedule (linear warm-up over warmup_frac, cosine down)
    warmup_frac=0.1,
    weight_decay=0.01,
    pool_images=2200,  # images of the world's "pretrain" stream whose seen-class objects are the data
    heldout_images=300,  # images of the "heldout" stream: accuracy on their seen AND unseen objects
    crop=64,  # object-centred crop side in pixels (objects are 28-44 px at world size 96)
    flip_prob=0.5,
    seed=0,
    threads=2,
    log_every=100,
)
# Keys that change neither the data nor the result worth a new cache entry.
_NOT_HASHED = ("threads", "log_every")
# Student keys that do not shape the backbone.
_MODEL_KEYS_NOT_HASHED = ("pretrained", "embed_dim", "dropout_ratio", "head_channels", "center_features",
                          "center_momentum")


def pretrain_params(pcfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults merged with ``toy_backbone``; an unknown key is an error naming the known ones."""
    params = dict(DEFAULT_BACKBONE_PRETRAIN)
    for key, value in dict(pcfg or {}).items():
        if key not in DEFAULT_BACKBONE_PRETRAIN:
            raise ValueError(f"unknown key toy_backbone.{key}; known: {', '.join(DEFAULT_BACKBONE_PRETRAIN)}")
        params[key] = value
    if int(params["steps"]) < 1 or int(params["batch_size"]) < 1:
        raise ValueError(f"toy_backbone.steps and toy_backbone.batch_size must be >= 1, got "
                         f"{params['steps']} and {params['batch_size']}")
    return params


def _sections(cfg: Mapping[str, Any]) -> tuple[dict, dict, dict]:
    data = cfg.get("data", {}) or {}
    world = dict(data.get("world", {}) or {})
    pcfg = dict(cfg.get("toy_backbone", {}) or {})
    model = dict(cfg.get("model", {}) or {})
    return world, pcfg, model


def backbone_key(world_cfg: Mapping[str, Any] | None, pcfg: Mapping[str, Any] | None,
                 model_cfg: Mapping[str, Any]) -> str:
    """16-hex-digit hash of the world, the pretraining parameters and the backbone's architecture keys."""
    p = {k: v for k, v in pretrain_params(pcfg).items() if k not in _NOT_HASHED}
    arch = {k: v for k, v in model_cfg.items() if k not in _MODEL_KEYS_NOT_HASHED}
    blob = json.dumps({"v": PRETRAIN_VERSION, "world": world_key(world_cfg), "pretrain": p, "model": arch},
                      sort_keys=True, default=list).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def backbone_dir(cfg: Mapping[str, Any], cache_root: Path) -> Path:
    """``<cache_root>/toy_backbone/<key>``."""
    return Path(cache_root) / "toy_backbone" / backbone_key(*_sections(cfg))


def object_crops(samples: Sequence[ToySample], size: int, keep: Callable[[int], bool]) -> dict[str, torch.Tensor]:
    """Object-centred crops of every kept object: ``image`` uint8 ``(N, size, size, 3)`` and int64 ``class``,
    ``shape``, ``colour`` ``(N,)`` (indices into ``TOY_CLASSES``, ``TOY_SHAPES``, ``TOY_COLOURS``).

    Images are reflect-padded by ``size`` so objects at the border still get a full crop.
    """
    images, classes = [], []
    half = size // 2
    for s in samples:
        padded = np.pad(s.image, ((size, size), (size, size), (0, 0)), mode="reflect")
        for cls, (x0, y0, x1, y1) in zip(s.classes, s.boxes):
            if not keep(cls):
                continue
            cx, cy = (x0 + x1) // 2 + size, (y0 + y1) // 2 + size
            images.append(padded[cy - half:cy - half + size, cx - half:cx - half + size])
            classes.append(cls)
    if not images:
        raise ValueError("object_crops: no object passed the filter; the pool is empty")
    cls = torch.tensor(classes, dtype=torch.int64)
    return {"image": torch.from_numpy(np.stack(images)), "class": cls,
            "shape": cls % len(TOY_SHAPES), "colour": cls // len(TOY_SHAPES)}


class AttributeProbe(nn.Module):
    """Backbone + global average pooling of every stage + linear colour and shape heads.

    ``forward(x (B, 3, S, S))`` -> ``(shape logits (B, n_shapes), colour logits (B, n_colours))``.
    """

    def __init__(self, backbone: nn.Module, channels: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.shape = nn.Linear(channels, len(TOY_SHAPES))
        self.colour = nn.Linear(channels, len(TOY_COLOURS))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = torch.cat([f.mean(dim=(2, 3)) for f in self.backbone(x)], dim=1)
        return self.shape(pooled), self.colour(pooled)


def _one_cycle(step: int, total: int, warmup_frac: float) -> float:
    warm = max(1, int(round(total * warmup_frac)))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


@torch.no_grad()
def _accuracy(probe: AttributeProbe, normalize: Callable, crops: dict[str, torch.Tensor], rows: torch.Tensor,
              batch: int = 256) -> dict[str, float]:
    if not len(rows):
        return {"shape_acc": float("nan"), "colour_acc": float("nan"), "crops": 0}
    shape_pred, colour_pred = [], []
    for s in range(0, len(rows), batch):
        idx = rows[s:s + batch]
        sh, co = probe(normalize(crops["image"][idx]))
        shape_pred.append(sh.argmax(1))
        colour_pred.append(co.argmax(1))
    return {"shape_acc": round(float((torch.cat(shape_pred) == crops["shape"][rows]).float().mean()), 4),
            "colour_acc": round(float((torch.cat(colour_pred) == crops["colour"][rows]).float().mean()), 4),
            "crops": int(len(rows))}


def pretrain_backbone(world_cfg: Mapping[str, Any] | None, model_cfg: Mapping[str, Any],
                      pcfg: Mapping[str, Any] | None, *, log: Callable[[str], None] | None = None
                      ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train the student's backbone on seen-class crops; returns (backbone state dict, metrics).

    Deterministic under ``toy_backbone.seed`` on one thread count. Metrics hold the held-out shape and
    colour accuracy on seen-class and (never trained on) unseen-class crops.
    """
    from c2s.student import build_student

    t0 = time.perf_counter()
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    p = pretrain_params(pcfg)
    torch.set_num_threads(int(p["threads"]))
    torch.manual_seed(int(p["seed"]))
    gen = torch.Generator().manual_seed(int(p["seed"]))
    unseen = set(get_dataset_info("toy").unseen_ids)
    size = int(p["crop"])

    # The inductive rule: only seen-class objects are training data.
    train = object_crops(render_many(world_cfg, "pretrain", 0, int(p["pool_images"])), size,
                         lambda c: c not in unseen)
    held = object_crops(render_many(world_cfg, "heldout", 0, int(p["heldout_images"])), size, lambda c: True)
    log(f"toy backbone: {len(train['class'])} seen-class crops for training, {len(held['class'])} held-out "
        f"crops, rendered in {time.perf_counter() - t0:.1f} s")

    student = build_student({**model_cfg, "pretrained": None})
    with torch.no_grad():
        channels = sum(f.shape[1] for f in student.backbone(torch.zeros(1, 3, size, size)))
    probe = AttributeProbe(student.backbone, channels)
    steps, bs = int(p["steps"]), int(p["batch_size"])
    opt = torch.optim.AdamW(probe.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _one_cycle(s, steps, float(p["warmup_frac"])))
    n, started, running = len(train["class"]), time.perf_counter(), []
    probe.train()
    for step in range(1, steps + 1):
        idx = torch.randint(n, (bs,), generator=gen)
        images = train["image"][idx]
        if float(torch.rand((), generator=gen)) < float(p["flip_prob"]):
            images = images.flip(2)  # (B, H, W, 3): width is dim 2
        shape_logits, colour_logits = probe(student.normalize(images))
        loss = F.cross_entropy(shape_logits, train["shape"][idx]) + F.cross_entropy(colour_logits, train["colour"][idx])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"toy backbone pretraining: loss is {float(loss)} at step {step}; "
                                     f"lower toy_backbone.lr (now {p['lr']})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running.append(float(loss.detach()))
        if step % int(p["log_every"]) == 0 or step == steps:
            log(f"toy backbone: step {step}/{steps} loss {np.mean(running):.3f} "
                f"{time.perf_counter() - started:.0f} s")
            running = []
    train_s = time.perf_counter() - started
    probe.eval()
    is_unseen = torch.tensor([int(c) in unseen for c in held["class"]])
    metrics = {
        "arch": str(model_cfg.get("name")), "steps": steps, "train_crops": n,
        "heldout_seen": _accuracy(probe, student.normalize, held, torch.nonzero(~is_unseen).flatten()),
        "heldout_unseen": _accuracy(probe, student.normalize, held, torch.nonzero(is_unseen).flatten()),
        "train_s": round(train_s, 1), "wall_s": round(time.perf_counter() - t0, 1),
    }
    state = {k: v.detach().clone() for k, v in student.backbone.state_dict().items()}
    return state, metrics


def ensure_toy_backbone(cfg: Mapping[str, Any], cache_root: Path, *, log: Callable[[str], None] | None = None
                        ) -> Path:
    """Path to the cached toy backbone for ``cfg`` (``data.world``, ``toy_backbone``, ``model``); trains it
    the first time (about a minute on 2 CPU cores) and writes it atomically."""
    final = backbone_dir(cfg, cache_root)
    weights = final / WEIGHTS_FILE
    if weights.is_file():
        return weights
    world, pcfg, model = _sections(cfg)
    try:
        with atomic_path(final) as tmp:
            tmp.mkdir()
            state, metrics = pretrain_backbone(world, model, pcfg, log=log)
            torch.save(state, tmp / WEIGHTS_FILE)
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    except OSError:
        # Another process renamed its copy into place first: use it.
        if not weights.is_file():
            raise
    return weights


def load_metrics(weights: Path) -> dict[str, Any]:
    return json.loads((Path(weights).parent / "metrics.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="c2s world pretrain-student",
                                     description="pretrain a toy student's backbone on seen-class crops (cached)")
    parser.add_argument("--config", default="toy_c2s", help="config with data.world, toy_backbone, model")
    parser.add_argument("--force", action="store_true", help="retrain even if a cached backbone exists")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. toy_backbone.steps=300")
    args = parser.parse_args(argv)
    import os
    import shutil

    from c2s.config import load_config
    from c2s.paths import cache_root

    cfg = load_config(args.config, args.overrides)
    if not is_toy_world(cfg.data.dataset):
        raise SystemExit(f"c2s world pretrain-student: {args.config} uses data.dataset={cfg.data.dataset!r}; "
                         "the toy backbone is for the toy world only (real students load ImageNet weights "
                         "through model.pretrained=/path/to/backbone.pth)")
    root = cache_root(cfg, env=os.environ)
    t0 = time.perf_counter()
    folder = backbone_dir(cfg, root)
    cached = (folder / WEIGHTS_FILE).is_file() and not args.force
    if args.force and folder.exists():
        shutil.rmtree(folder)
    weights = ensure_toy_backbone(cfg, root)
    metrics = load_metrics(weights)
    print(f"toy backbone {'(cached) ' if cached else ''}at {weights}", file=sys.stderr)
    print(json.dumps({"heldout_seen": metrics["heldout_seen"], "heldout_unseen": metrics["heldout_unseen"],
                      "wall_s": metrics["wall_s"] if not cached else round(time.perf_counter() - t0, 1),
                      "train_wall_s": metrics["wall_s"], "cached": cached, "weights": str(weights)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
