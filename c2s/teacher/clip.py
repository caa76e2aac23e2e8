"""The frozen open_clip teacher: loading from a local file, global / dense / region tokens.

    teacher = load_teacher(cfg.teacher)                 # eval, frozen, fp16 on GPU, fp32 on CPU
    g = teacher.encode_global(images)                   # (B, D)
    d = teacher.encode_dense(images)                    # (B, D, h, w), h = w = dense_size // patch
    r = teacher.encode_regions(images, masks, index)    # (R, D), one batched CLIP call

Images are ``uint8`` tensors ``(B, H, W, 3)`` (what Ray Data hands over); every output is float32 and
L2-normalised along D. Nothing here fetches from a model hub: weights are a local file or, when the
config explicitly allows it, random.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transformer import QuickGELU
from torch import nn
from torchvision.ops import roi_align

from c2s import plugins
from c2s.inputs import parse_reference
from c2s.teacher import archs
from c2s.teacher.checkpoint import (
    ACCEPTED,
    TeacherCheckpointNotFound,
    check_fits,
    check_path,
    decide_quick_gelu,
    load_into,
    read_checkpoint,
)

DENSE_VARIANTS = ("maskclip", "clearclip", "sclip")
PRECISIONS = ("auto", "fp32", "fp16")


def _hub_tags(arch: str) -> list[str]:
    try:
        return list(open_clip.list_pretrained_tags_by_model(arch))
    except (KeyError, ValueError):
        return []


def resolve_checkpoint(teacher_cfg: Mapping[str, Any]) -> Path | None:
    """Check ``teacher.checkpoint`` without touching the network; return the file or None (random).

    Raises ValueError for a missing checkpoint without ``allow_random`` and for an open_clip pretrained
    tag (which would need a hub download), TeacherCheckpointNotFound (a FileNotFoundError) for a path that
    does not exist, TeacherCheckpointError (a ValueError) for a directory or an empty file.
    """
    arch = teacher_cfg["arch"]
    ckpt = teacher_cfg.get("checkpoint")
    if ckpt is None or ckpt == "":
        if teacher_cfg.get("allow_random", False):
            return None
        raise ValueError(
            f"teacher.checkpoint is null for teacher.arch={arch!r}: pass a local weights file with "
            "teacher.checkpoint=/path/to/weights (random weights need teacher.allow_random=true, tests only)"
        )
    if parse_reference(ckpt) is not None and not Path(str(ckpt)).exists():
        raise ValueError(f"teacher.checkpoint={ckpt!r} is a provider reference; resolve it to a file first "
                         "(c2s.inputs.resolve_inputs does, before any actor starts)")
    path = Path(str(ckpt)).expanduser()
    if path.exists():
        return check_path(path)  # a directory or an empty file is refused here, naming what was expected
    looks_like_path = os.sep in str(ckpt) or path.suffix in (".pt", ".pth", ".bin", ".safetensors", ".npz")
    tags = _hub_tags(arch)
    if not looks_like_path or str(ckpt) in tags:
        # A tag would make open_clip download from a hub: no network here and often none on clusters,
        # so fail now instead of hanging on a connection.
        known = f" (known tags for {arch}: {', '.join(tags[:8])})" if tags else ""
        raise ValueError(
            f"teacher.checkpoint={ckpt!r} is not a local file; it looks like an open_clip pretrained tag{known}. "
            "c2s never downloads from a model hub: download the weights elsewhere, copy the file here, and "
            "pass its local path via teacher.checkpoint=/path/to/open_clip_model.bin"
        )
    raise TeacherCheckpointNotFound(f"teacher.checkpoint: weights file {str(path)!r} does not exist "
                                    f"(expected a local file: {ACCEPTED})")


def _last_block_dense(block: nn.Module, x: torch.Tensor, variant: str) -> torch.Tensor:
    """Text-aligned patch tokens from the last residual block, residual and FFN dropped.

    x: (B, 1 + N, C) input of the last block -> (B, N, C) patch tokens (before ln_post / proj).
    Works for open_clip's ResidualAttentionBlock (nn.MultiheadAttention) and its custom Attention: both
    expose ``in_proj_weight``, ``in_proj_bias`` and ``out_proj``.
    """
    attn = block.attn
    y = block.ln_1(x)[:, 1:]  # patch tokens only: the CLS token plays no role in the dense map
    q, k, v = F.linear(y, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    if variant == "maskclip":
        out = v  # MaskCLIP: skip query-key attention, keep the value path
    else:
        b, n, c = q.shape
        heads = attn.num_heads
        hd = c // heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, n, heads, hd).transpose(1, 2)

        qh, kh, vh = split(q), split(k), split(v)
        scale = hd ** -0.5
        weights = torch.softmax(qh @ qh.transpose(-1, -2) * scale, dim=-1)
        if variant == "sclip":
            weights = weights + torch.softmax(kh @ kh.transpose(-1, -2) * scale, dim=-1)
        out = (weights @ vh).transpose(1, 2).reshape(b, n, c)
    return attn.out_proj(out)


class Teacher:
    """A frozen open_clip model with the three token kinds C2S needs (Sec. 3.1).

    Attributes: ``embed_dim`` (D), ``device``, ``image_size`` (global/local input side),
    ``dense_size`` (dense input side), ``patch`` (patch side), ``arch``, ``dense_variant``.
    """

    def __init__(self, model: nn.Module, arch: str, image_size: int, dense_size: int, dense_variant: str,
                 local_margin: float, device: torch.device, dtype: torch.dtype,
                 checkpoint: Path | None = None) -> None:
        visual = model.visual
        if not hasattr(visual, "conv1") or not hasattr(visual, "transformer"):
            raise ValueError(f"teacher.arch={arch!r}: only open_clip ViT image towers are supported")
        if dense_variant not in DENSE_VARIANTS:
            raise ValueError(f"teacher.dense_variant={dense_variant!r}: expected one of {DENSE_VARIANTS}")
        self.model = model
        self.visual = visual
        self.arch = arch
        self.image_size = int(image_size)
        self.dense_size = int(dense_size)
        self.dense_variant = dense_variant
        self.local_margin = float(local_margin)
        self.device = device
        self.dtype = dtype
        self.checkpoint = checkpoint
        self.patch = int(visual.patch_size[0])
        self.embed_dim = int(visual.output_dim)
        pp = open_clip.get_model_preprocess_cfg(model)
        self._mean = torch.tensor(pp.get("mean", open_clip.OPENAI_DATASET_MEAN), device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(pp.get("std", open_clip.OPENAI_DATASET_STD), device=device).view(1, 3, 1, 1)
        self._pos_cache: dict[tuple[int, int], torch.Tensor] = {}
        self._weights_hash: str | None = None
        self._tokenizer: Any = None

    # ---- shapes and preprocessing -------------------------------------------------------------------
    def grid(self, size: int | tuple[int, int] | None = None) -> tuple[int, int]:
        """Token grid (h, w) for a square input side (or an (H, W) pair); default the dense size."""
        size = self.dense_size if size is None else size
        hh, ww = (size, size) if isinstance(size, int) else size
        return hh // self.patch, ww // self.patch

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) in CLIP's normalisation (the mean maps to 0)."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images: expected uint8 (B, H, W, 3), got {images.dtype} {tuple(images.shape)}")
        x = images.to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        return (x - self._mean) / self._std

    def _resize(self, x: torch.Tensor, side: int) -> torch.Tensor:
        if x.shape[-2:] == (side, side):
            return x
        return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        """Positional embedding (1 + h*w, C), patch part bicubically interpolated from the trained grid."""
        if (h, w) not in self._pos_cache:
            pos = self.visual.positional_embedding
            gh, gw = self.visual.grid_size
            if (h, w) == (gh, gw):
                self._pos_cache[(h, w)] = pos
            else:
                patch = pos[1:].float().reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
                patch = F.interpolate(patch, size=(h, w), mode="bicubic", align_corners=False)
                patch = patch.permute(0, 2, 3, 1).reshape(h * w, -1).to(pos.dtype)
                self._pos_cache[(h, w)] = torch.cat([pos[:1], patch], dim=0)
        return self._pos_cache[(h, w)]

    def _tokens_before_last(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """Normalised (B, 3, S, S) -> input of the last block (B, 1 + h*w, C), grid (h, w)."""
        v = self.visual
        x = v.conv1(x.to(self.dtype))
        b, c, h, w = x.shape
        x = x.reshape(b, c, h * w).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(b, -1, -1)
        x = torch.cat([cls, x], dim=1) + self._pos_embed(h, w).to(x.dtype)
        x = v.ln_pre(x)
        for block in v.transformer.resblocks[:-1]:
            x = block(x)
        return x, h, w

    def _project(self, tokens: torch.Tensor) -> torch.Tensor:
        """ln_post + visual projection, then L2 normalisation, in float32. (..., C) -> (..., D)."""
        out = self.visual.ln_post(tokens)
        if self.visual.proj is not None:
            out = out @ self.visual.proj
        return F.normalize(out.float(), dim=-1)

    def _encode_normalised(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised (B, 3, S, S) -> (B, D) CLS embeddings, L2-normalised.

        Same as ``visual(x)`` at the trained size, but through the interpolated positional embedding so an
        image_size other than the trained one works too.
        """
        x, _, _ = self._tokens_before_last(x)
        x = self.visual.transformer.resblocks[-1](x)
        pooled, _ = self.visual._pool(x)
        if self.visual.proj is not None:
            pooled = pooled @ self.visual.proj
        return F.normalize(pooled.float(), dim=-1)

    # ---- the three token kinds ----------------------------------------------------------------------
    @torch.inference_mode()
    def encode_global(self, images: torch.Tensor) -> torch.Tensor:
        """Global CLS token C_g: uint8 (B, H, W, 3) -> (B, D) float32, L2-normalised.

        The whole image is resized to image_size x image_size (no centre crop: the token should cover
        every pixel the student sees).
        """
        return self._encode_normalised(self._resize(self._normalise(images), self.image_size))

    @torch.inference_mode()
    def encode_dense(self, images: torch.Tensor) -> torch.Tensor:
        """Dense tokens C_d: uint8 (B, H, W, 3) -> (B, D, h, w) float32, L2-normalised per position.

        Input resized to dense_size; (h, w) = grid(dense_size); variant teacher.dense_variant.
        """
        x = self._resize(self._normalise(images), self.dense_size)
        x, h, w = self._tokens_before_last(x)
        patches = _last_block_dense(self.visual.transformer.resblocks[-1], x, self.dense_variant)
        dense = self._project(patches)  # (B, h*w, D)
        return dense.transpose(1, 2).reshape(dense.shape[0], -1, h, w).contiguous()

    def region_boxes(self, masks: torch.Tensor) -> torch.Tensor:
        """Square crop boxes (R, 4) as (x1, y1, x2, y2) in pixels for bool masks (R, H, W).

        The region's bounding box, grown to a square around its centre (so resizing to CLIP's square input
        keeps the aspect ratio), plus ``local_margin`` of its side on each side. The box may leave the
        image; roi_align reads zeros there, which is the CLIP mean after normalisation, like the masked-out
        pixels.
        """
        r, hh, ww = masks.shape
        rows = masks.any(dim=2)  # (R, H)
        cols = masks.any(dim=1)  # (R, W)
        empty = ~rows.any(dim=1)
        if bool(empty.any()):
            raise ValueError(f"encode_regions: region {int(empty.nonzero()[0])} has an empty mask")
        ar_h = torch.arange(hh, device=masks.device)
        ar_w = torch.arange(ww, device=masks.device)
        y1 = torch.where(rows, ar_h, hh).min(dim=1).values.float()
        y2 = torch.where(rows, ar_h, -1).max(dim=1).values.float() + 1
        x1 = torch.where(cols, ar_w, ww).min(dim=1).values.float()
        x2 = torch.where(cols, ar_w, -1).max(dim=1).values.float() + 1
        side = torch.maximum(y2 - y1, x2 - x1) * (1 + 2 * self.local_margin)
        cy, cx = (y1 + y2) / 2, (x1 + x2) / 2
        return torch.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], dim=1)

    def region_inputs(self, images: torch.Tensor, masks: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        """Masked, cropped, resized sub-images: (R, 3, image_size, image_size), normalised.

        Pixels outside a region become the CLIP mean (0 after normalisation); the crop-and-resize is one
        vectorised roi_align (bilinear, adaptive sampling averages over the box, i.e. anti-aliased).
        """
        if masks.ndim != 3 or masks.dtype != torch.bool:
            raise ValueError(f"masks: expected bool (R, H, W), got {masks.dtype} {tuple(masks.shape)}")
        if image_index.shape != masks.shape[:1]:
            raise ValueError(f"image_index: expected shape ({masks.shape[0]},), got {tuple(image_index.shape)}")
        if images.shape[1:3] != masks.shape[1:]:
            raise ValueError(f"masks: size {tuple(masks.shape[1:])} differs from images' {tuple(images.shape[1:3])}")
        x = self._normalise(images)
        masks = masks.to(self.device)
        index = image_index.to(self.device, torch.long)
        sub = x[index] * masks.unsqueeze(1)  # (R, 3, H, W)
        boxes = self.region_boxes(masks)
        rois = torch.cat([torch.arange(len(boxes), device=self.device, dtype=boxes.dtype)[:, None], boxes], 1)
        return roi_align(sub, rois, output_size=(self.image_size, self.image_size), spatial_scale=1.0,
                         sampling_ratio=-1, aligned=True)

    @torch.inference_mode()
    def encode_regions(self, images: torch.Tensor, masks: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        """Local CLS tokens C_l: images uint8 (B, H, W, 3), masks bool (R, H, W), image_index long (R,)
        -> (R, D) float32, L2-normalised. All R regions go through CLIP in one batched call."""
        if masks.shape[0] == 0:
            return torch.zeros(0, self.embed_dim, device=self.device)
        return self._encode_normalised(self.region_inputs(images, masks, image_index))

    # ---- text ----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_text(self, texts: list[str], chunk: int = 256) -> torch.Tensor:
        """Prompts -> (N, D) float32 L2-normalised text embeddings (chunked to bound memory)."""
        if self._tokenizer is None:
            self._tokenizer = open_clip.get_tokenizer(self.arch)
        out = []
        for start in range(0, len(texts), chunk):
            tokens = self._tokenizer(texts[start:start + chunk]).to(self.device)
            out.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1))
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim, device=self.device)

    @property
    def weights_hash(self) -> str:
        """sha256 (16 hex) of every weight tensor (and QuickGELU when used): identifies checkpoint and random
        weights alike."""
        if self._weights_hash is None:
            digest = hashlib.sha256(self.arch.encode())
            if any(isinstance(m, QuickGELU) for m in self.model.modules()):
                # Same tensors under another activation give other embeddings (text.py's cache keys on this
                # hash); GELU teachers keep the hash they always had.
                digest.update(b"QuickGELU")
            for name, tensor in sorted(self.model.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
            self._weights_hash = digest.hexdigest()[:16]
        return self._weights_hash


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def _resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ValueError(f"teacher.precision={precision!r}: expected one of {PRECISIONS}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("teacher.precision='fp16' needs a GPU; on CPU use 'auto' or 'fp32'")
    if precision == "fp32" or device.type != "cuda":
        return torch.float32
    return torch.float16


def load_teacher(teacher_cfg: Mapping[str, Any], device: str | torch.device | None = None) -> Teacher:
    """Build the frozen teacher from ``cfg.teacher`` (arch, checkpoint, allow_random, sizes, variant).

    device: None -> cuda when available, else cpu. Weights files are read by c2s/teacher/checkpoint.py
    (OpenAI TorchScript archives, open_clip .bin / .safetensors, plain state dicts; no Python unpickled),
    which also decides QuickGELU vs GELU (``teacher.quick_gelu``); a bad file raises
    TeacherCheckpointError. Random weights (``checkpoint=None`` + ``allow_random``) are drawn under
    ``teacher.seed`` so every Ray actor builds the same teacher.
    """
    archs.register()
    arch = teacher_cfg["arch"]
    if arch not in open_clip.list_models():
        raise ValueError(f"teacher.arch={arch!r} is not an open_clip architecture nor one a package registers "
                         f"({', '.join(sorted(archs.registered())) or 'none'})"
                         f"{plugins.none_installed_hint(archs.PLUGIN_GROUP)}")
    checkpoint = resolve_checkpoint(teacher_cfg)
    dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = _resolve_dtype(str(teacher_cfg.get("precision", "auto")), dev)
    # Read (and vet) the file before building: its origin decides the activation the model is built with.
    weights = read_checkpoint(checkpoint) if checkpoint is not None else None
    if weights is not None:
        check_fits(weights, arch)  # a file of another model is named as such, before any activation question
    quick_gelu, why = decide_quick_gelu(teacher_cfg.get("quick_gelu"), arch, weights)
    logging.getLogger(__name__).info("teacher %s: %s (%s)", arch, "QuickGELU" if quick_gelu else "nn.GELU", why)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(teacher_cfg.get("seed", 0)))
        # pretrained=None: open_clip never resolves a tag or touches the network; weights come below.
        # Its "No pretrained weights loaded" warning would be wrong when a checkpoint follows: filter it.
        quiet = _DropMessage("No pretrained weights loaded")
        logging.getLogger().addFilter(quiet)
        try:
            # quick_gelu overrides the config's (open_clip's create_model applies **model_kwargs last).
            model = open_clip.create_model(arch, pretrained=None, pretrained_text=False, quick_gelu=quick_gelu)
        finally:
            logging.getLogger().removeFilter(quiet)
    if weights is not None:
        load_into(model, weights, arch)
        del weights
    model = model.to(device=dev, dtype=dtype).eval()
    model.requires_grad_(False)
    image_size = int(teacher_cfg.get("image_size", model.visual.image_size[0]))
    dense_size = int(teacher_cfg.get("dense_size", image_size))
    patch = int(model.visual.patch_size[0])
    if dense_size % patch or image_size % patch:
        raise ValueError(
            f"teacher.image_size={image_size} and teacher.dense_size={dense_size} must be multiples of the "
            f"patch size {patch} of {arch!r}"
        )
    return Teacher(model, arch, image_size, dense_size, str(teacher_cfg.get("dense_variant", "maskclip")),
                   float(teacher_cfg.get("local_margin", 0.1)), dev, dtype, checkpoint)

