"""`c2s export` (issue 16): the exported toy student + classifier gives eager PyTorch's logits (max abs
difference <= 1e-4, fp32) at other batch sizes, image sizes and class counts, and runs in a process that
cannot import c2s, Ray, mmseg or open_clip."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from toy_run import make_toy_run

from c2s.export import ExportError, build_graph, export, run_exported
from c2s.segmenter import Segmenter

NAMES = ["red circle", "blue square", "green triangle", "zebra"]

# torch 2.14.1 deprecates TorchScript (torch.jit.trace / trace_method / load), as docs/predict.md tells the user
# of --format torchscript, who still sees it. Here it is known: filtered, so that a new warning stands out.
pytestmark = pytest.mark.filterwarnings("ignore:`torch\\.jit\\.(trace|trace_method|load)` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("export16")
    seg = Segmenter.from_run(make_toy_run(root / "run"), overrides=[f"cache_root={root / 'cache'}"])
    return root, seg


@pytest.fixture(scope="module")
def onnx_file(toy):
    """The open-vocabulary ONNX export (torch.export-based exporter: ~15-45 s on the 2-core machine)."""
    root, seg = toy
    path = root / "student.onnx"
    record = export(seg.student, seg.cfg, "onnx", path)
    return path, record


def _pixels(batch: int, h: int, w: int, seed: int = 5) -> torch.Tensor:
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 255


def test_torchscript_with_baked_classes_matches_eager_and_the_predict_path(toy):
    from c2s.infer import predict

    root, seg = toy
    text = seg.text_embeddings(NAMES)
    record = export(seg.student, seg.cfg, "torchscript", root / "fixed.pt", text=text, classes=NAMES)
    assert record["classes"] == NAMES and record["dynamic"] == ["batch", "height", "width"]
    assert [c["shapes"] for c in record["checks"]] == [[[2, 3, 96, 96]], [[1, 3, 128, 64]]]
    assert all(c["max_abs_diff"] <= 1e-4 for c in record["checks"])
    assert json.loads((root / "fixed.pt.json").read_text())["classes"] == NAMES
    # another batch and size than both checks; argmax = c2s predict's map (whole-image at this size)
    pixels = _pixels(3, 80, 112)
    logits = run_exported(root / "fixed.pt", "torchscript", (pixels,))
    graph = build_graph(seg.student, seg.cfg, text)
    with torch.no_grad():
        eager = graph(pixels).numpy()
    assert logits.shape == (3, 4, 80, 112) and np.abs(logits - eager).max() <= 1e-4
    image = pixels[1].permute(1, 2, 0).round().to(torch.uint8).numpy()
    with torch.no_grad():
        ours = graph(torch.from_numpy(image).permute(2, 0, 1)[None].float()).numpy()[0].argmax(0)
    assert np.array_equal(ours, predict(seg.student, image, text, float(seg.cfg.loss.alpha), {"mode": "whole"}))


def test_parity_check_refuses_a_difference_above_tolerance(toy):
    """The check is live: a negative tolerance cannot be met even by an exact (0.0) difference."""
    root, seg = toy
    with pytest.raises(ExportError, match=r"differ from eager PyTorch by 0 \(> --tolerance -1\)"):
        export(seg.student, seg.cfg, "torchscript", root / "bad.pt", tolerance=-1.0)
    with pytest.raises(ValueError, match="dynamic-size export needs sides >= 64"):
        export(seg.student, seg.cfg, "onnx", root / "small.onnx", size=(48, 48))


@pytest.mark.slow  # the torch.export-based ONNX exporter takes 15-45 s for the tiny student on 2 cores
def test_onnx_open_vocabulary_parity_with_dynamic_batch_size_and_classes(toy, onnx_file):
    import onnx

    root, seg = toy
    path, record = onnx_file
    assert record["dynamic"] == ["batch", "height", "width", "classes"]
    assert all(c["max_abs_diff"] <= 1e-4 for c in record["checks"])
    model = onnx.load(str(path))
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert dims["pixels"][1] == 3 and all(isinstance(d, str) for k in (0, 2, 3) for d in [dims["pixels"][k]])
    assert isinstance(dims["text"][0], str) and dims["text"][1] == 64
    graph = build_graph(seg.student, seg.cfg, None)
    for batch, h, w, n in ((3, 80, 112, 7), (1, 160, 64, 1)):
        pixels = _pixels(batch, h, w)
        text = torch.nn.functional.normalize(torch.randn(n, 64, generator=torch.Generator().manual_seed(n)), dim=-1)
        got = run_exported(path, "onnx", (pixels, text))
        with torch.no_grad():
            eager = graph(pixels, text).numpy()
        assert got.shape == (batch, n, h, w) and np.abs(got - eager).max() <= 1e-4


BLOCKER = """
import importlib.abc, sys
BLOCKED = ("c2s", "ray", "mmseg", "mmcv", "mmengine", "open_clip")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked for this test: {name}")
sys.meta_path.insert(0, Block())
"""


@pytest.mark.slow  # shares the ONNX export above
def test_exported_files_run_where_c2s_ray_mmseg_cannot_be_imported(toy, onnx_file, tmp_path):
    root, seg = toy
    path, _ = onnx_file
    pt = root / "open.pt"
    export(seg.student, seg.cfg, "torchscript", pt)
    pixels = _pixels(2, 96, 128)
    text = torch.nn.functional.normalize(torch.randn(3, 64, generator=torch.Generator().manual_seed(3)), dim=-1)
    with torch.no_grad():
        eager = build_graph(seg.student, seg.cfg, None)(pixels, text).numpy()
    np.save(tmp_path / "pixels.npy", pixels.numpy())
    np.save(tmp_path / "text.npy", text.numpy())
    np.save(tmp_path / "eager.npy", eager)
    script = BLOCKER + textwrap.dedent(f"""
        for name in BLOCKED:
            try:
                __import__(name)
            except ImportError:
                pass
            else:
                raise SystemExit(f"{{name}} is importable: the test proves nothing")
        import numpy as np, onnxruntime as ort, torch
        d = {str(tmp_path)!r}
        pixels, text, eager = (np.load(f"{{d}}/{{k}}.npy") for k in ("pixels", "text", "eager"))
        sess = ort.InferenceSession({str(path)!r}, providers=["CPUExecutionProvider"])
        a = sess.run(None, {{"pixels": pixels, "text": text}})[0]
        b = torch.jit.load({str(pt)!r})(torch.from_numpy(pixels), torch.from_numpy(text)).detach().numpy()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print("diffs", float(np.abs(a - eager).max()), float(np.abs(b - eager).max()), "loaded", loaded)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    words = proc.stdout.split()
    onnx_diff, ts_diff = float(words[1]), float(words[2])
    assert onnx_diff <= 1e-4 and ts_diff <= 1e-4
    assert proc.stdout.strip().endswith("loaded []")
