"""The ctk archive format: round trips, and every hostile or broken archive refused."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from pathlib import Path

import pytest

from toolkit import archive
from toolkit.archive.compression import decompressing
from toolkit.errors import ArchiveError, InvalidArgument, NotFound
from toolkit.models import ArchiveManifest, ContainerSpec, PortMapping

PAYLOAD = b"criu pages " * 1000


def _manifest(**fields: object) -> ArchiveManifest:
    base: dict[str, object] = {
        "format_version": 1,
        "engine": "podman",
        "engine_version": "4.3.1",
        "criu_version": "4.1.1",
        "container_id": "abc",
        "container_name": "web1",
        "image": "ctk-demo/counter",
        "image_id": "sha256:" + "0" * 64,
        "checkpoint": "cp1",
        "created": "2026-11-28T21:00:00+00:00",
        "spec": ContainerSpec(image="ctk-demo/counter", name="web1").to_dict(),
    }
    base.update(fields)
    return ArchiveManifest(**base)  # type: ignore[arg-type]


def _write_good(tmp_path: Path, compression: str = "none") -> Path:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(PAYLOAD)
    dest = tmp_path / f"good.{compression}"
    archive.write_archive(dest, _manifest(), [("payload.bin", payload)], compression=compression)
    return dest


def _raw_archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """An uncompressed tar with exactly these members, in this order (no checks at all)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _manifest_member(manifest: dict[str, object]) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(archive.MANIFEST_NAME), json.dumps(manifest).encode()


