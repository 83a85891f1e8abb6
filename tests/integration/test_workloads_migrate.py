"""Real non-root workloads through live migration on the testbed: Redis (user redis), PostgreSQL
(user postgres), the Python and the Java web app (user nobody), each started on h1's engine and
moved twice, live, with its memory:

1. h1 -> h2 on the same kind of engine,
2. then h2 -> h1 across runtimes (Docker -> Podman, Podman -> Docker).

One container makes both moves (a workload started once serves both legs: the suite's budget).
After each leg its own client checks it on the destination: the same DBSIZE, digest and run_id,
the same rows and ``pg_postmaster_start_time()`` (in the container with psql and from this
machine with psycopg over the destination's address), the same hits, items, start time and pid;
then a write goes through, and the source is gone. PostgreSQL with its data on a named volume
makes the same-kind leg (the volume moves with it); across runtimes with a volume is the
cross-runtime volumes work's.

With ``CTK_WORKLOAD_METRICS=FILE`` every leg appends its report's numbers (the dump's seconds,
the bytes moved, the downtime) to FILE; ``-s`` prints them too.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import toolkit
from tests.conftest import Containers, Testbed, wait_for
from tests.integration import workloads as wl
from toolkit.backends.base import Backend, VolumeData
from toolkit.errors import ContainerNotFound, CtkError
from toolkit.models import MigrationReport, Mount

pytestmark = [pytest.mark.integration, pytest.mark.criu, pytest.mark.testbed]

ENGINES = ("docker", "podman")
OTHER = {"docker": "podman", "podman": "docker"}
REDIS_KEYS = 20_000
EVERY_ADDRESS = ""  # a testbed host's published port answers on its own address


@dataclass
class Route:
    """The workload's way: started on h1's ``kind``, to h2's ``kind``, back to h1's other
    engine. Every name it hands out is removed from all three engines afterwards."""

    testbed: Testbed
    kind: str
    h1: Backend
    h2: Backend
    back: Backend
    containers: Containers = field(init=False)

    def __post_init__(self) -> None:
        self.containers = Containers(self.h1)

    def address(self, backend: Backend) -> str:
        return self.testbed.hosts[1 if backend is self.h2 else 0].address

    def legs(self) -> tuple[tuple[str, Backend, Backend], ...]:
        return (("same", self.h1, self.h2), ("cross", self.h2, self.back))

    def cleanup(self) -> None:
        for backend in (self.h1, self.h2, self.back):
            for name in self.containers.names:
                with contextlib.suppress(CtkError):
                    backend.remove(name, force=True, volumes=True)
            backend.close()


@pytest.fixture(params=ENGINES)
def route(request: pytest.FixtureRequest, testbed: Testbed, state: Path) -> Iterator[Route]:
    kind: str = request.param
    h1, h2 = testbed.hosts[0], testbed.hosts[1]
    made = Route(testbed, kind, h1.backend(kind), h2.backend(kind), h1.backend(OTHER[kind]))
    try:
        yield made
    finally:
        made.cleanup()


def _migrate(route: Route, workload: str, leg: str, src: Backend, dst: Backend, name: str) -> None:
    """Move ``name`` live from ``src`` to ``dst``; the source is gone; record the numbers."""
    report = toolkit.migrate(name, source=src, dest=dst, mode="live")
    assert report.status == "done" and report.mode == "live", report
    assert dst.inspect(name).running
    with pytest.raises(ContainerNotFound):
        src.inspect(name)
    _record(report, workload, leg, src, dst)


def _record(report: MigrationReport, workload: str, leg: str, src: Backend, dst: Backend) -> None:
    values = {
        "op": f"migrate-{leg}",
        "dump_seconds": report.timings.get("dump"),
        "total_seconds": round(sum(report.timings.values()), 2),
        "downtime": round(report.downtime, 2),
        "archive_bytes": report.archive_bytes,
        "image_bytes": report.image_bytes,
    }
    wl.record(f"{src.kind}->{dst.kind}", workload, **values)
    print(f"\n{workload} {src.kind}->{dst.kind} ({leg}): {values}")


# -- each workload: its state as its client sees it, and a write that must go through ----------


@dataclass(frozen=True)
class Checks:
    state: Callable[[Route, Backend, str], object]
    write: Callable[[Route, Backend, str], None]
    user: str


def _redis_seen(route: Route, engine: Backend, name: str) -> object:
    wait_for(lambda: wl.redis_ready(engine, name), timeout=60, what="redis PONG")
    return wl.redis_state(engine, name), wl.redis_cli(engine, name, "GET", "ctk:marker")


def _redis_write(route: Route, engine: Backend, name: str) -> None:
    # the next leg's state then carries this write: it must move too
    assert wl.redis_cli(engine, name, "SET", "ctk:marker", f"on {engine.kind}") == "OK"


def _pg_seen(route: Route, engine: Backend, name: str) -> object:
    wait_for(lambda: wl.pg_ready(engine, name), timeout=60, what="pg_isready")
    seen = wl.pg_state(engine, name)
    port = wl.host_port(engine, name, 5432)
    assert wl.pg_state_from_host(port, route.address(engine)) == seen
    return seen


def _pg_write(route: Route, engine: Backend, name: str) -> None:
    wl.psql(engine, name, "INSERT INTO ctk_rows SELECT max(id) + 1, 'moved' FROM ctk_rows")
    # A parallel scan makes a new dynamic shared memory segment in /dev/shm as user postgres:
    # after Podman -> Docker that is the volume ctk put there, which must let it.
    counted = wl.psql(
        engine, name,
        "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; "
        "SET min_parallel_table_scan_size = 0; SELECT count(*) FROM ctk_rows",
    )  # fmt: skip
    assert int(counted.splitlines()[-1]) == wl.pg_state(engine, name).rows


def _web_seen(route: Route, engine: Backend, name: str) -> object:
    return wl.web_state(engine, name, route.address(engine))


def _web_write(route: Route, engine: Backend, name: str) -> None:
    port = wl.host_port(engine, name, 8000)
    before = wl.web_state(engine, name, route.address(engine))["hits"]
    after = wl.http(port, "/hit", method="POST", address=route.address(engine))
    assert after["hits"] == before + 1  # type: ignore[index,operator]


REDIS = Checks(_redis_seen, _redis_write, "redis")
POSTGRES = Checks(_pg_seen, _pg_write, "postgres")
WEB = Checks(_web_seen, _web_write, "nobody")


def _both_legs(route: Route, workload: str, name: str, checks: Checks) -> None:
    for leg, src, dst in route.legs():
        before = checks.state(route, src, name)
        _migrate(route, workload, leg, src, dst, name)
        # the same process with the same data: a restart would show a new run_id, postmaster
        # start time or pid
        assert checks.state(route, dst, name) == before, f"{workload} after {leg}"
        assert wl.whoami(dst, name) == checks.user
        checks.write(route, dst, name)


def test_redis_moves_live_to_the_same_kind_and_across_runtimes(route: Route) -> None:
    name = wl.start_redis(route.containers, REDIS_KEYS)
    assert wl.redis_state(route.h1, name).dbsize == REDIS_KEYS + 1
    _both_legs(route, "redis", name, REDIS)


def test_postgres_moves_live_to_the_same_kind_and_across_runtimes(route: Route) -> None:
    name = wl.start_postgres(route.containers, host_ip=EVERY_ADDRESS)
    _both_legs(route, "postgres", name, POSTGRES)


@pytest.mark.parametrize("app", list(wl.WEB_APPS))
def test_web_app_moves_live_to_the_same_kind_and_across_runtimes(route: Route, app: str) -> None:
    address = route.address(route.h1)
    name = wl.start_web(route.containers, app, host_ip=EVERY_ADDRESS, address=address)
    _both_legs(route, app, name, WEB)


def test_postgres_with_its_data_on_a_named_volume_moves_live(route: Route) -> None:
    """The data directory on a named volume: the volume and its data go along to h2 (same
    kind), owned by postgres as before, and the same postmaster writes on into it."""
    volume = f"ctk-test-pgdata-{uuid.uuid4().hex[:8]}"
    info = route.containers.run(
        wl.POSTGRES_IMAGE,
        ports=wl.published(5432, EVERY_ADDRESS),
        volumes=(Mount(target=wl.PGDATA, source=volume, name=volume),),
    )
    try:
        wl.fill_postgres(route.h1, info.name)
        before = wl.pg_state(route.h1, info.name)
        assert _pg_seen(route, route.h1, info.name) == before
        _migrate(route, "postgres-volume", "same", route.h1, route.h2, info.name)
        assert _pg_seen(route, route.h2, info.name) == before
        assert isinstance(route.h2, VolumeData)
        owner = route.h2.exec(info.name, ("stat", "-c", "%U %a", wl.PGDATA))
        assert owner.stdout.strip() == "postgres 700", owner
        _pg_write(route, route.h2, info.name)
        wl.psql(route.h2, info.name, "CHECKPOINT")  # the write reaches the volume's files
        after = wl.pg_state(route.h2, info.name)
        assert after.rows == before.rows + 1 and after.started == before.started
    finally:
        for backend in (route.h1, route.h2):
            with contextlib.suppress(CtkError):
                backend.remove(info.name, force=True, volumes=True)
            assert isinstance(backend, VolumeData)
            with contextlib.suppress(CtkError):
                backend.remove_volume(volume, force=True)
