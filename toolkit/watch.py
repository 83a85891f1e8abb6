"""Watch a container and restore it from its latest checkpoint when it dies unexpectedly.

How ctk tells a crash from a stop, in order:

1. ``ctk stop NAME`` and ``ctk checkpoint NAME`` (which stops the container) first leave a
   marker in ctk's state directory (:func:`record_intended_stop`); an exit within a few
   minutes after a marker is a stop, whatever its exit code. Docker reports a container
   stopped by a checkpoint with exit code 137, the same as SIGKILL, so the marker is needed.
2. Killed by the kernel for memory (``OOMKilled``): a crash.
3. Exit code 0 (finished, or stopped and it handled SIGTERM) or 143 (died of SIGTERM, what
   ``docker stop``/``podman stop`` send): a stop. Anything else (137 SIGKILL, 139 SIGSEGV, 1,
   ...): a crash.

After more than ``max_restarts`` crashes within ``window`` seconds the watch gives up with
:class:`RestartLimitReached`, saying so: a container that crashes right after every restore
will not be helped by restoring it again.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from toolkit import operations, records
from toolkit.backends.base import Backend
from toolkit.errors import (
    CheckpointNotFound,
    Conflict,
    ContainerNotFound,
    CtkError,
    ExitCode,
    InvalidArgument,
)
from toolkit.models import ExitStatus, RestoreOptions, _Model

# Exit codes of a container that was stopped rather than crashed: it exited by itself or on
# SIGTERM (128 + 15), which is what a stop sends first.
CLEAN_EXIT_CODES = frozenset({0, 143})
# How long after a ctk stop marker an exit still counts as that stop (a stop may wait for
# the container's stop timeout before killing it).
INTENT_WINDOW = 300.0


class RestartLimitReached(CtkError):
    """The watched container kept dying: the watch stopped restoring it."""

    exit_code = ExitCode.ERROR


@dataclass(frozen=True)
class WatchOptions:
    """How to watch.

    Attributes:
        restore: restore on a crash (``--restore-on-exit``); otherwise only report it and end.
        max_restarts: crashes allowed within ``window`` before giving up.
        window: seconds over which crashes are counted.
        poll: seconds between looks at the container.
        max_restores: end after this many restores (None: until stopped).
    """

    restore: bool = True
    max_restarts: int = 3
    window: float = 300.0
    poll: float = 1.0
    max_restores: int | None = None


@dataclass(frozen=True)
class WatchEvent(_Model):
    """Something the watch saw or did: ``watching`` (it started), ``died``, ``restored``,
    ``restore-failed``, ``stopped`` (stopped on purpose; the watch ends) or ``gone``."""

    kind: str
    container: str
    time: str
    exit_code: int | None = None
    oom_killed: bool = False
    message: str = ""


# -- intended stops ---------------------------------------------------------------------
def _intent_path(backend: Backend, container_id: str) -> Path:
    key = hashlib.sha256(f"{backend.kind}|{backend.url}".encode()).hexdigest()[:16]
    return records.state_dir() / "stops" / f"{backend.kind}-{key}" / container_id


def record_intended_stop(backend: Backend, name: str) -> None:
    """Note that ctk is about to stop ``name`` on purpose, so a watch does not restore it.

    Call it before the stop: a watch may look in between.
    """
    try:
        container_id = backend.inspect(name).id
    except CtkError:
        return  # the stop itself reports the problem
    path = _intent_path(backend, container_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"time": time.time()}))


def forget_intended_stop(backend: Backend, name: str) -> None:
    """Withdraw :func:`record_intended_stop` (the stop did not happen after all)."""
    with contextlib.suppress(CtkError):
        _clear_intent(backend, backend.inspect(name).id)


def _intended(backend: Backend, container_id: str, status: ExitStatus) -> bool:
    path = _intent_path(backend, container_id)
    try:
        marked = float(json.loads(path.read_text())["time"])
    except (OSError, ValueError, KeyError):
        return False
    finished = _timestamp(status.finished_at)
    if finished is None:
        return True
    return -5.0 <= finished - marked <= INTENT_WINDOW


def _clear_intent(backend: Backend, container_id: str) -> None:
    _intent_path(backend, container_id).unlink(missing_ok=True)


def _timestamp(text: str) -> float | None:
    """Seconds since the epoch of an engine time like ``2026-11-28T21:08:38.228123468Z``."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?", text)
    if match is None or text.startswith("0001-"):
        return None
    fraction = (match.group(2) or ".0")[:7]
    zone = match.group(3) or "Z"
    zone = "+00:00" if zone == "Z" else zone
    try:
        return datetime.fromisoformat(f"{match.group(1)}{fraction}{zone}").timestamp()
    except ValueError:
        return None


