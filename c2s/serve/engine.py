"""What one replica computes, without Ray: a :class:`~c2s.segmenter.Segmenter`, its text embeddings cached per
class list, a batch of images run together, and the answers (JSON, label-map PNG, overlay PNG).

    engine = Engine(ServeSettings(run="runs/toy_c2s"))
    outcomes = engine.run([Job(image, ("cat", "dog")), Job(other, ("cat", "dog"))])   # one forward pass

Requests of one batch that share a class list share a forward pass (images the run's ``data.eval_scale``
resizes to one size are stacked: c2s.segmenter.Segmenter.predict_with_text); another class list is another
pass. A failure is confined to the images of its pass: the others still get their answers.
"""

from __future__ import annotations

import base64
import io
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from c2s.segmenter import Prediction, Segmenter
from c2s.serve.settings import ServeSettings

TEXT_CACHE_LISTS = 64  # class lists whose embeddings a replica keeps in memory (least recently used dropped)


@dataclass(frozen=True)
class Job:
    """One image (uint8 (H, W, 3)) to segment into ``classes``."""

    image: np.ndarray
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    """A job's prediction, or the error that stopped its pass; ``batch``: how many jobs ran in its batch."""

    prediction: Prediction | None
    error: str | None
    batch: int


class BatchCap:
    """How many requests the next batch waits for (for at most ``batch_wait_s``): the most that were inside
    the replica at once (entered, not yet answered) over the last ``window_s``, at most ``limit``. A lone
    client's request thus runs at once instead of waiting for company that is not coming, while under load a
    batch waits for as many requests as the clients keep in flight."""

    def __init__(self, limit: int, window_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self.inside = 0
        self.seen: deque[tuple[float, int]] = deque()  # (time, requests inside) at each arrival

    def enter(self) -> None:
        self.inside += 1
        self.seen.append((self.clock(), self.inside))

    def leave(self) -> None:
        self.inside -= 1

    def size(self) -> int:
        old = self.clock() - self.window_s
        while self.seen and self.seen[0][0] < old:
            self.seen.popleft()
        return max(1, min(self.limit, max((n for _, n in self.seen), default=1)))


class Engine:
    """The run's student and text tower on one device; :meth:`run` is called from one thread at a time."""

    def __init__(self, settings: ServeSettings, device: str | None = None) -> None:
        from c2s.data.catalog import get_dataset_info
        from c2s.evaluate import find_checkpoint

        self.settings = settings
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.device = device or ("cuda" if settings.num_gpus > 0 else "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"num_gpus={settings.num_gpus} asks for a GPU but torch sees no CUDA device here")
        self.checkpoint = find_checkpoint(settings.run)
        self.segmenter = Segmenter.from_run(self.checkpoint, device=self.device, overrides=settings.overrides)
        cfg = self.segmenter.cfg
        self.dataset = str(cfg["data"]["dataset"])
        self.default_classes = tuple(get_dataset_info(self.dataset).classes)
        self._texts: OrderedDict[tuple[str, ...], torch.Tensor] = OrderedDict()
        self.text(self.default_classes)  # loads the text tower now: a missing teacher file fails the start

    def text(self, classes: tuple[str, ...]) -> torch.Tensor:
        """``(N, D)`` embeddings, from memory when this list was seen lately; only the default list uses the
        disk cache (a client's invented lists would grow it without bound)."""
        if classes in self._texts:
            self._texts.move_to_end(classes)
            return self._texts[classes]
        text = self.segmenter.text_embeddings(classes, disk_cache=classes == self.default_classes)
        self._texts[classes] = text
        while len(self._texts) > TEXT_CACHE_LISTS:
            self._texts.popitem(last=False)
        return text

    @torch.inference_mode()
    def run(self, jobs: Sequence[Job]) -> list[Outcome]:
        """One :class:`Outcome` per job, in order; jobs with the same class list run as one batch."""
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job.classes, []).append(i)
        outcomes: list[Outcome | None] = [None] * len(jobs)
        for classes, members in groups.items():
            try:
                preds = self.segmenter.predict_with_text([jobs[i].image for i in members], classes,
                                                         self.text(classes), batch_size=len(members))
                for i, pred in zip(members, preds):
                    outcomes[i] = Outcome(pred, None, len(jobs))
            except Exception as err:  # noqa: BLE001 - confined to this pass; the replica goes on
                for i in members:
                    outcomes[i] = Outcome(None, f"{type(err).__name__}: {err}", len(jobs))
        return [o for o in outcomes if o is not None]

    def info(self) -> dict[str, Any]:
        s = self.settings
        model = self.segmenter.cfg["model"]
        return {
            "run": s.run, "checkpoint": str(self.checkpoint), "device": self.device,
            "replica": {"pid": os.getpid(), "started": self.started},
            "student": {"name": model.get("name"), "embed_dim": int(self.segmenter.student.embed_dim)},
            "dataset": self.dataset, "classes": list(self.default_classes), "templates": self.segmenter.templates,
            "eval_scale": list(self.segmenter.eval_scale), "evaluation_mode": self.segmenter.eval_cfg.get("mode"),
            "batching": {"max_batch_size": s.max_batch_size, "batch_wait_s": s.batch_wait_s},
            "limits": {"max_bytes": s.max_bytes, "max_pixels": s.max_pixels, "max_scores": s.max_scores,
                       "max_classes": s.max_classes, "max_name_chars": s.max_name_chars, "min_side": s.min_side},
        }


def colours(classes: Sequence[str]) -> dict[str, str]:
    """Each class's colour in the label map and the overlay (c2s.viz.palette), as ``#rrggbb``."""
    from c2s.viz import palette

    return {c: "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb))
            for c, rgb in zip(classes, palette(len(classes))[: len(classes)])}


def json_answer(image: np.ndarray, outcome: Outcome, include_overlay: bool) -> dict[str, Any]:
    """``c2s predict``'s record (size, classes, fractions, scores) + colours + the batch it ran in."""
    from c2s.predict import summary

    pred = outcome.prediction
    answer = {**summary(pred), "colours": colours(pred.classes), "batch": outcome.batch}
    if include_overlay:
        answer["overlay_png"] = "data:image/png;base64," + base64.b64encode(overlay_bytes(image, pred)).decode()
    return answer


def label_bytes(pred: Prediction) -> bytes:
    """The label map as a palette PNG (pixel value = index into ``pred.classes``)."""
    from c2s.predict import label_png

    out = io.BytesIO()
    label_png(pred.labels, len(pred.classes), out)
    return out.getvalue()


def overlay_bytes(image: np.ndarray, pred: Prediction) -> bytes:
    """The image blended with the class colours, with a legend strip (c2s predict's ``_overlay.png``)."""
    from c2s.predict import overlay_png

    out = io.BytesIO()
    overlay_png(image, pred, out)
    return out.getvalue()
