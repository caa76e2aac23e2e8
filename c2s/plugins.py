"""Where c2s finds what other packages add to its registries: Python entry points.

Three registries hold c2s's built-in entries and take more from installed packages:

=====================  ==================================================  ==============================
entry-point group      what each entry point names                         read by
=====================  ==================================================  ==============================
``c2s.datasets``       a sequence of ``DatasetInfo``                        ``c2s.data.catalog``
``c2s.teacher_archs``  a mapping: open_clip architecture name -> config    ``c2s.teacher.archs``
``c2s.providers``      a mapping: input name -> function (see c2s/inputs)  ``c2s.inputs``
=====================  ==================================================  ==============================

A registry reads its group the first time it is asked for a name it does not hold. The toy world
(``c2s/world``) registers itself this way in ``pyproject.toml``, so nothing on the production path imports
it; a user's package can add a dataset, an architecture or an input provider (``s3:``, ``hf-hub:``) the
same way, as pytest plugins do.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import Any


@functools.cache
def load(group: str) -> tuple[tuple[str, Any], ...]:
    """``(entry point name, loaded object)`` for every entry point of ``group``, in name order (cached)."""
    found = sorted(entry_points(group=group), key=lambda ep: ep.name)
    return tuple((ep.name, ep.load()) for ep in found)


def none_installed_hint(group: str) -> str:
    """For an error about a name nobody registered: says so when the group is empty, since c2s run from a
    source tree without ``pip install`` has no entry points, not even its own toy world's."""
    if load(group):
        return ""
    return (f" (no installed package registers {group} entries: c2s's own toy world registers through "
            "c2s's pyproject.toml, so install c2s with `pip install -e .`)")
