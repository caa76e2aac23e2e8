"""Named student variants built from mmseg's ``MODELS`` registry.

Every full-size variant uses mmseg 1.2.2's own published config values (``mmseg/.mim/configs``:
``segformer/segformer_mit-b*_8xb2-160k_ade20k-512x512.py``, ``segnext/segnext_mscan-*_1xb16-adamw-160k_
ade20k-512x512.py``, ``_base_/models/setr_{naive,pup}.py`` with ViT-B/16 at 512 instead of ViT-L), with
two deliberate changes:

* **plain ``BN`` instead of ``SyncBN``** in the decode heads (SyncBN needs an initialised process group,
  i.e. DDP; set ``model.norm="SyncBN"`` for multi-GPU training, or convert with
  ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``).  SegNeXt's config already uses BN/GN.
* **the projection to CLIP's dim D is the head's final 1x1 ``conv_seg``**: heads are built with
  ``num_classes=D``, so ``conv_seg: channels -> D`` *is* the 1x1 projection and ``F`` is what mmseg would
  call the logits.  No extra layer, and a student built with ``embed_dim=150`` has exactly the
  parameter count of mmseg's ADE20K model (what the parameter-count tests compare).

SETR's auxiliary heads are training-time extras on intermediate layers and are not part of the student.

Config keys (the ``model`` section; ``None`` means "the variant's published value"):
``name``, ``embed_dim``, ``pretrained``, ``drop_path_rate``, ``dropout_ratio``, ``head_channels``,
``norm`` (``"BN"`` | ``"SyncBN"``), ``img_size`` (ViT position-embedding grid; SETR only).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import io
import logging
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from c2s.compat import import_mmseg
from c2s.inputs import parse_reference

from .model import FeatureCentering, Student
from .weights import load_backbone_weights

MODEL_KEYS = ("name", "embed_dim", "pretrained", "drop_path_rate", "dropout_ratio", "head_channels", "norm",
              "img_size", "center_features", "center_momentum")
NORMS = ("BN", "SyncBN")


@dataclass(frozen=True)
class VariantSpec:
    """One named student: mmseg backbone + decode head configs (``num_classes`` is set to D at build)."""

    family: str  # "segformer" | "segnext" | "setr"
    backbone: dict[str, Any]
    head: dict[str, Any]
    stride: int  # output stride s of F: (B, D, H/s, W/s)
    source: str  # where the values come from
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- SegFormer (MiT + SegformerHead)
def _segformer(embed_dims: int, num_layers: list[int], channels: int = 256, source: str = "") -> VariantSpec:
    num_heads = [1, 2, 5, 8]
    backbone = dict(
        type="MixVisionTransformer", in_channels=3, embed_dims=embed_dims, num_stages=4,
        num_layers=num_layers, num_heads=num_heads, patch_sizes=[7, 3, 3, 3], sr_ratios=[8, 4, 2, 1],
        out_indices=(0, 1, 2, 3), mlp_ratio=4, qkv_bias=True, drop_rate=0.0, attn_drop_rate=0.0,
        drop_path_rate=0.1,
    )
    head = dict(
        type="SegformerHead", in_channels=[embed_dims * h for h in num_heads], in_index=[0, 1, 2, 3],
        channels=channels, dropout_ratio=0.1, norm_cfg=dict(type="BN", requires_grad=True), align_corners=False,
    )
    return VariantSpec("segformer", backbone, head, stride=4, source=source)


# ---------------------------------------------------------------- SegNeXt (MSCAN + LightHamHead)
def _segnext(embed_dims: list[int], depths: list[int], channels: int, drop_path_rate: float = 0.1,
             source: str = "") -> VariantSpec:
    backbone = dict(
        type="MSCAN", embed_dims=embed_dims, mlp_ratios=[8, 8, 4, 4], drop_rate=0.0,
        drop_path_rate=drop_path_rate, depths=depths,
        attention_kernel_sizes=[5, [1, 7], [1, 11], [1, 21]],
        attention_kernel_paddings=[2, [0, 3], [0, 5], [0, 10]],
        act_cfg=dict(type="GELU"), norm_cfg=dict(type="BN", requires_grad=True),
    )
    head = dict(
        type="LightHamHead", in_channels=embed_dims[1:], in_index=[1, 2, 3], channels=channels,
        ham_channels=channels, dropout_ratio=0.1, norm_cfg=dict(type="GN", num_groups=32, requires_grad=True),
        align_corners=False,
        ham_kwargs=dict(MD_S=1, MD_R=16, train_steps=6, eval_steps=7, inv_t=100, rand_init=True),
    )
    return VariantSpec("segnext", backbone, head, stride=8, source=source)


# ---------------------------------------------------------------- SETR (ViT + SETRUPHead)
def _setr(decoder: str, embed_dims: int = 768, num_layers: int = 12, num_heads: int = 12, img_size: int = 512,
          channels: int = 256, source: str = "") -> VariantSpec:
    backbone = dict(
        type="VisionTransformer", img_size=(img_size, img_size), patch_size=16, in_channels=3,
        embed_dims=embed_dims, num_layers=num_layers, num_heads=num_heads, out_indices=(num_layers - 1,),
        drop_rate=0.0, drop_path_rate=0.0, norm_cfg=dict(type="LN", eps=1e-6, requires_grad=True),
        with_cls_token=True, interpolate_mode="bilinear",
    )
    if decoder == "naive":  # one 1x1 conv, x4 upsample: 1/16 -> 1/4
        up, stride = dict(num_convs=1, up_scale=4, kernel_size=1), 4
    else:  # PUP: four 3x3 convs, each followed by x2 upsample: 1/16 -> 1/1
        up, stride = dict(num_convs=4, up_scale=2, kernel_size=3), 1
    head = dict(
        type="SETRUPHead", in_channels=embed_dims, channels=channels, in_index=0, dropout_ratio=0.0,
        norm_cfg=dict(type="BN", requires_grad=True), align_corners=False, **up,
    )
    return VariantSpec("setr", backbone, head, stride=stride, source=source, extra=dict(decoder=decoder))


_SF = "mmseg configs/segformer/segformer_mit-{}_8xb2-160k_ade20k-512x512.py (head channels 256 for all)"
_SN = "mmseg configs/segnext/segnext_mscan-{}_1xb16-adamw-160k_ade20k-512x512.py"
_ST = "mmseg configs/_base_/models/setr_{}.py with ViT-B/16 (768 dims, 12 layers, 12 heads) at 512"

VARIANTS: dict[str, VariantSpec] = {
    "segformer_b0": _segformer(32, [2, 2, 2, 2], source=_SF.format("b0")),
    "segformer_b1": _segformer(64, [2, 2, 2, 2], source=_SF.format("b1")),
    "segformer_b2": _segformer(64, [3, 4, 6, 3], source=_SF.format("b2")),
    "segformer_b3": _segformer(64, [3, 4, 18, 3], source=_SF.format("b3")),
    "segformer_b4": _segformer(64, [3, 8, 27, 3], source=_SF.format("b4")),
    "segformer_b5": _segformer(64, [3, 6, 40, 3], source=_SF.format("b5")),
    "segnext_t": _segnext([32, 64, 160, 256], [3, 3, 5, 2], 256, source=_SN.format("t")),
    "segnext_s": _segnext([64, 128, 320, 512], [2, 2, 4, 2], 256, source=_SN.format("s")),
    "segnext_b": _segnext([64, 128, 320, 512], [3, 3, 12, 3], 512, source=_SN.format("b")),
    "segnext_l": _segnext([64, 128, 320, 512], [3, 5, 27, 3], 1024, drop_path_rate=0.3, source=_SN.format("l")),
    "setr_b_naive": _setr("naive", source=_ST.format("naive")),
    "setr_b_pup": _setr("pup", source=_ST.format("pup")),
    # Tiny variants for tests and the toy world (~0.3-0.6M parameters; fast at 96x96 on CPU).
    "segformer_tiny": _segformer(16, [1, 1, 1, 1], channels=64, source="c2s tiny: MiT 16 dims, 1 layer/stage"),
    "segnext_tiny": _segnext([16, 32, 64, 128], [1, 1, 1, 1], 64, source="c2s tiny: MSCAN 16..128, 1 block/stage"),
    "setr_tiny": _setr("naive", embed_dims=96, num_layers=4, num_heads=3, img_size=96, channels=64,
                       source="c2s tiny: ViT 96 dims, 4 layers, 3 heads, naive head, img 96"),
}


def _unknown_name(name: object) -> ValueError:
    close = difflib.get_close_matches(str(name), list(VARIANTS), n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"model.name: unknown student {name!r}.{hint} Valid names: {', '.join(VARIANTS)}")


def resolve_configs(model_cfg: Mapping[str, Any]) -> tuple[VariantSpec, dict[str, Any], dict[str, Any]]:
    """Validate the ``model`` section and return (spec, backbone cfg, head cfg) with overrides applied."""
    unknown = [k for k in model_cfg if k not in MODEL_KEYS]
    if unknown:
        raise ValueError(f"model: unknown key(s) {unknown}; valid keys: {', '.join(MODEL_KEYS)}")
    name = model_cfg.get("name")
    if name not in VARIANTS:
        raise _unknown_name(name)
    embed_dim = model_cfg.get("embed_dim")
    if not isinstance(embed_dim, int) or isinstance(embed_dim, bool) or embed_dim <= 0:
        raise ValueError(f"model.embed_dim: expected a positive int (the teacher's embedding dim), got {embed_dim!r}")
    spec = VARIANTS[name]
    backbone = copy.deepcopy(spec.backbone)
    head = copy.deepcopy(spec.head)
    head["num_classes"] = embed_dim  # conv_seg: channels -> D is the 1x1 projection
    if model_cfg.get("drop_path_rate") is not None:
        backbone["drop_path_rate"] = float(model_cfg["drop_path_rate"])
    if model_cfg.get("dropout_ratio") is not None:
        head["dropout_ratio"] = float(model_cfg["dropout_ratio"])
    if model_cfg.get("head_channels") is not None:
        head["channels"] = int(model_cfg["head_channels"])
        if spec.family == "segnext":
            head["ham_channels"] = head["channels"]
    norm = model_cfg.get("norm") or "BN"
    if norm not in NORMS:
        raise ValueError(f"model.norm: expected one of {NORMS}, got {norm!r}")
    if head["norm_cfg"]["type"] in NORMS:
        head["norm_cfg"]["type"] = norm
    if spec.family == "segnext":
        backbone["norm_cfg"]["type"] = norm
    if model_cfg.get("img_size") is not None:
        if spec.family != "setr":
            raise ValueError(f"model.img_size: only SETR (ViT) students have a position-embedding size, not {name!r}")
        size = int(model_cfg["img_size"])
        backbone["img_size"] = (size, size)
    return spec, backbone, head


@contextlib.contextmanager
def _quiet_init() -> Iterator[None]:
    """Silence mmengine's per-parameter init log (INFO) and MSCAN's ``print('init cfg', ...)``."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def build_student(model_cfg: Mapping[str, Any]) -> Student:
    """Build the student named by ``model_cfg['name']`` (the config's ``model`` section).

    Returns a :class:`Student` mapping normalised images ``(B, 3, H, W)`` to ``F: (B, D, H/s, W/s)`` with
    ``D = model_cfg['embed_dim']``; backbone weights come from ``model_cfg['pretrained']`` if set.

    Raises:
        ValueError: unknown name (with close matches), unknown key, or bad value; mismatched weights.
        FileNotFoundError: ``model.pretrained`` names a missing file.
    """
    pretrained = model_cfg.get("pretrained")
    if isinstance(pretrained, str) and parse_reference(pretrained) is not None:
        raise ValueError(f"model.pretrained={pretrained!r} is a provider reference; resolve it to a file first "
                         "(c2s.inputs.resolve_inputs does, before any worker starts)")
    spec, backbone_cfg, head_cfg = resolve_configs(model_cfg)
    import_mmseg()
    from mmseg.registry import MODELS

    backbone = MODELS.build(backbone_cfg)
    with warnings.catch_warnings():  # mmseg's notes about the CE loss module every head builds and c2s never uses
        warnings.filterwarnings("ignore", message=".*build_loss.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*avg_non_ignore.*", category=UserWarning)
        head = MODELS.build(head_cfg)
    with _quiet_init():
        backbone.init_weights()
        head.init_weights()
    # Absent key = False: run configs saved before the key existed describe students without it.
    center = (FeatureCentering(head_cfg["num_classes"], float(model_cfg.get("center_momentum", 0.1)))
              if bool(model_cfg.get("center_features", False)) else None)
    student = Student(backbone, head, stride=spec.stride, embed_dim=head_cfg["num_classes"], name=model_cfg["name"],
                      center=center)
    if model_cfg.get("pretrained"):
        load_backbone_weights(student.backbone, model_cfg["pretrained"])
    return student


def count_params(name: str, embed_dim: int = 512, **overrides: Any) -> int:
    """Number of parameters of the student ``name`` with ``D = embed_dim`` (other ``model`` keys in ``overrides``)."""
    if name not in VARIANTS:
        raise _unknown_name(name)
    student = build_student({"name": name, "embed_dim": embed_dim, **overrides})
    return sum(p.numel() for p in student.parameters())
