"""Real workloads, each as its image's own non-root user, on both engines: Redis (user redis),
PostgreSQL (user postgres), a Python and a Java web app (user nobody), from the images
scripts/images builds out of Debian's packages (helpers in workloads.py). Their own clients
check the state: redis-cli and psql run in the container, psycopg and HTTP from the host
through the published 127.0.0.1 port.

Each is checkpointed and restored in place, and exported and imported as a clone under a new
name, and must come back with the same data and the same process (Redis' run_id, PostgreSQL's
``pg_postmaster_start_time()``, the web apps' start time and pid), never a restart.

With ``CTK_WORKLOAD_METRICS=FILE`` each test appends one JSON line a measurement to FILE: the
checkpoint's time and size (CRIU's images in place; the archive and its members on export).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import Containers, ctk, wait_for
from tests.integration.workloads import (
    PG_ROWS,
    PGDATA,
    POSTGRES_IMAGE,
    WEB_APPS,
    fill_postgres,
    host_port,
    http,
    pg_ready,
    pg_state,
    pg_state_from_host,
    psql,
    published,
    record,
    redis_cli,
    redis_ready,
    redis_state,
    start_postgres,
    start_redis,
    start_web,
    web_state,
    whoami,
)
from toolkit import archive
from toolkit.backends.base import Backend
from toolkit.models import (
    CheckpointOptions,
    ExportOptions,
    ImportOptions,
    Mount,
    RestoreOptions,
)

pytestmark = [pytest.mark.integration, pytest.mark.criu]

REDIS_KEYS = 100_000


def _checkpoint_in_place(engine: Backend, name: str, workload: str, tmp_path: Path) -> str:
    """Checkpoint ``name`` (it stops), record the time and, when measuring, the images' size."""
    started = time.monotonic()
    cp = engine.checkpoint(name, CheckpointOptions())
    seconds = time.monotonic() - started
    assert not engine.inspect(name).running
    size = None
    if os.environ.get("CTK_WORKLOAD_METRICS"):
        images = tmp_path / f"images-{cp.name}"
        images.mkdir()
        engine.fetch_checkpoint_images(name, cp.name, images)
        size = sum(p.stat().st_size for p in images.rglob("*") if p.is_file())
    record(engine, workload, op="checkpoint", seconds=round(seconds, 2), criu_images_bytes=size)
    return cp.name


def _export(engine: Backend, name: str, workload: str, path: Path) -> None:
    """Export ``name`` (left running) into ``path``; record time and sizes."""
    started = time.monotonic()
    result = engine.export_checkpoint(
        name, path, ExportOptions(checkpoint=CheckpointOptions(leave_running=True))
    )
    seconds = time.monotonic() - started
    assert engine.inspect(name).running
    record(
        engine, workload, op="export", seconds=round(seconds, 2),
        checkpoint_seconds=round(result.timings.get("checkpoint", 0.0), 2),
        archive_bytes=path.stat().st_size,
        members_bytes=sum(m.size for m in result.manifest.members),
    )  # fmt: skip


# -- Redis ---------------------------------------------------------------------------------------


