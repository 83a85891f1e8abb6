"""run -> ps -> logs -> stop -> rm on both engines, through the library and the CLI."""

from __future__ import annotations

import json

import pytest

from tests.conftest import BUSYBOX_IMAGE, COUNTER_IMAGE, Containers, ctk, wait_count_at_least
from toolkit.backends.base import Backend
from toolkit.errors import Conflict, ContainerNotFound, ExitCode, ImageNotFound, InvalidArgument

pytestmark = pytest.mark.integration


def test_run_ps_logs_stop_rm(engine: Backend, containers: Containers) -> None:
    info = containers.run(COUNTER_IMAGE)
    assert info.running and info.engine == engine.kind
    assert info.image_id.startswith("sha256:")
    assert info.name in {c.name for c in engine.containers()}
    wait_count_at_least(engine, info.name, 2)
    assert "count=1" in engine.logs(info.name)
    assert len(engine.logs(info.name, tail=1).strip().splitlines()) == 1
    engine.stop(info.name, timeout=5)
    assert not engine.inspect(info.name).running
    assert info.name not in {c.name for c in engine.containers()}
    assert info.name in {c.name for c in engine.containers(all=True)}
    engine.remove(info.name)
    with pytest.raises(ContainerNotFound):
        engine.inspect(info.name)


def test_cli_lifecycle(engine: Backend, containers: Containers) -> None:
    name = containers.name("cli")
    result = ctk(
        "run",
        "-d",
        "--name",
        name,
        "-e",
        "GREETING=hi",
        "-l",
        "ctk.test=1",
        "-p",
        "127.0.0.1::8080",
        COUNTER_IMAGE,
        engine=engine.kind,
        check=True,
    )
    assert len(result.stdout.strip()) == 64
    ps = json.loads(ctk("ps", "--json", engine=engine.kind, check=True).stdout)
    row = next(r for r in ps if r["name"] == name)
    assert row["running"] is True and row["labels"]["ctk.test"] == "1"
    assert row["ports"][0]["container_port"] == 8080 and row["ports"][0]["host_port"] > 0
    assert name in ctk("ps", engine=engine.kind, check=True).stdout
    wait_count_at_least(engine, name, 2)
    logs = ctk("logs", "--tail", "1", name, engine=engine.kind, check=True).stdout
    assert logs.startswith("count=") and len(logs.strip().splitlines()) == 1
    assert ctk("stop", "-t", "5", name, engine=engine.kind, check=True).stdout.strip() == name
    assert name not in ctk("ps", engine=engine.kind, check=True).stdout
    assert name in ctk("ps", "-a", engine=engine.kind, check=True).stdout
    assert ctk("rm", name, engine=engine.kind, check=True).stdout.strip() == name
    assert name not in ctk("ps", "-a", engine=engine.kind, check=True).stdout


def test_run_attached_passes_exit_code(engine: Backend, containers: Containers) -> None:
    name = containers.name("att")
    result = ctk(
        "run", "--name", name, BUSYBOX_IMAGE, "sh", "-c", "echo hello; exit 3", engine=engine.kind
    )
    assert result.returncode == 3
    assert "hello" in result.stdout


def test_unknown_container(engine: Backend) -> None:
    with pytest.raises(ContainerNotFound):
        engine.inspect("ctk-test-does-not-exist")
    for args in (("logs", "ctk-test-nope"), ("stop", "ctk-test-nope"), ("rm", "ctk-test-nope")):
        result = ctk(*args, engine=engine.kind)
        assert result.returncode == ExitCode.NOT_FOUND, result.stderr
        assert "Traceback" not in result.stderr and "Hint:" in result.stderr


def test_bad_image_names(engine: Backend, containers: Containers) -> None:
    name = containers.name("img")
    with pytest.raises(ImageNotFound):
        containers.run("ctk-demo/does-not-exist:latest", name=name)
    # nothing half-made is left behind
    assert name not in {c.name for c in engine.containers(all=True)}
    with pytest.raises(InvalidArgument):
        containers.run("Bad Image", name=name)
    result = ctk("run", "-d", "--name", name, "ctk-demo/does-not-exist", engine=engine.kind)
    assert result.returncode == ExitCode.NOT_FOUND and "Hint:" in result.stderr
    result = ctk("run", "-d", "--name", "bad name!", COUNTER_IMAGE, engine=engine.kind)
    assert result.returncode == ExitCode.USAGE


def test_rm_running_needs_force(engine: Backend, containers: Containers) -> None:
    info = containers.run(COUNTER_IMAGE)
    with pytest.raises(Conflict):
        engine.remove(info.name)
    result = ctk("rm", info.name, engine=engine.kind)
    assert result.returncode == ExitCode.CONFLICT
    assert ctk("rm", "-f", info.name, engine=engine.kind).returncode == 0
