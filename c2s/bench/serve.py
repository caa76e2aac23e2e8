"""``c2s bench serve``: ``c2s serve`` under load, batching off and on side by side in one run.

    c2s bench serve                                   # the toy run, 8 clients, 160 requests per mode
    c2s bench serve RUN --clients 8 --requests 400 --image-size 256

It starts a local Ray (``--ray-cpus``) and Serve on 127.0.0.1 (nothing else is ever sent to), deploys the
run with one replica and ``--max-batch-size 1`` (batching off), measures, then replaces it by the same
application with ``--max-batch-size N`` (batching on) and measures again. Each mode: a warm-up, then
``--requests`` POST /v1/segment (multipart, the run's default classes) from ``--clients`` threads with one
keep-alive connection each; every client takes the next request until all are sent, so the number in flight
is at most ``--clients``.

Counted per mode: ``errors`` (an HTTP status other than 200, or a 200 whose JSON is not the answer for that
image: size, classes, fractions summing to 1, and, in the batched mode, fractions within 0.01 of the
unbatched answer for the same image), ``lost`` (a request that got no answer: timeout, closed connection),
latency percentiles (ms, send to last byte), images/s (answers over the mode's wall time) and the mean size
of the batches the answers rode in. Prints a table, then a JSON line LAST; exit 1 when any request erred or
was lost. Without RUN it serves a toy run (c2s.world.toyrun: seeded random weights, made in a temporary
folder) - what it measures is the serving path, not accuracy.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HOST = "127.0.0.1"
GOAL_SPEEDUP = 1.5  # issue 30: batched >= 1.5x the unbatched images/s at 8 clients on the 2-core machine


@dataclass
class Tally:
    """What one mode's clients saw."""

    latencies_ms: list[float] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    answers: dict[int, dict[str, float]] = field(default_factory=dict)  # image index -> fractions
    wall_s: float = 0.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="c2s bench serve", description=__doc__.splitlines()[0])
    p.add_argument("run", nargs="?", default=None, help="run or checkpoint directory (default: a toy run)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--requests", type=int, default=160, help="timed requests per mode (default 160)")
    p.add_argument("--warmup", type=int, default=16, help="untimed requests per mode first (default 16)")
    p.add_argument("--images", type=int, default=16, help="distinct images sent in turn (default 16)")
    p.add_argument("--image-size", type=int, default=96, help="side of the square PNGs sent (default 96)")
    p.add_argument("--max-batch-size", type=int, default=8, help="the batched mode's batch size (default 8)")
    p.add_argument("--batch-wait-s", type=float, default=0.01, help="the batched mode's batch wait (default 0.01)")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs of the replica (default 1)")
    p.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray (default 2)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--timeout-s", type=float, default=60.0, help="per-request timeout (default 60)")
    return p


def check_args(args: argparse.Namespace) -> None:
    from c2s.serve.settings import ServeError

    for name in ("clients", "requests", "images", "max_batch_size"):
        if getattr(args, name) < 1:
            raise ServeError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.max_batch_size < 2:
        raise ServeError(f"--max-batch-size {args.max_batch_size}: the batched mode needs 2 or more")
    if args.image_size < 32:
        raise ServeError(f"--image-size must be >= 32, got {args.image_size}")


def make_images(count: int, size: int, seed: int = 0) -> list[bytes]:
    """``count`` PNGs of flat colour blocks plus noise (the toy world's look), ``size`` x ``size``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        blocks = rng.integers(0, 256, (4, 4, 3))
        img = np.repeat(np.repeat(blocks, -(-size // 4), 0), -(-size // 4), 1)[:size, :size]
        img = np.clip(img + rng.integers(-12, 12, img.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def multipart(image: bytes) -> tuple[bytes, str]:
    """(body, content type) of a form with one file part ``image``."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"bench.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def check_answer(raw: bytes, size: int, classes: list[str], reference: dict[str, float] | None) -> dict[str, float]:
    """The answer's fractions; ValueError naming what is wrong with it."""
    answer = json.loads(raw)
    if answer.get("size") != [size, size]:
        raise ValueError(f"size {answer.get('size')} != {[size, size]}")
    if answer.get("classes") != classes:
        raise ValueError("classes differ from the run's default list")
    fractions = answer["fractions"]
    if abs(sum(fractions.values()) - 1.0) > 1e-3:
        raise ValueError(f"fractions sum to {sum(fractions.values())}")
    if reference is not None:
        worst = max(abs(fractions[c] - reference[c]) for c in classes)
        if worst > 0.01:
            raise ValueError(f"fractions differ from the unbatched answer by {worst:.4f}")
    return {**fractions, "_batch": answer.get("batch", 1)}


