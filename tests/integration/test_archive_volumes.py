"""Volumes in checkpoint archives, on both engines: named and anonymous volume data exported
and imported on a clean engine, a name clash refused with nothing changed, --ignore-volumes on
either side, bind mounts only by the user's choice."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Containers, ctk, last_count, wait_count_at_least
from toolkit import archive
from toolkit.backends.base import Backend, VolumeData
from toolkit.errors import CtkError, ExitCode, VolumeNotFound
from toolkit.models import Mount

pytestmark = [pytest.mark.integration, pytest.mark.criu]


class Volumes:
    """Volume names for one test, each removed afterwards (with what an import made)."""

    def __init__(self, engine: Backend) -> None:
        assert isinstance(engine, VolumeData)
        self.engine: VolumeData = engine
        self.made: list[str] = []

    def name(self) -> str:
        name = f"ctk-test-vol-{uuid.uuid4().hex[:8]}"
        self.made.append(name)
        return name

    def of(self, container: str) -> dict[str, str]:
        """{target: volume name} of a container's volumes, remembered for the cleanup."""
        found = {
            m.target: m.name for m in self.engine.container_volumes(container) if m.type == "volume"
        }
        self.made.extend(found.values())
        return found

    def exists(self, name: str) -> bool:
        try:
            self.engine.inspect_volume(name)
        except VolumeNotFound:
            return False
        return True

    def cleanup(self) -> None:
        for name in self.made:
            with contextlib.suppress(CtkError):
                self.engine.remove_volume(name, force=True)


@pytest.fixture
def volumes(engine: Backend, containers: Containers) -> Iterator[Volumes]:
    made = Volumes(engine)
    yield made
    # Every volume the test's containers mount goes too: on Podman an imported anonymous volume
    # comes back as a volume with a generated name, which removing the container leaves.
    for name in containers.names:
        with contextlib.suppress(CtkError):
            made.of(name)
    containers.cleanup()  # the containers first: a volume in use is not removed
    made.cleanup()


