"""toolkit.migration.volumes without an engine: staging, checksums, mounts, rollback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from toolkit.errors import ArchiveError, VolumeNotFound
from toolkit.migration import volumes
from toolkit.migration.journal import Journal
from toolkit.models import Mount, VolumeInfo


class FakeVolumes:
    """Just enough of the VolumeData capability: volumes by name, writes recorded."""

    kind = "fake"

    def __init__(self) -> None:
        self.held: dict[str, VolumeInfo] = {}
        self.written: dict[str, bytes] = {}
        self.count = 0

    def volumes(self, *, labels: Mapping[str, str] | None = None) -> list[VolumeInfo]:
        return list(self.held.values())

    def create_volume(
        self, name: str = "", *, labels: Mapping[str, str] | None = None
    ) -> VolumeInfo:
        self.count += 1
        info = VolumeInfo(name=name or f"anon{self.count}", driver="local", mountpoint="/x")
        self.held[info.name] = info
        return info

    def inspect_volume(self, name: str) -> VolumeInfo:
        if name not in self.held:
            raise VolumeNotFound(name)
        return self.held[name]

    def remove_volume(self, name: str, *, force: bool = False) -> None:
        self.inspect_volume(name)
        del self.held[name]

    def prune_volumes(self, *, labels: Mapping[str, str] | None = None) -> list[str]:
        return []

    def container_volumes(self, name: str) -> tuple[Mount, ...]:
        return ()

    @contextlib.contextmanager
    def volume_access(self, volume: str, *, image: str) -> Iterator[str]:
        yield volume

    def read_volume(self, helper: str, out: Path) -> None:
        raise AssertionError("not used")

    def write_volume(self, helper: str, data: Path) -> None:
        self.written[helper] = data.read_bytes()


MOUNTS = (
    Mount(target="/named", source="data", name="data"),
    Mount(target="/anon", source="", name="0123abc"),
    Mount(target="/srv", source="/srv", type="bind"),
)


def _journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Journal:
    monkeypatch.setenv("CTK_STATE_DIR", str(tmp_path / "state"))
    return Journal(id="m1", container="c", target="c", source={}, destination={}, mode="cold")


def test_staged_volumes_are_created_filled_and_mounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("data", "0123abc"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "file").write_text(name)
    work = tmp_path / "work"
    work.mkdir()
    where = {"data": tmp_path / "data", "0123abc": tmp_path / "0123abc"}
    staged = volumes.read_local(MOUNTS, where, work=work)
    assert [s.mount.target for s in staged] == ["/named", "/anon"]
    dest = FakeVolumes()
    journal = _journal(tmp_path, monkeypatch)
    names = volumes.create(dest, MOUNTS, journal)  # type: ignore[arg-type]
    assert names == {"/named": "data", "/anon": "anon2"}
    assert journal.extra[volumes.JOURNAL_KEY] == ["data", "anon2"]
    assert volumes.fill(dest, staged, names, image="img") > 0  # type: ignore[arg-type]
    assert set(dest.written) == {"data", "anon2"}
    mounts = volumes.dest_mounts(MOUNTS, names)
    assert [(m.source, m.name) for m in mounts[:2]] == [("data", "data"), ("anon2", "anon2")]
    assert mounts[2] == MOUNTS[2]  # a bind mount as it is
    # a staged tar changed since it was read is refused
    staged[0].data.write_bytes(b"changed")
    with pytest.raises(ArchiveError, match="changed since it was read"):
        volumes.fill(dest, staged, names, image="img")  # type: ignore[arg-type]
    # the rollback removes what the move made, and nothing else
    dest.create_volume("theirs")
    done = volumes.remove_created(dest, journal)  # type: ignore[arg-type]
    assert done == ["removed volume data from the destination", "removed volume anon2 from the "
                    "destination"]  # fmt: skip
    assert set(dest.held) == {"theirs"}
    assert volumes.remove_created(dest, journal) == []  # type: ignore[arg-type]
