"""Scheduled checkpoints with retention: ``ctk checkpoint NAME --every 10m --keep 5``.

Every interval the running container is checkpointed with ``leave_running`` (it never stops
for it), under a name ``auto-<UTC time>``. After each *successful* checkpoint the oldest
``auto-`` checkpoints beyond ``keep`` are removed, so the newest good checkpoint is never
deleted, and a failed checkpoint deletes nothing. Checkpoints not made by a schedule (other
names) are never touched.

Docker keeps any number of named checkpoints per container. Podman keeps one in place, so
there ``keep`` above 1 needs ``export_dir``: each checkpoint is then also written as a ctk
archive ``<container>-auto-<UTC time>.tar.zst`` into that directory, and the same retention
applies to those files (restore one with ``ctk restore --import FILE``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from toolkit import operations
from toolkit.archive.writer import check_destination
from toolkit.backends.base import Backend
from toolkit.errors import (
    ArchiveError,
    CheckpointError,
    Conflict,
    CtkError,
    InvalidArgument,
    Unsupported,
)
from toolkit.models import Checkpoint, CheckpointOptions, ExportOptions, _Model

AUTO_PREFIX = "auto-"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``30s``, ``500ms``, ``5m``, ``1h30m``, ``1.5h``, ``2d``.

    Raises:
        InvalidArgument: not a positive duration.
    """
    value = text.strip().lower()
    position, total = 0, 0.0
    while position < len(value):
        match = _DURATION_PART.match(value, position)
        if match is None:
            break
        if match.group(2) is None and (position > 0 or match.end() != len(value)):
            position = -1  # a bare number is seconds only when it stands alone
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not value or position != len(value) or total <= 0:
        raise InvalidArgument(
            f"invalid duration {text!r}",
            hint="e.g. 30s, 5m, 1h30m, 500ms (a plain number: seconds)",
        )
    return total


@dataclass(frozen=True)
class ScheduleOptions:
    """How often to checkpoint and how many checkpoints to keep.

    Attributes:
        every: seconds between checkpoints (the first is taken at once).
        keep: how many of the newest scheduled checkpoints to keep (at least 1); None: 3 on
            Docker, 1 on Podman (which holds one checkpoint in place).
        export_dir: also write each checkpoint as a ctk archive into this directory and keep
            the ``keep`` newest archives there.
        max_runs: stop after this many checkpoints (None: until stopped).
        tcp_established: passed to each checkpoint.
        file_locks: passed to each checkpoint.
    """

    every: float
    keep: int | None = None
    export_dir: Path | None = None
    max_runs: int | None = None
    tcp_established: bool = False
    file_locks: bool = False


@dataclass(frozen=True)
class ScheduleEvent(_Model):
    """What one run of the schedule did.

    ``checkpoint`` is None and ``error`` says why when the checkpoint failed (the container
    keeps running and the next run tries again).
    """

    run: int
    time: str
    checkpoint: str | None
    kept: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    error: str | None = None
    archive: str | None = None
    removed_archives: tuple[str, ...] = ()


DEFAULT_KEEP = {"docker": 3, "podman": 1}


def keep_count(backend: Backend, options: ScheduleOptions) -> int:
    """``options.keep``, or the engine's default."""
    return options.keep if options.keep is not None else DEFAULT_KEEP.get(backend.kind, 1)


def validate(backend: Backend, options: ScheduleOptions) -> None:
    """Refuse a schedule that cannot work here, before taking any checkpoint.

    Raises:
        InvalidArgument: ``every`` or ``keep`` out of range.
        Unsupported: Podman with ``keep`` > 1 and no export directory.
    """
    if options.every <= 0:
        raise InvalidArgument("--every must be a positive duration", hint="e.g. --every 10m")
    keep = keep_count(backend, options)
    if keep < 1:
        raise InvalidArgument(
            "--keep must be at least 1", hint="the newest good checkpoint is always kept"
        )
    if options.max_runs is not None and options.max_runs < 1:
        raise InvalidArgument("--count must be at least 1")
    if options.export_dir is not None:
        check_destination(options.export_dir / "probe.tar.zst")
    if backend.kind == "podman" and keep > 1 and options.export_dir is None:
        raise Unsupported(
            f"Podman keeps one checkpoint per container in place, so --keep {keep} "
            "cannot be honoured",
            hint="use --keep 1 on Podman, or --export-dir DIR to keep that many archives",
        )


def archive_path(export_dir: Path, name: str, checkpoint: str) -> Path:
    """Where a scheduled checkpoint's archive goes: ``DIR/<container>-<checkpoint>.tar.zst``."""
    return export_dir / f"{name}-{checkpoint}.tar.zst"


