"""c2s: CLIP-to-Seg distillation on Ray. See README.md."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so `import c2s` stays light (no torch, open_clip or mmseg until a Segmenter is asked for).
    if name == "Segmenter":
        from c2s.segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'c2s' has no attribute {name!r}")
