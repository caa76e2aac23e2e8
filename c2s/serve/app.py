"""The Ray Serve application: a FastAPI ingress over one deployment that holds the :class:`~c2s.serve.engine.Engine`.

    POST /v1/segment[?format=json|png|overlay][&include_overlay=true]   an image -> classes, fractions, scores
    GET  /v1/info      run, student, default classes, templates, limits     GET /healthz
    GET  /             the web page (c2s/serve/page.html)                   GET /v1/example.png

Requests are batched with ``@serve.batch`` (``max_batch_size`` > 1): while one batch runs, the next fills;
within a batch the requests that share a class list share a forward pass (c2s/serve/engine.py). A batch waits
(at most ``batch_wait_s``) for as many requests as were recently inside the replica at once
(:class:`~c2s.serve.engine.BatchCap`, set through ``set_max_batch_size``), so a lone request does not wait for
company. The model runs on one thread of its own (torch threads = the replica's CPUs), so the replica's event
loop keeps reading, checking and decoding the next requests meanwhile; ``max_batch_size=1`` sends each
request alone through the same thread (batching off, everything else equal: what ``c2s bench serve``
compares).

Ray files followed (Ray 2.60): ray/serve/batching.py (``batch``; ``set_max_batch_size`` /
``set_batch_wait_timeout_s`` on the decorated method), ray/serve/api.py (``ingress`` over a FastAPI app,
``deployment`` options, ``run``, ``start``), ray/serve/_private/api.py (``call_user_app_builder_with_args_if_
necessary``: the ``args`` of a Serve config file reach :func:`build`), ray/serve/schema.py
(``ServeDeploySchema``: the config file ``c2s serve --write-config`` writes); the guides "Dynamic Request
Batching", "Set Up FastAPI and HTTP" and "Pass Arguments to Applications".
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations (Request) as objects through
# Serve's class-based view (ray/serve/_private/http_util.py, make_fastapi_class_based_view).

import asyncio
import io
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from c2s.serve.engine import BatchCap, Engine, Job, Outcome, json_answer, label_bytes, overlay_bytes
from c2s.serve.inputs import (
    BadInput,
    decode_base64,
    open_image,
    parse_classes,
    parse_flag,
    parse_format,
    rgb_pixels,
)
from c2s.serve.settings import ServeSettings

DEPLOYMENT = "C2SSegmenter"
PAGE = Path(__file__).with_name("page.html")
BODY_FIELDS = ("image", "classes")
QUERY_FIELDS = ("format", "include_overlay")
ROUTES = "GET /, GET /healthz, GET /v1/info, GET /v1/example.png, POST /v1/segment"
# Images up to this many pixels are decoded on the event loop (well under a millisecond at 96 x 96: cheaper
# than the hop to a thread); larger ones on a thread, so a big upload never stalls the other requests.
INLINE_PIXELS = 256 * 256
log = logging.getLogger("ray.serve")

api = FastAPI(title="c2s serve", docs_url=None, redoc_url=None)  # the docs pages load scripts from the web


@api.exception_handler(BadInput)
async def _bad_input(request: Request, err: BadInput) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
    field = "method" if err.status_code == 405 else "path"
    return JSONResponse({"error": f"{field}: {err.detail} ({request.method} {request.url.path})", "field": field,
                         "expected": ROUTES, "status": err.status_code}, status_code=err.status_code)


@api.exception_handler(Exception)
async def _internal_error(request: Request, err: Exception) -> JSONResponse:
    log.exception("c2s serve: %s %s failed", request.method, request.url.path)
    return JSONResponse(_internal(err), status_code=500)


def _internal(err: Exception) -> dict[str, Any]:
    return {"error": f"internal error: {type(err).__name__}: {err}", "field": None, "expected": None, "status": 500}


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
    return JSONResponse({"error": f"request: {err.errors()}", "field": "request", "expected": ROUTES,
                         "status": 400}, status_code=400)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused (413) as soon as it is known to pass ``max_bytes``: from Content-Length, or while
    reading it."""
    expected = f"a request body of at most {max_bytes} bytes (--max-bytes)"
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise BadInput(413, "body", f"{int(length)} bytes, over the limit of {max_bytes}", expected)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BadInput(413, "body", f"more than {max_bytes} bytes", expected)
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_body(headers: Headers, body: bytes) -> tuple[bytes, Any]:
    """(image bytes, classes as sent or None) from a multipart form or a JSON object."""
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return await _parse_form(headers, body)
    if media == "application/json":
        return _parse_json(body)
    raise BadInput(415, "content-type", f"got {media!r}" if media else "no Content-Type header",
                   "multipart/form-data (fields image, classes) or application/json ({\"image\": base64, "
                   "\"classes\": [...]})")


