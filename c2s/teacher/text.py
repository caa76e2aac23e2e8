"""Class names -> L2-normalised CLIP text embeddings, with a prompt ensemble and a disk cache.

    A_s = text_embeddings(teacher, seen_names, "ensemble", cache_root)   # (N_s, D) float32

Training code passes SEEN names only (inductive rule); unseen names enter at evaluation. The cache file
is keyed by (architecture, weights hash, names, template strings) and written atomically.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

from c2s.paths import atomic_path
from c2s.teacher.clip import Teacher

SINGLE_TEMPLATE = "a photo of a {}."


def template_strings(templates: str) -> list[str]:
    """``single`` -> ["a photo of a {}."]; ``ensemble`` -> CLIP's 80 ImageNet prompts (shipped by open_clip)."""
    if templates == "single":
        return [SINGLE_TEMPLATE]
    if templates == "ensemble":
        return [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    raise ValueError(f"teacher.templates={templates!r}: expected 'single' or 'ensemble'")


def clean_name(name: str) -> str:
    """``potted_plant`` / ``wall-concrete`` -> ``potted plant`` / ``wall concrete`` (method-notes.md)."""
    return " ".join(name.replace("_", " ").replace("-", " ").split())


def cache_file(teacher: Teacher, names: Sequence[str], templates: str, cache_root: Path) -> Path:
    key = json.dumps({"arch": teacher.arch, "weights": teacher.weights_hash, "names": list(names),
                      "templates": template_strings(templates)}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(cache_root) / "text" / f"{teacher.arch}-{templates}-{digest}.npy"


def text_embeddings(teacher: Teacher, names: Sequence[str], templates: str = "single",
                    cache_root: Path | None = None) -> torch.Tensor:
    """(N,) class names -> (N, D) float32 L2-normalised embeddings on ``teacher.device``.

    Ensemble: each prompt's embedding is normalised, averaged over templates, and re-normalised.
    With ``cache_root`` the result is read from / written to ``<cache_root>/text/`` (a hit skips CLIP).
    """
    names = [str(n) for n in names]
    if not names:
        return torch.zeros(0, teacher.embed_dim, device=teacher.device)
    prompts_per_class = template_strings(templates)
    path = cache_file(teacher, names, templates, cache_root) if cache_root is not None else None
    if path is not None and path.is_file():
        return torch.from_numpy(np.load(path)).to(teacher.device)
    prompts = [t.format(clean_name(n)) for n in names for t in prompts_per_class]
    emb = teacher.encode_text(prompts).reshape(len(names), len(prompts_per_class), -1)
    out = F.normalize(emb.mean(dim=1), dim=-1).float()
    if path is not None:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, out.cpu().numpy())
    return out
