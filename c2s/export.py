"""``c2s export``: the student plus its classifier as one ONNX or TorchScript file, for deployment without c2s,
Ray, mmseg or CLIP's vision tower.

    c2s export RUN --format onnx --out student.onnx                     # (pixels, text) -> logits
    c2s export RUN --format torchscript --out student.pt --classes "cat,dog,red cross"   # pixels -> logits

The graph is :class:`c2s.infer.OpenVocabularyModel` (whole-image inference, c2s/infer.py's path):
``pixels`` float32 ``(B, 3, H, W)`` RGB in 0..255, ``text`` float32 ``(N, D)`` L2-normalised text embeddings
(the run's teacher's text tower and templates, e.g. ``Segmenter.text_embeddings``) -> ``logits``
``(B, N, H, W)``; argmax over N is the class map. With ``--classes`` / ``--dataset`` the embeddings of that
list are baked in and ``pixels`` is the only input. Batch, height, width and N are dynamic where the
architecture allows (``--fixed-size`` keeps H, W at ``--size``). Sliding windows, if the run evaluates with
them, are the caller's loop over crops.

ONNX: torch 2.14's ``torch.export``-based exporter (``torch.onnx.export(dynamo=True)``, needs onnxscript);
the TorchScript-based one (``dynamo=False``) bakes the attention reshapes of MiT at the traced size (onnxruntime
fails at any other size), so it is not used. TorchScript: ``torch.jit.trace``.

Every export is checked before the command returns: the file is loaded (onnxruntime / ``torch.jit.load``) and
run on the example input and on a second input of another batch, size and class count; the max abs difference
to eager PyTorch must be <= ``--tolerance`` (default 1e-4). ``FILE.json`` beside it records the inputs, the
classes baked in, the text encoder to use and the measured differences; the last printed line is that JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMATS = ("onnx", "torchscript")
MIN_SIDE = 64  # torch.export's guards for MiT at 96x96: H >= 33 and W >= 61 (four stride-2 stages)
MAX_SIDE = 4096


class ExportError(RuntimeError):
    """An export failed or its parity check did not hold; the message says which and by how much."""


def build_graph(student: torch.nn.Module, cfg: Any, text: torch.Tensor | None) -> torch.nn.Module:
    """The module that is exported: open vocabulary, or with ``text`` baked in."""
    from c2s.infer import FixedVocabularyModel, OpenVocabularyModel

    alpha, form = float(cfg["loss"]["alpha"]), str(cfg["loss"]["seen_logits"])
    if text is None:
        return OpenVocabularyModel(student, alpha, form).eval()
    return FixedVocabularyModel(student, alpha, form, text).eval()


def example_inputs(size: tuple[int, int], embed_dim: int, *, batch: int = 2, classes: int | None = 5,
                   seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Seeded ``pixels`` (B, 3, H, W) in 0..255 and, when ``classes`` is set, unit ``text`` (N, D)."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(batch, 3, *size, generator=g) * 255
    if classes is None:
        return (pixels,)
    return pixels, torch.nn.functional.normalize(torch.randn(classes, embed_dim, generator=g), dim=-1)


def export_onnx(graph: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, fixed_size: bool) -> None:
    from torch.export import Dim

    batch = Dim("batch", min=1, max=1024)
    pixel_dims: dict[int, Any] = {0: batch}
    if not fixed_size:
        pixel_dims.update({2: Dim("height", min=MIN_SIDE, max=MAX_SIDE), 3: Dim("width", min=MIN_SIDE, max=MAX_SIDE)})
    names = ["pixels"]
    dynamic: dict[str, Any] = {"pixels": pixel_dims}
    if len(inputs) == 2:
        names.append("text")
        dynamic["text"] = {0: Dim("classes", min=1, max=65536)}
    try:
        torch.onnx.export(graph, inputs, str(path), dynamo=True, input_names=names, output_names=["logits"],
                          dynamic_shapes=dynamic, external_data=False, verbose=False)
    except Exception as err:  # torch.export's errors are many classes; name the likely fix, keep the cause
        hint = "" if fixed_size else " (if the image size cannot be dynamic for this student, pass --fixed-size)"
        raise ExportError(f"ONNX export of {type(graph).__name__} failed{hint}: {type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}") from err


def export_torchscript(graph: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> None:
    import warnings

    # TracerWarnings flag Python-side checks (shape asserts) recorded as constants; whether the trace holds
    # at other batch sizes, image sizes and class counts is what export()'s second parity input checks.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(graph, inputs, check_trace=False)
    traced.save(str(path))


def run_exported(path: Path, fmt: str, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    """Logits of the exported file on ``inputs`` (onnxruntime on CPU, or ``torch.jit.load``)."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}
        return session.run(None, feed)[0]
    module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return module(*inputs).numpy()


def parity(graph: torch.nn.Module, path: Path, fmt: str, inputs: tuple[torch.Tensor, ...]) -> float:
    """Max abs difference of the exported file's logits from eager PyTorch's on ``inputs``."""
    with torch.no_grad():
        eager = graph(*inputs).numpy()
    got = run_exported(path, fmt, inputs)
    if got.shape != eager.shape:
        raise ExportError(f"{path}: logits of shape {got.shape}, eager PyTorch gives {eager.shape}")
    return float(np.abs(got - eager).max())


