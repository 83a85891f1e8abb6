"""Read a ctk archive safely: verify everything before anything is used.

Nothing in an archive is trusted. The reader streams the tar once, refuses any member that is
not a plain file with a safe relative name listed in the manifest, writes members only inside a
fresh private directory, and compares every size and sha256 with the manifest. Engine payloads
that are tars themselves are checked by :func:`check_nested_tar` before they are handed on.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from toolkit.archive.compression import decompressing
from toolkit.archive.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, manifest_from_dict
from toolkit.archive.signing import SIGNATURE_NAME, SignatureGate, TrustPolicy
from toolkit.errors import ArchiveError, NotFound
from toolkit.models import ArchiveManifest, ArchiveMember

_CHUNK = 1024 * 1024
_CORRUPT_HINT = "the file is damaged, incomplete or altered: export the checkpoint again"
_HOSTILE_HINT = "ctk refuses archives that could write outside their directory: do not use it"


@dataclass(frozen=True)
class VerifiedArchive:
    """An archive whose every member was checked, extracted into a private directory.

    Valid only inside :func:`open_archive`'s ``with`` block.
    """

    path: Path
    manifest: ArchiveManifest
    compression: str
    size: int
    directory: Path
    signed_by: str | None = None  # the id of the key whose signature was verified

    def member(self, name: str) -> Path:
        """The extracted file of payload member ``name``.

        Raises:
            ArchiveError: the manifest lists no such member.
        """
        if name not in {m.name for m in self.manifest.members}:
            raise ArchiveError(
                f"archive {self.path} has no member {name}",
                hint="it was made by another engine or an incompatible ctk",
            )
        return self.directory / name


def _decode_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [
        tarfile.TarError,
        EOFError,
        zlib.error,
        gzip.BadGzipFile,
        UnicodeDecodeError,
        json.JSONDecodeError,
    ]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover - zstandard is a dependency
        pass
    return tuple(errors)


def check_member_name(name: str, *, where: str = "archive") -> PurePosixPath:
    """A safe relative path for a member name, or ArchiveError.

    Refuses absolute paths, ``..`` and ``.`` components, empty components and NUL bytes.
    """
    stripped = name[2:] if name.startswith("./") else name
    stripped = stripped.rstrip("/") if stripped.endswith("/") else stripped
    if name.startswith("/") or "\x00" in name or "\\" in name:
        raise ArchiveError(
            f"{where} member {name!r} has an absolute or unsafe path", hint=_HOSTILE_HINT
        )
    parts = stripped.split("/")
    if any(part == ".." for part in parts):
        raise ArchiveError(f"{where} member {name!r} climbs out with '..'", hint=_HOSTILE_HINT)
    if not stripped or any(part in ("", ".") for part in parts):
        raise ArchiveError(f"{where} member {name!r} has a malformed path", hint=_HOSTILE_HINT)
    return PurePosixPath(stripped)


def _refuse_type(info: tarfile.TarInfo, where: str) -> None:
    if info.issym() or info.islnk():
        kind = "symlink" if info.issym() else "hard link"
        raise ArchiveError(
            f"{where} member {info.name!r} is a {kind} to {info.linkname!r}; "
            "ctk archives hold plain files only",
            hint=_HOSTILE_HINT,
        )
    if info.ischr() or info.isblk() or info.isfifo():
        raise ArchiveError(f"{where} member {info.name!r} is a device file", hint=_HOSTILE_HINT)
    if not info.isfile():
        raise ArchiveError(f"{where} member {info.name!r} is not a plain file", hint=_HOSTILE_HINT)


def _read_manifest_member(tar: tarfile.TarFile, path: Path) -> ArchiveManifest:
    return _read_manifest_head(tar, path)[0]


def _read_manifest_head(tar: tarfile.TarFile, path: Path) -> tuple[ArchiveManifest, bytes]:
    """The manifest and its exact bytes (what a signature covers)."""
    first = tar.next()
    if first is None or first.name != MANIFEST_NAME or not first.isfile():
        raise ArchiveError(
            f"{path} is not a ctk archive: its first member is not {MANIFEST_NAME}",
            hint="ctk imports archives made by: ctk checkpoint NAME --export FILE",
        )
    if first.size > MAX_MANIFEST_BYTES:
        raise ArchiveError(f"{path}: the manifest is implausibly large", hint=_HOSTILE_HINT)
    handle = tar.extractfile(first)
    data = handle.read() if handle else b""
    if len(data) != first.size:
        raise ArchiveError(f"archive {path} is truncated (in the manifest)", hint=_CORRUPT_HINT)
    manifest = manifest_from_dict(json.loads(data))
    names = [m.name for m in manifest.members]
    if len(set(names)) != len(names):
        raise ArchiveError(f"{path}: the manifest lists a member twice", hint=_HOSTILE_HINT)
    for name in names:
        check_member_name(name, where="manifest")
        if name in (MANIFEST_NAME, SIGNATURE_NAME):
            raise ArchiveError(f"{path}: the manifest lists {name} itself", hint=_HOSTILE_HINT)
    return manifest, data


def _open_file(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except FileNotFoundError as exc:
        raise NotFound(f"no such archive: {path}", hint="check the path of the file") from exc
    except IsADirectoryError as exc:
        raise ArchiveError(f"{path} is a directory, not an archive") from exc
    except OSError as exc:
        raise ArchiveError(f"cannot read archive {path}: {exc.strerror}") from exc


def read_manifest(path: str | os.PathLike[str]) -> ArchiveManifest:
    """The manifest alone (cheap: reads only the first member; verifies nothing else).

    Raises:
        NotFound: no such file.
        ArchiveError: not a ctk archive, or from a newer format version.
    """
    archive = Path(path)
    with _open_file(archive) as raw:
        try:
            with (
                decompressing(raw) as (_compression, stream),
                tarfile.open(fileobj=stream, mode="r|") as tar,
            ):
                return _read_manifest_member(tar, archive)
        except _decode_errors() as exc:
            raise ArchiveError(
                f"archive {archive} is truncated or corrupt: {exc}", hint=_CORRUPT_HINT
            ) from exc


def _extract_member(
    tar: tarfile.TarFile, info: tarfile.TarInfo, expected: ArchiveMember, directory: Path
) -> None:
    relative = check_member_name(info.name)
    target = directory.joinpath(*relative.parts)
    # Belt and braces: the name check already makes this impossible.
    if not target.resolve().is_relative_to(directory.resolve()):
        raise ArchiveError(f"archive member {info.name!r} escapes", hint=_HOSTILE_HINT)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    source = tar.extractfile(info)
    if source is None:
        raise ArchiveError(f"archive member {info.name!r} has no data", hint=_CORRUPT_HINT)
    digest = hashlib.sha256()
    written = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with os.fdopen(os.open(target, flags, 0o600), "wb") as out:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            written += len(chunk)
            out.write(chunk)
    if written != expected.size:
        raise ArchiveError(f"archive member {info.name!r} is truncated", hint=_CORRUPT_HINT)
    if digest.hexdigest() != expected.sha256:
        raise ArchiveError(
            f"checksum mismatch in archive member {info.name!r}: the archive is corrupt or "
            "was altered",
            hint=_CORRUPT_HINT,
        )


def _extract_verified(
    path: Path, directory: Path, gate: SignatureGate | None = None
) -> tuple[ArchiveManifest, str]:
    gate = gate or SignatureGate(None, str(path))
    with _open_file(path) as raw:
        try:
            with (
                decompressing(raw) as (compression, stream),
                tarfile.open(fileobj=stream, mode="r|") as tar,
            ):
                manifest, manifest_bytes = _read_manifest_head(tar, path)
                gate.begin(manifest_bytes)
                expected = {m.name: m for m in manifest.members}
                seen: set[str] = set()
                while (info := tar.next()) is not None:
                    if gate.take(tar, info):  # the signature, verified before anything else
                        continue
                    check_member_name(info.name)
                    _refuse_type(info, "archive")
                    member = expected.get(info.name)
                    if member is None:
                        raise ArchiveError(
                            f"archive member {info.name!r} is not listed in the manifest",
                            hint=_HOSTILE_HINT,
                        )
                    if info.name in seen:
                        raise ArchiveError(
                            f"archive member {info.name!r} appears twice", hint=_HOSTILE_HINT
                        )
                    if info.size != member.size:
                        raise ArchiveError(
                            f"archive member {info.name!r} has {info.size} bytes, the manifest "
                            f"says {member.size}",
                            hint=_CORRUPT_HINT,
                        )
                    seen.add(info.name)
                    _extract_member(tar, info, member, directory)
                # Read to the very end: gzip and zstd check their own CRC/length trailer only
                # there, and a flipped byte in the tar's end padding is caught by nothing else.
                while stream.read(_CHUNK):
                    pass
                gate.finish()
        except _decode_errors() as exc:
            raise ArchiveError(
                f"archive {path} is truncated or corrupt: {exc}", hint=_CORRUPT_HINT
            ) from exc
    missing = sorted(set(expected) - seen)
    if missing:
        raise ArchiveError(
            f"archive {path} is truncated: missing {', '.join(missing)}", hint=_CORRUPT_HINT
        )
    return manifest, compression


@contextmanager
def open_archive(
    path: str | os.PathLike[str], *, trust: TrustPolicy | None = None
) -> Iterator[VerifiedArchive]:
    """Verify a whole archive and extract its payload into a private temporary directory.

    Everything is checked before the ``with`` body runs; the directory is removed afterwards.
    ``trust`` (:func:`~toolkit.archive.signing.import_trust`) says which signatures to demand;
    without it a signature is checked against its own key only.

    Raises:
        NotFound: no such file.
        ArchiveError: corrupt, truncated, hostile, or a newer format version.
    """
    archive = Path(path)
    directory = Path(tempfile.mkdtemp(prefix="ctk-archive-"))  # mode 0700
    try:
        gate = SignatureGate(trust, str(archive))
        manifest, compression = _extract_verified(archive, directory, gate)
        yield VerifiedArchive(
            path=archive,
            manifest=manifest,
            compression=compression,
            size=archive.stat().st_size,
            directory=directory,
            signed_by=gate.signed_by.key_id if gate.signed_by else None,
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def check_nested_tar(
    path: Path | None = None,
    *,
    what: str,
    allow_symlinks: bool = False,
    fileobj: IO[bytes] | None = None,
) -> list[str]:
    """Check an engine payload that is itself a tar; its member names.

    Names must be relative without ``..``; hard links must point at a safe name; no member
    may sit below an earlier symlink (the classic way to write through a link); device files
    are refused. Symlinks themselves are allowed only where the engine interprets them inside
    the container's root (``allow_symlinks``, e.g. a rootfs diff).

    Raises:
        ArchiveError: the payload is corrupt or hostile.
    """
    names: list[str] = []
    links: set[PurePosixPath] = set()
    try:
        with tarfile.open(name=path, fileobj=fileobj, mode="r:*") as tar:
            for info in tar:
                relative = check_member_name(info.name, where=what)
                if any(parent in links for parent in relative.parents):
                    raise ArchiveError(
                        f"{what} member {info.name!r} lies below a symlink", hint=_HOSTILE_HINT
                    )
                if info.islnk():
                    check_member_name(info.linkname, where=f"{what} hard link")
                elif info.issym():
                    if not allow_symlinks:
                        _refuse_type(info, what)
                    links.add(relative)
                elif info.ischr() or info.isblk() or info.isfifo():
                    _refuse_type(info, what)
                names.append(str(relative))
    except _decode_errors() as exc:
        raise ArchiveError(f"{what} is truncated or corrupt: {exc}", hint=_CORRUPT_HINT) from exc
    return names
