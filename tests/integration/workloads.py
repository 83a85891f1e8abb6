"""The real workloads' helpers, shared by test_workloads.py (checkpoint/restore, export/import on
the local engines) and test_workloads_migrate.py (live migration between testbed hosts).

Redis (user redis), PostgreSQL (user postgres) and a Python and a Java web app (user nobody),
from the images scripts/images builds out of Debian's packages. Their own clients check the
state: redis-cli and psql run in the container, psycopg and HTTP from this machine through the
published port (``address`` is 127.0.0.1 for the local engines, the host's address on the
testbed).

With ``CTK_WORKLOAD_METRICS=FILE`` :func:`record` appends one JSON line a measurement to FILE.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from dataclasses import dataclass

from tests.conftest import Containers, wait_for
from toolkit.backends.base import Backend
from toolkit.models import PortMapping

REDIS_IMAGE = "ctk-demo/redis"
POSTGRES_IMAGE = "ctk-demo/postgres"
PYWEB_IMAGE = "ctk-demo/pyweb"
JVM_IMAGE = "ctk-demo/jvm"
PG_ROWS = 20_000
PG_PASSWORD = "ctk"  # images/postgres/customize
PGDATA = "/var/lib/postgresql/15/main"
LOOPBACK = "127.0.0.1"

# Both answer GET /state and POST /hit; the Python app also keeps a dict (PUT /items/KEY).
WEB_APPS = {"pyweb": PYWEB_IMAGE, "jvm": JVM_IMAGE}


# -- measurements ------------------------------------------------------------------------------


def record(engine: Backend | str, workload: str, **values: object) -> None:
    """One measurement to $CTK_WORKLOAD_METRICS (a JSON line), when set."""
    target = os.environ.get("CTK_WORKLOAD_METRICS")
    if not target:
        return
    kind = engine if isinstance(engine, str) else engine.kind
    line = {"engine": kind, "workload": workload, **values}
    with open(target, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


# -- any container -------------------------------------------------------------------------------


def whoami(engine: Backend, name: str) -> str:
    # dockerd 20.10 now and then hands back no output of an exec that exits at once (exit 0,
    # empty stdout; seen once in a CI run right after an import): ask up to three times.
    for _ in range(3):
        result = engine.exec(name, ("id", "-un"))
        assert result.exit_code == 0, result.stderr
        if result.stdout.strip():
            break
    return result.stdout.strip()


def host_port(engine: Backend, name: str, container_port: int) -> int:
    """The host port published for ``container_port`` now (Docker picks a new ephemeral one
    when it restores a container)."""
    ports = [p for p in engine.inspect(name).ports if p.container_port == container_port]
    assert ports and ports[0].host_port, engine.inspect(name).ports
    return ports[0].host_port


def published(container_port: int, host_ip: str = LOOPBACK) -> tuple[PortMapping, ...]:
    """``container_port`` on an ephemeral host port of ``host_ip`` ("" = every address: a
    testbed host's port must answer on its own address)."""
    return (PortMapping(container_port, host_ip=host_ip),)


# -- Redis ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisState:
    dbsize: int
    digest: str
    run_id: str


def redis_cli(engine: Backend, name: str, *args: str) -> str:
    result = engine.exec(name, ("redis-cli", *args))
    assert result.exit_code == 0, f"redis-cli {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout.strip()


def redis_state(engine: Backend, name: str) -> RedisState:
    info = redis_cli(engine, name, "INFO", "server")
    run_id = re.search(r"^run_id:(\w+)", info, re.M)
    assert run_id, info
    return RedisState(
        dbsize=int(redis_cli(engine, name, "DBSIZE")),
        digest=redis_cli(engine, name, "DEBUG", "DIGEST"),
        run_id=run_id.group(1),
    )


def redis_ready(engine: Backend, name: str) -> bool:
    result = engine.exec(name, ("redis-cli", "PING"))
    return result.exit_code == 0 and result.stdout.strip() == "PONG"


def start_redis(containers: Containers, keys: int) -> str:
    """Redis as user redis with ``keys`` keys and ``ctk:marker`` = before-checkpoint."""
    engine = containers.backend
    info = containers.run(REDIS_IMAGE)
    wait_for(lambda: redis_ready(engine, info.name), timeout=60, what="redis PONG")
    assert whoami(engine, info.name) == "redis"
    assert redis_cli(engine, info.name, "DEBUG", "POPULATE", str(keys)) == "OK"
    redis_cli(engine, info.name, "SET", "ctk:marker", "before-checkpoint")
    return info.name


# -- PostgreSQL ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PgState:
    rows: int
    checksum: str
    started: str


def psql(engine: Backend, name: str, sql: str) -> str:
    """psql in the container, as its user postgres over the local socket (trust)."""
    result = engine.exec(name, ("psql", "-v", "ON_ERROR_STOP=1", "-AtX", "-c", sql))
    assert result.exit_code == 0, f"psql {sql!r}: {result.stdout}{result.stderr}"
    return result.stdout.strip()


def pg_ready(engine: Backend, name: str) -> bool:
    return engine.exec(name, ("pg_isready", "-q")).exit_code == 0


_PG_STATE_SQL = (
    "SELECT count(*), md5(string_agg(id || ':' || v, ',' ORDER BY id)), "
    "pg_postmaster_start_time()::text FROM ctk_rows"
)


def pg_state(engine: Backend, name: str) -> PgState:
    rows, checksum, started = psql(engine, name, _PG_STATE_SQL).split("|")
    return PgState(int(rows), checksum, started)


def pg_state_from_host(port: int, address: str = LOOPBACK) -> PgState:
    """The same query from this machine, with psycopg, through the published port (password)."""
    import psycopg

    with psycopg.connect(
        host=address, port=port, user="postgres", password=PG_PASSWORD, dbname="postgres",
        connect_timeout=10,
    ) as conn:  # fmt: skip
        row = conn.execute(_PG_STATE_SQL).fetchone()
    assert row is not None
    return PgState(int(row[0]), str(row[1]), str(row[2]))


def fill_postgres(engine: Backend, name: str) -> None:
    """Wait for the server (as user postgres), then the table ctk_rows with PG_ROWS rows."""
    wait_for(lambda: pg_ready(engine, name), timeout=60, what="pg_isready")
    assert whoami(engine, name) == "postgres"
    psql(
        engine, name,
        "CREATE TABLE ctk_rows (id int PRIMARY KEY, v text NOT NULL); "
        f"INSERT INTO ctk_rows SELECT g, md5(g::text) FROM generate_series(1, {PG_ROWS}) g",
    )  # fmt: skip


def start_postgres(containers: Containers, *, host_ip: str = LOOPBACK) -> str:
    info = containers.run(POSTGRES_IMAGE, ports=published(5432, host_ip))
    fill_postgres(containers.backend, info.name)
    return info.name


# -- the web apps: Python (http.server) and Java (com.sun.net.httpserver) ------------------------


def http(port: int, path: str, *, method: str = "GET", body: bytes | None = None,
         address: str = LOOPBACK) -> object:  # fmt: skip
    request = urllib.request.Request(f"http://{address}:{port}{path}", data=body, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read().decode())


def web_state(engine: Backend, name: str, address: str = LOOPBACK) -> dict[str, object]:
    """GET /state, waiting until the app answers (the JVM compiles its source first)."""
    port = host_port(engine, name, 8000)
    state: dict[str, object] = {}

    def answers() -> bool:
        try:
            state.update(http(port, "/state", address=address))  # type: ignore[arg-type]
        except OSError:
            return False
        return True

    wait_for(answers, timeout=120, what=f"{name} on {address}:{port}")
    return state


def start_web(
    containers: Containers, app: str, *, host_ip: str = LOOPBACK, address: str = LOOPBACK
) -> str:
    """``app`` as user nobody, hit 7 times (the Python app also holds two items)."""
    engine = containers.backend
    info = containers.run(WEB_APPS[app], ports=published(8000, host_ip))
    web_state(engine, info.name, address)
    assert whoami(engine, info.name) == "nobody"
    port = host_port(engine, info.name, 8000)
    for _ in range(7):
        http(port, "/hit", method="POST", address=address)
    if app == "pyweb":
        http(port, "/items/colour", method="PUT", body=b"blue", address=address)
        http(port, "/items/shape", method="PUT", body=b"round", address=address)
    return info.name
