"""A checkpoint directory of the smallest toy student (toy_tiny: tiny SegFormer, D = 64, the random-weight
test CLIP), written without Ray or training: what predict/export/serve tests load like a real run's
checkpoint. It lives in c2s/world/toyrun.py (``c2s bench serve`` serves one too)."""

from c2s.world.toyrun import make_toy_run

__all__ = ["make_toy_run"]
