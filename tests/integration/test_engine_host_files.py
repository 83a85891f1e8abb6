"""What ctk reads from the engine's host, read through the engine (issue 15).

Podman keeps CRIU's logs and statistics in the container's StaticDir on the engine's host;
dockerd names CRIU's log in containerd's task directory in its error. These tests make ctk
believe those directories are not on its machine (``_visible_here`` patched to "no"), so that
every read goes through a helper container bind-mounting them, as for an engine on another
host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUSYBOX_IMAGE, Containers, wait_for
from toolkit.backends.base import Backend, CriuLogs, SharedFilesystem
from toolkit.errors import CheckpointError
from toolkit.migration.cross_runtime import criu_config_dir
from toolkit.models import CheckpointOptions

pytestmark = [pytest.mark.integration, pytest.mark.criu]

# A TCP connection inside the container's own network namespace: without --tcp-established
# CRIU refuses to dump it ("Connected TCP socket, consider using --tcp-established option").
_HOLDS_TCP = (
    "sh",
    "-c",
    # the listener's stdin must stay open (a background job's is /dev/null: it would hang up);
    # the client retries until the listener is up
    "sleep 1000000 | nc -l -p 9000 >/dev/null & "
    "while :; do while :; do echo tick; sleep 0.2; done | nc 127.0.0.1 9000; sleep 0.1; done",
)


@pytest.fixture
def remote_view(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine host's directories count as "not on this machine": reads go through a helper.

    Podman: the container's StaticDir; Docker: containerd's task directory holding CRIU's log.
    """
    monkeypatch.setattr("toolkit.backends.podman.files._visible_here", lambda _path: False)
    monkeypatch.setattr("toolkit.backends.docker.files._visible_here", lambda _path: False)


@pytest.fixture
def helpers_made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The images of the helper containers either backend made during the test."""
    from toolkit.backends.docker.files import FilesMixin as DockerFiles
    from toolkit.backends.podman.files import FilesMixin as PodmanFiles

    made: list[str] = []
    for cls in (DockerFiles, PodmanFiles):
        original = cls._helper

        def counting(
            self: Any, image: str, *args: Any, _original: Any = original, **kw: Any
        ) -> Any:
            made.append(image)
            return _original(self, image, *args, **kw)

        monkeypatch.setattr(cls, "_helper", counting)
    return made


def _helpers(engine: Backend) -> set[str]:
    return {c.name for c in engine.containers(all=True, filters={"label": ["ctk.helper=1"]})}


def test_failed_checkpoint_carries_criu_reason_read_through_the_engine(
    engine: Backend,
    containers: Containers,
    criu: None,
    remote_view: None,
    helpers_made: list[str],
) -> None:
    info = containers.run(BUSYBOX_IMAGE, command=_HOLDS_TCP)

    def established() -> bool:
        result = engine.exec(info.name, ["netstat", "-tn"])
        return "ESTABLISHED" in result.stdout

    wait_for(established, timeout=20, what="an established connection in the container")
    with pytest.raises(CheckpointError) as excinfo:
        engine.checkpoint(info.name, CheckpointOptions())
    # CRIU's own first error line, not "see CRIU's reason above" with nothing above.
    assert "TCP" in str(excinfo.value), excinfo.value
    assert "--tcp-established" in excinfo.value.hint
    assert helpers_made, "CRIU's log was read from ctk's disk, not through the engine"
    assert engine.inspect(info.name).running


def test_criu_stats_and_log_read_through_a_helper(
    engine: Backend, containers: Containers, criu: None, remote_view: None
) -> None:
    info = containers.run(
        BUSYBOX_IMAGE, command=("sh", "-c", "while :; do echo 1; sleep 0.2; done")
    )
    engine.checkpoint(info.name, CheckpointOptions(leave_running=True))
    stats = engine.criu_stats(info.name, phase="dump")
    if engine.kind == "docker":
        # containerd deletes CRIU's work directory, stats and all: nothing to read anywhere.
        assert stats == {}
        assert not isinstance(engine, CriuLogs)
        return
    assert stats["frozen_time"] > 0 and stats["pages_written"] > 0, stats
    assert isinstance(engine, CriuLogs)
    assert "Version: " in engine.criu_log(info.name, phase="dump")
    # the helper containers are gone again (other tests' helpers may come and go)
    wait_for(
        lambda: not {n for n in _helpers(engine) if n in containers.names},
        timeout=10,
        what="no helper left",
    )


def test_podman_proves_it_shares_the_criu_config_directory(engine: Backend) -> None:
    if engine.kind == "docker":
        # Only moves into Podman write a per-container CRIU config (Docker takes none).
        assert not isinstance(engine, SharedFilesystem)
        return
    assert isinstance(engine, SharedFilesystem)
    assert engine.shares_directory(criu_config_dir(), image=BUSYBOX_IMAGE)
    # the probe file is gone again
    assert not list(criu_config_dir().glob(".ctk-shared-*"))


def test_checkpoint_images_fetched_through_the_engine(
    engine: Backend,
    containers: Containers,
    criu: None,
    remote_view: None,
    helpers_made: list[str],
    tmp_path: Path,
) -> None:
    info = containers.run(
        BUSYBOX_IMAGE, command=("sh", "-c", "while :; do echo 1; sleep 0.2; done")
    )
    engine.checkpoint(info.name, CheckpointOptions(name="images", leave_running=True))
    engine.fetch_checkpoint_images(info.name, "images", tmp_path)
    assert (tmp_path / "pstree.img").is_file() and (tmp_path / "inventory.img").is_file()
    if engine.kind == "podman":
        assert (tmp_path / "stats-dump").is_file()
    assert helpers_made  # both engines hand them out through a helper container
