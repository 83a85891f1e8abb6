"""Volume data in cold and post-copy moves (and, through :mod:`.volume_transfer`, live moves
across runtimes).

A live move carries the volumes as members of its archive (:mod:`toolkit.backends.volume_data`).
A cold or post-copy move has no such archive: ctk stages each volume's data in the migration's
work directory once the source can no longer write (cold: stopped or frozen; post-copy: frozen by
its lazy dump), with a SHA-256 checked again before the data is written, then creates the
volumes on the destination (a named volume under its name, an anonymous one new under an
engine-made name), fills them through the engine and creates the container with the same mounts.

Every volume ctk creates on the destination is recorded in the journal (``extra["dest_volumes"]``)
as soon as it exists, so a rollback, here or by ``ctk migrate --recover``, removes exactly those
(:func:`remove_created`) and nothing the destination had before.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

from toolkit.archive.volumes import VOLUME_ROOT, check_volume_tar
from toolkit.archive.writer import sha256_file
from toolkit.backends.base import Backend, VolumeData
from toolkit.errors import ArchiveError, CtkError, Unsupported, VolumeNotFound
from toolkit.migration.journal import Journal
from toolkit.models import Mount

log = logging.getLogger(__name__)

JOURNAL_KEY = "dest_volumes"
"""``journal.extra`` key: the volumes this migration created on the destination."""


@dataclasses.dataclass(frozen=True)
class StagedVolume:
    """A source volume's data, staged in the migration's work directory."""

    mount: Mount
    """As the source mounts it (``name``: its name there; ``source`` empty when anonymous)."""
    data: Path
    """A tar whose entries lie under ``volume/``, as the engines' archive routes write them."""
    sha256: str


def _volume_backend(backend: Backend, side: str) -> VolumeData:
    if not isinstance(backend, VolumeData):
        raise Unsupported(f"the {side} engine ({backend.kind}) cannot read or write volume data")
    return backend


def stage(mount: Mount, data: Path) -> StagedVolume:
    """A volume tar read from the source, checked and checksummed where it lies."""
    check_volume_tar(data, volume=mount.name)
    return StagedVolume(mount, data, sha256_file(data))


def read_through_engine(
    source: Backend, mounts: Sequence[Mount], *, image: str, work: Path
) -> list[StagedVolume]:
    """Each volume's data, read through a helper container on the source engine (cold).

    Works with a remote engine. Podman 4.3's archive route hands files out as owned by the
    helper's user (root): ownership inside the volume is not kept there.
    """
    backend = _volume_backend(source, "source")
    staged = []
    for index, mount in enumerate(m for m in mounts if m.type == "volume"):
        out = work / f"volume-{index}.tar"
        with backend.volume_access(mount.name, image=image) as helper:
            backend.read_volume(helper, out)
        staged.append(stage(mount, out))
    return staged


def mountpoints(source: Backend, mounts: Sequence[Mount]) -> dict[str, Path]:
    """Where the source engine keeps each volume, by volume name: read before a freeze, since
    Podman answers nothing about a container (or what it uses) while its lazy dump lasts."""
    backend = _volume_backend(source, "source")
    found = {}
    for mount in mounts:
        if mount.type != "volume":
            continue
        path = Path(backend.inspect_volume(mount.name).mountpoint)
        if not path.is_dir():
            raise Unsupported(
                f"volume {mount.name} of the source is not on this machine ({path})",
                hint="post-copy runs ctk on the source engine's machine; or use --mode live",
            )
        found[mount.name] = path
    return found


def empty_local(where: dict[str, Path]) -> None:
    """Remove everything inside each volume directory (volumes this move created itself)."""
    for path in where.values():
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def read_local(
    mounts: Sequence[Mount], where: dict[str, Path], *, work: Path
) -> list[StagedVolume]:
    """Each volume's data, read from the engine's storage on this machine (post-copy).

    The engine's API would wait on the frozen container's lock; the storage is read while
    nothing writes to it. Owners, modes and links are kept; sockets are left out.
    """
    staged = []
    for index, mount in enumerate(m for m in mounts if m.type == "volume"):
        out = work / f"volume-{index}.tar"
        with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(where[mount.name], arcname=VOLUME_ROOT)
        staged.append(stage(mount, out))
    return staged


def create(dest: Backend, mounts: Sequence[Mount], journal: Journal) -> dict[str, str]:
    """The destination's volumes for the container's, by mount target: a named volume under its
    name (preflight found none there), an anonymous one new. Each is journaled as soon as it
    exists."""
    return create_recorded(dest, mounts, recorder(journal))


def recorder(journal: Journal) -> Callable[[str], None]:
    """What journals a volume made on the destination (for :func:`remove_created`)."""

    def record(volume: str) -> None:
        journal.extra.setdefault(JOURNAL_KEY, []).append(volume)
        journal.write()

    return record


def create_recorded(
    dest: Backend, mounts: Sequence[Mount], record: Callable[[str], None]
) -> dict[str, str]:
    """:func:`create`, each volume passed to ``record`` as soon as it exists (the cross-runtime
    path, which has no journal of its own, is handed one so)."""
    wanted = [m for m in mounts if m.type == "volume"]
    if not wanted:
        return {}
    backend = _volume_backend(dest, "destination")
    names = {}
    for mount in wanted:
        info = backend.create_volume(mount.source)
        record(info.name)
        names[mount.target] = info.name
    return names


def fill(
    dest: Backend, staged: Sequence[StagedVolume], names: dict[str, str], *, image: str
) -> int:
    """Write each staged volume into its destination volume; the bytes written.

    Raises:
        ArchiveError: a staged tar changed since it was read (its checksum differs).
    """
    backend = _volume_backend(dest, "destination")
    total = 0
    for item in staged:
        if sha256_file(item.data) != item.sha256:
            raise ArchiveError(
                f"the staged data of volume {item.mount.name} changed since it was read",
                hint="something else writes into ctk's state directory: migrate again",
            )
        with backend.volume_access(names[item.mount.target], image=image) as helper:
            backend.write_volume(helper, item.data)
        total += item.data.stat().st_size
    return total


def dest_mounts(mounts: Sequence[Mount], names: dict[str, str]) -> tuple[Mount, ...]:
    """The mounts of the container made on the destination: each volume by its name there,
    each allowed bind mount as it is."""
    return tuple(
        dataclasses.replace(m, source=names[m.target], name=names[m.target])
        if m.type == "volume"
        else m
        for m in mounts
    )


def remove_created(dest: Backend, journal: Journal) -> list[str]:
    """Remove the volumes this migration created on the destination (after its container);
    what was done, one line each, for the report."""
    created = [str(v) for v in journal.extra.get(JOURNAL_KEY) or ()]
    if not created:
        return []
    if not isinstance(dest, VolumeData):
        return [f"could not remove the volumes {', '.join(created)} from the destination"]
    done = []
    for volume in created:
        try:
            dest.remove_volume(volume, force=True)
        except VolumeNotFound:
            continue
        except CtkError as exc:
            log.warning("could not remove volume %s from the destination: %s", volume, exc)
            done.append(f"could not remove volume {volume} from the destination: {exc}")
            continue
        done.append(f"removed volume {volume} from the destination")
    journal.extra[JOURNAL_KEY] = []
    journal.write()
    return done
