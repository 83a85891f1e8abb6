"""Volumes of a container moved live to the other runtime (Docker <-> Podman), with their data.

Written over the :class:`~toolkit.backends.base.VolumeData` capability of both engines, as the
archives' volumes are (:mod:`toolkit.backends.volume_data`), but without an archive in between:

- before the source is frozen, each volume gets its counterpart on the destination: a named
  volume a volume of the same name (one that exists there already is a conflict, exit 5), an
  anonymous one a new volume with a generated name (the engines name anonymous volumes so too);
  a Docker source's volumes get their reading helpers then, so a helper the engine refuses stops
  the move before anything is frozen;
- after the dump, while the source stays frozen (CRIU checks the size of every file the
  restored processes hold open, so the data must be what the dump saw), each volume's data is
  read (from libpod's own export on Podman, whose tars keep the owners; through the helper on
  Docker), written into its counterpart, read back and compared (names, kinds, sizes, contents,
  link targets: :func:`toolkit.archive.volumes.volume_digest`);
- the destination's container mounts the counterparts at the same targets, so runc offers CRIU
  the same external mount keys (runc marks volumes, like bind mounts, ``mnt[TARGET]``);
- a move that fails removes the volumes it created on the destination (the caller restores the
  source, whose own volumes were never touched).

A bind mount moves only when the user names it (``--allow-mount``): the destination must have
the path; its content does not move.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from toolkit.archive.volumes import harmless_bind, volume_digest
from toolkit.backends.base import Backend, RawCheckpointArchives, VolumeData
from toolkit.backends.volume_data import allowed, read_volumes, remove_volumes, volume_readers
from toolkit.errors import ArchiveError, Conflict, Unsupported, VolumeNotFound
from toolkit.models import Mount

log = logging.getLogger(__name__)


def carried_mounts(
    source: Backend, name: str, *, allow_mounts: Sequence[str] = ()
) -> tuple[tuple[Mount, ...], str]:
    """The mounts a cross-runtime move of ``name`` carries, or why it cannot: (mounts, "") or
    ((), reason). Volumes move with their data; a bind mount only when ``allow_mounts`` names
    its host path; the empty marker bind ctk adds on Docker is left to the restore."""
    if not isinstance(source, VolumeData):
        return (), f"the {source.kind} backend cannot read volumes"
    mounts = tuple(m for m in source.container_volumes(name) if not harmless_bind(m))
    for mount in mounts:
        if mount.type == "bind" and not allowed(mount.source, allow_mounts):
            return (), (
                f"{name} bind-mounts the host's {mount.source} at {mount.target} "
                f"(moved only with --allow-mount {mount.source}: the destination must have it)"
            )
        if mount.type not in ("bind", "volume"):
            return (), f"{name} has a {mount.type} mount at {mount.target}, which ctk cannot move"
    return mounts, ""


@dataclasses.dataclass(frozen=True)
class Counterpart:
    """A source volume and the destination's volume standing for it."""

    mount: Mount
    """The source's mount (``name`` its volume there)."""
    volume: str
    """The destination volume's name."""
    mountpoint: str
    """Where the destination's engine keeps it on its host."""


@dataclasses.dataclass
class VolumeTransfer:
    """The destination's counterparts of a container's volumes, and how to fill them."""

    source: VolumeData
    dest: VolumeData
    mounts: tuple[Mount, ...]
    image: str
    """An image ID both engines hold (the container's): the helpers are made from it."""
    counterparts: list[Counterpart] = dataclasses.field(default_factory=list)
    readers: dict[str, str] = dataclasses.field(default_factory=dict)
    """Docker source: {volume name: helper holding it}."""

    def dest_mounts(self) -> tuple[Mount, ...]:
        """The mounts of the destination's container: the counterparts, the allowed binds."""
        by_target = {c.mount.target: c for c in self.counterparts}
        result: list[Mount] = []
        for mount in self.mounts:
            if mount.type == "volume":
                twin = by_target[mount.target]
                result.append(dataclasses.replace(mount, source=twin.volume, name=twin.volume))
            else:
                result.append(mount)
        return tuple(result)

    def copy(self, work: Path, *, export: Path | None = None) -> int:
        """Fill the counterparts with the source's data (the source is frozen); bytes copied.

        ``export``: libpod's export of the source (Podman), which holds the volumes' data.

        Raises:
            ArchiveError: a volume's data read back from the destination is not what was read.
        """
        if not self.counterparts:
            return 0
        stage = work / "volumes"
        stage.mkdir(exist_ok=True)
        data = dict(self._read(stage, export))
        total = 0
        for twin in self.counterparts:
            tar = data[twin.mount.name]
            total += tar.stat().st_size
            expected = volume_digest(tar)
            back = stage / f"back-{twin.volume}.tar"
            with self.dest.volume_access(twin.volume, image=self.image) as helper:
                self.dest.write_volume(helper, tar)
                self.dest.read_volume(helper, back)
            if volume_digest(back) != expected:
                raise ArchiveError(
                    f"volume {twin.volume} on {self.dest.kind} does not hold what "
                    f"{twin.mount.name} held on {self.source.kind}",
                    hint="the migration was rolled back; try again, or check the "
                    "destination's storage",
                )
            back.unlink()
        return total

    def _read(self, stage: Path, export: Path | None) -> list[tuple[str, Path]]:
        names = [c.mount.name for c in self.counterparts]
        if export is not None:
            from toolkit.archive import split_podman_volumes

            staged = split_podman_volumes(export, None, stage, names)
            return [(n, path) for n, (_member, path) in zip(names, staged, strict=True)]
        by_member = {f"volumes/{n}.tar": n for n in names}
        return [(by_member[m], p) for m, p in read_volumes(self.source, self.readers, stage)]

    def remove_created(self) -> None:
        """Remove the counterparts (the move failed); failures are logged."""
        remove_volumes(self.dest, [c.volume for c in self.counterparts], why="the failed move")


@contextmanager
def volume_transfer(
    source: Backend, dest: Backend, mounts: Sequence[Mount], *, image: str
) -> Iterator[VolumeTransfer]:
    """The destination's counterparts of ``mounts``, created before anything is frozen.

    Removed again when the body raises. The Docker source's reading helpers live as long as
    the body.

    Raises:
        Conflict: a named volume exists on the destination.
        Unsupported: an engine cannot read or write volumes.
    """
    if not (isinstance(source, VolumeData) and isinstance(dest, VolumeData)):
        raise Unsupported(f"ctk cannot move volumes from {source.kind} to {dest.kind}")
    transfer = VolumeTransfer(source, dest, tuple(mounts), image)
    with ExitStack() as stack:
        try:
            for mount in mounts:
                if mount.type != "volume":
                    continue
                if mount.source and _exists(dest, mount.source):
                    raise Conflict(
                        f"a volume named {mount.source} exists on the destination {dest.kind}",
                        hint="remove it there (ctk volume rm), or move the container's data by "
                        "hand",
                    )
                info = dest.create_volume(mount.source)
                transfer.counterparts.append(Counterpart(mount, info.name, info.mountpoint))
            if not isinstance(source, RawCheckpointArchives):
                transfer.readers = stack.enter_context(
                    volume_readers(source, transfer.mounts, image=image, ignore=False)
                )
            yield transfer
        except BaseException:
            transfer.remove_created()
            raise


def _exists(backend: VolumeData, volume: str) -> bool:
    try:
        backend.inspect_volume(volume)
    except VolumeNotFound:
        return False
    return True
