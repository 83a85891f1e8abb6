"""Volumes of a container moved live to the other runtime (Docker <-> Podman), with their data.

Built on :mod:`toolkit.migration.volumes` (staged, checksummed data; volumes made on the
destination recorded as they appear) and the engines' VolumeData capability, without an
archive in between:

- before the source is frozen, each volume gets its counterpart on the destination: a named
  volume a volume of the same name (one that exists there already is a conflict, exit 5), an
  anonymous one a new volume with an engine-made name; a Docker source's volumes get their
  reading helpers then, so a helper the engine refuses stops the move before anything is
  frozen;
- after the dump, while the source stays frozen (CRIU checks the size of every file the
  restored processes hold open, so the data must be what the dump saw), each volume's data is
  read (from libpod's own export on Podman, whose tars keep the owners; through the helper on
  Docker), staged with its SHA-256 and written into its counterpart;
- the destination's container mounts the counterparts at the same targets, so runc offers CRIU
  the same external mount keys (runc marks volumes, like bind mounts, ``mnt[TARGET]``);
- a move that fails removes the volumes it created on the destination (the caller restores the
  source, whose own volumes were never touched).

A bind mount moves only when the user names it (``--allow-mount``): the destination must have
the path; its content does not move.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from toolkit.archive.volumes import harmless_bind, member_name
from toolkit.backends.base import Backend, RawCheckpointArchives, VolumeData
from toolkit.backends.volume_data import (
    allowed,
    read_volumes,
    remove_volumes,
    volume_exists,
    volume_readers,
)
from toolkit.errors import Conflict, Unsupported
from toolkit.migration import volumes
from toolkit.models import Mount


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


@dataclasses.dataclass
class VolumeTransfer:
    """The destination's counterparts of a container's volumes, and how to fill them."""

    source: VolumeData
    dest: Backend
    """A VolumeData backend too (checked by :func:`volume_transfer`)."""
    mounts: tuple[Mount, ...]
    image: str
    """An image ID both engines hold (the container's): the helpers are made from it."""
    names: dict[str, str] = dataclasses.field(default_factory=dict)
    """The destination's volume for each of the container's, by mount target."""
    readers: dict[str, str] = dataclasses.field(default_factory=dict)
    """Docker source: {volume name: helper holding it}."""

    def dest_mounts(self) -> tuple[Mount, ...]:
        """The mounts of the destination's container: the counterparts, the allowed binds."""
        return volumes.dest_mounts(self.mounts, self.names)

    def mountpoint(self, target: str) -> str:
        """Where the destination's engine keeps the volume mounted at ``target``."""
        assert isinstance(self.dest, VolumeData)
        return self.dest.inspect_volume(self.names[target]).mountpoint

    def copy(self, work: Path, *, export: Path | None = None) -> int:
        """Fill the counterparts with the source's data (the source is frozen); bytes copied.

        ``export``: libpod's export of the source (Podman), which holds the volumes' data.

        Raises:
            ArchiveError: a volume's data is malformed, or changed once staged.
        """
        stage = work / "volumes"
        stage.mkdir(exist_ok=True)
        staged = [volumes.stage(mount, data) for mount, data in self._read(stage, export)]
        return volumes.fill(self.dest, staged, self.names, image=self.image)

    def _read(self, stage: Path, export: Path | None) -> list[tuple[Mount, Path]]:
        wanted = [m for m in self.mounts if m.type == "volume"]
        if export is not None:
            from toolkit.archive import split_podman_volumes

            pairs = split_podman_volumes(export, None, stage, [m.name for m in wanted])
        else:
            pairs = read_volumes(self.source, self.readers, stage)
        data = dict(pairs)
        return [(m, data[member_name(m.name)]) for m in wanted]


@contextmanager
def volume_transfer(
    source: Backend,
    dest: Backend,
    mounts: Sequence[Mount],
    *,
    image: str,
    record: Callable[[str], None] | None = None,
) -> Iterator[VolumeTransfer]:
    """The destination's counterparts of ``mounts``, created before anything is frozen, each
    passed to ``record`` as soon as it exists; removed again when the body raises. The Docker
    source's reading helpers live as long as the body.

    Raises:
        Conflict: a named volume exists on the destination.
        Unsupported: an engine cannot read or write volumes.
    """
    if not (isinstance(source, VolumeData) and isinstance(dest, VolumeData)):
        raise Unsupported(f"ctk cannot move volumes from {source.kind} to {dest.kind}")
    for mount in mounts:
        if mount.type == "volume" and mount.source and volume_exists(dest, mount.source):
            # Docker's create would answer with the existing volume: say it here, on both
            raise Conflict(
                f"a volume named {mount.source} exists on the destination {dest.kind}",
                hint="remove it there (ctk volume rm), or move the container's data by hand",
            )
    transfer = VolumeTransfer(source, dest, tuple(mounts), image)
    made: list[str] = []

    def created(volume: str) -> None:
        made.append(volume)
        if record is not None:
            record(volume)

    with ExitStack() as stack:
        try:
            transfer.names = volumes.create_recorded(dest, mounts, created)
            if not isinstance(source, RawCheckpointArchives):
                transfer.readers = stack.enter_context(
                    volume_readers(source, transfer.mounts, image=image, ignore=False)
                )
            yield transfer
        except BaseException:
            remove_volumes(dest, made, why="the failed move")
            raise
