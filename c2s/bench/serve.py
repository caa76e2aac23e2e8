"""``c2s bench serve``: ``c2s serve`` under load, batching off and on side by side in one run.

    c2s bench serve                                   # the toy run, 8 clients, 5 rounds x 160 requests per mode
    c2s bench serve RUN --clients 8 --requests 400 --rounds 5

It starts a Ray of its own (``--ray-cpus``, never joining one the machine runs) and Serve on 127.0.0.1
(nothing else is ever sent to), and deploys the run twice, one replica each: ``/unbatched``
(``--max-batch-size 1``: batching off) and ``/batched`` (``--max-batch-size N``); everything else is equal.
After a warm-up of each, the rounds alternate: unbatched, batched, unbatched, ... (the machine's speed drifts;
alternating spreads the drift over both). A round is ``--requests`` POST /v1/segment (multipart, the run's
default classes) from ``--clients`` threads with one keep-alive connection each; every client takes the next
request until all are sent, so at most ``--clients`` are in flight.

Counted per mode over all its rounds: ``errors`` (an HTTP status other than 200, or a 200 whose JSON is not
the answer for that image: size, classes, fractions summing to 1 and within 0.01 of the first answer for the
same image), ``lost`` (no answer: timeout, closed connection), latency percentiles (ms, send to last byte),
images/s (the median over rounds of answers / the round's wall time; every round's figure is listed) and
the mean size of the batches the answers rode in. ``speedup``: the median over rounds of the batched round's
images/s over the unbatched round's just before it (paired, so a machine whose speed drifts between rounds
weighs on both sides; ``speedup_of_medians`` is the plain ratio). Prints one line per round, then a JSON line LAST; exit 1
when any request erred or was lost. Without RUN it serves a toy run (c2s.world.toyrun: toy_tiny, seeded
random weights, made in a temporary folder): what it measures is the serving path, not accuracy.
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

from c2s.serve.settings import ServeSettings

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
    p.add_argument("--requests", type=int, default=160, help="timed requests per round and mode (default 160)")
    p.add_argument("--rounds", type=int, default=5, help="rounds per mode, alternating (default 5)")
    p.add_argument("--warmup", type=int, default=16, help="untimed requests per mode first (default 16)")
    p.add_argument("--images", type=int, default=16, help="distinct images sent in turn (default 16)")
    p.add_argument("--image-size", type=int, default=96, help="side of the square PNGs sent (default 96)")
    p.add_argument("--max-batch-size", type=int, default=8, help="the batched mode's batch size (default 8)")
    p.add_argument("--batch-wait-s", type=float, default=ServeSettings.model_fields["batch_wait_s"].default,
                   help=f"the batched mode's batch wait (default {ServeSettings.model_fields['batch_wait_s'].default}, "
                        "c2s serve's)")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs of the replica (default 1)")
    p.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray (default 2)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--timeout-s", type=float, default=60.0, help="per-request timeout (default 60)")
    return p


def check_args(args: argparse.Namespace) -> None:
    from c2s.serve.settings import ServeError

    for name in ("clients", "requests", "rounds", "images", "max_batch_size"):
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
         timeout_s: float, reference: dict[int, dict[str, float]] | None = None, prefix: str = "") -> Tally:
    """``requests`` POSTs to ``prefix``/v1/segment from ``clients`` threads (one keep-alive connection each);
    answers are checked against ``reference`` (image index -> fractions) where it has the image."""
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
                conn.request("POST", f"{prefix}/v1/segment", body=body, headers={"Content-Type": ctype})
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


def summarise(tallies: list[Tally], requests: int) -> dict[str, Any]:
    """One mode over its rounds: counts and latency percentiles pooled, images/s the median of the rounds'."""
    lat = sorted(ms for t in tallies for ms in t.latencies_ms)
    batches = [b for t in tallies for b in t.batches]
    rates = [round(len(t.latencies_ms) / t.wall_s, 2) for t in tallies if t.wall_s]

    def pct(q: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))], 1) if lat else None

    return {"requests": requests * len(tallies), "ok": len(lat), "errors": sum(len(t.errors) for t in tallies),
            "lost": sum(len(t.lost) for t in tallies), "p50_ms": pct(0.50), "p95_ms": pct(0.95),
            "p99_ms": pct(0.99), "images_per_s": statistics.median(rates) if rates else None,
            "images_per_s_rounds": rates, "mean_batch": round(statistics.fmean(batches), 2) if batches else None}


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    check_args(args)
    from c2s.bench.repeats import environment
    from c2s.serve.run import deploy, free_port, start, stop, wait_ready

    modes = {"unbatched": 1, "batched": args.max_batch_size}
    tallies: dict[str, list[Tally]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory(prefix="c2s-bench-serve-") as tmp:
        run = args.run
        if run is None:
            from c2s.world.toyrun import make_toy_run

            run = str(make_toy_run(Path(tmp) / "toy_run"))
        port = args.port or free_port(HOST)
        url = f"http://{HOST}:{port}"
        bodies = [multipart(image) for image in make_images(args.images, args.image_size)]
        env = environment("cpu")
        start(HOST, port, num_cpus=args.ray_cpus)  # a Ray of its own: its numbers come from the Ray it sized
        try:
            for mode, batch in modes.items():
                deploy(ServeSettings(run=run, num_cpus=args.num_cpus, max_batch_size=batch,
                                     batch_wait_s=args.batch_wait_s,
                                     max_ongoing_requests=max(2 * args.max_batch_size, args.clients)),
                       name=mode, route_prefix=f"/{mode}")
                wait_ready(f"{url}/{mode}")
            classes = _default_classes(f"{url}/unbatched")
            reference = load(port, bodies, args.image_size, classes, len(bodies), 1,
                             args.timeout_s, prefix="/unbatched").answers  # one answer per image, one at a time
            for mode in modes:  # warm-up
                load(port, bodies, args.image_size, classes, args.warmup, args.clients, args.timeout_s, reference,
                     f"/{mode}")
            for r in range(args.rounds):
                for mode in modes:
                    tally = load(port, bodies, args.image_size, classes, args.requests, args.clients, args.timeout_s,
                                 reference, f"/{mode}")
                    tallies[mode].append(tally)
                    print(f"[bench serve] round {r + 1} {mode:>9}: {_row(summarise([tally], args.requests))}",
                          flush=True)
        finally:
            stop()
    results = {mode: summarise(tallies[mode], args.requests) for mode in modes}
    # each round's batched images/s over the unbatched round just before it (the same minutes of the machine)
    ratios = [round(b / u, 2) for u, b in zip(results["unbatched"]["images_per_s_rounds"],
                                              results["batched"]["images_per_s_rounds"]) if u]
    speedup = statistics.median(ratios) if ratios else 0.0
    clean = all(r["errors"] == 0 and r["lost"] == 0 for r in results.values())
    for mode in modes:
        for line in [line for t in tallies[mode] for line in t.errors + t.lost][:5]:
            print(f"[bench serve] {mode}: {line}", file=sys.stderr)
    print(json.dumps({"bench": "serve", "run": args.run or "toy (c2s.world.toyrun: toy_tiny, random weights)",
                      "clients": args.clients, "rounds": args.rounds, "image_size": args.image_size,
                      "max_batch_size": args.max_batch_size, "batch_wait_s": args.batch_wait_s,
                      "replica_cpus": args.num_cpus, "ray_cpus": args.ray_cpus, **results,
                      "speedup": round(speedup, 2), "speedup_rounds": ratios,
                      "speedup_of_medians": round((results["batched"]["images_per_s"] or 0)
                                                  / max(results["unbatched"]["images_per_s"] or 0, 1e-9), 2),
                      "goal": {"speedup_at_least": GOAL_SPEEDUP,
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
