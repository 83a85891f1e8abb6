"""Volumes in and out of ctk archives, written once for both engines.

Export: the container's mounts are read and checked before anything is frozen (a bind mount
only with the user's ``--allow-mount``). Docker reads each volume after the dump through a
helper container that mounts it (:class:`~toolkit.backends.base.VolumeData`), made before the
dump so that a helper the engine refuses stops the export before anything is frozen. Podman
takes the data from libpod's own export (:func:`toolkit.archive.split_podman_volumes`).

Import: the archive's mounts are checked before anything is created: a named volume that
exists here is a conflict (exit 5) unless the user chose ``--ignore-volumes``; then ctk creates
each volume new (an anonymous one under a new name), fills it through a helper before the
restore, and removes what it created when the import fails.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path, PurePosixPath

from toolkit.archive import VerifiedArchive
from toolkit.archive.volumes import (
    archived_mounts,
    check_volume_tar,
    harmless_bind,
    member_name,
)
from toolkit.backends.base import VolumeData, Volumes
from toolkit.errors import ArchiveError, Conflict, CtkError, Unsupported, VolumeNotFound
from toolkit.models import ExportOptions, ImportOptions, Mount

log = logging.getLogger(__name__)


def allowed(path: str, allow: Sequence[str]) -> bool:
    """True when the user named ``path`` (or a directory above it) with ``--allow-mount``."""
    given = PurePosixPath(path)
    for item in allow:
        base = PurePosixPath(item)
        if base.is_absolute() and (given == base or base in given.parents):
            return True
    return False


def export_mounts(backend: VolumeData, name: str, options: ExportOptions) -> tuple[Mount, ...]:
    """The container's mounts as its archive lists them; checked before anything is frozen.

    Raises:
        Unsupported: a bind mount the user did not name with ``--allow-mount``, or a mount of
            another kind (tmpfs, image), which no archive carries.
    """
    mounts = backend.container_volumes(name)
    for mount in mounts:
        if mount.type == "volume" or harmless_bind(mount):
            continue
        if mount.type != "bind":
            raise Unsupported(
                f"container {name} has a {mount.type} mount at {mount.target}, which ctk "
                "archives do not carry"
            )
        if not allowed(mount.source, options.allow_mounts):
            raise Unsupported(
                f"container {name} bind-mounts the host's {mount.source} at {mount.target}; "
                "an archive carries volumes, not host directories",
                hint=f"to export it without that directory's content (the importing host must "
                f"have it, and allow it too): --allow-mount {mount.source}",
            )
    return mounts


@contextmanager
def volume_readers(
    backend: VolumeData, mounts: Sequence[Mount], *, image: str, ignore: bool
) -> Iterator[dict[str, str]]:
    """Helpers holding the container's volumes: {volume name: helper ID}; removed on exit.

    Made before the dump: a helper the engine refuses stops the export before anything is
    frozen; and while a helper uses a volume, the engine does not remove it.
    """
    helpers: dict[str, str] = {}
    with ExitStack() as stack:
        if not ignore:
            for mount in mounts:
                if mount.type == "volume":
                    helpers[mount.name] = stack.enter_context(
                        backend.volume_access(mount.name, image=image)
                    )
        yield helpers


def read_volumes(
    backend: VolumeData, helpers: dict[str, str], stage: Path
) -> list[tuple[str, Path]]:
    """Each volume's data, read through its helper into ``stage``: (member name, file) pairs."""
    payload: list[tuple[str, Path]] = []
    for index, (volume, helper) in enumerate(sorted(helpers.items())):
        out = stage / f"volume-{index}.tar"
        backend.read_volume(helper, out)
        payload.append((member_name(volume), out))
    return payload


@dataclasses.dataclass(frozen=True)
class PlacedVolume:
    """An archived volume and the volume that stands for it here."""

    mount: Mount
    """As the archive lists it (``name``: the source's name)."""
    volume: str
    """Its name here."""
    mountpoint: str
    """Where the engine keeps it on its host."""
    created: bool
    """ctk created it for this import (removed again if the import fails)."""
    data: Path | None
    """The archive's data for it, or None: left as it is."""