def export(student: torch.nn.Module, cfg: Any, fmt: str, out: Path, *, text: torch.Tensor | None = None,
           classes: list[str] | None = None, size: tuple[int, int] | None = None, fixed_size: bool = False, tolerance: float = 1e-4) -> dict[str, Any]:
    """Export and check; returns the record written to ``out`` + ``.json`` (``checks``: each input's shapes
    and max abs difference). Raises :class:`ExportError` when a difference exceeds ``tolerance``.
    ``text`` (N, D) bakes a class list in; ``classes`` are its names (recorded in the JSON)."""
    if text is not None and (classes is None or len(classes) != text.shape[0]):
        raise ValueError(f"baked text embeddings need their {text.shape[0]} class names, got {classes}")
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {fmt!r}")
    student = student.cpu().eval()
    size = tuple(int(v) for v in (size or cfg["evaluation"]["crop_size"]))
    if not fixed_size and min(size) < MIN_SIDE:
        raise ValueError(f"--size {size}: dynamic-size export needs sides >= {MIN_SIDE} (or pass --fixed-size)")
    dim = int(student.embed_dim)
    graph = build_graph(student, cfg, text)
    n_open = None if text is not None else 5
    inputs = example_inputs(size, dim, classes=n_open)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if fmt == "onnx":
        export_onnx(graph, inputs, out, fixed_size)
    else:
        export_torchscript(graph, inputs, out)
    seconds = time.perf_counter() - start
    other = size if fixed_size else (size[0] + 32, max(size[1] - 32, MIN_SIDE))
    second = example_inputs(other, dim, batch=1, classes=None if text is not None else 3, seed=1)
    checks = []
    for sample in (inputs, second):
        diff = parity(graph, out, fmt, sample)
        checks.append({"shapes": [list(t.shape) for t in sample], "max_abs_diff": diff})
        if not diff <= tolerance:
            raise ExportError(f"{out}: exported {fmt} logits differ from eager PyTorch by {diff:.3g} "
                              f"(> --tolerance {tolerance:g}) on inputs {[list(t.shape) for t in sample]}")
    teacher = cfg["teacher"]
    record = {
        "export": fmt, "file": str(out), "export_s": round(seconds, 2), "student": str(cfg["model"]["name"]),
        "inputs": {"pixels": "float32 (B, 3, H, W), RGB 0..255"}
        | ({} if text is not None else {"text": f"float32 (N, {dim}), L2-normalised"}),
        "outputs": {"logits": "float32 (B, N, H, W); argmax over N is the class map"},
        "dynamic": ["batch"] + ([] if fixed_size else ["height", "width"]) + ([] if text is not None else ["classes"]),
        "size": list(size), "min_side": None if fixed_size else MIN_SIDE,
        "classes": list(classes) if text is not None else None,
        "text_encoder": {"arch": teacher["arch"], "checkpoint": teacher.get("checkpoint"),
                         "templates": teacher["templates"]},
        "alpha": float(cfg["loss"]["alpha"]), "form": str(cfg["loss"]["seen_logits"]),
        "evaluation": dict(cfg["evaluation"]), "eval_scale": list(cfg["data"]["eval_scale"]),
        "tolerance": tolerance, "checks": checks, "torch": torch.__version__,
    }
    Path(str(out) + ".json").write_text(json.dumps(record, indent=2, default=list))
    return record


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="c2s export", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory (its newest checkpoint) or checkpoint directory")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, type=Path, help="the file to write (FILE.json goes beside it)")
    names = parser.add_mutually_exclusive_group()
    names.add_argument("--classes", help="bake in these class names (comma list or a file, one per line)")
    names.add_argument("--dataset", help="bake in a catalog dataset's class list")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="example input size (default: the run's evaluation.crop_size)")
    parser.add_argument("--fixed-size", action="store_true", help="keep H, W at --size (batch stays dynamic)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max abs logit difference allowed (1e-4)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the run's config (repeatable)")
    args = parser.parse_args(argv)

    from c2s.predict import parse_classes
    from c2s.segmenter import ClassNameError, Segmenter

    seg = Segmenter.from_run(args.run, device="cpu", overrides=args.overrides)
    text, classes = None, None
    try:
        if args.classes or args.dataset:
            if args.dataset:
                from c2s.data.catalog import get_dataset_info

                classes = list(get_dataset_info(args.dataset).classes)
            else:
                classes = parse_classes(args.classes)
            text = seg.text_embeddings(classes).cpu()
        record = export(seg.student, seg.cfg, args.format, args.out, text=text, classes=classes,
                        size=tuple(args.size) if args.size else None, fixed_size=args.fixed_size,
                        tolerance=args.tolerance)
    except (ClassNameError, ExportError, FileNotFoundError, ValueError) as err:
        print(f"c2s export: error: {err}", file=sys.stderr)
        return 2
    for check in record["checks"]:
        print(f"parity {args.format} inputs {check['shapes']}: max abs diff {check['max_abs_diff']:.3g}", flush=True)
    print(json.dumps(record, default=list))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
