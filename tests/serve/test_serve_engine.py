"""The replica's work without Ray (c2s/serve/engine.py) on the smallest toy run: a batch gives each image the
answer it gets alone, class lists in one batch stay apart, a failing pass hurts only its own images, request
class lists never reach the disk cache, and the answers (JSON, label PNG, overlay PNG) hold what they say."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from c2s.serve.engine import Engine, Job, colours, json_answer, label_bytes, overlay_bytes
from c2s.serve.settings import ServeSettings
from c2s.world.toyrun import make_toy_run

NAMES = ("red circle", "blue square", "green triangle", "zebra")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_engine")
    run = make_toy_run(root / "run")
    return Engine(ServeSettings(run=str(run), overrides=[f"cache_root={root / 'cache'}"])), root / "cache"


def image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.repeat(np.repeat(rng.integers(0, 256, (4, 4, 3)), -(-h // 4), 0), -(-w // 4), 1)[:h, :w]
    return img.astype(np.uint8)


def test_a_batch_answers_each_image_as_alone_and_keeps_class_lists_apart(engine):
    eng, _ = engine
    other = ("kettle", "red circle")
    jobs = [Job(image(96, 96, 0), NAMES), Job(image(96, 96, 1), other), Job(image(60, 150, 2), NAMES),
            Job(image(96, 96, 3), NAMES)]
    together = eng.run(jobs)
    assert [o.batch for o in together] == [4] * 4 and all(o.error is None for o in together)
    for job, got in zip(jobs, together):
        alone = eng.run([job])[0].prediction
        assert got.prediction.classes == job.classes
        assert got.prediction.labels.shape == job.image.shape[:2]
        assert (got.prediction.labels == alone.labels).mean() > 0.99  # batched convs may round differently
        assert np.allclose(got.prediction.fractions, alone.fractions, atol=0.01)


def test_a_failing_pass_hurts_only_its_own_images(engine):
    """An image the student cannot take (3 x 500: 1 x 96 once resized; the server refuses it before, by
    min_side) fails its pass; the other class list's pass in the same batch still answers."""
    eng, _ = engine
    out = eng.run([Job(image(3, 500, 0), ("a", "b")), Job(image(96, 96, 1), NAMES)])
    assert out[0].prediction is None and "RuntimeError" in out[0].error
    assert out[1].error is None and out[1].prediction.labels.shape == (96, 96)


def test_text_cache_per_class_list_and_only_the_default_list_on_disk(engine):
    eng, cache = engine
    files = sorted((cache / "text").glob("*.npy"))
    assert len(files) == 1  # the default classes, embedded at start
    first = eng.text(("kettle", "zebra"))
    assert eng.text(("kettle", "zebra")) is first  # from memory
    assert sorted((cache / "text").glob("*.npy")) == files
    assert eng.default_classes[:3] == ("red circle", "red square", "red triangle")
    info = eng.info()
    assert info["classes"] == list(eng.default_classes) and info["student"]["name"] == "segformer_tiny"
    assert info["limits"]["max_pixels"] == eng.settings.max_pixels


def test_answers_json_label_png_overlay_png(engine):
    eng, _ = engine
    img = image(50, 80, 4)
    outcome = eng.run([Job(img, NAMES)])[0]
    pred = outcome.prediction
    answer = json_answer(img, outcome, include_overlay=True)
    assert answer["size"] == [50, 80] and answer["classes"] == list(NAMES) and answer["batch"] == 1
    assert sum(answer["fractions"].values()) == pytest.approx(1.0, abs=1e-5)
    assert answer["colours"] == colours(NAMES) and all(c.startswith("#") for c in answer["colours"].values())
    overlay = Image.open(io.BytesIO(base64.b64decode(answer["overlay_png"].split(",", 1)[1])))
    assert overlay.size[0] > 80 and overlay.size[1] >= 50  # the image and a legend strip
    assert overlay_bytes(img, pred)[:8] == b"\x89PNG\r\n\x1a\n"
    label = Image.open(io.BytesIO(label_bytes(pred)))
    assert label.mode == "P" and label.size == (80, 50)
    ids = np.asarray(label)
    for k, name in enumerate(NAMES):
        assert answer["fractions"][name] == pytest.approx((ids == k).mean(), abs=1e-5)


def test_batch_cap_follows_the_requests_in_flight():
    """A lone request runs alone at once; under load a batch waits for as many as were inside at once over the
    last window (never more than the limit); the memory fades after the window."""
    from c2s.serve.engine import BatchCap

    now = [0.0]
    cap = BatchCap(limit=8, window_s=1.0, clock=lambda: now[0])
    assert cap.size() == 1
    cap.enter()
    assert cap.size() == 1
    cap.leave()
    for _ in range(11):  # 11 clients at once
        cap.enter()
    assert cap.size() == 8
    for _ in range(11):
        cap.leave()
    now[0] = 0.5
    cap.enter()
    assert cap.size() == 8  # the burst is 0.5 s old: more are expected
    now[0] = 1.2
    assert cap.size() == 1  # it faded; only this request's own arrival (t=0.5) is left
    cap.leave()
