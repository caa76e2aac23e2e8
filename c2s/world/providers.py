"""The ``toy:`` provider: the toy world's three inputs, made once under the cache root and reused.

====================  =====================  ==========================================================
reference             config key             made by
====================  =====================  ==========================================================
``toy:world``         ``data.root``          :func:`c2s.world.generate.ensure_world` (``data.world``)
``toy:clip``          ``teacher.checkpoint`` :func:`c2s.world.clip.ensure_toy_teacher` (``toy_clip``)
``toy:backbone``      ``model.pretrained``   :func:`c2s.world.backbone.ensure_toy_backbone` (``toy_backbone``)
====================  =====================  ==========================================================

Registered with c2s through the "c2s.providers" entry point (pyproject.toml); c2s/inputs.py resolves the
references. Each maker imports its module only when called: resolving ``toy:world`` never loads torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from c2s.errors import PreflightError
from c2s.world.archs import TOY_CLIP_ARCHS
from c2s.world.classes import TOY_DATASETS, is_toy_world


def _require_toy_dataset(ref: str, key: str, cfg: Any, instead: str) -> None:
    if not is_toy_world(cfg.data.dataset):
        raise PreflightError(f"{key} = {ref!r} is the toy world's, but data.dataset = {cfg.data.dataset!r} "
                             f"(the toy world is {' or '.join(TOY_DATASETS)}); {instead}")


def world(cfg: Any, cache_root: Path) -> Path:
    from c2s.world.generate import ensure_world

    _require_toy_dataset("toy:world", "data.root", cfg, "point data.root at your dataset's folder")
    return ensure_world(cfg.data.get("world"), cache_root)


def clip(cfg: Any, cache_root: Path) -> Path:
    from c2s.world.clip import ensure_toy_teacher

    _require_toy_dataset("toy:clip", "teacher.checkpoint", cfg,
                         "pass a local open_clip weights file (teacher.checkpoint=/path/to/ViT-B-16.pt)")
    if cfg.teacher.arch not in TOY_CLIP_ARCHS:
        known = " or ".join(repr(arch) for arch in TOY_CLIP_ARCHS)
        raise PreflightError(f"teacher.checkpoint = 'toy:clip' is the toy CLIP of teacher.arch = {known}, "
                             f"but teacher.arch = {cfg.teacher.arch!r}")
    return ensure_toy_teacher(cfg, cache_root)


def backbone(cfg: Any, cache_root: Path) -> Path:
    from c2s.world.backbone import ensure_toy_backbone

    _require_toy_dataset("toy:backbone", "model.pretrained", cfg, "pass a local ImageNet backbone file "
                         "(model.pretrained=/path/to/mit_b4.pth) or null")
    return ensure_toy_backbone(cfg, cache_root)


# name -> (the config key it provides, its maker): the table c2s.inputs.providers() reads.
PROVIDER = {
    "world": ("data.root", world),
    "clip": ("teacher.checkpoint", clip),
    "backbone": ("model.pretrained", backbone),
}
