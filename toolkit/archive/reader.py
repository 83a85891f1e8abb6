"""Read a ctk archive safely: verify everything before anything is used.

Nothing in an archive is trusted. The reader streams the tar once, refuses any member that is
not a plain file with a safe relative name listed in the manifest, writes members only inside a
fresh private directory, and compares every size and sha256 with the manifest. Engine payloads
that are tars themselves are checked by :func:`check_nested_tar` before they are handed on.

Checksums prove integrity, not origin: what an engine payload asks of the host (hooks, mounts,
namespaces, deleted paths) is checked separately by :mod:`toolkit.archive.payload`. Reading is
bounded: the decompressed bytes by the sizes the manifest declares, the disk by a free-space check
before writing, memory by streaming (no per-member records kept).
"""

from __future__ import annotations

import errno
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
from typing import IO, cast

from toolkit.archive import progress
from toolkit.archive.compression import decompressing
from toolkit.archive.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, manifest_from_dict
from toolkit.archive.signing import MAX_SIGNATURE_BYTES, SIGNATURE_NAME, SignatureGate, TrustPolicy
from toolkit.errors import ArchiveError, CtkError, NotFound
from toolkit.models import ArchiveManifest, ArchiveMember

_CHUNK = 1024 * 1024
# A ctk archive holds one or two payload files; a manifest listing thousands is hostile.
MAX_MEMBERS = 256
# Engine payload tars (a rootfs diff) hold what the container changed; a million entries is far
# beyond any real one, and the bound keeps a check's time and memory finite.
MAX_NESTED_MEMBERS = 1_000_000
# Linux's limits (NAME_MAX, PATH_MAX): a longer name is refused as an archive problem instead of
# failing later as "File name too long".
MAX_NAME_COMPONENT = 255
MAX_NAME_LENGTH = 4095
# What the tar format adds around the declared bytes: a member's header and a PAX header for a
# long name (each rounded to 512-byte blocks), the end-of-archive blocks and the record padding.
_MEMBER_OVERHEAD = 4 * 1024
_TAR_TRAILER = 20 * 1024
# Room kept free beside the extracted payload, so an import never fills the disk to the last byte.
_SPACE_MARGIN = 64 * 1024 * 1024
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
        # json: a number beyond int_max_str_digits (ValueError), nesting beyond the recursion
        # limit; both were "unexpected" errors, exit 1, for a hostile manifest
        ValueError,
        RecursionError,
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
    if len(stripped.encode()) > MAX_NAME_LENGTH or any(
        len(part.encode()) > MAX_NAME_COMPONENT for part in parts
    ):
        raise ArchiveError(
            f"{where} member {name[:60]!r}... has a name longer than Linux allows",
            hint=_HOSTILE_HINT,
        )
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
    _check_listing(manifest, path)
    return manifest, data


