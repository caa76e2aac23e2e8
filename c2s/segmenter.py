"""Open-vocabulary segmentation with a trained student, from Python:

    from c2s import Segmenter
    seg = Segmenter.from_run("runs/toy_c2s", device="cpu")
    out = seg.predict(["street.jpg"], classes=["car", "tree", "red cross"])
    out[0].labels      # (H, W) int64, indices into out[0].classes
    out[0].fractions   # (N,) pixel fraction per class; out[0].scores: mean softmax probability per class

Class names are free text. Their embeddings come from the run's teacher's TEXT tower only (the vision tower
is dropped once the weights are fingerprinted), with the prompt templates the run was trained with
(``teacher.templates``), and are cached on disk by (weights fingerprint, names, templates) in
``c2s.teacher.text``'s cache, the same files training and ``c2s eval`` use. Inference is c2s/infer.py's
(the run's ``evaluation`` section: whole image or sliding windows), at the run's ``data.eval_scale``, with the
logits resized back to each image's own size.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ClassNameError(ValueError):
    """Class names that cannot be used (empty, duplicated); the message names them."""


class ImageReadError(ValueError):
    """An image that cannot be read or decoded; the message names the file."""


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One image's result. ``labels`` (H, W) int64 index ``classes``; ``scores`` (N,) is the mean over pixels
    of the softmax of the logits (the run's ``loss.alpha`` scale); ``fractions`` (N,) the share of pixels
    assigned to each class; ``confidence`` (H, W) float32 the winning class's softmax probability."""

    classes: tuple[str, ...]
    labels: np.ndarray
    scores: np.ndarray
    fractions: np.ndarray
    confidence: np.ndarray
    source: str = ""


def check_class_names(names: Iterable[str]) -> list[str]:
    """Stripped names; raises :class:`ClassNameError` for an empty name or for two names that give the same
    prompt (after ``clean_name``: ``potted_plant`` and ``potted plant`` are one class to CLIP)."""
    from c2s.teacher.text import clean_name

    names = [str(n).strip() for n in names]
    if not names:
        raise ClassNameError("no class names given")
    empty = [i for i, n in enumerate(names) if not clean_name(n)]
    if empty:
        raise ClassNameError(f"class names at positions {empty} (0-based) are empty; got {names}")
    seen: dict[str, str] = {}
    dupes = []
    for n in names:
        key = clean_name(n).lower()
        if key in seen:
            dupes.append(f"{seen[key]!r} and {n!r}")
        seen.setdefault(key, n)
    if dupes:
        raise ClassNameError(f"duplicated class names (same prompt once cleaned): {', '.join(dupes)}")
    return names


def read_image(path: str | Path) -> np.ndarray:
    """uint8 (H, W, 3) RGB; :class:`ImageReadError` naming the file when it is missing or cannot be decoded."""
    from PIL import Image

    from c2s.data.readers import DECODE_ERRORS

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))  # decodes every byte: a truncated file fails here
    except FileNotFoundError as err:
        raise ImageReadError(f"image {path}: no such file") from err
    except DECODE_ERRORS as err:
        raise ImageReadError(f"cannot decode image {path}: {err}") from err


def load_text_encoder(teacher_cfg: Any, device: torch.device | str = "cpu"):
    """The run's teacher with its vision tower dropped: only ``encode_text`` is left to run.

    The weights fingerprint (``Teacher.weights_hash``, the text cache's key) is taken first, over the whole
    model, so the cache files are the ones training and ``c2s eval`` wrote.
    """
    from c2s.teacher.clip import load_teacher

    teacher = load_teacher(teacher_cfg, device=device)
    _ = teacher.weights_hash  # computed (and kept) while every weight is still there
    teacher.model.visual = None
    teacher.visual = None
    return teacher


