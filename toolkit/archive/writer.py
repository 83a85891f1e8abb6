"""Write a ctk archive so that the destination only ever appears complete."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from toolkit.archive import progress
from toolkit.archive.compression import compressing, validate_compression
from toolkit.archive.manifest import FORMAT_VERSION, MANIFEST_NAME, manifest_to_json
from toolkit.archive.signing import SIGNATURE_NAME, SigningKey
from toolkit.errors import InvalidArgument, NoSpace
from toolkit.models import ArchiveInfo, ArchiveManifest, ArchiveMember

_CHUNK = 1024 * 1024


def check_destination(dest: str | os.PathLike[str]) -> Path:
    """The destination path, or InvalidArgument when no archive can be written there.

    Called before any container is touched, so a typo never freezes a container for nothing.
    Only a regular file is ever replaced: the archive is renamed over the destination, which
    would turn ``/dev/null`` or a FIFO into a file holding the container's memory.
    """
    path = Path(dest)
    try:
        mode = path.stat().st_mode  # through symlinks: what the name ends at
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise InvalidArgument(f"cannot use {path}: {exc.strerror}") from exc
    if mode is not None and stat.S_ISDIR(mode):
        raise InvalidArgument(
            f"{path} is a directory", hint="give a file name, e.g. web1.ctk.tar.zst"
        )
    if mode is not None and not stat.S_ISREG(mode):
        raise InvalidArgument(
            f"{path} exists and is not a regular file (a device, FIFO or socket)",
            hint="an archive only replaces a regular file: give a new file name",
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
    A full file system while staging ends in :class:`~toolkit.errors.NoSpace`, with the size
    staged so far as the least that is needed.
    """
    sweep_leftovers(dest)
    path = Path(tempfile.mkdtemp(prefix=f".{dest.name}.ctk-stage-{os.getpid()}-", dir=dest.parent))
    try:
        yield path
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise no_space(dest.parent, _tree_size(path), exact=False) from exc
    finally:
        shutil.rmtree(path, ignore_errors=True)


# The temporary names beside an archive: ".NAME.ctk-stage-PID-XXXX" (a directory) and
# ".NAME.ctk-PID-XXXX.tmp", PID being the writer's.
_LEFTOVER_RE = re.compile(r"\.(?P<name>.+)\.ctk-(?:stage-)?(?P<pid>\d+)-[^/]*")


def sweep_leftovers(dest: Path) -> list[Path]:
    """Remove what a killed writer (SIGKILL, a crash) left beside ``dest``; what was removed.

    Only names of ``dest``'s own temporary files are touched, and only when the process that
    made them is gone.
    """
    removed: list[Path] = []
    try:
        entries = list(dest.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _LEFTOVER_RE.fullmatch(entry.name)
        if match is None or match["name"] != dest.name or _pid_alive(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def no_space(directory: Path, needed: int, *, exact: bool = True) -> NoSpace:
    """The error for a full ``directory``: how much the archive needs and how much is free."""
    try:
        usage = shutil.disk_usage(directory)
        free = f"{_human(usage.free)} free"
    except OSError:
        free = "free space unknown"
    if ".ctk-stage-" in directory.name:
        directory = directory.parent  # the user's directory, not the staging one inside it
    size = _human(needed) if exact else f"at least {_human(needed)}"
    return NoSpace(
        f"no space left on {directory}: the checkpoint needs {size}, and the archive up to "
        f"as much again while it is written ({free})",
        hint="free some space or export to another directory; nothing was left behind",
    )


def write_stream(chunks: Iterable[bytes], path: Path) -> int:
    """Write ``chunks`` to a new file ``path``; the byte count.

    On a full file system the partial file is removed and the rest of ``chunks`` is read
    anyway: the engine then finishes its request (dockerd holds the container's lock until
    its archive is read), and the error can say how large the whole is.

    Raises:
        NoSpace: the file system holding ``path`` is full.
    """
    total = 0
    try:
        with path.open("wb") as out:
            for chunk in chunks:
                total += len(chunk)
                out.write(chunk)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        path.unlink(missing_ok=True)
        for chunk in chunks:
            total += len(chunk)
        raise no_space(path.parent, total) from exc
    return total


def sha256_file(path: Path) -> str:
    """The SHA-256 of the file at ``path``, hex, read in chunks (files can be gigabytes)."""
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


class _Reported:
    """A file read by tarfile, each read reported to the progress hook."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        progress.advance(len(data))
        return data


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
    # version 1 unless the archive needs 2 (volumes): older ctk versions keep reading the rest
    version = FORMAT_VERSION if manifest.spec.get("volumes") else 1
    manifest = dataclasses.replace(manifest, format_version=version, members=members)
    manifest_bytes = manifest_to_json(manifest)
    now = time.time()
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{dest.name}.ctk-{os.getpid()}-", suffix=".tmp", dir=dest.parent
    )
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
                progress.start(f"write {dest.name}", sum(m.size for m in members))
                for name, path in payload:
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime, info.mode = path.stat().st_size, int(now), 0o600
                    with path.open("rb") as handle:
                        tar.addfile(info, _Reported(handle))
            raw.flush()
            os.fsync(raw.fileno())
        # The archive holds the container's memory: readable by its owner only (mkstemp's 0600).
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            # uncompressed sizes: what the archive may need at most
            raise no_space(dest.parent, sum(m.size for m in members)) from exc
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
