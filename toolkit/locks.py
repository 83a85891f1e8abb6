"""One operation per container at a time: lock files under ctk's state directory.

``<state dir>/locks/<engine>-<hash of URL>/<container ID>.lock`` is held with ``flock`` by the
ctk process that checkpoints, restores, exports, imports or migrates that container; a second
ctk on the same container fails at once with :class:`~toolkit.errors.Conflict` (exit 5), naming
the holder's pid and operation. The kernel drops a ``flock`` when its process dies, SIGKILL
included, so a lock never outlives its holder and there is nothing to clean up. Lock files are
left in place: removing one while another process opens it would let two processes hold two
different files.

Locks are re-entrant within a process (a migration checkpoints the container it already holds)
and are taken by container ID, or by name for a container that does not exist yet (an import).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from toolkit.errors import Conflict
from toolkit.records import state_dir


def locks_dir() -> Path:
    return state_dir() / "locks"


@dataclass(frozen=True)
class ProcessId:
    """A process, told apart from a later one that got the same pid by its start time."""

    pid: int
    start: str

    @classmethod
    def current(cls) -> ProcessId:
        return cls(os.getpid(), process_start(os.getpid()))

    def alive(self) -> bool:
        """True while this very process runs (not a later one with the same pid)."""
        return self.pid > 0 and bool(self.start) and process_start(self.pid) == self.start


def process_start(pid: int) -> str:
    """Field 22 of ``/proc/PID/stat`` (start time in clock ticks since boot); "" if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) is in parentheses and may hold spaces or ')': split after it.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else ""


class _Held:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.depth = 0


_held: dict[Path, _Held] = {}
_held_guard = threading.Lock()


def _engine_key(kind: str, url: str) -> str:
    return f"{kind}-{hashlib.sha256(f'{kind}|{url}'.encode()).hexdigest()[:16]}"


def container_lock_path(kind: str, url: str, key: str) -> Path:
    """The lock file of container ``key`` (an ID, or ``name:NAME``) on one engine."""
    safe = hashlib.sha256(key.encode()).hexdigest()[:32] if "/" in key or len(key) > 200 else key
    return locks_dir() / _engine_key(kind, url) / f"{safe}.lock"


def _holder(path: Path) -> str:
    try:
        data = json.loads(path.read_text() or "{}")
        return f"ctk {data['operation']} (pid {data['pid']}, since {data['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another ctk"


@contextmanager
def lock_file(path: Path, *, operation: str, what: str) -> Iterator[None]:
    """Hold ``path`` locked while the block runs.

    Raises:
        Conflict: another process holds it (its pid and operation in the message).
    """
    path = path.absolute()
    with _held_guard:
        held = _held.get(path)
        if held is None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                raise Conflict(
                    f"{what} is busy: {_holder(path)} is working on it",
                    hint="wait for it to finish; one ctk operation per container at a time",
                ) from exc
            record = {
                "operation": operation,
                "pid": os.getpid(),
                "since": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
            held = _held[path] = _Held(fd)
        held.depth += 1
    try:
        yield
    finally:
        with _held_guard:
            held.depth -= 1
            if held.depth == 0:
                del _held[path]
                os.close(held.fd)  # closing drops the flock


@contextmanager
def container_lock(kind: str, url: str, key: str, *, operation: str, name: str) -> Iterator[None]:
    """Hold the lock of container ``key`` (its ID, or ``name:NAME``) on engine ``kind``/``url``.

    Raises:
        Conflict: another ctk works on that container.
    """
    with lock_file(
        container_lock_path(kind, url, key),
        operation=operation,
        what=f"container {name} on {kind}",
    ):
        yield


def migration_lock_path(migration_id: str) -> Path:
    return locks_dir() / "migrations" / f"{migration_id}.lock"


@contextmanager
def migration_lock(migration_id: str, *, operation: str) -> Iterator[None]:
    """Held by the process that runs (or recovers) migration ``migration_id``.

    Raises:
        Conflict: another process runs or recovers it.
    """
    with lock_file(
        migration_lock_path(migration_id), operation=operation, what=f"migration {migration_id}"
    ):
        yield
