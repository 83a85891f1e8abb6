"""``ctk cp``: files between a container and the host through the engines' archive routes.

The container side is a tar stream (``get_archive``/``put_archive``); this module is the host
side: it names the tar's top member so that the copy lands where ``docker cp`` would put it,
and unpacks only what stays inside the destination.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from toolkit.archive.reader import check_member_name
from toolkit.backends.base import ContainerLayers
from toolkit.errors import ArchiveError, InvalidArgument, NotFound

# Go's os.ModeDir, as the engines report a path's mode in X-Docker-Container-Path-Stat.
_GO_MODE_DIR = 1 << 31


def split_target(value: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` as (container, path); a host path as (None, path).

    A value starting with ``/`` or ``.`` is a host path even with a colon in it.
    """
    if value.startswith(("/", ".")) or ":" not in value:
        return None, value
    name, _, path = value.partition(":")
    return name, path or "/"


def _is_container_dir(backend: ContainerLayers, name: str, path: str) -> bool | None:
    found = backend.path_stat(name, path)
    if found is None:
        return None
    return bool(int(str(found.get("mode", 0))) & _GO_MODE_DIR)


def copy_to_container(backend: ContainerLayers, source: Path, name: str, dest: str) -> None:
    """Copy a host file or directory into a container, as ``docker cp SRC NAME:DEST``:
    into DEST when it is a directory there, else as DEST.

    Raises:
        NotFound: the host path does not exist.
        InvalidArgument: DEST's parent directory does not exist in the container.
    """
    if not source.exists() and not source.is_symlink():
        raise NotFound(f"no such host path: {source}")
    target = PurePosixPath(dest)
    if _is_container_dir(backend, name, dest):
        directory, arcname = str(target), source.name
    else:
        directory, arcname = str(target.parent), target.name
        if _is_container_dir(backend, name, directory) is not True:
            raise InvalidArgument(f"{directory} is not a directory in {name}")
    with tempfile.TemporaryFile() as spool:
        with tarfile.open(fileobj=spool, mode="w") as tar:
            tar.add(str(source), arcname=arcname)
        spool.seek(0)
        backend.put_archive(name, directory, spool.read())


def copy_from_container(backend: ContainerLayers, name: str, source: str, dest: Path) -> None:
    """Copy a container path to the host, as ``docker cp NAME:SRC DEST``: into DEST when it
    is a directory, else as DEST.

    Raises:
        NotFound: the container path does not exist.
        ArchiveError: the engine's tar holds a member that would land outside DEST.
    """
    if _is_container_dir(backend, name, source) is None:
        raise NotFound(f"no such path in {name}: {source}")
    if dest.is_dir():
        directory, rename = dest, None
    else:
        directory, rename = dest.parent, dest.name
        if not directory.is_dir():
            raise InvalidArgument(f"{directory} is not a directory")
    with tempfile.TemporaryFile() as spool:
        for chunk in backend.get_archive(name, source):
            spool.write(chunk)
        spool.seek(0)
        with tarfile.open(fileobj=spool, mode="r|") as tar:
            _unpack(tar, directory, rename)


def _unpack(tar: tarfile.TarFile, directory: Path, rename: str | None) -> None:
    """Unpack members that stay under ``directory``: no absolute or ``..`` names, nothing
    through a symlink the tar made, hard links only to members inside, no device nodes."""
    links: set[PurePosixPath] = set()
    for member in tar:
        relative = check_member_name(member.name, where="container copy")
        if rename is not None:
            relative = PurePosixPath(rename, *relative.parts[1:])
        if any(parent in links for parent in relative.parents):
            raise ArchiveError(f"container copy member {member.name!r} goes through a symlink")
        if member.islnk():
            check_member_name(member.linkname, where="container copy")
        if member.ischr() or member.isblk() or member.isfifo():
            continue
        member.name = relative.as_posix()
        if member.issym():
            links.add(relative)
        path = directory / relative
        if path.is_dir() and not path.is_symlink() and not member.isdir():
            shutil.rmtree(path)
        elif (path.is_symlink() or path.is_file()) and member.isreg():
            path.unlink()
        tar.extract(member, str(directory))