def _listing(names: dict[str, bytes]) -> dict[str, object]:
    data = _manifest().to_dict()
    import hashlib

    data["members"] = [
        {"name": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
        for n, b in names.items()
    ]
    return data


def _refused(path: Path, match: str) -> None:
    with pytest.raises(ArchiveError, match=match) as info, archive.open_archive(path):
        pytest.fail("a hostile or broken archive was opened")
    assert info.value.exit_code == 8
    assert info.value.hint


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_round_trip(tmp_path: Path, compression: str) -> None:
    dest = _write_good(tmp_path, compression)
    assert archive.detect_compression(dest.read_bytes()[:4]) == compression
    assert oct(dest.stat().st_mode & 0o777) == "0o600"  # it holds a process's memory
    with archive.open_archive(dest) as verified:
        assert verified.compression == compression
        assert verified.manifest.container_name == "web1"
        assert [m.name for m in verified.manifest.members] == ["payload.bin"]
        assert verified.member("payload.bin").read_bytes() == PAYLOAD
        extracted = verified.directory
    assert not extracted.exists()  # the private directory goes afterwards
    assert archive.read_manifest(dest).checkpoint == "cp1"
    # the manifest is the first member
    with (
        dest.open("rb") as raw,
        decompressing(raw) as (_kind, stream),
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        assert [m.name for m in tar] == [archive.MANIFEST_NAME, "payload.bin"]
    # no temporary files are left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == [dest.name, "payload.bin"]


def test_unknown_compression_touches_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="lz4"):
        archive.write_archive(tmp_path / "x", _manifest(), [], compression="lz4")
    assert list(tmp_path.iterdir()) == []


def test_destination_checks(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="directory"):
        archive.check_destination(tmp_path)
    with pytest.raises(InvalidArgument, match="does not exist"):
        archive.check_destination(tmp_path / "missing" / "x.tar")


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(PAYLOAD)
    missing = tmp_path / "vanished.bin"
    dest = tmp_path / "out.tar"
    with pytest.raises(FileNotFoundError):
        archive.write_archive(
            dest, _manifest(), [("payload.bin", payload), ("gone", missing)], compression="none"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["payload.bin"]


def test_staging_dir_removed(tmp_path: Path) -> None:
    with archive.staging_dir(tmp_path / "x.tar") as stage:
        (stage / "f").write_text("x")
        assert stage.parent == tmp_path
    assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFound), archive.open_archive(tmp_path / "nope.tar"):
        pass


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_truncated(tmp_path: Path, compression: str) -> None:
    dest = _write_good(tmp_path, compression)
    data = dest.read_bytes()
    dest.write_bytes(data[: len(data) // 2])
    _refused(dest, "truncated|corrupt")


def test_truncated_after_manifest(tmp_path: Path) -> None:
    data = _listing({"payload.bin": PAYLOAD})
    path = _raw_archive(tmp_path / "a.tar", [_manifest_member(data)])
    _refused(path, "missing payload.bin")


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_flipped_byte_in_payload(tmp_path: Path, compression: str) -> None:
    dest = _write_good(tmp_path, compression)
    data = bytearray(dest.read_bytes())
    # uncompressed: inside the payload; compressed: inside the compressed stream
    offset = bytes(data).index(b"criu pages") + 5 if compression == "none" else len(data) - 20
    data[offset] ^= 0x01
    dest.write_bytes(bytes(data))
    _refused(dest, "checksum|corrupt|truncated")


def test_manifest_checksum_mismatch(tmp_path: Path) -> None:
    data = _listing({"payload.bin": PAYLOAD})
    data["members"][0]["sha256"] = "0" * 64  # type: ignore[index]
    path = _raw_archive(
        tmp_path / "a.tar",
        [_manifest_member(data), (tarfile.TarInfo("payload.bin"), PAYLOAD)],
    )
    _refused(path, "checksum mismatch")


def test_newer_format_version(tmp_path: Path) -> None:
    data = _listing({})
    data["format_version"] = archive.FORMAT_VERSION + 1
    path = _raw_archive(tmp_path / "a.tar", [_manifest_member(data)])
    with pytest.raises(ArchiveError, match="newer") as info, archive.open_archive(path):
        pass
    assert "upgrade" in info.value.hint


def test_not_a_ctk_archive(tmp_path: Path) -> None:
    path = _raw_archive(tmp_path / "a.tar", [(tarfile.TarInfo("other.txt"), b"x")])
    _refused(path, "not a ctk archive")
    garbage = tmp_path / "g.tar"
    garbage.write_bytes(b"this is not a tar at all" * 100)
    _refused(garbage, "truncated|corrupt|not a ctk")


def _escape_target(tmp_path: Path) -> Path:
    # Where a traversal would land: beside the extraction directory, in the temp dir.
    return Path(tempfile.gettempdir()) / "x"


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/tmp/x", "./../x"])
def test_path_traversal_refused(tmp_path: Path, name: str) -> None:
    payload = b"evil"
    # listed in the manifest under the same name
    data = _listing({name: payload})
    path = _raw_archive(
        tmp_path / "a.tar", [_manifest_member(data), (tarfile.TarInfo(name), payload)]
    )
    before = _escape_target(tmp_path).exists()
    _refused(path, "climbs out|absolute|unsafe")
    assert _escape_target(tmp_path).exists() == before


@pytest.mark.parametrize("name", ["../x", "/etc/evil"])
def test_traversal_in_member_not_in_manifest(tmp_path: Path, name: str) -> None:
    data = _listing({})
    path = _raw_archive(
        tmp_path / "a.tar", [_manifest_member(data), (tarfile.TarInfo(name), b"evil")]
    )
    _refused(path, "climbs out|absolute")


def test_symlink_pointing_outside_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("payload.bin")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    data = _listing({"payload.bin": b""})
    path = _raw_archive(tmp_path / "a.tar", [_manifest_member(data), (link, None)])
    _refused(path, "symlink")


def test_hardlink_and_device_refused(tmp_path: Path) -> None:
    data = _listing({"payload.bin": b""})
    hard = tarfile.TarInfo("payload.bin")
    hard.type, hard.linkname = tarfile.LNKTYPE, "../../etc/shadow"
    _refused(_raw_archive(tmp_path / "h.tar", [_manifest_member(data), (hard, None)]), "link")
    dev = tarfile.TarInfo("payload.bin")
    dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
    _refused(_raw_archive(tmp_path / "d.tar", [_manifest_member(data), (dev, None)]), "device")


def test_unlisted_and_duplicate_members_refused(tmp_path: Path) -> None:
    data = _listing({"payload.bin": PAYLOAD})
    extra = _raw_archive(
        tmp_path / "e.tar",
        [
            _manifest_member(data),
            (tarfile.TarInfo("payload.bin"), PAYLOAD),
            (tarfile.TarInfo("extra"), b"x"),
        ],
    )
    _refused(extra, "not listed")
    dup = _raw_archive(
        tmp_path / "d.tar",
        [
            _manifest_member(data),
            (tarfile.TarInfo("payload.bin"), PAYLOAD),
            (tarfile.TarInfo("payload.bin"), PAYLOAD),
        ],
    )
    _refused(dup, "twice")


def test_nothing_written_outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every refused archive leaves the temp dir as it was: no stray extraction dirs."""
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    data = _listing({"ok": b"fine", "../escaped": b"evil"})
    path = _raw_archive(
        tmp_path / "a.tar",
        [
            _manifest_member(data),
            (tarfile.TarInfo("ok"), b"fine"),
            (tarfile.TarInfo("../escaped"), b"evil"),
        ],
    )
    _refused(path, "climbs out")
    assert list(private_tmp.iterdir()) == []
    assert not (tmp_path / "escaped").exists()


def _nested(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    return _raw_archive(path, members)


def test_nested_tar_checks(tmp_path: Path) -> None:
    ok = tarfile.TarInfo("checkpoint/pages-1.img")
    assert archive.check_nested_tar(_nested(tmp_path / "ok.tar", [(ok, b"x")]), what="payload") == [
        "checkpoint/pages-1.img"
    ]
    link = tarfile.TarInfo("etc")
    link.type, link.linkname = tarfile.SYMTYPE, "/host"
    below = tarfile.TarInfo("etc/passwd")
    through = _nested(tmp_path / "t.tar", [(link, None), (below, b"x")])
    with pytest.raises(ArchiveError, match="below a symlink"):
        archive.check_nested_tar(through, what="rootfs", allow_symlinks=True)
    with pytest.raises(ArchiveError, match="symlink"):
        archive.check_nested_tar(_nested(tmp_path / "s.tar", [(link, None)]), what="checkpoint")
    # a lone symlink is fine where the engine resolves it inside the container
    assert archive.check_nested_tar(
        _nested(tmp_path / "s2.tar", [(link, None)]), what="rootfs", allow_symlinks=True
    ) == ["etc"]
    hard = tarfile.TarInfo("x")
    hard.type, hard.linkname = tarfile.LNKTYPE, "../../etc/shadow"
    with pytest.raises(ArchiveError, match="climbs out"):
        archive.check_nested_tar(_nested(tmp_path / "h.tar", [(hard, None)]), what="rootfs")
    with pytest.raises(ArchiveError, match="climbs out"):
        archive.check_nested_tar(
            _nested(tmp_path / "p.tar", [(tarfile.TarInfo("../x"), b"x")]), what="rootfs"
        )


def test_spec_round_trip() -> None:
    spec = ContainerSpec(
        image="ctk-demo/counter",
        name="web1",
        command=("sh", "-c", "x"),
        env={"A": "1"},
        ports=(PortMapping(8080, 0),),
        labels={"l": "v"},
    )
    assert archive.spec_from_dict(spec.to_dict()) == spec
    with pytest.raises(ArchiveError):
        archive.spec_from_dict({"nope": 1})


def test_manifest_validation() -> None:
    with pytest.raises(ArchiveError):
        archive.manifest_from_dict([])
    with pytest.raises(ArchiveError):
        archive.manifest_from_dict({"format_version": "1", "members": []})
    with pytest.raises(ArchiveError):
        archive.manifest_from_dict({"format_version": 1, "members": [{"name": 3}]})
    with pytest.raises(ArchiveError, match="climbs out"):
        archive.check_member_name("../b")
