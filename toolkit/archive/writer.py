"""Write a ctk archive so that the destination only ever appears complete."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from toolkit.archive.compression import compressing, validate_compression
from toolkit.archive.manifest import FORMAT_VERSION, MANIFEST_NAME, manifest_to_json
from toolkit.archive.signing import SIGNATURE_NAME, SigningKey
from toolkit.errors import InvalidArgument
from toolkit.models import ArchiveInfo, ArchiveManifest, ArchiveMember

_CHUNK = 1024 * 1024


def check_destination(dest: str | os.PathLike[str]) -> Path:
    """The destination path, or InvalidArgument when no archive can be written there.

    Called before any container is touched, so a typo never freezes a container for nothing.
    """
    path = Path(dest)
    if path.is_dir():
        raise InvalidArgument(
            f"{path} is a directory", hint="give a file name, e.g. web1.ctk.tar.zst"
        )
    parent = path.parent
    if not parent.is_dir():
        raise InvalidArgument(
            f"directory {parent} does not exist", hint=f"create it first: mkdir -p {parent}"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidArgument(f"cannot write into directory {parent}")
    return path


@contextmanager
def staging_dir(dest: Path) -> Iterator[Path]:
    """A private directory beside ``dest`` for the payload files, removed afterwards.

    Beside rather than in /tmp: the payload can be as large as the container's memory, and
    the destination's file system is the one the user chose to hold it.
    """
    path = Path(tempfile.mkdtemp(prefix=f".{dest.name}.ctk-stage-", dir=dest.parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_archive(
    dest: Path,
    manifest: ArchiveManifest,
    payload: Sequence[tuple[str, Path]],
    *,
    compression: str = "zstd",
    signing_key: SigningKey | None = None,
) -> ArchiveInfo:
    """Write ``manifest`` (its members filled in here) and the payload files to ``dest``.

    Args:
        dest: the archive file to create (replaced if it exists).
        manifest: everything but ``members``, which is computed from ``payload``.
        payload: (member name, file) pairs, in archive order.
        compression: one of ``zstd``, ``gzip``, ``none``.
        signing_key: when given, ``ctk-signature.json`` (its signature over the manifest)
            follows the manifest.

    Returns:
        The archive's path, size, compression and final manifest; ``timings`` holds
        ``checksum`` and ``write`` (compressing and writing), in seconds.

    Raises:
        InvalidArgument: unknown compression or unusable destination.
    """
    validate_compression(compression)
    dest = check_destination(dest)
    started = time.monotonic()
    members = tuple(
        ArchiveMember(name=name, size=path.stat().st_size, sha256=sha256_file(path))
        for name, path in payload
    )
    hashed = time.monotonic()
    manifest = dataclasses.replace(manifest, format_version=FORMAT_VERSION, members=members)
    manifest_bytes = manifest_to_json(manifest)
    now = time.time()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.ctk-", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            with (
                compressing(raw, compression) as stream,
                tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar,
            ):
                info = tarfile.TarInfo(MANIFEST_NAME)
                info.size, info.mtime, info.mode = len(manifest_bytes), int(now), 0o644
                tar.addfile(info, io.BytesIO(manifest_bytes))
                if signing_key is not None:
                    signed = signing_key.signature_member(manifest_bytes)
                    info = tarfile.TarInfo(SIGNATURE_NAME)
                    info.size, info.mtime, info.mode = len(signed), int(now), 0o644
                    tar.addfile(info, io.BytesIO(signed))
                for name, path in payload:
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime, info.mode = path.stat().st_size, int(now), 0o600
                    with path.open("rb") as handle:
                        tar.addfile(info, handle)
            raw.flush()
            os.fsync(raw.fileno())
        # The archive holds the container's memory: readable by its owner only (mkstemp's 0600).
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ArchiveInfo(
        path=str(dest),
        size=dest.stat().st_size,
        compression=compression,
        manifest=manifest,
        # compression happens while writing (one streaming pass), so it is timed with "write"
        timings={
            "checksum": round(hashed - started, 3),
            "write": round(time.monotonic() - hashed, 3),
        },
    )
