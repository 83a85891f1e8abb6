"""Checkpoint, restore, export and import with the container's lock held.

The layer above the backends that the CLI (and any program) calls for operations that change a
container: each takes :mod:`toolkit.locks`' lock of that container on that engine, so two ctk
processes never checkpoint and restore the same container at once, then calls the backend.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from toolkit import records
from toolkit.backends.base import Backend
from toolkit.errors import ContainerNotFound, CtkError, InvalidArgument
from toolkit.locks import container_lock
from toolkit.models import (
    ArchiveInfo,
    Checkpoint,
    CheckpointOptions,
    ContainerInfo,
    ExportOptions,
    ImportOptions,
    RestoreOptions,
)

logger = logging.getLogger(__name__)


@contextmanager
def locked(backend: Backend, name: str, *, operation: str) -> Iterator[ContainerInfo]:
    """Hold the lock of existing container ``name``; yields how it was when locked.

    Raises:
        ContainerNotFound: no such container.
        Conflict: another ctk works on it.
    """
    info = backend.inspect(name)
    with container_lock(backend.kind, backend.url, info.id, operation=operation, name=name):
        yield info


@contextmanager
def locked_name(backend: Backend, name: str, *, operation: str) -> Iterator[None]:
    """Hold the lock of the name a new container will get (an import's target).

    Raises:
        Conflict: another ctk creates or works on a container of that name.
    """
    with container_lock(backend.kind, backend.url, f"name:{name}", operation=operation, name=name):
        yield


def checkpoint(backend: Backend, name: str, options: CheckpointOptions) -> Checkpoint:
    """:meth:`Backend.checkpoint` with the container's lock held.

    Raises:
        Conflict: another ctk works on the container (or the backend's own refusals).
    """
    options = _named(options)
    with (
        locked(backend, name, operation="checkpoint") as before,
        _left_running(backend, before, options),
    ):
        return backend.checkpoint(name, options)


def _named(options: CheckpointOptions) -> CheckpointOptions:
    """The options with the checkpoint's name chosen here, so a cleanup knows it."""
    if options.name is not None:
        return options
    return dataclasses.replace(options, name=records.new_checkpoint_name())


@contextmanager
def _left_running(
    backend: Backend, before: ContainerInfo, options: CheckpointOptions
) -> Iterator[None]:
    """If the block fails or is interrupted, a container it stopped runs again from its dump.

    The backends put the container back themselves on the failures they see; this catches
    what comes between their steps, such as a signal held back until a dump returned (see
    :func:`toolkit.interrupts.shielded`), when the dump has stopped the container.
    """
    try:
        yield
    except BaseException:
        if before.running and not options.leave_running:
            _put_back(backend, before.id, options.name or "")
        raise


def _put_back(backend: Backend, name: str, checkpoint: str) -> None:
    try:
        if backend.inspect(name).running:
            return
        if checkpoint not in {c.name for c in backend.checkpoints(name)}:
            return  # no dump was taken: the backend left it as it found it
        backend.restore(name, RestoreOptions(checkpoint=checkpoint))
    except CtkError:  # the original error matters more; say what is left to do
        logger.exception("could not restore %s after the failure: ctk restore %s", name, name)


def restore(backend: Backend, name: str, options: RestoreOptions) -> ContainerInfo:
    """:meth:`Backend.restore` with the container's lock held.

    Raises:
        Conflict: another ctk works on the container (or the backend's own refusals).
    """
    with locked(backend, name, operation="restore"):
        return backend.restore(name, options)


def export_checkpoint(
    backend: Backend, name: str, dest: str | os.PathLike[str], options: ExportOptions
) -> ArchiveInfo:
    """:meth:`Backend.export_checkpoint` with the container's lock held.

    Raises:
        Conflict: another ctk works on the container (or the backend's own refusals).
    """
    options = dataclasses.replace(options, checkpoint=_named(options.checkpoint))
    with (
        locked(backend, name, operation="checkpoint --export") as before,
        _left_running(backend, before, options.checkpoint),
    ):
        return backend.export_checkpoint(name, dest, options)


def export_held(
    backend: Backend,
    name: str,
    checkpoint: str,
    dest: str | os.PathLike[str],
    options: ExportOptions,
) -> ArchiveInfo:
    """:meth:`Backend.export_held_checkpoint` with the container's lock held (a restore or a
    new checkpoint must not replace the files while they are read).

    Raises:
        Conflict: another ctk works on the container (or the backend's own refusals).
    """
    with locked(backend, name, operation="checkpoint export"):
        return backend.export_held_checkpoint(name, checkpoint, dest, options)


def remove_checkpoint(backend: Backend, name: str, checkpoint: str) -> None:
    """:meth:`Backend.remove_checkpoint` with the container's lock held.

    Raises:
        CheckpointNotFound: no such checkpoint.
        Conflict: another ctk works on the container.
    """
    with locked(backend, name, operation="checkpoint rm"):
        backend.remove_checkpoint(name, checkpoint)


def prune_checkpoints(
    backend: Backend, name: str | None = None, *, keep: int = 0
) -> list[Checkpoint]:
    """Remove the checkpoints of container ``name`` (of every container when None) but its
    ``keep`` newest; the checkpoints removed, oldest first per container.

    A container removed meanwhile is skipped; any other failure stops the prune, with what
    was removed before it removed.

    Raises:
        InvalidArgument: ``keep`` is negative.
        ContainerNotFound: no container ``name``.
        Conflict: another ctk works on a container.
    """
    if keep < 0:
        raise InvalidArgument(f"--keep must be 0 or more, not {keep}")
    every = backend.containers(all=True) if name is None else []
    targets = [name] if name is not None else sorted(c.name for c in every)
    removed: list[Checkpoint] = []
    for target in targets:
        try:
            held = backend.checkpoints(target)
        except ContainerNotFound:
            if name is not None:
                raise
            continue  # removed meanwhile
        doomed = held[: len(held) - keep] if keep else held
        for checkpoint in doomed:
            remove_checkpoint(backend, target, checkpoint.name)
            removed.append(checkpoint)
    return removed


def import_checkpoint(
    backend: Backend, archive_path: str | os.PathLike[str], options: ImportOptions
) -> ContainerInfo:
    """:meth:`Backend.import_checkpoint` with the target name's lock held.

    Without ``options.name`` the target is the archived container's name, read from the
    archive's manifest.

    Raises:
        Conflict: another ctk creates or works on a container of that name.
        ArchiveError: the archive's manifest cannot be read.
    """
    target = options.name
    if target is None:
        from toolkit.archive import read_manifest

        target = read_manifest(archive_path).container_name
    with locked_name(backend, target, operation="restore --import"):
        return backend.import_checkpoint(archive_path, options)


@contextmanager
def checkpointing(
    backend: Backend, name: str, options: CheckpointOptions, *, operation: str
) -> Iterator[ContainerInfo]:
    """The lock of container ``name`` held for a checkpoint made in the block (named by
    ``options.name``); if the block fails or is interrupted after the dump stopped the
    container, it runs again from that dump. Yields the container as it was when locked.

    Raises:
        ContainerNotFound: no such container.
        Conflict: another ctk works on it.
    """
    with (
        locked(backend, name, operation=operation) as before,
        _left_running(backend, before, options),
    ):
        yield before
