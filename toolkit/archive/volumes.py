"""Volumes in a ctk archive: what the container mounted, and the volumes' data as members.

The manifest's ``spec.volumes`` lists the container's mounts (:class:`~toolkit.models.Mount`):
a named volume (``source`` its name), an anonymous one (``source`` empty, ``name`` the name it
had), a bind mount (``source`` the host path, carried only by the user's ``--allow-mount``).
Each volume's data is the member ``volumes/<name>.tar``, checksummed like every member, unless
the export left it out (``volumes_ignored``). The tar is what the engines' archive routes make
of the volume mounted at ``/ctk/volume``: every entry lies under ``volume/``.

Nothing here trusts the manifest: names, paths and the data tars are checked before any engine
sees them.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

from toolkit.archive.reader import _decode_errors, iter_nested_tar
from toolkit.errors import ArchiveError
from toolkit.models import ArchiveManifest, Mount

_HINT = "ctk refuses archives that ask the host for more than an ordinary container: do not use it"
# The engines' own volume names: Docker's and Podman's rule ([a-zA-Z0-9][a-zA-Z0-9_.-]+).
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
VOLUME_ROOT = "volume"
"""The top directory of a volume's tar (the engines name it after the mounted path)."""
_KINDS = ("volume", "bind")
# The marker file ctk's cross-runtime move binds on Docker (toolkit.migration.cross_runtime):
# /dev/null, holds nothing, reveals nothing.
_MARKER = ("/dev/null", "/run/.containerenv")


def member_name(volume: str) -> str:
    """The archive member holding the data of ``volume`` (its name on the source)."""
    return f"volumes/{volume}.tar"


def harmless_bind(mount: Mount) -> bool:
    """True for the bind mounts no user needs to allow (the empty marker file)."""
    return mount.type == "bind" and (mount.source, mount.target) == _MARKER


def _absolute(path: str) -> bool:
    parts = path.split("/")
    return (
        path.startswith("/")
        and "\x00" not in path
        and not any(p in (".", "..") for p in parts[1:])
        and "//" not in path
    )


def archived_mounts(manifest: ArchiveManifest) -> tuple[Mount, ...]:
    """The manifest's mounts, each checked: volume names the engines accept, normal absolute
    paths, one mount per target, and a data member for each volume unless the export left the
    data out.

    Raises:
        ArchiveError: the list is malformed or names a missing member.
    """
    raw: Any = manifest.spec.get("volumes") or []
    if not isinstance(raw, (list, tuple)):
        raise ArchiveError("the manifest's volume list is malformed", hint=_HINT)
    members = {m.name for m in manifest.members}
    mounts: list[Mount] = []
    for item in raw:
        try:
            mount = Mount(**item)
        except TypeError as exc:
            raise ArchiveError(f"the manifest's volume entry {item!r} is malformed") from exc
        if not all(isinstance(v, str) for v in (mount.target, mount.source, mount.name)):
            raise ArchiveError(f"the manifest's volume entry {item!r} is malformed", hint=_HINT)
        if mount.type not in _KINDS or not _absolute(mount.target) or mount.target == "/":
            raise ArchiveError(f"the manifest names a bad mount {mount}", hint=_HINT)
        if mount.type == "bind":
            if not _absolute(mount.source):
                raise ArchiveError(f"the manifest names a bad bind mount {mount}", hint=_HINT)
        else:
            if not _VOLUME_NAME.match(mount.name) or mount.source not in ("", mount.name):
                raise ArchiveError(f"the manifest names a bad volume {mount.name!r}", hint=_HINT)
            if not manifest.volumes_ignored and member_name(mount.name) not in members:
                raise ArchiveError(
                    f"the archive has no data for volume {mount.name} ({mount.target})",
                    hint="it is truncated or was altered: export the checkpoint again",
                )
        mounts.append(mount)
    targets = [m.target for m in mounts]
    names = [m.name for m in mounts if m.type == "volume"]
    if len(set(targets)) != len(targets) or len(set(names)) != len(names):
        raise ArchiveError("the manifest lists a mount or a volume twice", hint=_HINT)
    return tuple(mounts)


def check_volume_tar(path: Path, *, volume: str) -> None:
    """A volume's data tar: entries only under ``volume/``, links that stay inside, no devices.

    Raises:
        ArchiveError: it is corrupt, or hostile.
    """
    what = f"the data of volume {volume}"
    root = PurePosixPath(VOLUME_ROOT)
    try:
        with tarfile.open(path, mode="r|") as tar:
            for relative, _info in iter_nested_tar(tar, what=what, allow_symlinks=True):
                if relative != root and root not in relative.parents:
                    raise ArchiveError(f"{what} holds {relative}, outside the volume", hint=_HINT)
    except _decode_errors() as exc:
        raise ArchiveError(f"{what} is truncated or corrupt: {exc}", hint=_HINT) from exc