def load(port: int, bodies: list[tuple[bytes, str]], size: int, classes: list[str], requests: int, clients: int,
         timeout_s: float, reference: dict[int, dict[str, float]] | None = None) -> Tally:
    """``requests`` POSTs from ``clients`` threads (each on its own keep-alive connection)."""
    tally, lock = Tally(), threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            k = i % len(bodies)
            body, ctype = bodies[k]
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/segment", body=body, headers={"Content-Type": ctype})
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
                with lock:
                    tally.lost.append(f"request {i}: {type(err).__name__}: {err}")
                continue
            ms = 1000 * (time.perf_counter() - t0)
            try:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}: {raw[:200]!r}")
                got = check_answer(raw, size, classes, None if reference is None else reference.get(k))
            except (ValueError, KeyError, TypeError) as err:
                with lock:
                    tally.errors.append(f"request {i}: {err}")
                continue
            with lock:
                tally.latencies_ms.append(ms)
                tally.batches.append(int(got.pop("_batch")))
                tally.answers.setdefault(k, got)
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout_s * requests)
    tally.wall_s = time.perf_counter() - start
    stuck = sum(t.is_alive() for t in threads)
    if stuck:
        tally.lost.append(f"{stuck} client thread(s) still waiting after {timeout_s * requests:.0f} s")
    return tally


def summarise(tally: Tally, requests: int) -> dict[str, Any]:
    lat = sorted(tally.latencies_ms)

    def pct(q: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))], 1) if lat else None

    return {"requests": requests, "ok": len(lat), "errors": len(tally.errors), "lost": len(tally.lost),
            "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "images_per_s": round(len(lat) / tally.wall_s, 2) if tally.wall_s else None,
            "mean_batch": round(statistics.fmean(tally.batches), 2) if tally.batches else None,
            "wall_s": round(tally.wall_s, 2)}


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    check_args(args)
    from c2s.bench.repeats import environment
    from c2s.serve.run import deploy, free_port, start, stop, wait_ready
    from c2s.serve.settings import ServeSettings

    with tempfile.TemporaryDirectory(prefix="c2s-bench-serve-") as tmp:
        run = args.run
        if run is None:
            from c2s.world.toyrun import make_toy_run

            run = str(make_toy_run(Path(tmp) / "toy_run"))
        port = args.port or free_port(HOST)
        url = f"http://{HOST}:{port}"
        images = make_images(args.images, args.image_size)
        bodies = [multipart(image) for image in images]
        env = environment("cpu")
        start(HOST, port, num_cpus=args.ray_cpus)
        results: dict[str, dict[str, Any]] = {}
        problems: dict[str, list[str]] = {}
        reference: dict[int, dict[str, float]] | None = None
        try:
            for mode, batch in (("unbatched", 1), ("batched", args.max_batch_size)):
                settings = ServeSettings(run=run, num_cpus=args.num_cpus, max_batch_size=batch,
                                         batch_wait_s=args.batch_wait_s,
                                         max_ongoing_requests=max(2 * args.max_batch_size, args.clients))
                deploy(settings)
                wait_ready(url)
                classes = _default_classes(url)
                load(port, bodies, args.image_size, classes, args.warmup, args.clients, args.timeout_s)
                tally = load(port, bodies, args.image_size, classes, args.requests, args.clients, args.timeout_s,
                             reference)
                reference = reference or tally.answers
                results[mode] = summarise(tally, args.requests)
                problems[mode] = (tally.errors + tally.lost)[:5]
                print(f"[bench serve] {mode:>9}: {_row(results[mode])}", flush=True)
        finally:
            stop()
    speedup = (results["batched"]["images_per_s"] or 0) / max(results["unbatched"]["images_per_s"] or 0, 1e-9)
    clean = all(r["errors"] == 0 and r["lost"] == 0 for r in results.values())
    for mode, lines in problems.items():
        for line in lines:
            print(f"[bench serve] {mode}: {line}", file=sys.stderr)
    print(json.dumps({"bench": "serve", "run": args.run or "toy (c2s.world.toyrun, random weights)",
                      "clients": args.clients, "requests": args.requests, "image_size": args.image_size,
                      "max_batch_size": args.max_batch_size, "batch_wait_s": args.batch_wait_s,
                      "replica_cpus": args.num_cpus, "ray_cpus": args.ray_cpus, **results,
                      "speedup": round(speedup, 2), "goal": {"speedup_at_least": GOAL_SPEEDUP,
                                                             "met": bool(clean and speedup >= GOAL_SPEEDUP)},
                      "environment": env}), flush=True)
    return 0 if clean else 1


def _default_classes(url: str) -> list[str]:
    import urllib.request

    with urllib.request.urlopen(f"{url}/v1/info", timeout=10) as response:
        return list(json.loads(response.read())["classes"])


def _row(r: dict[str, Any]) -> str:
    return (f"{r['ok']}/{r['requests']} ok, {r['errors']} errors, {r['lost']} lost, p50 {r['p50_ms']} ms, "
            f"p95 {r['p95_ms']} ms, p99 {r['p99_ms']} ms, {r['images_per_s']} img/s, mean batch {r['mean_batch']}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
