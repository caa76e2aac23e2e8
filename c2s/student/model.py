"""The student: an mmseg backbone + decode head whose final 1x1 conv projects to CLIP's embedding dim D.

    images (B, 3, H, W), normalised  --backbone-->  multi-scale features
                                     --decode head (conv_seg: channels -> D, 1x1)-->  F: (B, D, H/s, W/s)
                                     [--FeatureCentering (model.center_features)-->  F - mean feature]

``s`` is :attr:`Student.stride` (SegFormer 4, SegNeXt 8, SETR naive 4, SETR PUP 1).  The student knows
nothing of CLIP, Ray or the loss; it is built by :func:`c2s.student.zoo.build_student`.
"""

from __future__ import annotations

import torch
from torch import nn

# ImageNet mean / std in 0-255 units, RGB order (mmseg's SegDataPreProcessor with bgr_to_rgb=True).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

# Parameter names that get no weight decay besides norm layers and biases (mmseg's ``pos_block`` key,
# ViT's position embedding and class token).
_NO_DECAY_NAMES = ("pos_embed", "pos_block", "cls_token")
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


class FeatureCentering(nn.Module):
    """Subtract the mean feature vector: the batch's (over B, h, w) in training, its running average at
    evaluation, as BatchNorm does for its mean (no scaling, nothing learned). ``F: (B, D, h, w) -> (B, D, h, w)``.

    Why (issue 13, measured with tools/offline_c2s.py on the toy world, ZegCLIP's NEL at the paper's
    weights): a feature component shared by every pixel, ``m``, acts in ``X = alpha F^T A`` as a per-class
    bias ``alpha m^T A_c``. NEL's focal term pushes every absent class down at every pixel, and the student
    learns that bias through ``m``: the mean feature grew from norm 0.48 at initialisation to 62 (pixels'
    median norm 64, median cosine 0.96 with it), giving the seen classes a mean logit of -5.2 and the
    unseen classes, never pushed down, -4.2; 87% of seen pixels were then predicted as an unseen class.
    Cosine distillation cannot see past ``m`` either: region prototypes had mean pairwise cosine 0.84 and
    ``L_l`` stayed at chance. Removing ``m`` structurally gives every class the same mean logit over the
    data (a shared bias, ``loss.learn_logit_bias``, can still shift all of them).
    """

    def __init__(self, dim: int, momentum: float = 0.1) -> None:
        super().__init__()
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"model.center_momentum must be in (0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.register_buffer("running_mean", torch.zeros(int(dim)))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean = feats.mean(dim=(0, 2, 3))  # gradients flow through the batch mean, as in BatchNorm
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
        else:
            mean = self.running_mean.to(feats.dtype)
        return feats - mean.view(1, -1, 1, 1)


class Student(nn.Module):
    """Backbone + decode head producing dense CLIP-space features.

    Args:
        backbone: an mmseg backbone; ``backbone(x)`` returns a list/tuple of feature maps.
        decode_head: an mmseg decode head built with ``num_classes = embed_dim``; its ``conv_seg`` (1x1)
            is the projection to the CLIP embedding dim.
        stride: output stride ``s`` of ``F`` relative to the input.
        embed_dim: ``D``, the CLIP embedding dim.
        name: the variant name (for logs).
        center: a :class:`FeatureCentering` applied to the head's output, or None (the paper's plain ``F``).
    """

    def __init__(self, backbone: nn.Module, decode_head: nn.Module, stride: int, embed_dim: int, name: str = "",
                 center: FeatureCentering | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        self.center = center
        self.stride = int(stride)
        self.embed_dim = int(embed_dim)
        self.name = name
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def projection(self) -> nn.Conv2d:
        """The 1x1 projection ``channels -> D`` (the decode head's ``conv_seg``)."""
        return self.decode_head.conv_seg

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Dense features.

        Args:
            images: ``(B, 3, H, W)`` float, normalised with :meth:`normalize`; ``H, W`` multiples of 32
                (16 for SETR) give exactly ``H/s x W/s`` outputs.

        Returns:
            ``F: (B, D, H/s, W/s)``.
        """
        if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(
                f"Student.forward expects normalised float images (B, 3, H, W), got {tuple(images.shape)} "
                f"{images.dtype}; use Student.normalize on uint8 images first"
            )
        feats = self.decode_head(self.backbone(images))
        return feats if self.center is None else self.center(feats)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 RGB images ``(B, H, W, 3)`` or ``(B, 3, H, W)`` -> float ``(B, 3, H, W)``, ``(x - mean) / std``.

        A tensor with 3 in dim 1 is read as channels-first. The result is on the student's device.
        """
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise TypeError(f"Student.normalize expects a uint8 tensor (B, H, W, 3) or (B, 3, H, W), got "
                            f"{images.dtype} {tuple(images.shape)}")
        if images.shape[1] != 3:
            if images.shape[3] != 3:
                raise ValueError(f"Student.normalize expects 3 RGB channels, got shape {tuple(images.shape)}")
            images = images.permute(0, 3, 1, 2)
        images = images.to(device=self.mean.device, dtype=torch.float32)
        return ((images - self.mean) / self.std).contiguous()

    def param_groups(self, lr: float, head_lr_mult: float, weight_decay: float) -> list[dict]:
        """AdamW parameter groups, mmseg's SegFormer recipe.

        Backbone at ``lr``; decode head (including the projection) at ``lr * head_lr_mult``; no weight decay
        on norm-layer parameters, biases, position embeddings and the ViT class token. (mmseg's
        ``paramwise_cfg`` exempts ``norm`` and ``pos_block`` only; biases are exempt here too, as is common.)

        Returns:
            Non-empty groups, each ``{"params", "lr", "weight_decay", "lr_mult", "name"}``, covering every
            parameter with ``requires_grad`` exactly once.
        """
        no_decay: set[int] = set()
        for module in self.modules():
            if isinstance(module, _NORM_TYPES):
                no_decay.update(id(p) for p in module.parameters(recurse=False))
        groups: dict[str, dict] = {}
        for part, mult in (("backbone", 1.0), ("decode_head", float(head_lr_mult))):
            for pname, param in getattr(self, part).named_parameters():
                if not param.requires_grad:
                    continue
                exempt = (
                    id(param) in no_decay
                    or pname.endswith("bias")
                    or any(key in pname for key in _NO_DECAY_NAMES)
                )
                key = f"{part}.{'no_decay' if exempt else 'decay'}"
                group = groups.setdefault(key, dict(
                    params=[], lr=lr * mult, weight_decay=0.0 if exempt else weight_decay, lr_mult=mult, name=key,
                ))
                group["params"].append(param)
        return list(groups.values())