def import_mounts(
    backend: VolumeData, verified: VerifiedArchive, options: ImportOptions
) -> tuple[Mount, ...]:
    """The archive's mounts, checked against the user's choices and this host before anything
    is created.

    Raises:
        ArchiveError: a malformed list or data, or a bind mount the user did not allow.
        Conflict: a named volume of the archive exists here and its data would be restored.
    """
    manifest = verified.manifest
    mounts = archived_mounts(manifest)
    restore_data = not (options.ignore_volumes or manifest.volumes_ignored)
    keep = options.reuse_volumes or not restore_data
    for mount in mounts:
        if mount.type == "bind":
            if not harmless_bind(mount) and not allowed(mount.source, options.allow_mounts):
                raise ArchiveError(
                    f"the archive's container bind-mounts the host's {mount.source} at "
                    f"{mount.target}",
                    hint="if you trust the archive with that directory, allow it: "
                    f"--allow-mount {mount.source}",
                )
            continue
        if restore_data:
            check_volume_tar(verified.member(member_name(mount.name)), volume=mount.name)
        if mount.source and not keep and volume_exists(backend, mount.source):
            raise Conflict(
                f"a volume named {mount.source} exists already on {backend.kind}",
                hint=f"remove it (ctk volume rm {mount.source}) or, to keep its content and "
                "not restore the archive's, import with --ignore-volumes",
            )
    return mounts


def volume_exists(backend: VolumeData, volume: str) -> bool:
    """Whether ``backend`` holds a volume named ``volume``."""
    try:
        backend.inspect_volume(volume)
    except VolumeNotFound:
        return False
    return True


def place_volumes(
    backend: VolumeData,
    verified: VerifiedArchive,
    mounts: Sequence[Mount],
    options: ImportOptions,
    *,
    anonymous: bool,
) -> list[PlacedVolume]:
    """Create the volumes the imported container mounts; what stands for each volume.

    A named volume keeps its name: created here, or (``--ignore-volumes``, or an archive without
    the data) the existing one used as it is. ``anonymous``: an anonymous volume gets a new
    volume under a new name (Podman: the engine's restore takes a volume by name); else it is
    left out, for the engine to create with the container (Docker).
    On failure the volumes created so far are removed again.
    """
    restore_data = not (options.ignore_volumes or verified.manifest.volumes_ignored)
    placed: list[PlacedVolume] = []
    try:
        for mount in mounts:
            if mount.type != "volume":
                continue
            data = verified.member(member_name(mount.name)) if restore_data else None
            # the volume to use as it is: a named one (--ignore-volumes), or any by its
            # archived name (reuse: the migration's own source, rolled back)
            kept = mount.name if options.reuse_volumes else mount.source if not data else ""
            if kept and volume_exists(backend, kept):
                info = backend.inspect_volume(kept)
                placed.append(PlacedVolume(mount, info.name, info.mountpoint, False, None))
                continue
            if not mount.source and not anonymous:
                continue  # the engine makes a new one with the container (Docker)
            info = backend.create_volume(mount.source)
            placed.append(PlacedVolume(mount, info.name, info.mountpoint, True, data))
    except BaseException:
        remove_created(backend, placed)
        raise
    return placed


def fill_volumes(backend: VolumeData, placed: Sequence[PlacedVolume], *, image: str) -> None:
    """Write the archive's data into the volumes ctk created for it."""
    for item in placed:
        if item.data is None:
            continue
        with backend.volume_access(item.volume, image=image) as helper:
            backend.write_volume(helper, item.data)


def remove_created(backend: VolumeData, placed: Sequence[PlacedVolume]) -> None:
    """Remove the volumes an import created, after it failed; failures are logged."""
    remove_volumes(backend, [p.volume for p in placed if p.created], why="the failed import")


def remove_volumes(backend: Volumes, names: Iterable[str], *, why: str) -> None:
    """Remove volumes ctk made for ``why`` (e.g. "the failed import"), even if in use; a
    failure is logged, not raised: it runs while something else is being undone."""
    for volume in names:
        try:
            backend.remove_volume(volume, force=True)
        except CtkError as exc:
            log.warning("could not remove volume %s of %s: %s", volume, why, exc)
