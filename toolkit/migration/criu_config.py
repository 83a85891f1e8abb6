"""A per-container CRIU configuration file where the destination's runc reads it.

runc hands CRIU the file named by a container's ``org.criu.config`` annotation, and CRIU opens
that path on the engine's host, not on ctk's machine. Two ways to put a file there:

- ``LocalCriuConfig``: the engine's host is *proved* to see ctk's CRIU config directory (a
  file ctk wrote there read back through the engine: ``SharedFilesystem``), so ctk writes it
  directly. A ``unix://`` URL proves nothing: a socket may be forwarded from another host or
  mount namespace (the testbed's Debian 13 host h3 is one).
- ``EngineCriuConfig``: otherwise, through the engine. A labelled volume on the destination
  engine holds the file; a short-lived helper container (created, never started) mounts it so
  that the engine's archive routes write and read it; the annotation names the file under the
  volume's mountpoint, the path as the engine's host sees it. Removing the volume afterwards
  removes the file: the archive API can write a file but never delete one, a volume the engine
  deletes whole. (A bind of a fixed host directory would need it to exist first: Podman does
  not create a missing bind source, and Docker's ``-v`` is the only one that does.)

CRIU ignores a config file that is gone (criu/config.c: ``parse_config`` of a missing file is
no config), so a container whose annotation outlives the file dumps as any other.
"""

from __future__ import annotations

import io
import logging
import tarfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import Protocol, runtime_checkable

from toolkit import records
from toolkit.backends import shared
from toolkit.backends.base import Backend, ContainerLayers, SharedFilesystem, Volumes
from toolkit.errors import CtkError, Unsupported
from toolkit.models import ContainerSpec, Mount

log = logging.getLogger(__name__)

# Where the helper container mounts the volume; it never runs, so any path does.
_MOUNT = "/ctk-criu-config"
_CONFIG = "criu.conf"
_RESTORE_LOG = "restore.log"
# Labels the volume (and its helper) so that a crash's leftovers can be found and removed.
VOLUME_LABEL = "ctk.criu-config-volume"


class CriuConfig(Protocol):
    """A CRIU config file on the engine's host for one restore."""

    @property
    def path(self) -> str:
        """The file as runc on the engine's host reads it (for ``org.criu.config``)."""
        ...

    @property
    def log_path(self) -> str:
        """Where CRIU on the engine's host can write the restore's log (``log-file``)."""
        ...

    @property
    def labels(self) -> dict[str, str]:
        """Labels for the container naming this file, so that removing it cleans the file."""
        ...

    def write(self, options: Sequence[str]) -> None:
        """Replace the file's content with ``options``, one a line (nothing: empty)."""
        ...

    def restore_log(self) -> str:
        """CRIU's log of the restore written to :attr:`log_path`; "" when there is none."""
        ...


class LocalCriuConfig:
    """The file in ctk's CRIU config directory, which the engine's host was proved to see."""

    def __init__(self, target: str) -> None:
        directory = records.criu_config_dir()
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / f"{target}-{uuid.uuid4().hex[:8]}.conf"
        self._log = self._path.with_suffix(".restore.log")
        self._path.write_text("")

    @property
    def path(self) -> str:
        return str(self._path)

    @property
    def log_path(self) -> str:
        return str(self._log)

    @property
    def labels(self) -> dict[str, str]:
        from toolkit.migration.cross_runtime import CONFIG_LABEL

        # The container keeps naming the (emptied) file; ctk deletes it with the container.
        return {CONFIG_LABEL: self.path}

    def write(self, options: Sequence[str]) -> None:
        self._path.write_text("".join(f"{o}\n" for o in options))

    def restore_log(self) -> str:
        try:
            return self._log.read_text(errors="replace")
        except OSError:
            return ""

    def close(self, *, keep: bool) -> None:
        self._log.unlink(missing_ok=True)
        if not keep:
            self._path.unlink(missing_ok=True)


@runtime_checkable
class _EngineBackend(Backend, Volumes, ContainerLayers, Protocol):
    """What writing a file through the engine takes: volumes, create, archive routes."""


