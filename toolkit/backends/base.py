"""The Backend Protocol: the only boundary the rest of ctk knows.

A backend speaks to one engine and hands back ctk's own models; SDK objects never cross it.
What only some engines offer is a small capability Protocol below :class:`Backend`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

from toolkit.models import (
    ArchiveInfo,
    BuildResult,
    Checkpoint,
    CheckpointOptions,
    ContainerInfo,
    ContainerSpec,
    ContainerStats,
    EngineEvent,
    EngineInfo,
    ExecResult,
    ExitStatus,
    ExportOptions,
    FileChange,
    ImageInfo,
    ImageLayer,
    ImportOptions,
    Mount,
    NetworkInfo,
    NetworkSpec,
    PortMapping,
    ProcessList,
    PushResult,
    RestoreOptions,
    RuntimeConfig,
    VolumeInfo,
)


@runtime_checkable
class Backend(Protocol):
    """One container engine (Docker or Podman) behind one interface."""

    kind: str
    """``"docker"`` or ``"podman"``."""

    url: str
    """The engine's API address, e.g. ``unix:///run/podman/podman.sock``."""

    def info(self) -> EngineInfo:
        """Version and capabilities. Raises EngineUnavailable when it does not answer."""
        ...

    def ping(self) -> bool:
        """True when the engine answers."""
        ...

    # lifecycle
    def run(self, spec: ContainerSpec) -> ContainerInfo:
        """Create and start a container (detached)."""
        ...

    def containers(
        self, *, all: bool = False, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[ContainerInfo]:
        """Containers, running only unless ``all``.

        ``filters`` narrow the list like ``docker ps --filter``: keys ``label`` (``K`` or
        ``K=V``), ``name``, ``id``, ``status``; several values of one key match any of them.
        """
        ...

    def inspect(self, name: str) -> ContainerInfo:
        """One container. Raises ContainerNotFound."""
        ...

    def logs(self, name: str, *, tail: int | None = None, since: int | None = None) -> str:
        """Output of the container so far (stdout and stderr).

        ``since`` is a UNIX time: only output written at or after it.
        """
        ...

    def follow_logs(
        self, name: str, *, tail: int | None = None, since: int | None = None
    ) -> Iterator[str]:
        """Output as it comes, until the container stops (``tail``/``since`` as in logs)."""
        ...

    def wait(self, name: str) -> int:
        """Block until the container exits; its exit code."""
        ...

    def stop(self, name: str, *, timeout: int | None = None) -> None:
        """Stop a container."""
        ...

    def remove(self, name: str, *, force: bool = False, volumes: bool = False) -> None:
        """Remove a container; ``volumes`` removes its anonymous volumes too.

        Raises Conflict for a running container unless ``force``.
        """
        ...

    def create(self, spec: ContainerSpec) -> ContainerInfo:
        """Create a container without starting it."""
        ...

    def start(self, name: str) -> None:
        """Start a created or stopped container; a running one is left as it is (like docker).

        Raises Conflict for a paused container.
        """
        ...

    def restart(self, name: str, *, timeout: int | None = None) -> None:
        """Stop (waiting ``timeout`` seconds before killing) and start again."""
        ...

    def pause(self, name: str) -> None:
        """Freeze every process of a running container in its cgroup (memory stays in RAM).

        Raises Conflict when the container is not running or already paused.
        """
        ...

    def unpause(self, name: str) -> None:
        """Thaw a paused container. Raises Conflict when it is not paused."""
        ...

    def kill(self, name: str, *, signal: str | int | None = None) -> None:
        """Send a signal (default SIGKILL). Raises Conflict when it is not running."""
        ...

    def exec(
        self,
        name: str,
        command: Sequence[str],
        *,
        user: str | None = None,
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        """Run a command in a running container and wait for it. Raises Conflict if stopped."""
        ...

    def top(self, name: str) -> ProcessList:
        """The container's processes. Raises Conflict when it is not running."""
        ...

    def stats(self, name: str) -> ContainerStats:
        """One sample of CPU and memory use. Raises Conflict when it is not running."""
        ...

    # checkpoint / restore
    def checkpoint(self, name: str, options: CheckpointOptions) -> Checkpoint:
        """CRIU-checkpoint a running container. On failure the container keeps running."""
        ...

    def restore(self, name: str, options: RestoreOptions) -> ContainerInfo:
        """Restore a checkpointed container in place."""
        ...

    def checkpoints(self, name: str) -> list[Checkpoint]:
        """Checkpoints the engine holds for a container, oldest first."""
        ...

    def remove_checkpoint(self, name: str, checkpoint: str) -> None:
        """Delete one checkpoint, its files on the engine's host too."""
        ...

    def exit_status(self, name: str) -> ExitStatus:
        """Whether the container runs and, if not, how it ended (exit code, OOM kill)."""
        ...

    # checkpoint archives (toolkit.archive)
    def export_checkpoint(
        self, name: str, dest: str | os.PathLike[str], options: ExportOptions
    ) -> ArchiveInfo:
        """Checkpoint a running container into a ctk archive file at ``dest``.

        ``dest`` appears only complete (temp file, fsync, rename). Unknown compression or an
        unusable destination is refused before the container is touched; a failed checkpoint
        leaves it running. Named and anonymous volumes travel as ``volumes/NAME.tar`` members
        (not with ``options.ignore_volumes``); a bind mount is refused before anything is
        frozen unless ``options.allow_mounts`` names it (Unsupported).
        """
        ...

    def export_held_checkpoint(
        self, name: str, checkpoint: str, dest: str | os.PathLike[str], options: ExportOptions
    ) -> ArchiveInfo:
        """Write a checkpoint the engine already holds into a ctk archive, taking none.

        The archive is the one :meth:`export_checkpoint` writes (``options.checkpoint`` aside),
        with the container's rootfs changes as they are now.
        """
        ...

    def import_checkpoint(
        self, archive_path: str | os.PathLike[str], options: ImportOptions
    ) -> ContainerInfo:
        """Create and restore a container from a ctk archive (a clone when given a new name).

        The archive is verified completely before anything is created; a failed import
        leaves no container behind, nor a volume it created. The archive's volumes are created
        new and filled before the restore; a named one that exists is a Conflict (unless
        ``options.ignore_volumes``: then it is mounted as it is).
        """
        ...

    def fetch_checkpoint_images(self, name: str, checkpoint: str, dest: Path) -> None:
        """Copy the CRIU images of a checkpoint the engine holds into directory ``dest``."""
        ...

    def criu_stats(self, name: str, *, phase: str) -> dict[str, int]:
        """CRIU's own statistics of the container's last ``dump`` or ``restore``.

        Empty when the engine does not keep them (Docker).
        """
        ...

    # migration (toolkit.migration)
    def has_image(self, image_id: str) -> bool:
        """True when the engine holds the image with this exact ID."""
        ...

    def save_image(self, image: str) -> Iterator[bytes]:
        """The image as a docker-archive tar stream; loading it elsewhere keeps its ID."""
        ...

    def load_image(self, data: Iterable[bytes]) -> None:
        """Load a docker-archive tar stream made by :meth:`save_image` (either engine)."""
        ...

    def mounts(self, name: str) -> tuple[str, ...]:
        """Where the container has volumes or bind mounts (their destinations)."""
        ...

    def container_spec(self, name: str) -> ContainerSpec:
        """The engine-neutral spec to make this container again elsewhere."""
        ...

    def fetch_changes(self, name: str, out: Path, *, exclude: Sequence[str] = ()) -> list[str]:
        """The container's rootfs changes as a tar at ``out``; returns the deleted paths.

        Paths at or below ``exclude`` (its mount targets: the engines' archive routes read
        through a mount) are left out."""
        ...

    def create_with_changes(
        self, spec: ContainerSpec, *, image_id: str, changes: Path | None, deleted: list[str]
    ) -> ContainerInfo:
        """Create ``spec`` from image ``image_id``, apply rootfs changes and start it.

        A failure leaves no container behind.
        """
        ...

    def close(self) -> None:
        """Release the connection."""
        ...

    # networks
    def networks(self) -> list[NetworkInfo]:
        """Every network the engine knows, built-in ones included, by name."""
        ...

    def create_network(self, spec: NetworkSpec) -> NetworkInfo:
        """Create a network. Raises Unsupported for a driver the engine lacks."""
        ...

    def inspect_network(self, name: str) -> NetworkInfo:
        """One network with its containers. Raises NetworkNotFound."""
        ...

    def remove_network(self, name: str) -> None:
        """Remove a network. Raises Conflict while containers use it."""
        ...

    def connect_network(
        self, network: str, container: str, *, aliases: tuple[str, ...] = ()
    ) -> None:
        """Attach a container to a network (by name; ``aliases`` resolve to it too)."""
        ...

    def disconnect_network(self, network: str, container: str, *, force: bool = False) -> None:
        """Detach a container from a network."""
        ...

    def prune_networks(self, *, labels: dict[str, str] | None = None) -> list[str]:
        """Remove unused user networks (only those with all ``labels``); their names."""
        ...


# -- capabilities: what only some engines offer ---------------------------------------------
# Checked with isinstance against these Protocols, never against a backend class, so a new
# engine gains a migration path by offering the methods.


@runtime_checkable
class RuntimeInspection(Protocol):
    """How the engine runs a container, as a ctk model (for cross-runtime checks)."""

    def runtime_config(self, name: str) -> RuntimeConfig:
        """Runtime, network mode, hostname and mounts. Raises ContainerNotFound."""
        ...


@runtime_checkable
class CriuLogs(Protocol):
    """CRIU's log of a container's last dump or restore, as the engine's host kept it (Podman).

    Read through the engine when ctk does not share the host's filesystem.
    """

    def criu_log(self, name: str, *, phase: str) -> str:
        """The log of ``phase`` (``dump`` or ``restore``); "" when the engine kept none.

        Raises ContainerNotFound, or Unsupported when the engine cannot hand it out.
        """
        ...


@runtime_checkable
class SharedFilesystem(Protocol):
    """Whether the engine's host sees a directory of ctk's machine at the same path (Podman).

    A proof, not a guess from the URL: a socket forwarded from another host or mount namespace
    is a ``unix://`` URL too.
    """

    def shares_directory(self, directory: Path, *, image: str) -> bool:
        """True when a file ctk writes into ``directory`` reads back the same through the
        engine (a helper container made from ``image``, an image the engine holds).
        """
        ...


@runtime_checkable
class StreamingCheckpoints(Protocol):
    """A checkpoint export streamed out and restored from a stream, staging nothing (Podman)."""

    def checkpoint_stream(
        self, name: str, options: CheckpointOptions
    ) -> Generator[bytes, None, None]:
        """Checkpoint ``name``; yield the engine's export tar as it arrives."""
        ...

    def restore_stream(
        self,
        body: Iterable[bytes] | IO[bytes],
        options: ImportOptions,
        *,
        criu_log: Path | None = None,
    ) -> ContainerInfo:
        """Create and restore ``options.name`` from an export tar sent as it is read."""
        ...


@runtime_checkable
class RawCheckpointArchives(Protocol):
    """The engine's own checkpoint export tar written to a file and imported again (libpod)."""

    def export_raw(
        self,
        name: str,
        dest: Path,
        *,
        checkpoint: str,
        leave_running: bool = False,
        tcp_established: bool = False,
    ) -> None:
        """Checkpoint a running container into the engine's export tar at ``dest``."""
        ...

    def import_raw(
        self,
        tar: Path,
        *,
        name: str,
        ports: tuple[PortMapping, ...] = (),
        tcp_established: bool = False,
        criu_log: Path | None = None,
    ) -> ContainerInfo:
        """Create and restore container ``name`` from an export tar; nothing left on failure."""
        ...


@runtime_checkable
class CheckpointTemplates(Protocol):
    """Containers started only to lend their engine metadata to foreign CRIU images (Podman)."""

    def local_image(self, reference: str, image_id: str) -> str:
        """``reference`` when it names image ``image_id`` here, else the ID. ImageNotFound."""
        ...

    def start_template(self, spec: ContainerSpec, *, annotations: dict[str, str]) -> str:
        """Create and start a container with OCI ``annotations``; its ID."""
        ...


@runtime_checkable
class TemplateRestore(Backend, RawCheckpointArchives, CheckpointTemplates, Protocol):
    """A backend that restores foreign CRIU images inside a template's export (the
    cross-runtime path into Podman): see :mod:`toolkit.migration.cross_runtime`."""


@runtime_checkable
class LazyCheckpoints(TemplateRestore, RuntimeInspection, Protocol):
    """An engine whose runc takes CRIU options from a container's ``org.criu.config``
    annotation and whose import takes its own export tar: post-copy moves (Podman); see
    :mod:`toolkit.migration.postcopy`."""

    def with_timeout(self, seconds: int) -> LazyCheckpoints:
        """A connection to the same engine whose requests wait up to ``seconds`` (a lazy
        dump's checkpoint call returns only after the last page)."""
        ...


@runtime_checkable
class ForeignImageRestore(Backend, Protocol):
    """A backend that shapes a container for CRIU images from another runtime and starts it
    from them (the cross-runtime path into Docker)."""

    def create_for_images(
        self,
        spec: ContainerSpec,
        *,
        image_id: str,
        shareable_ipc: bool = False,
        binds: dict[str, str] | None = None,
    ) -> str:
        """Create (never start) a container the images can restore into; its ID."""
        ...

    def start_from_images(
        self,
        container_id: str,
        images: Path,
        *,
        checkpoint: str,
        rootfs: Path | None = None,
        deleted: list[str] | None = None,
        shm: Path | None = None,
    ) -> ContainerInfo:
        """Place CRIU images (a flat directory) as ``checkpoint`` and start from them;
        ``shm`` (a tar) fills the container's /dev/shm volume first."""
        ...


@runtime_checkable
class NativeCheckpointImages(Protocol):
    """The engine commits a checkpoint as a checkpoint image itself (libpod's createImage)."""

    def checkpoint_image(self, name: str, image: str, options: CheckpointOptions) -> Checkpoint:
        """Checkpoint ``name`` into the one-layer checkpoint image ``image``; the checkpoint
        also stays in place. Raises Conflict (not running, --rm) or CheckpointError."""
        ...


@runtime_checkable
class LayerImport(Protocol):
    """A tar made into a one-layer image FROM scratch (``docker import``): how ctk makes a
    checkpoint image where the engine has no such route (Docker)."""

    def import_layer(self, layer: Path, reference: str, *, labels: Mapping[str, str]) -> str:
        """The new image's ID, tagged ``reference``, carrying ``labels``."""
        ...


@runtime_checkable
class Images(Protocol):
    """Images as a stack of read-only layers: list, build (no registry), inspect, history,
    remove, prune. Both engines offer it through their own API."""

    def images(self, *, labels: Mapping[str, str] | None = None) -> list[ImageInfo]:
        """Local images, newest first; only those carrying ``labels`` when given."""
        ...

    def inspect_image(self, image: str) -> ImageInfo:
        """One image with its layer stack. Raises ImageNotFound."""
        ...

    def image_history(self, image: str) -> list[ImageLayer]:
        """The steps that made the image, newest first. Raises ImageNotFound."""
        ...

    def build_image(
        self,
        context: Path,
        *,
        dockerfile: Path | None = None,
        tags: tuple[str, ...] = (),
        labels: Mapping[str, str] | None = None,
        build_args: Mapping[str, str] | None = None,
    ) -> BuildResult:
        """Build from a Dockerfile and a context directory; never pulls (FROM names a local
        image or scratch).

        Raises:
            InvalidArgument: no context or Dockerfile.
            EngineError: the build failed.
        """
        ...

    def tag_image(self, image: str, reference: str) -> None:
        """Give an image one more name. Raises ImageNotFound."""
        ...

    def remove_image(self, image: str, *, force: bool = False) -> list[str]:
        """Untag or delete an image; the engine's Untagged/Deleted lines."""
        ...

    def prune_images(
        self, *, all: bool = False, labels: Mapping[str, str] | None = None
    ) -> list[str]:
        """Remove unused (by default only dangling) images; the IDs removed."""
        ...

    def save_image(self, image: str) -> Iterator[bytes]:
        """The image as a docker-archive tar stream."""
        ...

    def load_image(self, data: Iterable[bytes]) -> None:
        """Load a docker-archive tar stream; image IDs are kept."""
        ...

    def pull_image(
        self,
        reference: str,
        *,
        tls_verify: bool | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> ImageInfo:
        """Pull ``reference`` from its registry; the image now held. ``tls_verify`` None:
        verify, except for a registry on a loopback address; ``progress`` gets status lines.

        Raises:
            ImageNotFound: the registry lacks the name or tag.
            RegistryUnavailable: the registry does not answer (or speaks plain HTTP).
            Unsupported: docker asked not to verify a non-loopback registry.
        """
        ...

    def push_image(
        self,
        reference: str,
        *,
        tls_verify: bool | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> PushResult:
        """Push the local image ``reference`` to the registry it names (as pull_image).

        Raises:
            ImageNotFound: no local image of that name.
            RegistryUnavailable: the registry does not answer (or speaks plain HTTP).
        """
        ...


@runtime_checkable
class ContainerLayers(Protocol):
    """A container's read-write layer: its changes, a commit, files in and out."""

    def changes(self, name: str) -> list[FileChange]:
        """Added (A), changed (C) and deleted (D) paths over the image, in path order."""
        ...

    def commit(
        self,
        name: str,
        image: str,
        *,
        message: str = "",
        labels: Mapping[str, str] | None = None,
        pause: bool = True,
    ) -> str:
        """The read-write layer as one more image layer, tagged ``image``; the new ID.

        Raises:
            ContainerNotFound: no such container.
        """
        ...

    def layer_size(self, name: str) -> int:
        """Bytes in the container's read-write layer."""
        ...

    def path_stat(self, name: str, path: str) -> Mapping[str, object] | None:
        """A container path's stat (``mode``, ``size``, ...), None when it does not exist."""
        ...

    def get_archive(self, name: str, path: str) -> Iterator[bytes]:
        """A container path as a tar stream."""
        ...

    def put_archive(self, name: str, path: str, data: bytes | Iterable[bytes]) -> None:
        """Unpack a tar into a directory of the container."""
        ...


@runtime_checkable
class Volumes(Protocol):
    """Named volumes."""

    def volumes(self, *, labels: Mapping[str, str] | None = None) -> list[VolumeInfo]:
        """Named volumes, by name."""
        ...

    def create_volume(
        self, name: str = "", *, labels: Mapping[str, str] | None = None
    ) -> VolumeInfo:
        """Create a local volume."""
        ...

    def inspect_volume(self, name: str) -> VolumeInfo:
        """One volume. Raises VolumeNotFound."""
        ...

    def remove_volume(self, name: str, *, force: bool = False) -> None:
        """Remove a volume. Raises VolumeNotFound."""
        ...

    def prune_volumes(self, *, labels: Mapping[str, str] | None = None) -> list[str]:
        """Remove unused volumes; their names."""
        ...


@runtime_checkable
class VolumeData(Volumes, Protocol):
    """The contents of volumes, read and written through the engine itself.

    A helper container (created, never started, labelled ``ctk.helper``) mounts the volume at
    :data:`VOLUME_PATH`, and the engine's archive routes stream its tar: nothing assumes that
    ctk shares the engine's filesystem, so a remote engine (ssh, tcp) works the same.
    """

    kind: str

    def container_volumes(self, name: str) -> tuple[Mount, ...]:
        """The container's volumes and bind mounts, by target.

        A volume has ``type`` ``volume``, ``name`` the engine's volume name and ``source`` the
        same, or ``""`` when the volume is anonymous; a bind mount ``type`` ``bind`` and the
        host path as ``source``; anything else keeps the engine's type.

        Raises:
            ContainerNotFound: no such container.
        """
        ...

    def volume_access(self, volume: str, *, image: str) -> AbstractContextManager[str]:
        """A helper container mounting ``volume`` at :data:`VOLUME_PATH`; its ID.

        Made from ``image`` (any local image: its command never runs), removed on exit. While it
        exists, the engine will not remove the volume.
        """
        ...

    def read_volume(self, helper: str, out: Path) -> None:
        """The volume mounted in ``helper`` as a tar into ``out`` (top directory ``volume``)."""
        ...

    def write_volume(self, helper: str, data: Path) -> None:
        """Unpack ``data`` (a tar as :meth:`read_volume` writes it) into the volume."""
        ...


VOLUME_PATH = "/ctk/volume"
"""Where a volume helper mounts the volume; its archive tars name entries ``volume/...``."""


@runtime_checkable
class Events(Protocol):
    """The engine's event stream."""

    def events(
        self,
        *,
        since: int | None = None,
        until: int | None = None,
        filters: Mapping[str, Sequence[str]] | None = None,
    ) -> Iterator[EngineEvent]:
        """Events from ``since`` until ``until`` (epoch seconds); for ever without ``until``."""
        ...


@runtime_checkable
class Terminals(Protocol):
    """Interactive streams: attach to a container's main process, exec with stdin or a TTY.

    Each returns the hijacked socket; :func:`toolkit.terminal.stream` pumps it.
    """

    engine_detaches: bool
    """The engine ends an attach on its detach keys itself (Docker); else ctk must (Podman
    passes them on to the process)."""

    def require_streams(self) -> None:
        """Raises Unsupported when the connection to this engine cannot carry a hijacked
        stream (checked before anything is created)."""
        ...

    def attach_socket(self, name: str, *, stdin: bool, detach_keys: str) -> socket.socket:
        """Attach to the main process's stdin (when ``stdin``), stdout and stderr.

        Works on a created container too, so that nothing it prints first is lost.
        """
        ...

    def resize(self, name: str, *, height: int, width: int) -> None:
        """Set the size of the container's pseudo-terminal."""
        ...

    def exec_create(
        self,
        name: str,
        command: Sequence[str],
        *,
        tty: bool,
        stdin: bool,
        user: str | None = None,
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Prepare ``command`` in running container ``name``; the exec's ID."""
        ...

    def exec_socket(self, exec_id: str, *, tty: bool) -> socket.socket:
        """Start a prepared exec and attach to it."""
        ...

    def resize_exec(self, exec_id: str, *, height: int, width: int) -> None:
        """Set the size of an exec's pseudo-terminal."""
        ...

    def exec_exit_code(self, exec_id: str) -> int:
        """The exit code of an exec whose stream has ended."""
        ...
