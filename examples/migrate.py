#!/usr/bin/env python3
"""Live-migrate a stateful web container between two hosts with the ctk library.

Runs the demo counter (its count lives only in memory; httpd serves it at :8080/count) on the
source host, migrates it live to the destination, and checks that the count went on there.
Defaults to the testbed hosts h1 -> h2 (`scripts/testbed up`); pass other engines with
--from/--to. Usage: examples/migrate.py [--kind docker|podman] [--from URL --to URL] [--port N]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import urllib.request
import uuid

import toolkit
from toolkit.readiness import wait_for_log

TESTBED = {1: "10.77.0.11", 2: "10.77.0.12"}


def fetch_count(address: str, port: int, timeout: float = 20) -> int:
    """The counter's value over HTTP, retried until it answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{address}:{port}/count", timeout=3) as resp:
                return int(resp.read().decode().strip())
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("docker", "podman"), default="docker")
    parser.add_argument("--from", dest="source", help="source engine URL (default: testbed h1)")
    parser.add_argument("--to", dest="dest", help="destination engine URL (default: testbed h2)")
    parser.add_argument("--dest-address", default=TESTBED[2], help="where the port answers")
    parser.add_argument("--port", type=int, default=28080, help="host port to publish")
    args = parser.parse_args()
    source = toolkit.get_backend(
        args.source or f"{args.kind}+unix:///run/ctk-testbed/h1/{args.kind}.sock"
    )
    dest = toolkit.get_backend(
        args.dest or f"{args.kind}+unix:///run/ctk-testbed/h2/{args.kind}.sock"
    )
    name = f"ctk-example-{uuid.uuid4().hex[:6]}"
    source.run(
        toolkit.ContainerSpec(
            image="ctk-demo/counter",
            name=name,
            ports=(toolkit.PortMapping(container_port=8080, host_port=args.port),),
            labels={"ctk.example": "migrate"},
        )
    )
    try:
        # let it count a little: until it printed count=3 (at most 30 s)
        wait_for_log(source, name, r"^count=3$", timeout=30)
        before = int(source.logs(name).split("count=")[-1].split()[0])
        print(f"{name} counted to {before} on {source.url}")
        report = toolkit.migrate(
            name,
            source=source,
            dest=dest,
            mode="live",
            verify=f"http://{args.dest_address}:{args.port}/count",
        )
        print(
            f"moved in {report.downtime:.2f}s of downtime ({report.mode}: {report.reason}); "
            f"phases {report.timings}"
        )
        after = fetch_count(args.dest_address, args.port)
        print(f"{name} answers {after} on {dest.url}")
        if after < before:
            print(f"FAILED: the count went back from {before} to {after}", file=sys.stderr)
            return 1
        print("OK: the state survived the move")
        return 0
    finally:
        for engine in (source, dest):
            with contextlib.suppress(toolkit.NotFound):
                engine.remove(name, force=True)


if __name__ == "__main__":
    sys.exit(main())
