"""open_clip architectures that c2s adds to open_clip's own, from installed packages (no hub, no files).

Packages register a mapping ``name -> open_clip model config`` under the "c2s.teacher_archs" entry point
(c2s/plugins.py); the toy world's CLIP and the tests' tiny CLIP come from c2s/world/archs.py that way.
``register()`` adds them to open_clip's model-config table so ``open_clip.create_model(name)`` builds them
like any shipped architecture.
"""

from __future__ import annotations

import copy
from typing import Any

from c2s import plugins

PLUGIN_GROUP = "c2s.teacher_archs"


def registered() -> dict[str, dict[str, Any]]:
    """Every architecture packages register: ``{name: open_clip model config}``."""
    found: dict[str, dict[str, Any]] = {}
    for source, archs in plugins.load(PLUGIN_GROUP):
        for name, cfg in archs.items():
            if name in found:
                raise ValueError(f"entry point {PLUGIN_GROUP}:{source} registers teacher arch {name!r} twice")
            found[name] = cfg
    return found


def register() -> None:
    """Make the registered architectures known to open_clip (idempotent)."""
    from open_clip import factory

    for name, cfg in registered().items():
        if name not in factory._MODEL_CONFIGS:
            factory._MODEL_CONFIGS[name] = copy.deepcopy(cfg)


def is_known(name: str) -> bool:
    import open_clip

    register()
    return name in open_clip.list_models()
