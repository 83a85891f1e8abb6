#!/usr/bin/env python3
"""Move the counter container live Docker -> Podman -> Docker, its memory intact.

The counter keeps its value only in a shell variable: after each move it goes on from where it
was, and its HTTP port answers on the new engine. Run from the repository root:

    PYTHONPATH=. .venv/bin/python examples/cross-runtime/move_counter.py [--name NAME]

Needs both local engines (dockerd with experimental mode, the Podman service), CRIU, pycriu,
and the demo image in both engines with the same ID (scripts/images).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import urllib.request

from toolkit import ContainerSpec, PortMapping
from toolkit.backends.base import Backend
from toolkit.config import DEFAULT_URLS, EngineRef, connect
from toolkit.errors import CtkError
from toolkit.migration.cross_runtime import live_cross_runtime, remove_criu_config


def last_count(backend: Backend, name: str) -> int:
    found = re.findall(r"count=(\d+)", backend.logs(name))
    return int(found[-1]) if found else 0


def wait_beyond(backend: Backend, name: str, value: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (now := last_count(backend, name)) > value:
            return now
        time.sleep(0.2)
    raise SystemExit(f"{name} stopped counting on {backend.kind}")


def http_count(backend: Backend, name: str) -> int:
    port = next(p.host_port for p in backend.inspect(name).ports if p.container_port == 8080)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=10) as answer:
        return int(answer.read().decode().strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="ctk-example-counter")
    parser.add_argument("--label", action="append", default=[], help="KEY=VALUE for the container")
    parser.add_argument("--keep", action="store_true", help="leave the container running")
    args = parser.parse_args()
    engines = {k: connect(EngineRef(k, DEFAULT_URLS[k])) for k in ("docker", "podman")}
    labels = dict(item.split("=", 1) for item in args.label)
    docker = engines["docker"]
    docker.run(
        ContainerSpec(
            image="ctk-demo/counter",
            name=args.name,
            labels=labels,
            ports=(PortMapping(8080, host_ip="127.0.0.1"),),
        )
    )
    where = docker
    try:
        value = wait_beyond(docker, args.name, 2)
        print(f"docker: count={value}")
        for dest in ("podman", "docker"):
            before = last_count(where, args.name)
            moved = live_cross_runtime(where, args.name, engines[dest])
            where = engines[dest]
            value = wait_beyond(where, args.name, before)
            if value < before:
                raise SystemExit(f"the counter restarted on {dest}: {value} < {before}")
            url = f"http://127.0.0.1:{moved.ports[0].host_port}/count"
            answer = http_count(where, args.name)
            print(f"{dest}: count={value} (was {before} before the move), {url} says {answer}")
        print("moved docker -> podman -> docker, memory intact")
    except CtkError as exc:
        print(
            f"error: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""), file=sys.stderr
        )
        return 1
    finally:
        if not args.keep:
            try:
                info = where.inspect(args.name)
                where.remove(args.name, force=True)
                remove_criu_config(info)
            except CtkError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
