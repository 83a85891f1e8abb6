"""Compression of ctk archives: zstd (multi-threaded), gzip or none, detected by magic bytes."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from toolkit.errors import InvalidArgument
from toolkit.models import COMPRESSIONS

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"


def validate_compression(name: str) -> str:
    """The compression name, or InvalidArgument before anything is touched."""
    if name not in COMPRESSIONS:
        raise InvalidArgument(
            f"unknown compression {name!r}",
            hint=f"use one of: {', '.join(COMPRESSIONS)}",
        )
    return name


def detect_compression(head: bytes) -> str:
    """``zstd``, ``gzip`` or ``none`` from the first bytes of a file."""
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    return "none"


@contextmanager
def compressing(raw: IO[bytes], compression: str) -> Iterator[IO[bytes]]:
    """A writable stream that compresses into ``raw`` (left open)."""
    validate_compression(compression)
    if compression == "none":
        yield raw
        return
    if compression == "gzip":
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as stream:
            yield stream  # type: ignore[misc]
        return
    import zstandard  # lazily: `import toolkit` must work without it

    # threads=-1: one worker per core; the archive is the slow part of an export.
    compressor = zstandard.ZstdCompressor(level=3, threads=-1, write_checksum=True)
    writer: Any = compressor.stream_writer(raw, closefd=False)
    try:
        yield writer
    finally:
        writer.close()


@contextmanager
def decompressing(raw: IO[bytes]) -> Iterator[tuple[str, IO[bytes]]]:
    """(compression, readable decompressed stream) for ``raw``, which must be seekable."""
    head = raw.read(4)
    raw.seek(0)
    compression = detect_compression(head)
    if compression == "none":
        yield compression, raw
    elif compression == "gzip":
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield compression, stream  # type: ignore[misc]
    else:
        import zstandard

        reader: Any = zstandard.ZstdDecompressor().stream_reader(
            raw, read_across_frames=True, closefd=False
        )
        try:
            yield compression, reader
        finally:
            reader.close()
