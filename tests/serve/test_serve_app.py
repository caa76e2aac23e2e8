"""c2s serve over HTTP (issue 30): ONE server for the module (the session's local Ray, the smallest toy run,
Serve on 127.0.0.1), started with c2s.serve.run's own start/deploy/wait_ready as `c2s serve` starts it.

Good answers are checked against the same run's Segmenter in this process; bad requests (the table of
docs/serve.md, kept equal to BAD below) are interleaved with good ones from 8 concurrent clients; the web page
is opened in headless chromium and its screenshot must contain the overlay the API gives, pixel for pixel.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from c2s.serve.settings import ServeSettings
from c2s.world.toyrun import make_toy_run

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CUSTOM = ["red circle", "blue square", "green triangle", "zebra"]
LIMITS = dict(max_bytes=64 * 1024, max_pixels=200 * 200, max_scores=96 * 96 * 30, max_classes=32, max_name_chars=40)
TIMEOUT_S = 60


@dataclass
class Server:
    url: str
    run: Path
    settings: ServeSettings


@pytest.fixture(scope="module")
def server(ray_local, tmp_path_factory):
    from c2s.serve.run import deploy, free_port, start, stop, wait_ready

    run = make_toy_run(tmp_path_factory.mktemp("serve_app") / "run")
    port = free_port()
    settings = ServeSettings(run=str(run), max_batch_size=8, batch_wait_s=0.05, **LIMITS)
    start("127.0.0.1", port)
    try:
        deploy(settings)
        wait_ready(f"http://127.0.0.1:{port}", timeout_s=TIMEOUT_S)
        yield Server(f"http://127.0.0.1:{port}", run, settings)
    finally:
        stop()


@pytest.fixture(scope="module")
def reference(server):
    """The same run's Segmenter in this process: what every good answer must say."""
    from c2s.segmenter import Segmenter

    return Segmenter.from_run(server.run)


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def picture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.repeat(np.repeat(rng.integers(0, 256, (4, 4, 3)), -(-h // 4), 0), -(-w // 4), 1)[:h, :w]
    return img.astype(np.uint8)


def noise_png(side: int) -> bytes:
    return png(np.random.default_rng(7).integers(0, 256, (side, side, 3), dtype=np.uint8))


GOOD_PNG = png(picture(96, 96, 0))
B64 = base64.b64encode(GOOD_PNG).decode()


def form(classes: Any = None, image: bytes = GOOD_PNG, **extra: Any) -> dict[str, Any]:
    files = [("image", ("x.png", image, "image/png"))] if image is not None else []
    data = [("classes", c) for c in ([classes] if isinstance(classes, str) else classes or [])]
    return {"files": files + [(k, (None, v)) for k, v in extra.items()] or None, "data": data}


# (input as docs/serve.md's table names it, request, status, field, a fragment of the message)
BAD: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("not an image", form(image=b"hello, I am text"), 400, "image", "not an image PIL can read"),
    ("truncated image", form(image=GOOD_PNG[: len(GOOD_PNG) // 2]), 400, "image", "truncated or corrupt"),
    ("body over --max-bytes", form(image=noise_png(200)), 413, "body", "over the limit of 65536"),
    ("image over --max-pixels", form(image=png(np.zeros((300, 300, 3), np.uint8))), 413, "image",
     "300x300 = 90000 pixels, over the limit of 40000"),
    ("pixels x classes over --max-scores", form(classes=[f"c{i}" for i in range(31)]), 413, "image",
     "31 classes"),
    ("too narrow once resized", form(image=png(picture(20, 190, 1))), 400, "image", "narrower than 32 px"),
    ("no class names", form(classes=" , "), 400, "classes", "no class names given"),
    ("duplicate class names", form(classes="cat,dog,cat"), 400, "classes", "duplicated class names"),
    ("over-long class name", form(classes="x" * 41), 400, "classes", "longer than 40 characters"),
    ("too many class names", form(classes=",".join(f"c{i}" for i in range(33))), 400, "classes",
     "33 class names, over the limit of 32"),
    ("wrong content type", {"data": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "content-type",
     "got 'text/plain'"),
    ("missing image field", {"files": [("classes", (None, "cat"))]}, 400, "image", "missing"),
    ("image sent as a text field", {"files": [("image", (None, "abc"))]}, 400, "image", "a text field"),
    ("two images", {"files": [("image", ("a.png", GOOD_PNG, "image/png"))] * 2}, 400, "image", "2 images"),
    ("unknown form field", form(clases="cat"), 400, "clases", "unknown form field"),
    ("JSON without image", {"json": {"classes": "cat"}}, 400, "image", "missing"),
    ("JSON image not base64", {"json": {"image": "!!!"}}, 400, "image", "not valid base64"),
    ("JSON classes not a list or string", {"json": {"image": B64, "classes": 3}}, 400, "classes", "got int 3"),
    ("malformed JSON", {"data": b'{"image": ', "headers": {"Content-Type": "application/json"}}, 400, "body",
     "not valid JSON"),
    ("unknown format", {**form(), "params": {"format": "jpeg"}}, 400, "format", "unknown format 'jpeg'"),
    ("unknown query parameter", {**form(), "params": {"fromat": "png"}}, 400, "fromat", "unknown query"),
]


def post(url: str, request: dict[str, Any]) -> requests.Response:
    return requests.post(f"{url}/v1/segment", timeout=TIMEOUT_S, **request)


def check_good(answer: dict[str, Any], array: np.ndarray, classes: list[str], reference) -> None:
    expected = reference.predict([array], classes)[0]
    assert answer["size"] == list(array.shape[:2]) and answer["classes"] == classes
    got = np.array([answer["fractions"][c] for c in classes])
    assert np.allclose(got, expected.fractions, atol=0.01), (got, expected.fractions)
    assert np.allclose([answer["scores"][c] for c in classes], expected.scores, atol=1e-3)


def test_info_health_page_and_the_curl_example(server, reference):
    assert requests.get(f"{server.url}/healthz", timeout=10).json() == {"status": "ok"}
    info = requests.get(f"{server.url}/v1/info", timeout=10).json()
    assert info["student"]["name"] == "segformer_tiny" and info["dataset"] == "toy"
    assert info["limits"]["max_pixels"] == LIMITS["max_pixels"] and len(info["classes"]) == 20
    page = requests.get(f"{server.url}/", timeout=10)
    assert page.headers["content-type"].startswith("text/html") and "/v1/segment" in page.text
    # docs/serve.md's curl example, as written there (the image is the page's example picture)
    example = requests.get(f"{server.url}/v1/example.png", timeout=10).content
    line = next(line for line in (REPO / "docs" / "serve.md").read_text().splitlines()
                if line.startswith("curl -s -F image=@"))
    assert "classes=red circle, blue square, green triangle" in line
    answer = post(server.url, form(classes="red circle, blue square, green triangle", image=example)).json()
    array = np.asarray(Image.open(io.BytesIO(example)).convert("RGB"))
    check_good(answer, array, ["red circle", "blue square", "green triangle"], reference)


def test_multipart_json_and_the_default_classes_agree(server, reference):
    array = picture(60, 150, 3)
    data = png(array)
    a = post(server.url, form(classes=CUSTOM, image=data)).json()  # a list: one field per name
    b = post(server.url, {"json": {"image": base64.b64encode(data).decode(), "classes": ",".join(CUSTOM)}}).json()
    c = post(server.url, {"json": {"image": "data:image/png;base64," + base64.b64encode(data).decode(),
                                   "classes": CUSTOM}}).json()
    assert a["fractions"] == b["fractions"] == c["fractions"]
    check_good(a, array, CUSTOM, reference)
    default = post(server.url, form(image=data)).json()
    check_good(default, array, requests.get(f"{server.url}/v1/info", timeout=10).json()["classes"], reference)


def test_png_and_overlay_formats(server, reference):
    array = picture(96, 96, 5)
    response = post(server.url, {**form(classes=CUSTOM, image=png(array)), "params": {"format": "png"}})
    assert response.headers["content-type"] == "image/png"
    assert json.loads(response.headers["x-c2s-classes"]) == CUSTOM
    labels = np.asarray(Image.open(io.BytesIO(response.content)))
    expected = reference.predict([array], CUSTOM)[0].labels
    assert labels.shape == (96, 96) and (labels == expected).mean() > 0.99
    overlay = post(server.url, {**form(classes=CUSTOM, image=png(array)), "params": {"format": "overlay"}})
    image = Image.open(io.BytesIO(overlay.content))
    assert image.format == "PNG" and image.size[0] > 96 and image.size[1] >= 96


def test_bad_and_good_requests_interleaved_against_one_server(server, reference):
    """Every bad request gets its 4xx naming the field; every good one, sent among them from 8 concurrent
    clients, gets the right answer; the replica that answered is the one that started (no restart)."""
    before = requests.get(f"{server.url}/v1/info", timeout=10).json()["replica"]
    goods = [(picture(96, 96, 100 + i), CUSTOM if i % 2 else ["kettle", "red circle", "zebra"]) for i in range(16)]
    jobs: list[tuple[str, Any]] = []
    for i in range(max(len(goods), len(BAD))):
        if i < len(goods):
            jobs.append(("good", i))
        if i < len(BAD):
            jobs.append(("bad", i))

    def send(job: tuple[str, int]) -> tuple[tuple[str, int], requests.Response]:
        kind, i = job
        if kind == "good":
            array, classes = goods[i]
            return job, post(server.url, form(classes=classes, image=png(array)))
        return job, post(server.url, BAD[i][1])

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, jobs))
    batches = []
    for (kind, i), response in results:
        body = response.json()
        if kind == "good":
            assert response.status_code == 200, body
            check_good(body, *goods[i], reference)
            batches.append(body["batch"])
        else:
            name, _, status, field, fragment = BAD[i]
            assert (response.status_code, body["field"], body["status"]) == (status, field, status), (name, body)
            assert fragment in body["error"] and body["error"].startswith(f"{field}: "), (name, body)
            assert body["expected"], name
    assert max(batches) > 1, f"no two good requests were batched together: {batches}"
    for path, status in (("/v1/segment", 405), ("/nope", 404)):
        response = requests.get(f"{server.url}{path}", timeout=10)
        assert response.status_code == status and response.json()["field"] in ("method", "path")
    assert requests.get(f"{server.url}/v1/info", timeout=10).json()["replica"] == before


def test_the_docs_bad_input_table_is_the_tested_one():
    """docs/serve.md's table (input -> status -> message) lists exactly the cases above, with their status
    and field."""
    rows = re.findall(r"^\| ([^|]+?) \| (\d{3}) \| `([^`]*)`", (REPO / "docs" / "serve.md").read_text(), re.M)
    table = {name: (int(status), message) for name, status, message in rows}
    assert set(table) >= {name for name, *_ in BAD}, sorted({name for name, *_ in BAD} - set(table))
    for name, _, status, field, fragment in BAD:
        assert table[name][0] == status and table[name][1].startswith(f"{field}: "), (name, table[name])
        assert fragment in table[name][1], (name, table[name])


def find_browser() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                 if (path := shutil.which(name))), None)


def locate(shot: np.ndarray, patch: np.ndarray) -> tuple[int, int] | None:
    """Top-left of ``patch`` inside ``shot`` where every pixel matches, or None."""
    h, w = patch.shape[:2]
    for y, x in np.argwhere(np.all(shot == patch[0, 0], axis=-1)):
        if y + h <= shot.shape[0] and x + w <= shot.shape[1] and np.array_equal(shot[y:y + h, x:x + w], patch):
            return int(y), int(x)
    return None


def test_web_page_in_headless_chromium_shows_the_overlay(server, tmp_path):
    browser = find_browser()
    if browser is None:
        pytest.skip("no chromium or chrome on PATH (make setup installs Debian's chromium when run as root with apt)")
    classes = "red circle,blue square,green triangle"
    shot_path = tmp_path / "page.png"
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--force-device-scale-factor=1", "--window-size=1000,700", "--virtual-time-budget=20000",
               f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot_path}",
               f"{server.url}/?example=1&classes={requests.utils.quote(classes)}"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert shot_path.is_file(), f"{browser} wrote no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    shot = np.asarray(Image.open(shot_path).convert("RGB"))
    example = requests.get(f"{server.url}/v1/example.png", timeout=10).content
    answer = post(server.url, {**form(classes=classes, image=example), "params": {"include_overlay": "true"}}).json()
    overlay = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["overlay_png"].split(",")[1]))).convert("RGB"))
    assert locate(shot, overlay) is not None, (
        f"the page's screenshot ({shot_path}, {time.monotonic() - started:.1f} s) does not contain the overlay "
        f"PNG the API returns for the same image and classes")
    for name in classes.split(","):
        if answer["fractions"][name] > 0:  # the legend's swatch, in the class's palette colour
            rgb = np.array([int(answer["colours"][name][k:k + 2], 16) for k in (1, 3, 5)], np.uint8)
            assert np.all(shot == rgb, axis=-1).sum() >= 100, f"no legend swatch of {name} ({rgb}) on the page"


def test_a_replica_that_cannot_start_names_its_error(server):
    """A teacher file missing on the replicas: deploy fails, bounded, with the file in the message; the
    running application is untouched."""
    from c2s.serve.run import deploy, stop
    from c2s.serve.settings import ServeError

    broken = server.settings.model_copy(update={"overrides": ["teacher.checkpoint=/nonexistent/ViT-B-16.pt"]})
    started = time.monotonic()
    try:
        with pytest.raises(ServeError, match="/nonexistent/ViT-B-16.pt"):
            deploy(broken, name="broken", route_prefix="/broken")
    finally:
        stop("broken")
    assert time.monotonic() - started < 90
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