def _sh(engine: Backend, name: str, script: str) -> str:
    result = subprocess.run(
        [engine.kind, "exec", name, "sh", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _with_volumes(containers: Containers, volumes: Volumes) -> tuple[str, str]:
    """A counter with a named volume at /named and an anonymous one at /anon, data in both."""
    named = volumes.name()
    info = containers.run(
        volumes=(Mount(target="/named", source=named, name=named), Mount(target="/anon"))
    )
    wait_count_at_least(containers.backend, info.name, 2)
    _sh(
        containers.backend,
        info.name,
        "echo named-data >/named/file; mkdir /named/dir; echo deep >/named/dir/f; "
        "chown 65534:65534 /named/dir; chmod 0700 /named/dir; echo anon-data >/anon/file",
    )
    return info.name, named


def test_volume_data_travels_in_the_archive(
    engine: Backend, containers: Containers, volumes: Volumes, criu: None, tmp_path: Path
) -> None:
    name, named = _with_volumes(containers, volumes)
    old_anon = volumes.of(name)["/anon"]
    path = tmp_path / "vol.ctk"
    ctk("checkpoint", name, "--export", str(path), engine=engine.kind, check=True)
    manifest = archive.read_manifest(path)
    assert manifest.format_version == 2 and not manifest.volumes_ignored
    members = {m.name for m in manifest.members}
    assert {f"volumes/{named}.tar", f"volumes/{old_anon}.tar"} <= members
    shown = ctk("checkpoint", "inspect", str(path), engine=engine.kind, check=True).stdout
    assert f"/named (volume {named})" in shown and f"/anon (anonymous volume {old_anon})" in shown
    at = last_count(engine, name)
    # a clean engine: the container and both its volumes gone
    engine.remove(name, force=True, volumes=True)
    volumes.engine.remove_volume(named, force=True)
    with contextlib.suppress(VolumeNotFound):
        volumes.engine.remove_volume(old_anon, force=True)
    ctk("restore", "--import", str(path), engine=engine.kind, check=True)
    wait_count_at_least(engine, name, at + 2)
    assert _sh(engine, name, "cat /named/file /named/dir/f /anon/file").split() == [
        "named-data",
        "deep",
        "anon-data",
    ]
    # owners and modes came along; the restored process writes on into the volume
    assert _sh(engine, name, "stat -c '%u:%g %a' /named/dir").strip() == "65534:65534 700"
    _sh(engine, name, "echo more >>/named/file")
    mounted = volumes.of(name)
    assert mounted["/named"] == named  # the same name
    assert mounted["/anon"] != old_anon  # an anonymous volume comes back as a new one


def test_volume_clash_is_a_conflict_and_changes_nothing(
    engine: Backend, containers: Containers, volumes: Volumes, criu: None, tmp_path: Path
) -> None:
    name, named = _with_volumes(containers, volumes)
    path = tmp_path / "vol.ctk"
    ctk(
        "checkpoint", name, "--export", str(path), "--leave-running",
        engine=engine.kind, check=True,
    )  # fmt: skip
    before = volumes.engine.inspect_volume(named)
    clone = containers.name("clone")
    result = ctk("restore", "--import", str(path), "--name", clone, engine=engine.kind)
    assert result.returncode == ExitCode.CONFLICT, result.stderr
    assert f"a volume named {named} exists already" in result.stderr
    assert "--ignore-volumes" in result.stderr
    assert volumes.engine.inspect_volume(named) == before  # the very same volume
    assert clone not in {c.name for c in engine.containers(all=True)}
    # the source runs on with its data; the archive stays restorable after the clash
    assert engine.inspect(name).running
    assert _sh(engine, name, "cat /named/file").strip() == "named-data"
    engine.remove(name, force=True, volumes=True)
    volumes.engine.remove_volume(named, force=True)
    ctk("restore", "--import", str(path), engine=engine.kind, check=True)
    assert _sh(engine, name, "cat /named/file").strip() == "named-data"


def test_ignore_volumes_on_export_and_on_import(
    engine: Backend, containers: Containers, volumes: Volumes, criu: None, tmp_path: Path
) -> None:
    name, named = _with_volumes(containers, volumes)
    bare = tmp_path / "bare.ctk"
    full = tmp_path / "full.ctk"
    ctk(
        "checkpoint", name, "--export", str(bare), "--leave-running", "--ignore-volumes",
        engine=engine.kind, check=True,
    )  # fmt: skip
    manifest = archive.read_manifest(bare)
    assert manifest.volumes_ignored  # the archive says so
    assert {m.target for m in archive.spec_from_dict(manifest.spec).volumes} == {"/named", "/anon"}
    assert not any(m.name.startswith("volumes/") for m in manifest.members)
    ctk(
        "checkpoint", name, "--export", str(full), "--leave-running",
        engine=engine.kind, check=True,
    )  # fmt: skip
    # The volume changes after the export; the archive's data would be the older one.
    _sh(engine, name, "echo changed >/named/file")
    engine.remove(name, force=True, volumes=True)
    # An archive without the data: the existing named volume as it is, a new empty anonymous one.
    ctk("restore", "--import", str(bare), engine=engine.kind, check=True)
    assert _sh(engine, name, "cat /named/file").strip() == "changed"
    assert _sh(engine, name, "ls -A /anon").strip() == ""
    volumes.of(name)
    engine.remove(name, force=True, volumes=True)
    # --ignore-volumes on import: the archive's data is not restored, the volume is kept.
    ctk("restore", "--import", str(full), "--ignore-volumes", engine=engine.kind, check=True)
    assert _sh(engine, name, "cat /named/file").strip() == "changed"
    volumes.of(name)
    engine.remove(name, force=True, volumes=True)
    # With the named volume gone, --ignore-volumes makes it again, empty.
    volumes.engine.remove_volume(named, force=True)
    ctk("restore", "--import", str(full), "--ignore-volumes", engine=engine.kind, check=True)
    assert _sh(engine, name, "ls -A /named").strip() == ""
    volumes.of(name)


def test_rm_container_with_an_anonymous_volume_exports_its_data(
    engine: Backend, containers: Containers, volumes: Volumes, criu: None, tmp_path: Path
) -> None:
    """An --rm container goes with its dump, its anonymous volume with it: the data is read
    first (ctk's helper keeps the volume until then) and the volume is removed afterwards."""
    info = containers.run(volumes=(Mount(target="/anon"),), auto_remove=True)
    wait_count_at_least(engine, info.name, 2)
    _sh(engine, info.name, "echo anon-data >/anon/file")
    old_anon = volumes.of(info.name)["/anon"]
    path = tmp_path / "rm.ctk"
    ctk("checkpoint", info.name, "--export", str(path), engine=engine.kind, check=True)
    assert info.name not in {c.name for c in engine.containers(all=True)}
    assert not volumes.exists(old_anon)  # as the container's removal would have left it
    ctk("restore", "--import", str(path), engine=engine.kind, check=True)
    assert _sh(engine, info.name, "cat /anon/file").strip() == "anon-data"
    volumes.of(info.name)
