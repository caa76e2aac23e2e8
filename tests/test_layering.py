"""Layering (issue 15.7): the token cache is a stage of the training pipeline and never imports the trainer.

Two checks: a static one (every ``import`` in the listed packages, at module level or inside a function,
read with ``ast``) and a dynamic one (importing the token cache in a fresh interpreter loads no trainer).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import c2s

PACKAGE = Path(c2s.__file__).parent

# package (relative to c2s/) -> module prefixes none of its files may import
FORBIDDEN = {
    "teacher": ("c2s.train.trainer", "c2s.train.loop", "c2s.train.pipeline", "c2s.sweep"),
    "data": ("c2s.train", "c2s.teacher", "c2s.sweep"),
    "method": ("c2s.train", "c2s.teacher", "c2s.sweep", "ray"),
    "raystart.py": ("c2s",),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every import statement in ``path`` (``from a.b import c`` gives ``a.b.c`` and
    ``a.b``, so importing a submodule by name is caught too)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    target = PACKAGE / package
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    assert files, f"no Python files under {target}"
    bad = []
    for f in files:
        for line, module in imported_modules(f):
            if any(module == p or module.startswith(p + ".") for p in forbidden):
                bad.append(f"{f.relative_to(PACKAGE.parent)}:{line} imports {module}")
    return bad


def test_imported_modules_sees_function_level_and_from_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import os\n\ndef f():\n    from c2s.train.trainer import init_ray\n    from c2s.train import loop\n")
    mods = [m for _, m in imported_modules(src)]
    assert mods == ["os", "c2s.train.trainer", "c2s.train.trainer.init_ray", "c2s.train", "c2s.train.loop"]
    # so a planted `from c2s.train.trainer import init_ray` in c2s/teacher would be reported
    assert violations.__name__ and any(m.startswith("c2s.train.trainer") for m in mods)


def test_teacher_data_and_method_never_import_the_layers_above_them():
    bad = [v for package, forbidden in FORBIDDEN.items() for v in violations(package, forbidden)]
    assert bad == []


def test_importing_the_token_cache_loads_no_trainer_loop_or_pipeline():
    code = ("import sys, c2s.teacher.cache, c2s.data.labels, c2s.raystart\n"
            "print(sorted(m for m in sys.modules if m.startswith(('c2s.train.trainer', 'c2s.train.loop', "
            "'c2s.train.pipeline', 'c2s.sweep'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_ray_start_up_lives_in_one_place():
    """Only c2s/raystart.py calls ``ray.init`` (the trainer, the token cache and the sweep call init_ray)."""
    callers = []
    for f in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "init"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "ray"):
                callers.append(str(f.relative_to(PACKAGE.parent)))
    assert sorted(set(callers)) == ["c2s/raystart.py"]


def test_the_training_worker_imports_no_clip():
    """The per-worker loop never runs CLIP, so a training worker does not import open_clip (measured: ~2.7 s
    of every worker start here); it reads the teacher's call counters through c2s.teacher.calls. Ray Train's
    controller, which plans the teacher stage, names TeacherActor without loading CLIP either: only the
    actor imports c2s.teacher.clip."""
    code = ("import sys, c2s.train.loop, c2s.method.objective, c2s.student, c2s.evaluate\n"
            "print(sorted(m for m in ('open_clip', 'c2s.teacher.tokens', 'c2s.teacher.clip') if m in sys.modules))\n"
            "import c2s.train.pipeline, c2s.teacher.tokens\n"
            "print(sorted(m for m in ('open_clip', 'c2s.teacher.clip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["[]", "[]"]
