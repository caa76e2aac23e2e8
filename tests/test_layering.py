"""Layering: a lower room never imports a higher one, no import circle exists in c2s/, and the toy world
(c2s/world, the stand-ins for real inputs) is imported by no production package.

Static checks read every ``import`` in c2s/ with ``ast`` (module level and inside functions, relative
imports resolved); dynamic ones import or run code in a fresh interpreter and list what got loaded.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import c2s

PACKAGE = Path(c2s.__file__).parent

PRODUCTION = ("data", "teacher", "student", "method", "train", "sweep", "inputs.py", "plugins.py", "errors.py")
# package (relative to c2s/) -> module prefixes none of its files may import
FORBIDDEN = {
    # The token cache's build checks its Ray placement with c2s.train's placement code (cluster, placement,
    # resolve), but never reaches the trainer, its loop or its pipeline.
    "teacher": ("c2s.train.trainer", "c2s.train.loop", "c2s.train.pipeline", "c2s.sweep", "c2s.world"),
    "data": ("c2s.train", "c2s.teacher", "c2s.sweep", "c2s.world"),
    "method": ("c2s.train", "c2s.teacher", "c2s.sweep", "ray", "c2s.world"),
    "student": ("c2s.train", "c2s.teacher", "c2s.sweep", "c2s.world"),
    "train": ("c2s.sweep", "c2s.world"),
    "sweep": ("c2s.world",),
    "inputs.py": ("c2s.train", "c2s.sweep", "c2s.world"),
    "plugins.py": ("c2s",),
    "errors.py": ("c2s",),
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


def test_no_room_imports_the_layers_above_it_and_no_production_package_imports_the_toy_world():
    assert set(PRODUCTION) <= set(FORBIDDEN)
    assert all("c2s.world" in FORBIDDEN[p] or FORBIDDEN[p] == ("c2s",) for p in PRODUCTION)
    bad = [v for package, forbidden in FORBIDDEN.items() for v in violations(package, forbidden)]
    assert bad == []


def module_graph(package: Path) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` (module and function level, relative imports
    resolved; ``from a import b`` counts ``a.b`` when that is a module, else ``a``)."""
    root = package.parent
    files = {}
    for f in package.rglob("*.py"):
        parts = list(f.relative_to(root).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f

    def owner(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, f in files.items():
        here = mod.split(".") if f.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[: len(here) - node.level + 1] + [node.module or ""]).strip(".") \
                    if node.level else node.module
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in files]
                names = subs if len(subs) == len(node.names) else [base, *subs]
            else:
                continue
            graph[mod] |= {t for n in names if (t := owner(n)) is not None and t != mod}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import each other, directly or round a loop (Tarjan's strongly
    connected components with more than one member)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_circles_finds_a_planted_circle_through_a_function_level_import(tmp_path):
    pkg = tmp_path / "c2s"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "data" / "catalog.py").write_text("from .custom import load\n")
    (pkg / "data" / "custom.py").write_text("def load():\n    from c2s.data.catalog import DATASETS\n")
    (pkg / "data" / "labels.py").write_text("from c2s.data import catalog\n")
    assert circles(module_graph(pkg)) == [["c2s.data.catalog", "c2s.data.custom"]]


def test_no_import_circle_anywhere_in_c2s():
    assert circles(module_graph(PACKAGE)) == []


def test_a_job_on_real_inputs_never_enters_the_toy_world(tmp_path):
    """Resolving a real dataset's inputs (a VOC root, an open_clip file, a backbone file) loads nothing from
    c2s/world; the toy world's own config does (its provider), which shows the check can see it."""
    code = f"""
import sys
from pathlib import Path
from c2s.config import load_config
from c2s.inputs import resolve_inputs
root = Path({str(tmp_path)!r})
(root / "clip.pt").write_bytes(b"weights")
(root / "mit_b4.pth").write_bytes(b"weights")
cfg = load_config("voc12_segformer_b4", [f"data.root={{root}}", f"teacher.checkpoint={{root}}/clip.pt",
                                         f"model.pretrained={{root}}/mit_b4.pth", f"cache_root={{root}}/cache"])
resolve_inputs(cfg)
print(sorted(m for m in sys.modules if m.startswith("c2s.world")))
toy = load_config("toy_tiny", [f"cache_root={{root}}/cache", "model.pretrained=null"])
resolve_inputs(toy)
print(sorted(m for m in sys.modules if m.startswith("c2s.world")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    real, toy = out.stdout.splitlines()
    assert real == "[]"
    assert "c2s.world.providers" in toy and "c2s.world.generate" in toy


def test_importing_the_token_cache_loads_no_trainer_loop_or_pipeline():
    code = ("import sys, c2s.teacher.cache, c2s.data.labels, c2s.raystart\n"
            "print(sorted(m for m in sys.modules if m.startswith(('c2s.train.trainer', 'c2s.train.loop', "
            "'c2s.train.pipeline', 'c2s.sweep'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
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
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.split() == ["[]", "[]"]