async def _parse_form(headers: Headers, body: bytes) -> tuple[bytes, Any]:
    async def stream():
        yield body
        yield b""

    expected_image = "a file part named image (multipart/form-data; name=\"image\"; filename=...)"
    try:
        form = await MultiPartParser(headers, stream(), max_files=4, max_fields=64).parse()
    except (MultiPartException, KeyError, ValueError) as err:
        raise BadInput(400, "body", f"malformed multipart/form-data ({err})", expected_image) from None
    try:
        unknown = sorted(set(form.keys()) - set(BODY_FIELDS))
        if unknown:
            raise BadInput(400, unknown[0], "unknown form field", f"the fields {', '.join(BODY_FIELDS)}")
        images = form.getlist("image")
        if not images:
            raise BadInput(400, "image", "missing", expected_image)
        if len(images) > 1:
            raise BadInput(400, "image", f"{len(images)} images in one request", "one image per request")
        if not isinstance(images[0], UploadFile):
            raise BadInput(400, "image", "a text field, not a file", expected_image)
        data = await images[0].read()
        classes = form.getlist("classes")
        if any(isinstance(c, UploadFile) for c in classes):
            raise BadInput(400, "classes", "a file, not a text field", "text fields: names, or one comma list")
        return data, (list(classes) or None)
    finally:
        await form.close()


def _parse_json(body: bytes) -> tuple[bytes, Any]:
    expected = '{"image": "<base64 of the image file>", "classes": ["a", "b"] or "a,b" (optional)}'
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadInput(400, "body", f"not valid JSON ({err})", expected) from None
    if not isinstance(obj, dict):
        raise BadInput(400, "body", f"a JSON {type(obj).__name__}, not an object", expected)
    unknown = sorted(set(obj) - set(BODY_FIELDS))
    if unknown:
        raise BadInput(400, unknown[0], "unknown field", expected)
    if "image" not in obj:
        raise BadInput(400, "image", "missing", expected)
    return decode_base64(obj["image"]), obj.get("classes")


def answer(image, outcome: Outcome, fmt: str, include_overlay: bool) -> Response:
    """The response in the asked format; PNG answers carry the class list in ``X-C2S-Classes`` (JSON)."""
    pred = outcome.prediction
    if fmt == "json":
        return JSONResponse(json_answer(image, outcome, include_overlay))
    headers = {"X-C2S-Classes": json.dumps(list(pred.classes)), "X-C2S-Batch": str(outcome.batch)}
    data = label_bytes(pred) if fmt == "png" else overlay_bytes(image, pred)
    return Response(data, media_type="image/png", headers=headers)


