"""The archive layer's progress hook sees every payload byte written and read."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_archive import _manifest
from toolkit import archive
from toolkit.archive import progress


class _Seen:
    def __init__(self) -> None:
        self.starts: list[tuple[str, int]] = []
        self.advanced = 0

    def reporter(self) -> progress.Reporter:
        return progress.Reporter(start=self._start, advance=self._advance)

    def _start(self, description: str, total: int) -> None:
        self.starts.append((description, total))

    def _advance(self, size: int) -> None:
        self.advanced += size


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_progress_hook_sees_the_archive_payload(tmp_path: Path, compression: str) -> None:
    first, second = tmp_path / "pages.img", tmp_path / "rootfs.tar"
    first.write_bytes(b"p" * 300_000)
    second.write_bytes(b"r" * 12_345)
    total = 300_000 + 12_345
    dest = tmp_path / "a.ctk"
    written = _Seen()
    with progress.reporting(written.reporter()):
        archive.write_archive(
            dest,
            _manifest(),
            [("checkpoint/pages.img", first), ("rootfs.tar", second)],
            compression=compression,
        )
    assert written.starts == [("write a.ctk", total)]
    assert written.advanced == total

    read = _Seen()
    with progress.reporting(read.reporter()), archive.open_archive(dest):
        pass
    assert read.starts == [("read a.ctk", total)]
    assert read.advanced == total

    # No reporter: nothing is reported, nothing breaks.
    with archive.open_archive(dest) as verified:
        assert verified.manifest.members