class EngineCriuConfig:
    """The file in a volume of the destination engine, written through its archive routes."""

    def __init__(self, backend: _EngineBackend, target: str, image: str) -> None:
        self._backend = backend
        volume = backend.create_volume(
            f"ctk-criu-config-{uuid.uuid4().hex[:12]}", labels={VOLUME_LABEL: target}
        )
        self._volume = volume.name
        self._helper: str | None = None
        try:
            if not volume.mountpoint:
                raise Unsupported(f"{backend.kind} at {backend.url} names no host path for volumes")
            self._dir = PurePosixPath(volume.mountpoint)
            helper = backend.create(
                ContainerSpec(
                    image=image,
                    command=("/ctk-helper-never-started",),
                    name=f"ctk-helper-{uuid.uuid4().hex[:12]}",
                    labels={"ctk.helper": "1", VOLUME_LABEL: target},
                    network="none",
                    volumes=(Mount(_MOUNT, self._volume, "volume"),),
                )
            )
            self._helper = helper.id
            self.write(())
        except BaseException:
            self.close(keep=False)
            raise

    @property
    def path(self) -> str:
        return str(self._dir / _CONFIG)

    @property
    def log_path(self) -> str:
        return str(self._dir / _RESTORE_LOG)

    @property
    def labels(self) -> dict[str, str]:
        # The file goes with the volume right after the restore: nothing to clean later.
        return {}

    def write(self, options: Sequence[str]) -> None:
        assert self._helper is not None
        data = "".join(f"{o}\n" for o in options).encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(_CONFIG)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        self._backend.put_archive(self._helper, _MOUNT, buffer.getvalue())

    def restore_log(self) -> str:
        if self._helper is None:
            return ""
        try:
            data = b"".join(self._backend.get_archive(self._helper, f"{_MOUNT}/{_RESTORE_LOG}"))
        except CtkError as exc:
            log.debug("no CRIU restore log in volume %s: %s", self._volume, exc.message)
            return ""
        found = shared.file_from_tar(data, _RESTORE_LOG)
        return found.decode(errors="replace") if found is not None else ""

    def close(self, *, keep: bool) -> None:
        """Remove the helper and the volume (and so the file); ``keep`` changes nothing."""
        if self._helper is not None:
            try:
                self._backend.remove(self._helper, force=True)
            except CtkError as exc:
                log.warning("could not remove helper container %s: %s", self._helper, exc.message)
            self._helper = None
        try:
            self._backend.remove_volume(self._volume, force=True)
        except CtkError as exc:
            log.warning("could not remove CRIU config volume %s: %s", self._volume, exc.message)


def shares_config_dir(dest: Backend, image: str) -> bool:
    """Whether the engine's host is proved to see ctk's CRIU config directory."""
    directory = records.criu_config_dir()
    try:
        return isinstance(dest, SharedFilesystem) and dest.shares_directory(directory, image=image)
    except OSError as exc:
        log.debug("cannot write into %s: %s", directory, exc)
        return False


@contextmanager
def criu_config(dest: Backend, *, target: str, image: str) -> Iterator[CriuConfig]:
    """An empty per-container CRIU config file where ``dest``'s runc reads it.

    ``image`` is an image ``dest`` holds (for the helper container). On a normal exit a local
    file stays (emptied by the caller; removed with the container, see ``labels``) and an
    engine volume goes; on an exception both go.

    Raises:
        Unsupported: the engine's host does not see ctk's directory and offers no volumes and
            archive routes to write it through.
    """
    config: LocalCriuConfig | EngineCriuConfig
    if shares_config_dir(dest, image):
        config = LocalCriuConfig(target)
    elif isinstance(dest, _EngineBackend):
        log.debug("%s at %s: CRIU config through the engine", dest.kind, dest.url)
        config = EngineCriuConfig(dest, target, image)
    else:
        raise Unsupported(
            f"{dest.kind} at {dest.url} does not see ctk's CRIU config directory and cannot "
            "write one through the engine",
            hint="run ctk on the destination's host, or migrate cold (--mode cold)",
        )
    try:
        yield config
    except BaseException:
        config.close(keep=False)
        raise
    config.close(keep=True)