def test_redis_checkpoint_restore_in_place(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    name = start_redis(containers, REDIS_KEYS)
    before = redis_state(engine, name)
    assert before.dbsize == REDIS_KEYS + 1
    cp = _checkpoint_in_place(engine, name, "redis", tmp_path)
    restored = engine.restore(name, RestoreOptions(checkpoint=cp))
    assert restored.running
    wait_for(lambda: redis_ready(engine, name), timeout=60, what="redis PONG after restore")
    assert redis_state(engine, name) == before  # same data, same process (run_id)
    assert whoami(engine, name) == "redis"
    assert redis_cli(engine, name, "GET", "ctk:marker") == "before-checkpoint"


def test_redis_export_import_clone(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    name = start_redis(containers, REDIS_KEYS)
    before = redis_state(engine, name)
    path = tmp_path / "redis.ctk"
    _export(engine, name, "redis", path)
    # The way a user does it: the CLI, a new name.
    clone = containers.name("redis-clone")
    result = ctk("restore", "--import", str(path), "--name", clone, engine=engine.kind, check=True)
    assert result.stdout.strip() == clone
    wait_for(lambda: redis_ready(engine, clone), timeout=60, what="clone PONG")
    assert redis_state(engine, clone) == before
    assert whoami(engine, clone) == "redis"
    # Two independent copies: a write to the clone leaves the original as it was.
    redis_cli(engine, clone, "SET", "ctk:marker", "clone-only")
    assert redis_cli(engine, name, "GET", "ctk:marker") == "before-checkpoint"
    assert redis_state(engine, name) == before


# -- PostgreSQL ----------------------------------------------------------------------------------


def test_postgres_checkpoint_restore_in_place(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    name = start_postgres(containers)
    before = pg_state(engine, name)
    assert before.rows == PG_ROWS
    cp = _checkpoint_in_place(engine, name, "postgres", tmp_path)
    assert engine.restore(name, RestoreOptions(checkpoint=cp)).running
    wait_for(lambda: pg_ready(engine, name), timeout=60, what="pg_isready after restore")
    # the same postmaster (a restart would have a new start time), the same rows
    assert pg_state(engine, name) == before
    # and it goes on working: a write, then the rows over the published port (password auth)
    psql(engine, name, f"INSERT INTO ctk_rows VALUES ({PG_ROWS + 1}, 'after restore')")
    from_host = pg_state_from_host(host_port(engine, name, 5432))
    assert from_host.rows == PG_ROWS + 1 and from_host.started == before.started


def test_postgres_export_import_clone_new_port(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    name = start_postgres(containers)
    before = pg_state(engine, name)
    original_port = host_port(engine, name, 5432)
    path = tmp_path / "postgres.ctk"
    _export(engine, name, "postgres", path)
    clone = containers.name("pg-clone")
    imported = engine.import_checkpoint(path, ImportOptions(name=clone, ports=published(5432)))
    assert imported.running and imported.name == clone
    wait_for(lambda: pg_ready(engine, clone), timeout=60, what="clone pg_isready")
    assert whoami(engine, clone) == "postgres"
    clone_port = host_port(engine, clone, 5432)
    assert clone_port != original_port
    # The clone answers on its own port with the original's rows (and its postmaster).
    assert pg_state_from_host(clone_port) == before
    # Independent: rows added to the clone are not in the original.
    psql(engine, clone, f"INSERT INTO ctk_rows VALUES ({PG_ROWS + 1}, 'clone only')")
    assert pg_state_from_host(clone_port).rows == PG_ROWS + 1
    assert pg_state_from_host(host_port(engine, name, 5432)) == before


def test_postgres_with_its_data_on_a_named_volume_export_import(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    """The cluster's data directory on a named volume: exported with the checkpoint, imported
    on a clean engine (container and volume gone), the same postmaster over the same rows,
    owned by postgres as before, and writing on."""
    import contextlib
    import uuid

    from toolkit.backends.base import VolumeData
    from toolkit.errors import CtkError

    assert isinstance(engine, VolumeData)
    volume = f"ctk-test-pgdata-{uuid.uuid4().hex[:8]}"
    info = containers.run(
        POSTGRES_IMAGE,
        ports=published(5432),
        volumes=(Mount(target=PGDATA, source=volume, name=volume),),
    )
    try:
        fill_postgres(engine, info.name)
        before = pg_state(engine, info.name)
        path = tmp_path / "pgdata.ctk"
        started = time.monotonic()
        result = engine.export_checkpoint(info.name, path, ExportOptions())
        record(
            engine, "postgres-volume", op="export", seconds=round(time.monotonic() - started, 2),
            archive_bytes=path.stat().st_size,
            volume_bytes=sum(m.size for m in result.manifest.members if m.name.startswith("volumes/")),
        )  # fmt: skip
        assert f"volumes/{volume}.tar" in {m.name for m in result.manifest.members}
        engine.remove(info.name, force=True, volumes=True)
        engine.remove_volume(volume)
        imported = engine.import_checkpoint(path, ImportOptions(ports=published(5432)))
        assert imported.running
        wait_for(lambda: pg_ready(engine, info.name), timeout=60, what="pg_isready after import")
        assert pg_state(engine, info.name) == before  # the same postmaster, the same rows
        owner = engine.exec(info.name, ("stat", "-c", "%U %a", PGDATA))
        assert owner.stdout.strip() == "postgres 700", owner
        psql(engine, info.name, f"INSERT INTO ctk_rows VALUES ({PG_ROWS + 1}, 'after import')")
        psql(engine, info.name, "CHECKPOINT")  # the write reaches the volume's files
        from_host = pg_state_from_host(host_port(engine, info.name, 5432))
        assert from_host.rows == PG_ROWS + 1 and from_host.started == before.started
    finally:
        containers.cleanup()
        with contextlib.suppress(CtkError):
            engine.remove_volume(volume, force=True)


# -- the web apps: Python (http.server) and Java (com.sun.net.httpserver) ------------------------


@pytest.mark.parametrize("app", list(WEB_APPS))
def test_web_app_checkpoint_restore_in_place(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path, app: str
) -> None:
    name = start_web(containers, app)
    before = web_state(engine, name)
    assert before["hits"] == 7
    if app == "pyweb":
        assert before["items"] == {"colour": "blue", "shape": "round"}
    cp = _checkpoint_in_place(engine, name, app, tmp_path)
    assert engine.restore(name, RestoreOptions(checkpoint=cp)).running
    assert web_state(engine, name) == before  # same hits (and items), start time and pid
    assert http(host_port(engine, name, 8000), "/hit", method="POST")["hits"] == 8  # type: ignore[index]


@pytest.mark.parametrize("app", list(WEB_APPS))
def test_web_app_export_import_clone(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path, app: str
) -> None:
    name = start_web(containers, app)
    before = web_state(engine, name)
    path = tmp_path / f"{app}.ctk"
    _export(engine, name, app, path)
    assert archive.read_manifest(path).image_id == engine.inspect(name).image_id
    clone = containers.name(f"{app}-clone")
    engine.import_checkpoint(path, ImportOptions(name=clone, ports=published(8000)))
    assert web_state(engine, clone) == before
    assert whoami(engine, clone) == "nobody"
    http(host_port(engine, clone, 8000), "/hit", method="POST")
    assert web_state(engine, name) == before  # the original is its own copy
