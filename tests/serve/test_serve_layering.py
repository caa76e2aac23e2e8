"""Where Ray lives in serving: only c2s/serve/app.py and c2s/serve/run.py import it (the request checks, the
engine, the settings and `c2s bench serve` run and are tested without it), and no serving file reaches the
toy world except the bench, which serves a toy run when given none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_layering import imported_modules  # the package-wide import reader (tests/test_layering.py)

import c2s

PACKAGE = Path(c2s.__file__).parent
WITHOUT_RAY = ("serve/__init__.py", "serve/settings.py", "serve/inputs.py", "serve/engine.py", "bench/serve.py")


def test_ray_and_the_web_framework_only_in_app_and_run():
    bad = [f"c2s/{rel}:{line} imports {module}" for rel in WITHOUT_RAY
           for line, module in imported_modules(PACKAGE / rel)
           if module.split(".")[0] in ("ray", "fastapi", "starlette")]
    assert bad == []
    world = [f"{path.relative_to(PACKAGE)}:{line} imports {module}" for path in sorted((PACKAGE / "serve").glob("*.py"))
             for line, module in imported_modules(path) if module.startswith("c2s.world")]
    assert world == []


def test_importing_the_engine_and_the_bench_loads_no_ray():
    code = ("import sys, c2s.serve.engine, c2s.serve.inputs, c2s.bench.serve, c2s.serve.run; "
            "print(sorted(m for m in ('ray', 'fastapi', 'starlette') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