def prune_archives(
    export_dir: Path, name: str, keep: int
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Remove the oldest scheduled archives of ``name`` beyond ``keep``; (kept, removed) paths.

    The names sort by time (``auto-<UTC time>``); at least one is always kept.
    """
    archives = sorted(export_dir.glob(f"{name}-{AUTO_PREFIX}*.tar.zst"), key=lambda p: p.name)
    keep = max(keep, 1)
    removed: list[str] = []
    for path in archives[:-keep] if len(archives) > keep else []:
        try:
            path.unlink()
        except OSError:
            continue  # kept for now; the next run tries again
        removed.append(str(path))
    kept = tuple(str(p) for p in archives if str(p) not in removed)
    return kept, tuple(removed)


def auto_name() -> str:
    """``auto-20261128T204501-123456``: unique and sortable by time."""
    return AUTO_PREFIX + datetime.now(UTC).strftime("%Y%m%dT%H%M%S-%f")


def prune(backend: Backend, name: str, keep: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Remove the oldest scheduled checkpoints beyond ``keep``; (kept, removed) names.

    Only ``auto-`` checkpoints count and at least one is always kept.
    """
    scheduled = [c for c in backend.checkpoints(name) if c.name.startswith(AUTO_PREFIX)]
    keep = max(keep, 1)
    doomed = scheduled[:-keep] if len(scheduled) > keep else []
    removed: list[str] = []
    for checkpoint in doomed:
        try:
            backend.remove_checkpoint(name, checkpoint.name)
        except CtkError:
            continue  # kept for now; the next run tries again
        removed.append(checkpoint.name)
    kept = tuple(c.name for c in scheduled if c.name not in removed)
    return kept, tuple(removed)


def checkpoint_once(
    backend: Backend, name: str, options: ScheduleOptions, run: int
) -> ScheduleEvent:
    """One scheduled checkpoint, then retention. A failed checkpoint removes nothing."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    cp_options = CheckpointOptions(
        name=auto_name(),
        leave_running=True,
        tcp_established=options.tcp_established,
        file_locks=options.file_locks,
    )
    keep = keep_count(backend, options)
    archive: str | None = None
    try:
        if options.export_dir is None:
            made: Checkpoint = operations.checkpoint(backend, name, cp_options)
            checkpoint = made.name
        else:
            # One dump serves both: the engine keeps the checkpoint and ctk writes the archive.
            assert cp_options.name is not None
            exported = operations.export_checkpoint(
                backend,
                name,
                archive_path(options.export_dir, name, cp_options.name),
                ExportOptions(checkpoint=cp_options),
            )
            checkpoint, archive = cp_options.name, exported.path
    except (CheckpointError, Conflict, ArchiveError) as exc:
        # CRIU failed (the container keeps running), it is not running right now, or the
        # archive could not be written: report and try again next time rather than stop an
        # unattended schedule. Nothing is removed after a failure.
        return ScheduleEvent(run=run, time=now, checkpoint=None, error=exc.message)
    kept, removed = prune(backend, name, keep)
    removed_archives: tuple[str, ...] = ()
    if options.export_dir is not None:
        _, removed_archives = prune_archives(options.export_dir, name, keep)
    return ScheduleEvent(
        run=run,
        time=now,
        checkpoint=checkpoint,
        kept=kept,
        removed=removed,
        archive=archive,
        removed_archives=removed_archives,
    )


def run_schedule(
    backend: Backend,
    name: str,
    options: ScheduleOptions,
    *,
    stop: threading.Event | None = None,
    on_event: Callable[[ScheduleEvent], None] | None = None,
) -> list[ScheduleEvent]:
    """Checkpoint ``name`` every ``options.every`` seconds until ``stop`` is set.

    Runs in the calling thread. Runs are on a fixed grid from the start; a run that overruns
    its slot skips the slots it missed instead of bunching up.

    Args:
        backend: the engine.
        name: the container.
        options: interval, retention, how many runs.
        stop: set it (from a signal handler or another thread) to end after the current run.
        on_event: called after every run, e.g. to print it.

    Returns:
        Every run's event, oldest first.

    Raises:
        InvalidArgument, Unsupported: see :func:`validate`.
        ContainerNotFound: the container is gone (a schedule cannot go on without it).
    """
    validate(backend, options)
    backend.inspect(name)  # fail early on a wrong name
    stop = stop or threading.Event()
    events: list[ScheduleEvent] = []
    started = time.monotonic()
    run = 0
    while not stop.is_set():
        run += 1
        event = checkpoint_once(backend, name, options, run)
        events.append(event)
        if on_event is not None:
            on_event(event)
        if options.max_runs is not None and run >= options.max_runs:
            break
        elapsed = time.monotonic() - started
        next_slot = (int(elapsed // options.every) + 1) * options.every
        stop.wait(next_slot - elapsed)
    return events
