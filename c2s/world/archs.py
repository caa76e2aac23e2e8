"""The toy world's open_clip architectures (registered with c2s through the "c2s.teacher_archs" entry point).

Plain data, no open_clip import: ``c2s.teacher.archs.register()`` copies them into open_clip's model-config
table, so ``open_clip.create_model(name)`` builds them like any shipped architecture. Sizes are chosen for
2-core CPU machines.
"""

from __future__ import annotations

TOY_CLIP_ARCH = "c2s-toy-vit"  # the architecture `toy:clip` pretrains (c2s/world/clip.py) by default
# Every architecture `toy:clip` can pretrain (teacher.arch), the default first.
TOY_CLIP_ARCHS = (TOY_CLIP_ARCH, "c2s-toy-vit-48")
# The toy world's CLIP: 64-px input, patch 8 -> 8x8 grid; pretrained by c2s/world/clip.py.
# Vision width 96 (not 192), text 2 layers: pretraining must fit 10 CPU minutes on 2 shared cores.
# (pool_type "avg" was tried: MaskCLIP-variant dense tokens got worse, 0.15 vs 0.21 pixel accuracy.)
_TOY_VIT: dict = {
    "embed_dim": 256,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 96, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 2},
}
ARCHS: dict[str, dict] = {
    TOY_CLIP_ARCH: _TOY_VIT,
    # The same tower at 48-px input (6x6 grid): its pretraining takes two thirds of the CPU-seconds at the same
    # zero-shot accuracy. Not the default: docs/results/ was measured with the 64-px one (docs/demo.md).
    "c2s-toy-vit-48": {**_TOY_VIT, "vision_cfg": {**_TOY_VIT["vision_cfg"], "image_size": 48}},
    # Unit tests: random weights, as small as a ViT gets while keeping patch 8.
    "c2s-test-vit": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
    },
}
