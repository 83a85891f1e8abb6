"""Reader limits and link resolution: crafted archives and nested tars, each refused with exit 8
(or exit 1 for a disk too small), with bounded bytes, disk and memory."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
import zstandard

from toolkit import archive
from toolkit.archive import reader
from toolkit.criu.images import extract_images
from toolkit.errors import ArchiveError, CtkError
from toolkit.models import ContainerSpec

# -- nested tars: links resolved --------------------------------------------------------------


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes = b"") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data)
    return info, data


def _nested(tmp_path: Path, *entries: tuple) -> Path:
    path = tmp_path / "nested.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _refused_nested(path: Path, match: str) -> None:
    with pytest.raises(ArchiveError, match=match) as info:
        archive.check_nested_tar(path, what="rootfs changes", allow_symlinks=True)
    assert info.value.exit_code == 8


def test_hardlink_through_symlink_refused(tmp_path: Path) -> None:
    path = _nested(
        tmp_path,
        _entry("etc", tarfile.SYMTYPE, "/etc"),
        _entry("passwd", tarfile.LNKTYPE, "etc/passwd"),
    )
    _refused_nested(path, "below a symlink")


def test_hardlink_to_symlink_pointing_out_refused(tmp_path: Path) -> None:
    path = _nested(
        tmp_path,
        _entry("up", tarfile.SYMTYPE, "../../../../etc/shadow"),
        _entry("shadow", tarfile.LNKTYPE, "up"),
    )
    _refused_nested(path, "points out of the root")


def test_hardlink_to_unknown_target_refused(tmp_path: Path) -> None:
    # the target is no member of this tar: it would be looked up on the host's side
    path = _nested(tmp_path, _entry("x", tarfile.LNKTYPE, "lib/x86_64-linux-gnu/libc.so.6"))
    _refused_nested(path, "no earlier file")


def test_member_through_symlink_chain_refused(tmp_path: Path) -> None:
    path = _nested(
        tmp_path,
        _entry("a", tarfile.DIRTYPE),
        _entry("a/b", tarfile.SYMTYPE, "../../.."),
        _entry("a/b/c/owned", data=b"x"),
    )
    _refused_nested(path, "below a symlink")


def test_legitimate_links_pass(tmp_path: Path) -> None:
    path = _nested(
        tmp_path,
        _entry("usr", tarfile.DIRTYPE),
        _entry("usr/bin", tarfile.DIRTYPE),
        _entry("usr/bin/busybox", data=b"elf"),
        _entry("usr/bin/sh", tarfile.LNKTYPE, "usr/bin/busybox"),
        _entry("evil", tarfile.SYMTYPE, "/etc"),  # read inside the container's root
        _entry("rel", tarfile.SYMTYPE, "usr/bin/busybox"),
        _entry("rel2", tarfile.LNKTYPE, "rel"),
        _entry(".", tarfile.DIRTYPE),
    )
    names = archive.check_nested_tar(path, what="rootfs changes", allow_symlinks=True)
    assert names[:4] == ["usr", "usr/bin", "usr/bin/busybox", "usr/bin/sh"]


def test_member_count_capped(tmp_path: Path) -> None:
    path = _nested(tmp_path, *(_entry(f"f{i}", data=b"") for i in range(11)))
    with pytest.raises(ArchiveError, match="more than 10 members"):
        archive.check_nested_tar(path, what="rootfs changes", max_members=10)
    assert len(archive.check_nested_tar(path, what="x", max_members=11)) == 11


def _many_members(path: Path, count: int) -> None:
    """A tar of ``count`` empty files, written header by header (fast)."""
    with path.open("wb") as out:
        template = bytearray(tarfile.TarInfo("f").tobuf(format=tarfile.USTAR_FORMAT))
        for i in range(count):
            block = bytearray(template)
            name = f"d{i % 1000}/f{i}".encode()
            block[0:100] = name.ljust(100, b"\0")
            block[148:156] = b"        "
            block[148:155] = f"{sum(block):06o}\0".encode()
            out.write(block)
        out.write(b"\0" * 1024)


def test_nested_tar_memory_bounded(tmp_path: Path) -> None:
    """200k members: the checking process stays small (TarInfo lists made 120 MiB of these).

    Measured in a fresh interpreter (its peak RSS), since tracemalloc would slow the walk ten
    times and this process's peak says nothing.
    """
    path = tmp_path / "many.tar"
    _many_members(path, 200_000)
    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from toolkit import archive\n"
        "from toolkit.criu.images import extract_images\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "names = archive.check_nested_tar(Path(sys.argv[1]), what='rootfs changes',\n"
        "                                 keep_names=False)\n"
        "assert names == []\n"
        "import tempfile\n"
        "with tempfile.TemporaryDirectory() as out:\n"
        "    extract_images(Path(sys.argv[1]), Path(out))  # what checkpoint inspect reads\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    # what the walks added to the interpreter with ctk imported (its size varies with the
    # machine and the packages imported, ~60-80 MiB here)
    imported_kib, peak_kib = (int(line) for line in result.stdout.split())
    assert peak_kib - imported_kib < 40 * 1024, (imported_kib, peak_kib)


def test_extract_images_duplicate_base_is_archive_error(tmp_path: Path) -> None:
    path = _nested(
        tmp_path,
        _entry("checkpoint/pstree.img", data=b"a"),
        _entry("other/pstree.img", data=b"b"),
    )
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ArchiveError, match="twice"):
        extract_images(path, dest)


# -- the outer archive: bytes, space, names --------------------------------------------------


def _manifest(members: list[tuple[str, int, str]]) -> bytes:
    data = {
        "format_version": 1,
        "engine": "podman",
        "container_name": "web1",
        "image": "ctk-demo/counter",
        "checkpoint": "cp1",
        "spec": ContainerSpec(image="ctk-demo/counter", name="web1").to_dict(),
        "members": [{"name": n, "size": s, "sha256": d} for n, s, d in members],
    }
    return json.dumps(data).encode()


def _tar_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _refused(path: Path, match: str) -> ArchiveError:
    with pytest.raises(ArchiveError, match=match) as info, archive.open_archive(path):
        pytest.fail("opened")
    assert info.value.exit_code == 8
    return info.value


def test_expansion_stops_at_the_declared_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small zstd file that expands to far more than its manifest declares stops early."""
    data = b"pages"
    manifest = _manifest([("payload.bin", len(data), hashlib.sha256(data).hexdigest())])
    body = _tar_bytes([("ctk-manifest.json", manifest), ("payload.bin", data)])
    path = tmp_path / "bomb.ctk"
    chunk = b"\0" * (1 << 20)
    with path.open("wb") as raw:
        writer = zstandard.ZstdCompressor(level=1).stream_writer(raw, closefd=False)
        writer.write(body)
        for _ in range(512):  # 512 MiB of zeros after the tar's end
            writer.write(chunk)
        writer.close()
    assert path.stat().st_size < 1 << 20
    counted: list[int] = []
    original = reader._Bounded.read

    def spy(self: reader._Bounded, size: int = -1) -> bytes:
        out = original(self, size)
        counted.append(self.count)
        return out

    monkeypatch.setattr(reader._Bounded, "read", spy)
    started = time.monotonic()
    _refused(path, "expands beyond")
    assert max(counted) <= len(body) + 64 * 1024
    assert time.monotonic() - started < 5


