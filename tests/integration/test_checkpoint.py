"""CRIU checkpoint and restore in place, on both engines: the counter continues, not restarts."""

from __future__ import annotations

import json

import pytest

from tests.conftest import (
    Containers,
    counts,
    ctk,
    holds,
    last_count,
    wait_count_at_least,
    wait_for,
)
from toolkit.backends.base import Backend
from toolkit.errors import CheckpointNotFound, Conflict, ContainerNotFound, ExitCode
from toolkit.models import CheckpointOptions, RestoreOptions

pytestmark = [pytest.mark.integration, pytest.mark.criu]


def _assert_continues(engine: Backend, name: str, before: int) -> None:
    """After a restore the counter goes on from ``before``: it never starts again at 1."""
    wait_count_at_least(engine, name, before + 2)
    after_restore = counts(engine, name)
    # The log keeps the pre-checkpoint lines; a restart would print count=1 a second time.
    assert after_restore.count(1) == 1, after_restore
    assert after_restore == sorted(after_restore), after_restore


def test_checkpoint_restore_continues(engine: Backend, containers: Containers, criu: None) -> None:
    info = containers.run()
    before = wait_count_at_least(engine, info.name, 3)
    cp = engine.checkpoint(info.name, CheckpointOptions())
    assert cp.name.startswith("cp-")
    assert not engine.inspect(info.name).running
    stopped_at = last_count(engine, info.name)
    # frozen, not running: the count stays where it stopped (it would move once a second)
    holds(lambda: last_count(engine, info.name) == stopped_at, seconds=2, what="count frozen")
    assert [c.name for c in engine.checkpoints(info.name)] == [cp.name]
    restored = engine.restore(info.name, RestoreOptions())
    assert restored.running
    _assert_continues(engine, info.name, max(before, stopped_at))
    # a second cycle works too
    second = engine.checkpoint(info.name, CheckpointOptions(name="second"))
    assert second.name == "second"
    mid = last_count(engine, info.name)
    engine.restore(info.name, RestoreOptions(checkpoint="second"))
    _assert_continues(engine, info.name, mid)


def test_back_to_back_cycles(engine: Backend, containers: Containers, criu: None) -> None:
    # Restoring right after checkpointing, and checkpointing again at once, is where
    # Docker's containerd blob race (moby#42900) struck about one cycle in ten.
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    for cycle in range(8):
        engine.checkpoint(info.name, CheckpointOptions(name=f"quick{cycle}"))
        assert engine.restore(info.name, RestoreOptions(checkpoint=f"quick{cycle}")).running
    _assert_continues(engine, info.name, last_count(engine, info.name))


def test_leave_running_then_restore(engine: Backend, containers: Containers, criu: None) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 2)
    cp = engine.checkpoint(info.name, CheckpointOptions(name="live", leave_running=True))
    assert engine.inspect(info.name).running
    at_checkpoint = last_count(engine, info.name)
    wait_count_at_least(engine, info.name, at_checkpoint + 2)
    with pytest.raises(Conflict):
        engine.restore(info.name, RestoreOptions())
    engine.stop(info.name, timeout=5)
    engine.restore(info.name, RestoreOptions(checkpoint=cp.name))
    assert engine.inspect(info.name).running
    # Restored state is the checkpoint's: the count resumes near where it was taken.
    wait_for(lambda: len(counts(engine, info.name)) > 0, what="output after restore")
    wait_count_at_least(engine, info.name, at_checkpoint + 1)
    assert counts(engine, info.name).count(1) == 1


def test_cli_checkpoint_restore(engine: Backend, containers: Containers, criu: None) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 2)
    result = ctk("checkpoint", info.name, "--name", "cp1", engine=engine.kind, check=True)
    assert result.stdout.strip() == "cp1"
    listed = json.loads(ctk("checkpoint", "ls", info.name, "--json", engine=engine.kind).stdout)
    assert [c["name"] for c in listed] == ["cp1"]
    ps = json.loads(ctk("--json", "ps", "-a", engine=engine.kind, check=True).stdout)
    assert next(r for r in ps if r["name"] == info.name)["running"] is False
    before = last_count(engine, info.name)
    result = ctk("restore", info.name, engine=engine.kind, check=True)
    assert result.stdout.strip() == info.name
    _assert_continues(engine, info.name, before)


def test_checkpoint_errors(engine: Backend, containers: Containers, criu: None) -> None:
    with pytest.raises(ContainerNotFound):
        engine.checkpoint("ctk-test-missing", CheckpointOptions())
    result = ctk("checkpoint", "ctk-test-missing", engine=engine.kind)
    assert result.returncode == ExitCode.NOT_FOUND and "Hint:" in result.stderr
    info = containers.run()
    engine.stop(info.name, timeout=5)
    # restore with no checkpoint
    with pytest.raises(CheckpointNotFound):
        engine.restore(info.name, RestoreOptions())
    result = ctk("restore", info.name, engine=engine.kind)
    assert result.returncode == ExitCode.NOT_FOUND
    assert f"ctk checkpoint {info.name}" in result.stderr
    # checkpoint of a stopped container
    result = ctk("checkpoint", info.name, engine=engine.kind)
    assert result.returncode == ExitCode.CONFLICT
    assert "Traceback" not in result.stderr


def test_restore_unknown_checkpoint_name(
    engine: Backend, containers: Containers, criu: None
) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    engine.checkpoint(info.name, CheckpointOptions(name="known"))
    result = ctk("restore", info.name, "--checkpoint", "unknown", engine=engine.kind)
    assert result.returncode == ExitCode.NOT_FOUND
    assert "unknown" in result.stderr
    assert not engine.inspect(info.name).running
    engine.restore(info.name, RestoreOptions(checkpoint="known"))
    assert engine.inspect(info.name).running
