"""Containers run as a non-root user checkpoint, restore and export like root ones, and bad
checkpoint names are refused the same way on both engines, before any lookup.

This machine's capability bounding set lacks CAP_SYS_RESOURCE: CRIU 4.1.1 as released cannot
read a non-root task's rlimits here; ctk's patched CRIU reads /proc/PID/limits instead
(scripts/criu-patches/0002-*).
"""

from __future__ import annotations

import pytest

from tests.conftest import (
    BUSYBOX_IMAGE,
    Containers,
    counts,
    ctk,
    last_count,
    wait_count_at_least,
)
from toolkit.backends.base import Backend
from toolkit.errors import ExitCode
from toolkit.models import CheckpointOptions, ExportOptions, ImportOptions, RestoreOptions

pytestmark = [pytest.mark.integration, pytest.mark.criu]

NOBODY = "65534:65534"
# The count lives only in the shell: a restart would begin at 1 again.
COUNT = ("sh", "-c", "n=1; while :; do echo count=$n; n=$((n + 1)); sleep 1; done")


def _run_as_nobody(containers: Containers) -> str:
    info = containers.run(BUSYBOX_IMAGE, command=COUNT, user=NOBODY)
    assert containers.backend.exec(info.name, ["id", "-u"]).stdout.strip() == "65534"
    return info.name


def _continues(engine: Backend, name: str, after: int) -> None:
    """The counter goes on past ``after`` and never started again at 1."""
    wait_count_at_least(engine, name, after + 2)
    seen = counts(engine, name)
    assert seen == sorted(seen) and seen.count(1) <= 1, seen


def test_non_root_checkpoint_restore_in_place(
    engine: Backend, containers: Containers, criu: None
) -> None:
    name = _run_as_nobody(containers)
    wait_count_at_least(engine, name, 3)
    engine.checkpoint(name, CheckpointOptions(name="nobody1"))
    assert not engine.inspect(name).running
    stopped_at = last_count(engine, name)
    assert engine.restore(name, RestoreOptions(checkpoint="nobody1")).running
    _continues(engine, name, stopped_at)
    assert engine.exec(name, ["id", "-u"]).stdout.strip() == "65534"


def test_non_root_cli_checkpoint_restore(
    engine: Backend, containers: Containers, criu: None
) -> None:
    name = _run_as_nobody(containers)
    wait_count_at_least(engine, name, 2)
    ctk("checkpoint", name, "--name", "cli1", engine=engine.kind, check=True)
    stopped_at = last_count(engine, name)
    ctk("restore", name, engine=engine.kind, check=True)
    _continues(engine, name, stopped_at)


def test_non_root_export_import_clone(
    engine: Backend, containers: Containers, criu: None, tmp_path
) -> None:
    name = _run_as_nobody(containers)
    wait_count_at_least(engine, name, 3)
    archive = tmp_path / "nobody.ctk"
    options = ExportOptions(checkpoint=CheckpointOptions(name="exp", leave_running=True))
    engine.export_checkpoint(name, archive, options)
    at_export = last_count(engine, name)
    clone = containers.name("clone")
    restored = engine.import_checkpoint(archive, ImportOptions(name=clone))
    assert restored.running and restored.name == clone
    # the clone resumes from the export's count, as nobody, beside its running original
    wait_count_at_least(engine, clone, 3)
    clone_counts = counts(engine, clone)
    assert clone_counts == sorted(clone_counts) and 1 not in clone_counts[1:], clone_counts
    assert max(clone_counts) >= min(at_export, 3)
    assert engine.exec(clone, ["id", "-u"]).stdout.strip() == "65534"
    assert engine.inspect(name).running


# Every command that takes a checkpoint name, with a container that does not exist: the name
# is refused first (exit 2), on both engines, and never "no such container" (exit 4).
_BAD_NAME_COMMANDS = [
    ("checkpoint", "{c}", "--name", "{n}"),
    ("checkpoint", "create", "{c}", "--name", "{n}"),
    ("checkpoint", "{c}", "--name", "{n}", "--export", "{f}"),
    ("checkpoint", "rm", "{c}", "{n}"),
    ("checkpoint", "inspect", "{c}", "{n}"),
    ("restore", "{c}", "--checkpoint", "{n}"),
]


@pytest.mark.parametrize("bad", ["", "a/b", ".x", "x" * 129])
@pytest.mark.parametrize("command", _BAD_NAME_COMMANDS, ids=lambda c: "-".join(c[:2]))
def test_bad_checkpoint_name_refused_before_lookup(
    engine: Backend, command: tuple[str, ...], bad: str, tmp_path
) -> None:
    argv = [a.format(c="ctk-test-no-such-container", n=bad, f=tmp_path / "x.ctk") for a in command]
    result = ctk(*argv, engine=engine.kind)
    assert result.returncode == ExitCode.USAGE, (argv, result.stderr)
    assert "invalid checkpoint name" in result.stderr
    assert not (tmp_path / "x.ctk").exists()


def test_empty_checkpoint_name_leaves_container_alone(
    engine: Backend, containers: Containers
) -> None:
    info = containers.run(BUSYBOX_IMAGE, command=COUNT)
    result = ctk("checkpoint", info.name, "--name", "", engine=engine.kind)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert engine.inspect(info.name).running
    assert engine.checkpoints(info.name) == []