def test_declared_size_beyond_free_space_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manifest declaring 1 PiB: refused before a byte is written (exit 1: no space)."""
    huge = 1 << 50
    manifest = _manifest([("payload.bin", huge, "0" * 64)])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("ctk-manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        info = tarfile.TarInfo("payload.bin")
        info.size = huge
        buffer.write(info.tobuf(format=tarfile.PAX_FORMAT))
        buffer.write(b"\0" * 4096)  # the data starts, then the file ends
    path = tmp_path / "huge.ctk"
    path.write_bytes(buffer.getvalue())
    work = tmp_path / "tmp"
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))
    with pytest.raises(CtkError, match="no space left on") as info, archive.open_archive(path):
        pytest.fail("opened")
    assert info.value.exit_code == 1
    assert list(work.iterdir()) == []


@pytest.mark.parametrize(
    ("names", "match"),
    [
        (["a", "a/b"], "inside the file"),
        (["a/./b"], "malformed"),
        (["./a", "a"], "non-canonical"),
        (["a/", "b"], "non-canonical"),
        (["x" * 300], "longer than Linux allows"),
        (["/".join(["d" * 200] * 25)], "longer than Linux allows"),
    ],
)
def test_clashing_or_long_names_are_exit_8(tmp_path: Path, names: list[str], match: str) -> None:
    data = b"x"
    digest = hashlib.sha256(data).hexdigest()
    manifest = _manifest([(n, 1, digest) for n in names])
    path = tmp_path / "names.ctk"
    path.write_bytes(_tar_bytes([("ctk-manifest.json", manifest), *((n, data) for n in names)]))
    _refused(path, match)


def test_too_many_listed_members(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"").hexdigest()
    manifest = _manifest([(f"m{i}", 0, digest) for i in range(reader.MAX_MEMBERS + 1)])
    path = tmp_path / "many.ctk"
    path.write_bytes(_tar_bytes([("ctk-manifest.json", manifest)]))
    _refused(path, "members")


@pytest.mark.parametrize(
    "manifest",
    [b"[" * 200_000 + b"]" * 200_000, b'{"format_version": 1' + b"1" * 5000 + b"}"],
    ids=["deep", "huge-int"],
)
def test_hostile_manifest_json_is_exit_8(tmp_path: Path, manifest: bytes) -> None:
    path = tmp_path / "json.ctk"
    path.write_bytes(_tar_bytes([("ctk-manifest.json", manifest)]))
    _refused(path, "corrupt|ctk archive")
    with pytest.raises(ArchiveError):
        archive.read_manifest(path)
