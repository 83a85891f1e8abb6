"""The Backend Protocol: the only boundary the rest of ctk knows.

A backend speaks to one engine and hands back ctk's own models; SDK objects never cross it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from toolkit.models import (
    ArchiveInfo,
    Checkpoint,
    CheckpointOptions,
    ContainerInfo,
    ContainerSpec,
    EngineInfo,
    ExitStatus,
    ExportOptions,
    ImportOptions,
    RestoreOptions,
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

    def containers(self, *, all: bool = False) -> list[ContainerInfo]:
        """Containers, running only unless ``all``."""
        ...

    def inspect(self, name: str) -> ContainerInfo:
        """One container. Raises ContainerNotFound."""
        ...

    def logs(self, name: str, *, tail: int | None = None) -> str:
        """Output of the container so far (stdout and stderr)."""
        ...

    def follow_logs(self, name: str) -> Iterator[str]:
        """Output lines as they come, until the container stops."""
        ...

    def wait(self, name: str) -> int:
        """Block until the container exits; its exit code."""
        ...

    def stop(self, name: str, *, timeout: int | None = None) -> None:
        """Stop a container."""
        ...

    def remove(self, name: str, *, force: bool = False) -> None:
        """Remove a container."""
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
        """Delete one checkpoint."""
        ...

    def kill(self, name: str, *, signal: str = "KILL") -> None:
        """Send a signal (``KILL``, ``TERM``, ...) to the container's main process."""
        ...

    def exit_status(self, name: str) -> ExitStatus:
        """Whether the container runs and, if not, how it ended (exit code, OOM kill)."""

    # checkpoint archives (toolkit.archive)
    def export_checkpoint(
        self, name: str, dest: str | os.PathLike[str], options: ExportOptions
    ) -> ArchiveInfo:
        """Checkpoint a running container into a ctk archive file at ``dest``.

        ``dest`` appears only complete (temp file, fsync, rename). Unknown compression or an
        unusable destination is refused before the container is touched; a failed checkpoint
        leaves it running.
        """
        ...

    def import_checkpoint(
        self, archive_path: str | os.PathLike[str], options: ImportOptions
    ) -> ContainerInfo:
        """Create and restore a container from a ctk archive (a clone when given a new name).

        The archive is verified completely before anything is created; a failed import
        leaves no container behind.
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

    def close(self) -> None:
        """Release the connection."""
        ...
