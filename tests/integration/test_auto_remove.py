"""``--rm`` (auto-remove) containers: after every operation either the container or its state
exists, and both engines behave the same.

An engine removes an --rm container as soon as it stops, with the checkpoints it holds:
in-place checkpoints are refused (exit 5) before anything is frozen; ``--export`` writes the
archive and then, without -R, the container is gone as its stop would have made it (Podman's
own behaviour); with -R it keeps running; migrations keep it until the destination runs.
"""

from __future__ import annotations

import pytest

import toolkit
from tests.conftest import (
    BUSYBOX_IMAGE,
    Containers,
    counts,
    ctk,
    last_count,
    wait_count_at_least,
)
from toolkit.backends.base import Backend
from toolkit.errors import Conflict, ContainerNotFound, ExitCode
from toolkit.models import CheckpointOptions, ExportOptions, ImportOptions

pytestmark = [pytest.mark.integration, pytest.mark.criu]

COUNT = ("sh", "-c", "n=1; while :; do echo count=$n; n=$((n + 1)); sleep 1; done")


def _run_rm(containers: Containers) -> str:
    info = containers.run(BUSYBOX_IMAGE, command=COUNT, auto_remove=True)
    assert containers.backend.inspect(info.name).auto_remove
    wait_count_at_least(containers.backend, info.name, 2)
    return info.name


def _gone(engine: Backend, name: str) -> bool:
    try:
        engine.inspect(name)
    except ContainerNotFound:
        return True
    return False


@pytest.mark.parametrize("leave_running", [False, True])
def test_in_place_checkpoint_refused_before_freezing(
    engine: Backend, containers: Containers, criu: None, leave_running: bool
) -> None:
    name = _run_rm(containers)
    with pytest.raises(Conflict) as caught:
        engine.checkpoint(name, CheckpointOptions(name="cp1", leave_running=leave_running))
    assert "--export" in caught.value.hint
    before = last_count(engine, name)
    # nothing was frozen: it runs on and counts
    wait_count_at_least(engine, name, before + 1)
    assert engine.inspect(name).running and engine.checkpoints(name) == []


def test_cli_in_place_checkpoint_exit_5(
    engine: Backend, containers: Containers, criu: None
) -> None:
    name = _run_rm(containers)
    result = ctk("checkpoint", name, engine=engine.kind)
    assert result.returncode == ExitCode.CONFLICT, result.stderr
    assert "--rm" in result.stderr and "--export" in result.stderr
    assert engine.inspect(name).running


def test_export_removes_it_and_import_continues(
    engine: Backend, containers: Containers, criu: None, tmp_path
) -> None:
    name = _run_rm(containers)
    archive = tmp_path / "rm.ctk"
    engine.export_checkpoint(name, archive, ExportOptions(checkpoint=CheckpointOptions()))
    # like its stop would: the --rm container is gone, and its state is in the archive
    assert archive.stat().st_size > 0
    assert _gone(engine, name)
    restored = engine.import_checkpoint(archive, ImportOptions())
    assert restored.running and restored.name == name
    wait_count_at_least(engine, name, 3)
    seen = counts(engine, name)
    assert seen == sorted(seen) and 1 not in seen[1:], seen


def test_export_leave_running_keeps_it(
    engine: Backend, containers: Containers, criu: None, tmp_path
) -> None:
    name = _run_rm(containers)
    archive = tmp_path / "rm.ctk"
    options = ExportOptions(checkpoint=CheckpointOptions(leave_running=True))
    engine.export_checkpoint(name, archive, options)
    assert archive.stat().st_size > 0
    info = engine.inspect(name)
    assert info.running and not info.paused
    before = last_count(engine, name)
    wait_count_at_least(engine, name, before + 1)
    clone = containers.name("clone")
    assert engine.import_checkpoint(archive, ImportOptions(name=clone)).running


def test_cli_export_of_rm_container(
    engine: Backend, containers: Containers, criu: None, tmp_path
) -> None:
    name = _run_rm(containers)
    archive = tmp_path / "cli.ctk"
    ctk("checkpoint", name, "--export", str(archive), engine=engine.kind, check=True)
    assert _gone(engine, name)
    ctk("restore", "--import", str(archive), engine=engine.kind, check=True)
    assert engine.inspect(name).running


def test_live_migration_same_engine_keeps_state(
    engine: Backend, containers: Containers, criu: None
) -> None:
    name = _run_rm(containers)
    target = containers.name("moved")
    report = toolkit.migrate(name, source=engine, dest=engine, new_name=target, mode="live")
    assert report.status == "done", report
    at = wait_count_at_least(engine, target, 3)
    seen = counts(engine, target)
    assert seen == sorted(seen) and 1 not in seen[1:] and at >= 3, seen
    assert _gone(engine, name)


def test_cold_migration_same_engine(engine: Backend, containers: Containers) -> None:
    name = _run_rm(containers)
    target = containers.name("cold")
    report = toolkit.migrate(name, source=engine, dest=engine, new_name=target, mode="cold")
    assert report.status == "done", report
    wait_count_at_least(engine, target, 2)
    assert _gone(engine, name)


def test_failed_live_migration_brings_the_source_back_from_the_archive(
    engine: Backend, containers: Containers, criu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from toolkit.config import DEFAULT_URLS, EngineRef, connect
    from toolkit.errors import CheckpointError, MigrationError

    name = _run_rm(containers)
    target = containers.name("never")
    dest = connect(EngineRef(engine.kind, DEFAULT_URLS[engine.kind]))

    def failing_import(*_args: object, **_kwargs: object) -> None:
        # the destination's restore fails after the --rm source was dumped (and so removed)
        raise CheckpointError("restore failed on the destination (injected)")

    monkeypatch.setattr(dest, "import_checkpoint", failing_import)
    before = last_count(engine, name)
    try:
        with pytest.raises(MigrationError) as caught:
            toolkit.migrate(name, source=engine, dest=dest, new_name=target, mode="live")
    finally:
        dest.close()
    report = caught.value.report
    assert report.status == "rolled_back", (report.rolled_back, report.notes, caught.value.message)
    assert any("re-imported" in line for line in report.rolled_back), report.rolled_back
    # its state came back: it runs on from where it was dumped
    assert engine.inspect(name).running
    wait_count_at_least(engine, name, before + 2)
    seen = counts(engine, name)
    assert seen == sorted(seen) and 1 not in seen[1:], seen
    assert _gone(engine, target)
