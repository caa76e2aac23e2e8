"""c2s: CLIP-to-Seg distillation on Ray. See README.md."""

__version__ = "0.1.0"