def crashed(status: ExitStatus) -> bool:
    """Whether an exit status is a crash (see the module docs), ignoring ctk's markers."""
    if status.running:
        return False
    if status.oom_killed:
        return True
    return status.exit_code is not None and status.exit_code not in CLEAN_EXIT_CODES


# -- the watch --------------------------------------------------------------------------
# Podman reports a killed container as not running a moment before libpod lets it be
# restored ("container state improper"): a Conflict then means "not yet", for a few seconds.
_SETTLE_TRIES = 20
_SETTLE_PAUSE = 0.5


def _restore_when_settled(backend: Backend, container_id: str, stop: threading.Event) -> None:
    for attempt in range(_SETTLE_TRIES):
        try:
            operations.restore(backend, container_id, RestoreOptions())
            return
        except Conflict:
            if attempt == _SETTLE_TRIES - 1 or stop.wait(_SETTLE_PAUSE):
                raise


def watch(
    backend: Backend,
    name: str,
    options: WatchOptions,
    *,
    stop: threading.Event | None = None,
    on_event: Callable[[WatchEvent], None] | None = None,
) -> list[WatchEvent]:
    """Watch ``name`` until it is stopped on purpose, removed, or ``stop`` is set.

    Args:
        backend: the engine.
        name: the container.
        options: what to do on a crash and how often.
        stop: set it to end the watch.
        on_event: called with every event.

    Returns:
        The events, oldest first.

    Raises:
        RestartLimitReached: more than ``max_restarts`` crashes within ``window``.
        CheckpointNotFound: it crashed and there is no checkpoint to restore from.
        ContainerNotFound: ``name`` does not exist when the watch starts.
    """
    if options.max_restarts < 0 or options.window <= 0 or options.poll <= 0:
        raise InvalidArgument(
            "--max-restarts must be >= 0, --window and --poll positive",
            hint="e.g. --max-restarts 3 --window 300",
        )
    stop = stop or threading.Event()
    container_id = backend.inspect(name).id
    _clear_intent(backend, container_id)  # a marker from before this watch means nothing
    events: list[WatchEvent] = []
    crashes: collections.deque[float] = collections.deque()
    restores = 0

    def emit(kind: str, status: ExitStatus | None = None, message: str = "") -> None:
        event = WatchEvent(
            kind=kind,
            container=name,
            time=datetime.now(UTC).isoformat(timespec="seconds"),
            exit_code=status.exit_code if status else None,
            oom_killed=status.oom_killed if status else False,
            message=message,
        )
        events.append(event)
        if on_event is not None:
            on_event(event)

    action = "restore it" if options.restore else "report it"
    emit("watching", message=f"watching {name}; when it dies unexpectedly: {action}")
    while not stop.is_set():
        try:
            status = backend.exit_status(container_id)
        except ContainerNotFound:
            emit("gone", message=f"container {name} was removed")
            return events
        if status.running:
            stop.wait(options.poll)
            continue
        if status.status == "created" or _intended(backend, container_id, status):
            _clear_intent(backend, container_id)
            emit("stopped", status, f"container {name} was stopped on purpose: not restoring")
            return events
        if not crashed(status):
            emit("stopped", status, f"container {name} exited with code {status.exit_code}")
            return events
        now = time.monotonic()
        crashes.append(now)
        while crashes and crashes[0] < now - options.window:
            crashes.popleft()
        why = "killed for lack of memory" if status.oom_killed else f"exit code {status.exit_code}"
        emit("died", status, f"container {name} died unexpectedly ({why})")
        if not options.restore:
            return events
        if len(crashes) > options.max_restarts:
            raise RestartLimitReached(
                f"container {name} died {len(crashes)} times within {options.window:g}s "
                f"(limit {options.max_restarts}); not restoring it again (last: {why})",
                hint=f"see why with: ctk logs {name}; restore by hand: ctk restore {name} --latest",
            )
        try:
            _restore_when_settled(backend, container_id, stop)
        except CheckpointNotFound as exc:
            raise CheckpointNotFound(
                f"container {name} died ({why}) and has no checkpoint to restore from",
                hint=f"take checkpoints while it runs: ctk checkpoint {name} --every 10m --keep 1",
            ) from exc
        except CtkError as exc:
            # Counts as another crash on the next look: it is still not running.
            emit("restore-failed", status, f"restore of {name} failed: {exc.message}")
            stop.wait(options.poll)
            continue
        restores += 1
        emit("restored", status, f"container {name} restored from its latest checkpoint")
        if options.max_restores is not None and restores >= options.max_restores:
            return events
        stop.wait(options.poll)
    return events