def _check_listing(manifest: ArchiveManifest, path: Path) -> None:
    """The manifest's member list: few, canonical, distinct names, none inside another."""
    names = [m.name for m in manifest.members]
    if len(names) > MAX_MEMBERS:
        raise ArchiveError(
            f"{path}: the manifest lists {len(names)} members (ctk writes at most a few)",
            hint=_HOSTILE_HINT,
        )
    if len(set(names)) != len(names):
        raise ArchiveError(f"{path}: the manifest lists a member twice", hint=_HOSTILE_HINT)
    for name in names:
        # Canonical names only: "a/./b" or "./a" beside "a" would name one file twice.
        if str(check_member_name(name, where="manifest")) != name:
            raise ArchiveError(
                f"{path}: the manifest names {name!r} in a non-canonical form", hint=_HOSTILE_HINT
            )
        if name in (MANIFEST_NAME, SIGNATURE_NAME):
            raise ArchiveError(f"{path}: the manifest lists {name} itself", hint=_HOSTILE_HINT)
    listed = set(names)
    for name in names:
        # "a" and "a/b" cannot both be files.
        clash = next((str(p) for p in PurePosixPath(name).parents if str(p) in listed), None)
        if clash is not None:
            raise ArchiveError(
                f"{path}: the manifest lists {name!r} inside the file {clash!r}",
                hint=_HOSTILE_HINT,
            )


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
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(
            f"archive member {info.name!r} cannot be extracted: {exc.strerror}",
            hint=_HOSTILE_HINT,
        ) from exc
    source = tar.extractfile(info)
    if source is None:
        raise ArchiveError(f"archive member {info.name!r} has no data", hint=_CORRUPT_HINT)
    digest = hashlib.sha256()
    written = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        with os.fdopen(os.open(target, flags, 0o600), "wb") as out:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                written += len(chunk)
                if written > expected.size:
                    raise ArchiveError(
                        f"archive member {info.name!r} is longer than the manifest says",
                        hint=_HOSTILE_HINT,
                    )
                out.write(chunk)
                progress.advance(len(chunk))
    except _decode_errors():
        raise  # gzip's errors are OSErrors too: the caller reports them as corruption
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CtkError(
                f"no space left on {directory.parent} while extracting {info.name!r} "
                f"({expected.size} bytes)",
                hint="free some space, or point TMPDIR at a larger file system",
            ) from exc
        # Whatever the name does to the file system (exists, too long, not a directory):
        # the archive's fault, refused like any other malformed member.
        raise ArchiveError(
            f"archive member {info.name!r} cannot be extracted: {exc.strerror}",
            hint=_HOSTILE_HINT,
        ) from exc
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
                decompressing(raw) as (compression, plain),
                _Bounded(plain, limit=MAX_MANIFEST_BYTES + _TAR_TRAILER) as stream,
                tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|") as tar,
            ):
                manifest, manifest_bytes = _read_manifest_head(tar, path)
                gate.begin(manifest_bytes)
                expected = {m.name: m for m in manifest.members}
                total = sum(m.size for m in manifest.members)
                # Stop at the first byte beyond what the manifest declares, however well the
                # rest compresses, and never start writing what the disk cannot hold.
                stream.limit = (
                    stream.count
                    + _TAR_TRAILER
                    + _MEMBER_OVERHEAD
                    + MAX_SIGNATURE_BYTES  # ctk-signature.json, which the manifest cannot list
                    + sum(_MEMBER_OVERHEAD + -(-m.size // 512) * 512 for m in manifest.members)
                )
                _check_space(directory, total)
                progress.start(f"read {path.name}", total)
                seen: set[str] = set()
                while (info := tar.next()) is not None:
                    _forget_members(tar)
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


class _Bounded:
    """A read-only stream that refuses to yield more than ``limit`` bytes in all."""

    def __init__(self, stream: IO[bytes], *, limit: int) -> None:
        self._stream = stream
        self.limit = limit
        self.count = 0

    def __enter__(self) -> _Bounded:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def read(self, size: int = -1) -> bytes:
        allowed = self.limit - self.count + 1  # one byte more tells "over" from "exactly"
        data = self._stream.read(allowed if size is None or size < 0 else min(size, allowed))
        self.count += len(data)
        if self.count > self.limit:
            raise ArchiveError(
                f"the archive expands beyond the {self.limit} bytes its manifest declares",
                hint=_HOSTILE_HINT,
            )
        return data


def _check_space(directory: Path, needed: int) -> None:
    """CtkError (exit 1) when ``directory``'s file system cannot hold ``needed`` more bytes."""
    free = shutil.disk_usage(directory).free
    if needed + _SPACE_MARGIN > free:
        raise CtkError(
            f"no space left on {directory.parent}: the archive's payload needs {needed} bytes, "
            f"{free} are free",
            hint="free some space, or point TMPDIR at a larger file system",
        )


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


def _forget_members(tar: tarfile.TarFile) -> None:
    # TarFile appends every TarInfo it reads to ``members``, in stream mode too (232 MiB for a
    # payload of 400k members); a streamed read never goes back, so the list can go.
    tar.members = []  # type: ignore[attr-defined]  # typeshed omits the attribute


def _digest(path: PurePosixPath) -> int:
    # 8 bytes per name instead of the name: what a million-member tar can afford to remember.
    return int.from_bytes(hashlib.blake2b(str(path).encode(), digest_size=8).digest(), "big")


def _points_out(link: PurePosixPath, target: str) -> bool:
    """True when symlink ``link`` -> ``target`` leaves the root it lies in (or is absolute)."""
    if target.startswith("/"):
        return True
    depth = len(link.parts) - 1
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def iter_nested_tar(
    tar: tarfile.TarFile,
    *,
    what: str,
    allow_symlinks: bool = False,
    max_members: int | None = None,
) -> Iterator[tuple[PurePosixPath, tarfile.TarInfo]]:
    """Each member of a streamed tar (mode ``r|*``) with its safe name, once it passed the checks.

    Links are resolved against what came before: no member may lie below a symlink; a hard
    link must name an earlier plain file of the same tar, reached through no symlink, or a
    symlink that stays inside the root. Device files and FIFOs are refused; symlinks only where
    the engine interprets them inside the container's root (``allow_symlinks``). Memory stays
    bounded: no TarInfo is kept, names only as 8-byte digests, at most ``max_members``.

    Raises:
        ArchiveError: the tar is hostile or has too many members.
    """
    limit = MAX_NESTED_MEMBERS if max_members is None else max_members
    symlinks: dict[PurePosixPath, str] = {}
    files: set[int] = set()
    count = 0
    while (info := tar.next()) is not None:
        _forget_members(tar)
        count += 1
        if count > limit:
            raise ArchiveError(
                f"{what} has more than {limit} members", hint="ctk refuses such payloads"
            )
        if info.isdir() and info.name in (".", "./"):
            continue  # the tar's own root (libpod's devshm-checkpoint.tar has one): no name
        relative = check_member_name(info.name, where=what)
        _refuse_below_symlink(relative, symlinks, what, info.name)
        if info.islnk():
            target = check_member_name(info.linkname, where=f"{what} hard link")
            _refuse_below_symlink(target, symlinks, what, info.name)
            if target in symlinks:
                if _points_out(target, symlinks[target]):
                    raise ArchiveError(
                        f"{what} hard link {info.name!r} names the symlink {info.linkname!r}, "
                        "which points out of the root",
                        hint=_HOSTILE_HINT,
                    )
            elif _digest(target) not in files:
                raise ArchiveError(
                    f"{what} hard link {info.name!r} names {info.linkname!r}, which is no "
                    "earlier file of the same tar",
                    hint=_HOSTILE_HINT,
                )
            files.add(_digest(relative))
        elif info.issym():
            if not allow_symlinks:
                _refuse_type(info, what)
            symlinks[relative] = info.linkname
        elif info.ischr() or info.isblk() or info.isfifo():
            _refuse_type(info, what)
        elif info.isfile():
            files.add(_digest(relative))
        yield relative, info


def _refuse_below_symlink(
    relative: PurePosixPath, symlinks: dict[PurePosixPath, str], what: str, name: str
) -> None:
    if symlinks and any(parent in symlinks for parent in relative.parents):
        raise ArchiveError(f"{what} member {name!r} lies below a symlink", hint=_HOSTILE_HINT)


def check_nested_tar(
    path: Path | None = None,
    *,
    what: str,
    allow_symlinks: bool = False,
    fileobj: IO[bytes] | None = None,
    keep_names: bool = True,
    max_members: int | None = None,
) -> list[str]:
    """Check an engine payload that is itself a tar; its member names (``keep_names``).

    Read as a stream, checked by :func:`iter_nested_tar`: names relative without ``..``,
    links resolved (nothing below a symlink, hard links only to earlier files), no device
    files, at most ``max_members`` members (default :data:`MAX_NESTED_MEMBERS`), memory
    bounded whatever the count unless the names are asked for.

    Raises:
        ArchiveError: the payload is corrupt or hostile.
    """
    names: list[str] = []
    try:
        with tarfile.open(name=path, fileobj=fileobj, mode="r|*") as tar:
            for relative, _info in iter_nested_tar(
                tar, what=what, allow_symlinks=allow_symlinks, max_members=max_members
            ):
                if keep_names:
                    names.append(str(relative))
    except _decode_errors() as exc:
        raise ArchiveError(f"{what} is truncated or corrupt: {exc}", hint=_CORRUPT_HINT) from exc
    return names
