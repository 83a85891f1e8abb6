"""The migration journal: one small JSON file per migration, written with fsync.

``<state dir>/migrations/<ID>.json`` records what a migration is about to do and what it has
done, so that ``ctk migrate --recover`` can finish or roll back a migration whose ctk process
died. Each write goes to a temporary file that is fsynced and renamed over the old one, and
the directory is fsynced too: after a crash the file is either the old or the new record.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from toolkit.errors import Conflict, NotFound
from toolkit.locks import ProcessId
from toolkit.records import state_dir

# The states a journal ends in; every other state means the migration did not finish.
FINAL_STATES = frozenset({"done", "rolled_back", "aborted"})


class JournalTaken(Conflict):
    """The journal changed under a running migration: another ctk recovered or rolled it back."""


def migrations_dir() -> Path:
    """``<state dir>/migrations``: journals, and each migration's work directory."""
    return state_dir() / "migrations"


def new_id() -> str:
    """A sortable unique migration ID: ``m20261128T214501-1a2b3c``."""
    return datetime.now(UTC).strftime("m%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6]


@dataclass
class Journal:
    """The record of one migration; :meth:`step` appends a phase and writes it durably."""

    id: str
    container: str
    target: str
    source: dict[str, str]
    destination: dict[str, str]
    mode: str
    keep_source: bool = False
    checkpoint: str = ""
    archive: str = ""
    state: str = "running"
    steps: list[dict[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    # The process running the migration (pid and start time, against pid reuse): --recover
    # leaves the journal alone while it lives.
    owner_pid: int = 0
    owner_start: str = ""

    @property
    def owner(self) -> ProcessId:
        return ProcessId(self.owner_pid, self.owner_start)

    def claim(self) -> None:
        """Make this process the journal's owner (written with the next step)."""
        me = ProcessId.current()
        self.owner_pid, self.owner_start = me.pid, me.start

    def owned_by_other_live_process(self) -> bool:
        owner = self.owner
        return owner != ProcessId.current() and owner.alive()

    def check_unchanged(self) -> None:
        """Before an irreversible step: the journal on disk is still this process's own.

        Raises:
            JournalTaken: someone else recovered, rolled back or took over the migration.
        """
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise JournalTaken(
                f"the journal of migration {self.id} is gone or unreadable ({exc})"
            ) from exc
        if (
            data.get("state") != self.state
            or data.get("owner_pid") != self.owner_pid
            or data.get("owner_start") != self.owner_start
            or len(data.get("steps") or ()) != len(self.steps)
        ):
            raise JournalTaken(
                f"migration {self.id} was changed by another ctk "
                f"(state {data.get('state')}, owner pid {data.get('owner_pid')})",
                hint=f"see its journal: {self.path}; this ctk stopped without touching more",
            )

    @property
    def path(self) -> Path:
        return migrations_dir() / f"{self.id}.json"

    @property
    def workdir(self) -> Path:
        return migrations_dir() / self.id

    def done(self, step: str) -> bool:
        return any(s["step"] == step for s in self.steps)

    def step(self, step: str, *, state: str | None = None) -> None:
        """Record that ``step`` happened (and optionally the new state), durably."""
        self.steps.append({"step": step, "at": datetime.now(UTC).isoformat()})
        if state is not None:
            self.state = state
        self.write()

    def write(self) -> None:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = directory / f".{self.id}.{os.getpid()}.tmp"
        data = json.dumps(self.__dict__, indent=2, sort_keys=True).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load(migration_id: str) -> Journal:
    """The journal of one migration.

    Raises:
        NotFound: no journal with that ID.
    """
    path = migrations_dir() / f"{migration_id}.json"
    if "/" in migration_id or not path.is_file():
        raise NotFound(
            f"no migration journal {migration_id}",
            hint=f"journals are in {migrations_dir()}; recover all unfinished ones: "
            "ctk migrate --recover",
        )
    data = json.loads(path.read_text())
    return Journal(**data)


def unfinished() -> list[Journal]:
    """Journals of migrations that neither completed nor were rolled back, oldest first."""
    directory = migrations_dir()
    if not directory.is_dir():
        return []
    result = []
    for path in sorted(directory.glob("m*.json")):
        journal = load(path.stem)
        if journal.state not in FINAL_STATES:
            result.append(journal)
    return result
