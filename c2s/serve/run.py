"""``c2s serve``: put a trained student behind an HTTP endpoint (Ray Serve), with a web page at ``/``.

    c2s serve RUN                                   # http://127.0.0.1:8000/  (Ctrl-C stops it)
    c2s serve RUN --replicas 2 --num-cpus 1 --max-batch-size 8 --batch-wait-s 0.01 --port 8080
    c2s serve RUN --num-gpus 0.5 --host 0.0.0.0     # on a cluster: half a GPU per replica, open to the network
    c2s serve RUN --write-config serve.yaml          # a config file for `serve deploy` instead of serving

RUN is a run directory (its newest intact checkpoint) or a checkpoint directory, as the replicas see it. On a
local machine this starts a local Ray; under ``ray job submit`` (RAY_ADDRESS set) it deploys on that cluster.
Before anything starts, the replicas' CPUs/GPUs are checked against the cluster's nodes (c2s.train.resolve's
placement preflight) and a local port is checked to be free. The schema and the bad-input answers:
docs/serve.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from c2s.serve.settings import ServeError, ServeSettings

APP_NAME = "c2s"
DEFAULT_PORT = 8000


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="c2s serve", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    fields = ServeSettings.model_fields

    def option(name: str, kind: type, **kw: Any) -> None:
        field = fields[name]
        default = "" if field.default is None else f" (default {field.default})"
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=field.default,
                       help=f"{field.description}{default}", **kw)

    p.add_argument("run", help=fields["run"].description)
    option("replicas", int)
    option("num_cpus", float)
    option("num_gpus", float)
    option("max_batch_size", int)
    option("batch_wait_s", float)
    option("max_ongoing_requests", int)
    option("max_bytes", int)
    option("max_pixels", int)
    option("max_scores", int)
    option("max_classes", int)
    option("max_name_chars", int)
    option("min_side", int)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; "
                                                      "0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the run's config, e.g. teacher.checkpoint=/shared/ViT-B-16.pt (repeatable)")
    p.add_argument("--write-config", type=Path, metavar="FILE",
                   help="write a Serve config file for `serve deploy` with these settings, and exit")
    return p


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """The options as :class:`ServeSettings`; a value out of range is a :class:`ServeError` naming the option."""
    from pydantic import ValidationError

    values = {name: getattr(args, name) for name in ServeSettings.model_fields if hasattr(args, name)}
    try:
        return ServeSettings(**values)
    except ValidationError as err:
        problems = "; ".join(f"--{'.'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']} "
                             f"(got {e.get('input')!r})" for e in err.errors())
        raise ServeError(problems) from None


# ---- the config file for `serve deploy` -------------------------------------------------------------------

def deploy_config(settings: ServeSettings, host: str, port: int) -> dict[str, Any]:
    """A Serve config (ray/serve/schema.py ``ServeDeploySchema``): HTTP options, and one application whose
    ``args`` are the settings and whose deployment section holds the replicas and their resources (Serve
    applies a change there without restarting the others: the guide "Deploy on VM")."""
    args = settings.model_dump(exclude={"replicas", "num_cpus", "num_gpus"}, exclude_defaults=True)
    args["run"] = settings.run
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": host, "port": port},
        "applications": [{
            "name": APP_NAME, "route_prefix": "/", "import_path": "c2s.serve.app:build", "args": args,
            "deployments": [{"name": "C2SSegmenter", "num_replicas": settings.replicas,
                             "max_ongoing_requests": settings.ongoing_requests,
                             "ray_actor_options": {"num_cpus": settings.num_cpus, "num_gpus": settings.num_gpus}}],
        }],
    }


def write_config(settings: ServeSettings, host: str, port: int, path: Path, command: str = "") -> Path:
    import yaml

    header = ("# c2s serve's application for `serve deploy` (docs/serve.md), written by\n"
              f"#   {command or 'c2s serve RUN ... --write-config FILE'}\n"
              f"# deploy it:  serve deploy {path.name} --address http://127.0.0.1:8265   (the dashboard's address)\n"
              "# args: c2s.serve.settings.ServeSettings fields; deployments: replicas and their CPUs/GPUs.\n")
    path.write_text(header + yaml.safe_dump(deploy_config(settings, host, port), sort_keys=False))
    return path


# ---- starting, deploying, stopping --------------------------------------------------------------------------

def check_port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on (Serve's proxy would retry binding it for ever)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError as err:
            raise ServeError(f"--host {host} --port {port}: cannot listen there ({err.strerror}); pass another "
                             "--port, or stop what holds it") from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start(host: str, port: int, num_cpus: int | None = None, *, log_to_driver: bool | None = None) -> None:
    """Ray (a local one of its own, or the cluster's under RAY_ADDRESS) and Serve's HTTP proxy on
    ``host:port``; ``log_to_driver``: c2s.raystart.init_ray's."""
    from ray import serve

    from c2s.raystart import init_ray

    if not os.environ.get("RAY_ADDRESS"):
        check_port_free(host, port)
    init_ray(num_cpus=num_cpus, log_to_driver=log_to_driver)
    serve.start(http_options={"host": host, "port": port})


def check_resources(settings: ServeSettings) -> None:
    """The replicas fit the cluster's nodes (running or launchable), or a PreflightError prints both sides."""
    from c2s.train.cluster import cluster_from_ray
    from c2s.train.placement import Bundle
    from c2s.train.resolve import check_placement

    res = {"CPU": settings.num_cpus, **({"GPU": settings.num_gpus} if settings.num_gpus else {})}
    bundles = [Bundle(f"serve replica {i}", res) for i in range(settings.replicas)]
    check_placement(bundles, cluster_from_ray(), what="c2s serve",
                    hint="Lower --replicas / --num-cpus / --num-gpus, or add nodes.")


def deploy(settings: ServeSettings, name: str = APP_NAME, route_prefix: str = "/") -> None:
    """Deploy (or replace) the application; returns once every replica has loaded the run. A replica that
    cannot start is a :class:`ServeError` carrying its own error (the last line of its traceback)."""
    from ray import serve

    from c2s.serve.app import application

    check_resources(settings)
    try:
        serve.run(application(settings), name=name, route_prefix=route_prefix)
    except RuntimeError as err:
        raise ServeError(f"the application did not start: {_replica_error(name) or _last_error_line(str(err))}"
                         ) from None


def stop(name: str | None = None) -> None:
    """Delete the application ``name``, or (None) shut Serve down with all of them."""
    from ray import serve

    if name is None:
        serve.shutdown()
    else:
        serve.delete(name)


def wait_ready(url: str, timeout_s: float = 60.0) -> None:
    """Poll ``url/healthz`` until it answers 200; a :class:`ServeError` after ``timeout_s`` names the URL."""
    deadline, last = time.monotonic() + timeout_s, "no answer yet"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as err:
            last = str(err)
        time.sleep(0.25)
    raise ServeError(f"{url}/healthz did not answer 200 within {timeout_s:.0f} s (last: {last})")


def _replica_error(name: str) -> str | None:
    """The last error line of the deployment's status message (it carries the failed replica's traceback)."""
    from ray import serve

    try:
        deployments = serve.status().applications[name].deployments.values()
    except (KeyError, RuntimeError):
        return None
    messages = [d.message for d in deployments if d.message]
    return _last_error_line(messages[-1]) if messages else None


def _last_error_line(text: str) -> str:
    """``FileNotFoundError: ...``: the last line of ``text`` that starts with an exception's name, else its
    last line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception)\b", line)]
    return (errors or lines or ["(no message)"])[-1]


def url_of(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    return f"http://{shown}:{port}"


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    settings = settings_from_args(args)
    if args.write_config:
        path = write_config(settings, args.host, args.port, args.write_config,
                            " ".join(["c2s serve", *(shlex.quote(a) for a in argv)]))
        print(f"c2s serve: wrote {path}; deploy it with: serve deploy {path}")
        return 0
    from c2s.evaluate import find_checkpoint

    print(f"c2s serve: serving {find_checkpoint(Path(settings.run))}", flush=True)  # a missing/damaged run stops here
    try:
        start(args.host, args.port, log_to_driver=True)  # the replicas' request log and errors on this console
        signal.signal(signal.SIGTERM, _interrupt)  # after ray.init, which sets its own: `kill` stops it as Ctrl-C
        deploy(settings)
        url = url_of(args.host, args.port)
        wait_ready(url)
        print(f"c2s serve: {settings.replicas} replica(s), batches of up to {settings.max_batch_size}; "
              f"the page: {url}/ · POST {url}/v1/segment · GET {url}/v1/info · Ctrl-C stops", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("c2s serve: stopping", file=sys.stderr, flush=True)
    finally:
        if "ray" in sys.modules:
            import ray

            if ray.is_initialized():  # on a cluster, only this application goes; a local Ray goes whole
                stop(APP_NAME if os.environ.get("RAY_ADDRESS") else None)
    return 0