class Segmenter:
    """A trained student + the teacher's text tower: segments images into any list of class names."""

    def __init__(self, student: torch.nn.Module, cfg: Any, *, device: torch.device | str = "cpu",
                 cache_root: Path | None = None) -> None:
        self.student = student.to(device).eval()
        self.cfg = cfg
        self.device = torch.device(device)
        self.alpha = float(cfg["loss"]["alpha"])
        self.form = str(cfg["loss"]["seen_logits"])
        self.eval_cfg = dict(cfg["evaluation"])
        self.eval_scale = tuple(cfg["data"]["eval_scale"])
        self.templates = str(cfg["teacher"]["templates"])
        self.cache_root = cache_root
        self._text_encoder: Any = None

    @classmethod
    def from_run(cls, path: str | Path, device: torch.device | str = "cpu",
                 overrides: Sequence[str] = ()) -> Segmenter:
        """From a run directory (its newest checkpoint) or a checkpoint directory; ``overrides`` are dotted
        ``key=value`` strings applied to the run's config (e.g. ``teacher.checkpoint=/path/ViT-B-16.pt``)."""
        from c2s.config import apply_overrides
        from c2s.evaluate import find_checkpoint, load_student_from_checkpoint
        from c2s.paths import cache_root

        student, cfg, _ = load_student_from_checkpoint(find_checkpoint(Path(path)), str(device))
        cfg = apply_overrides(cfg, list(overrides))
        return cls(student, cfg, device=device, cache_root=cache_root(cfg))

    # ---- text ------------------------------------------------------------------------------------
    def text_embeddings(self, classes: Sequence[str], *, disk_cache: bool = True) -> torch.Tensor:
        """``(N, D)`` float32 L2-normalised embeddings of ``classes`` (checked by :func:`check_class_names`);
        ``disk_cache=False`` neither reads nor writes the cache file (c2s serve: one file per class list a
        client invents would grow without bound)."""
        from c2s.teacher.text import text_embeddings

        names = check_class_names(classes)
        if self._text_encoder is None:
            self._check_teacher_file()
            self._text_encoder = load_text_encoder(self.cfg["teacher"], device=self.device)
        text = text_embeddings(self._text_encoder, names, self.templates, self.cache_root if disk_cache else None)
        if text.shape[1] != self.student.embed_dim:
            raise ValueError(f"the teacher {self.cfg['teacher']['arch']} embeds text in {text.shape[1]} dims but "
                             f"the student projects to model.embed_dim = {self.student.embed_dim}")
        return text

    def _check_teacher_file(self) -> None:
        ckpt = self.cfg["teacher"].get("checkpoint")
        if ckpt and not Path(str(ckpt)).expanduser().is_file():
            raise FileNotFoundError(
                f"the run's teacher.checkpoint = {ckpt!r} does not exist here; the class names' embeddings need "
                "that teacher's text tower: pass the file with teacher.checkpoint=/path/to/weights "
                "(c2s predict --set teacher.checkpoint=...)")

    # ---- images ----------------------------------------------------------------------------------
    def predict(self, images: Sequence[str | Path | np.ndarray], classes: Sequence[str], *, batch_size: int = 4,
                progress: Callable[[int, int], None] | None = None) -> list[Prediction]:
        """One :class:`Prediction` per image (paths or uint8 ``(H, W, 3)`` arrays), in order.

        Images resized to the same inference size are batched together (``batch_size`` at a time). A path
        that cannot be decoded raises :class:`ImageReadError` naming it (``c2s predict`` skips such files).
        """
        names = check_class_names(classes)
        text = self.text_embeddings(names)
        return self.predict_with_text(images, names, text, batch_size=batch_size, progress=progress)

    def predict_with_text(self, images: Sequence[str | Path | np.ndarray], classes: Sequence[str],
                          text: torch.Tensor, *, batch_size: int = 4,
                          progress: Callable[[int, int], None] | None = None) -> list[Prediction]:
        """:meth:`predict` with text embeddings already computed (``(len(classes), D)``)."""
        from c2s.data.transforms import rescale_size, resize_pair
        from c2s.infer import image_logits

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if text.shape[0] != len(classes):
            raise ValueError(f"{len(classes)} class names but {text.shape[0]} text embeddings")
        arrays = [read_image(im) if isinstance(im, str | Path) else _check_array(im, i) for i, im in enumerate(images)]
        sources = [str(im) if isinstance(im, str | Path) else f"<array {i}>" for i, im in enumerate(images)]
        resized = [resize_pair(a, None, rescale_size(a.shape[0], a.shape[1], self.eval_scale))[0] for a in arrays]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, r in enumerate(resized):
            groups.setdefault(r.shape[:2], []).append(i)
        results: dict[int, Prediction] = {}
        for members in groups.values():
            for start in range(0, len(members), batch_size):
                chunk = members[start:start + batch_size]
                logits = image_logits(self.student, np.stack([resized[i] for i in chunk]), text, self.alpha,
                                      self.eval_cfg, self.device, self.form)
                for row, i in enumerate(chunk):
                    results[i] = _summarise(logits[row:row + 1], arrays[i].shape[:2], tuple(classes), sources[i])
                if progress is not None:
                    progress(len(results), len(arrays))
        return [results[i] for i in range(len(arrays))]


def _check_array(image: np.ndarray, index: int) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageReadError(f"image {index}: expected a uint8 (H, W, 3) RGB array, got {image.dtype} "
                             f"{image.shape}")
    return image


@torch.no_grad()
def _summarise(logits: torch.Tensor, size: tuple[int, int], classes: tuple[str, ...], source: str) -> Prediction:
    """(1, N, h, w) logits at inference size -> the image's :class:`Prediction` at its own size."""
    import torch.nn.functional as F

    if tuple(logits.shape[-2:]) != tuple(size):  # back to the original size before any argmax (mmseg ori_shape)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    probs = logits[0].softmax(0)
    confidence, labels = probs.max(0)
    n = len(classes)
    fractions = torch.bincount(labels.flatten(), minlength=n).double() / labels.numel()
    return Prediction(classes=classes, labels=labels.cpu().numpy().astype(np.int64),
                      scores=probs.flatten(1).mean(1).cpu().numpy(), fractions=fractions.cpu().numpy(),
                      confidence=confidence.cpu().numpy().astype(np.float32), source=source)


def expand_images(items: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Files, folders (their image files, sorted, not recursive) and globs -> (image paths, problems).

    A pattern or path that matches nothing is a problem named in the second list; the others still count.
    """
    import glob

    found: list[Path] = []
    problems: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                problems.append(f"{item}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(item):
            files = sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
            if not files:
                problems.append(f"{item}: pattern matches no files")
            found.extend(files)
        else:
            problems.append(f"{item}: no such file or folder")
    return found, problems


def progress_printer(prefix: str, every_s: float = 5.0) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback printing ``done/total`` and images/s at most every ``every_s``."""
    start = last = time.perf_counter()

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= every_s or done == total:
            last = now
            print(f"{prefix} {done}/{total} images, {done / max(now - start, 1e-9):.1f} img/s", flush=True)

    return report
