"""Load pretrained backbone weights from a local file (``model.pretrained``); no model hub, no pickle code.

The file is read with ``torch.load(path, map_location="cpu", weights_only=True)``.  mmseg's published
checkpoints carry a ``meta`` dict with numpy scalars, which ``weights_only=True`` rejects; those (and
only those: numpy scalars and dtypes, which build plain values and run no code) are allow-listed through
:func:`torch.serialization.safe_globals`.  ``weights_only=False`` is never used.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

KEY = "model.pretrained"
_PREFIXES = ("module.", "backbone.", "encoder.")
_WRAPPERS = ("state_dict", "model", "module")


def _numpy_safe_globals() -> list:
    """Numpy scalar reconstructor and dtype classes, the only globals mmseg checkpoints' ``meta`` needs."""
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return [scalar, np.dtype, *dtypes]


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` (raw, or wrapped in ``{'state_dict': ...}`` / ``{'model': ...}``).

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names ``model.pretrained``).
        ValueError: the file is not a torch checkpoint of tensors.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{KEY}: no such file {path!r}; expected a local backbone state dict saved with torch.save "
            f"(set {KEY}=null for random initialisation)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        try:
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise ValueError(
                f"{KEY}: {path!r} cannot be loaded with torch.load(weights_only=True) ({err}). Re-save only "
                "its state dict (torch.save(ckpt['state_dict'], new_path)) from a trusted environment."
            ) from err
    for wrapper in _WRAPPERS:
        if isinstance(obj, Mapping) and wrapper in obj and isinstance(obj[wrapper], Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{KEY}: {path!r} holds no state dict of tensors (got {type(obj).__name__})")
    return dict(obj)


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop ``module.`` / ``backbone.`` / ``encoder.`` prefixes.

    If some keys start with ``backbone.`` (a whole-segmentor checkpoint), only those are kept: decode and
    auxiliary heads of a checkpoint trained for other classes are not the student's.
    """
    items = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in items):
        items = {k[len("backbone."):]: v for k, v in items.items() if k.startswith("backbone.")}
    for prefix in _PREFIXES:
        if items and all(k.startswith(prefix) for k in items):
            items = {k[len(prefix):]: v for k, v in items.items()}
    return items


def _adapt_pos_embed(backbone: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Resize a ViT ``pos_embed`` (1, 1 + h*w, C) to the backbone's grid, as mmseg's ViT loader does."""
    own = getattr(backbone, "pos_embed", None)
    theirs = state.get("pos_embed")
    resize = getattr(backbone, "resize_pos_embed", None)
    if own is None or theirs is None or resize is None or own.shape == theirs.shape:
        return
    if theirs.ndim != 3 or theirs.shape[2] != own.shape[2]:
        return  # reported as a shape mismatch by load_backbone_weights
    side = int(round((theirs.shape[1] - 1) ** 0.5))
    own_side = int(round((own.shape[1] - 1) ** 0.5))
    if side * side + 1 != theirs.shape[1] or own_side * own_side + 1 != own.shape[1]:
        return
    state["pos_embed"] = resize(theirs, (own_side, own_side), (side, side), backbone.interpolate_mode)


def load_backbone_weights(backbone: nn.Module, path: str | os.PathLike, max_listed: int = 10) -> None:
    """Load a local state dict into ``backbone`` strictly (every key, every shape).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: missing / unexpected keys or shape mismatches; lists the first ``max_listed`` of each.
    """
    state = strip_prefixes(read_state_dict(path))
    _adapt_pos_embed(backbone, state)
    own = backbone.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        def head(keys: list[str]) -> str:
            more = f" ... (+{len(keys) - max_listed} more)" if len(keys) > max_listed else ""
            return ", ".join(keys[:max_listed]) + more if keys else "none"

        raise ValueError(
            f"{KEY}: {os.fspath(path)!r} does not fit the {type(backbone).__name__} backbone: "
            f"{len(missing)} missing keys [{head(missing)}]; {len(unexpected)} unexpected keys "
            f"[{head(unexpected)}]; {len(mismatched)} shape mismatches [{head(mismatched)}]. Expected mmseg "
            "backbone key names (convert original checkpoints with mmseg's tools/model_converters, e.g. "
            "mit2mmseg.py, mscan2mmseg.py, vit2mmseg.py)."
        )
    backbone.load_state_dict(state, strict=True)