def example_png() -> bytes:
    """A 96 x 96 picture in the toy world's style (flat shapes on a grey ground) for the page's demo."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (96, 96), (128, 128, 128))
    draw = ImageDraw.Draw(im)
    draw.ellipse([8, 10, 44, 46], fill=(220, 30, 30))
    draw.rectangle([52, 14, 86, 48], fill=(30, 60, 220))
    draw.polygon([(20, 88), (46, 56), (72, 88)], fill=(30, 180, 40))
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


# Defined after every function its methods call: Serve pickles the class when the decorators run (before
# the module binds its name, so by value, with the module globals that exist at that moment).
@serve.deployment(name=DEPLOYMENT, max_constructor_retry_count=2)
@serve.ingress(api)
class SegmentDeployment:
    """One replica: the engine, the model thread, the batch queue."""

    def __init__(self, settings: dict[str, Any]) -> None:
        import torch

        self.settings = ServeSettings.model_validate(settings)
        torch.set_num_threads(max(1, int(self.settings.num_cpus)))
        self.engine = Engine(self.settings)
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="c2s-model")
        self.cap = BatchCap(self.settings.max_batch_size)
        self.segment_batch.set_max_batch_size(self.cap.size())
        self.segment_batch.set_batch_wait_timeout_s(self.settings.batch_wait_s)
        self.page = PAGE.read_text(encoding="utf-8")

    @api.get("/", response_class=HTMLResponse)
    def index(self) -> HTMLResponse:
        return HTMLResponse(self.page)

    @api.get("/healthz")
    def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/v1/info")
    def info(self) -> dict[str, Any]:
        return self.engine.info()

    @api.get("/v1/example.png")
    def example(self) -> Response:
        return Response(example_png(), media_type="image/png")

    @api.post("/v1/segment")
    async def segment(self, request: Request) -> Response:
        self._count(self.cap.enter)
        try:
            return await self._segment(request)
        except BadInput:
            raise
        except Exception as err:  # noqa: BLE001 - a bug answers 500 with its message; the replica goes on
            log.exception("c2s serve: POST /v1/segment failed")
            return JSONResponse(_internal(err), status_code=500)
        finally:
            self._count(self.cap.leave)

    def _count(self, change: Callable[[], None]) -> None:
        change()
        self.segment_batch.set_max_batch_size(self.cap.size())  # read by the batch queue when a batch starts

    async def _segment(self, request: Request) -> Response:
        unknown = sorted(set(request.query_params) - set(QUERY_FIELDS))
        if unknown:
            raise BadInput(400, unknown[0], "unknown query parameter", f"one of {', '.join(QUERY_FIELDS)}")
        fmt = parse_format(request.query_params.get("format"))
        include_overlay = parse_flag(request.query_params.get("include_overlay"), "include_overlay")
        body = await read_body(request, self.settings.max_bytes)
        data, classes = await parse_body(request.headers, body)
        names = self.engine.default_classes if classes is None else tuple(parse_classes(classes, self.settings))
        im = open_image(data, self.settings, self.engine.segmenter.eval_scale, len(names))  # the header only
        small = im.width * im.height <= INLINE_PIXELS
        image = rgb_pixels(im) if small else await asyncio.to_thread(rgb_pixels, im)
        outcome = await self.segment_one(Job(image, names))
        if outcome.error is not None:
            return JSONResponse({"error": f"image: the model failed on it ({outcome.error})", "field": "image",
                                 "expected": None, "status": 500}, status_code=500)
        if fmt == "json" and not include_overlay:  # a few numbers: no PNG to encode
            return answer(image, outcome, fmt, include_overlay)
        return await asyncio.to_thread(answer, image, outcome, fmt, include_overlay)

    async def segment_one(self, job: Job) -> Outcome:
        if self.settings.batching:
            return await self.segment_batch(job)
        return (await asyncio.get_running_loop().run_in_executor(self.model_thread, self.engine.run, [job]))[0]

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def segment_batch(self, jobs: list[Job]) -> list[Outcome]:
        return await asyncio.get_running_loop().run_in_executor(self.model_thread, self.engine.run, jobs)


def application(settings: ServeSettings):
    """The Serve application of ``settings``: replicas, their CPUs/GPUs and queue depth as deployment options."""
    return SegmentDeployment.options(
        num_replicas=settings.replicas, max_ongoing_requests=settings.ongoing_requests,
        ray_actor_options={"num_cpus": settings.num_cpus, "num_gpus": settings.num_gpus},
    ).bind(settings.model_dump())


def build(args: dict[str, Any]):
    """``serve deploy``'s entry (``import_path: c2s.serve.app:build``): the application's ``args`` are
    :class:`~c2s.serve.settings.ServeSettings` fields (unknown or ill-typed ones are refused by name)."""
    return application(ServeSettings.model_validate(args))
