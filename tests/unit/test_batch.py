from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from toolkit.batch import (
    BatchResult,
    checkpoint_all,
    checkpoint_many,
    failure,
    restore_all,
    stopped_by_checkpoint,
)
from toolkit.errors import Conflict, ContainerNotFound, CtkError, ExitCode, InvalidArgument
from toolkit.models import Checkpoint, CheckpointOptions, RestoreOptions


class FakeBackend:
    """Only what checkpoint_many uses: a checkpoint that sleeps and may fail."""

    kind = "fake"
    url = "unix:///fake.sock"

    def inspect(self, name: str) -> Any:
        if name == "bad":
            raise ContainerNotFound("no such container: bad")
        return SimpleNamespace(id=f"id-{name}", running=True)

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()

    def checkpoint(self, name: str, options: CheckpointOptions) -> Checkpoint:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.05)
        with self.lock:
            self.active -= 1
        if name == "bad":
            raise ContainerNotFound("no such container: bad")
        return Checkpoint(options.name or "cp", name, "fake")


def test_bounded_parallelism_and_failures_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTK_STATE_DIR", str(tmp_path))  # the containers' lock files
    backend: Any = FakeBackend()
    names = ["a", "b", "bad", "c", "d", "e"]
    results = checkpoint_many(backend, names, CheckpointOptions(name="x"), parallel=2)
    assert [r.container for r in results] == names
    assert [r.ok for r in results] == [True, True, False, True, True, True]
    assert "bad" in results[2].error
    assert backend.peak == 2


def test_parallel_must_be_positive() -> None:
    with pytest.raises(InvalidArgument):
        checkpoint_many(FakeBackend(), ["a"], CheckpointOptions(), parallel=0)  # type: ignore[arg-type]


class Fleet:
    """A fake engine of a few containers, for checkpoint_all/restore_all: label filters,
    running state, checkpoints held; ``refuse`` names containers whose operations fail."""

    kind = "fake"
    url = "unix:///fleet.sock"

    def __init__(self, refuse: dict[str, CtkError] | None = None) -> None:
        self.labels = {"a": {"g": "1"}, "b": {"g": "1"}, "c": {"g": "2"}, "d": {"g": "1"}}
        self.running = {"a": True, "b": True, "c": True, "d": False}
        self.held: dict[str, list[str]] = {"a": [], "b": [], "c": [], "d": []}
        self.refuse = refuse or {}
        self.filters: list[Any] = []

    def _info(self, name: str) -> Any:
        return SimpleNamespace(id=f"id-{name}", name=name, running=self.running[name])

    def containers(self, *, all: bool = False, filters: Any = None) -> list[Any]:
        self.filters.append(filters)
        wanted = dict(item.split("=", 1) for item in (filters or {}).get("label", []))
        return [
            self._info(n)
            for n in self.labels
            if (all or self.running[n]) and all_match(self.labels[n], wanted)
        ]

    def inspect(self, name: str) -> Any:
        return self._info(name.removeprefix("id-"))  # by name or by ID

    def checkpoints(self, name: str) -> list[Checkpoint]:
        name = name.removeprefix("id-")
        return [Checkpoint(c, name, "fake", created=self.created) for c in self.held[name]]

    created = "2026-12-02T06:00:00.000000+00:00"
    finished: ClassVar[dict[str, str]] = {"b": "2026-12-02T06:05:00.123456789Z"}  # stopped later

    def exit_status(self, name: str) -> Any:
        return SimpleNamespace(finished_at=self.finished.get(name, "2026-12-02T05:59:59.9Z"))

    def checkpoint(self, name: str, options: CheckpointOptions) -> Checkpoint:
        if name in self.refuse:
            raise self.refuse[name]
        self.running[name] = False
        self.held[name].append(options.name or "cp")
        return Checkpoint(options.name or "cp", name, "fake")

    def restore(self, name: str, options: RestoreOptions) -> Any:
        if name in self.refuse:
            raise self.refuse[name]
        self.running[name] = True
        return self._info(name)


def all_match(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTK_STATE_DIR", str(tmp_path))  # the containers' lock files


def test_checkpoint_all_takes_the_running_ones_with_the_labels(state_dir: None) -> None:
    fleet: Any = Fleet()
    seen: list[str] = []
    results = checkpoint_all(
        fleet, CheckpointOptions(name="x"), labels={"g": "1"}, before=lambda i: seen.append(i.name)
    )
    assert [(r.container, r.ok, r.checkpoint) for r in results] == [
        ("a", True, "x"),
        ("b", True, "x"),
    ]
    assert seen == ["a", "b"]  # d is stopped, c has another label
    assert fleet.filters == [{"label": ["g=1"]}]
    assert failure(results, action="checkpoint") is None


def test_restore_all_takes_the_stopped_ones_holding_a_checkpoint(state_dir: None) -> None:
    fleet: Any = Fleet()
    fleet.running.update(a=False, b=False, c=False)
    fleet.held.update(a=["old", "new"], b=["cp"], c=["cp"])
    results = restore_all(fleet, RestoreOptions())
    # d is stopped but holds nothing; b was stopped after its checkpoint
    assert [(r.container, r.checkpoint) for r in results] == [("a", "new"), ("c", "cp")]
    assert fleet.running["a"] and fleet.running["c"]
    assert restore_all(fleet, RestoreOptions()) == []


def test_failures_become_one_error_with_their_exit_code(state_dir: None) -> None:
    fleet: Any = Fleet(refuse={"b": Conflict("b is busy")})
    failed = []
    results = checkpoint_all(fleet, CheckpointOptions(), failed=lambda i: failed.append(i.name))
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].exit_code == ExitCode.CONFLICT and failed == ["b"]
    error = failure(results, action="checkpoint")
    assert error is not None and error.exit_code == ExitCode.CONFLICT
    assert error.message == "checkpoint failed for 1 of 3 containers (b: b is busy)"
    # failures of different kinds: exit 1
    mixed = [*results, BatchResult("z", False, error="gone", exit_code=ExitCode.NOT_FOUND)]
    error = failure(mixed, action="checkpoint")
    assert error is not None and error.exit_code == ExitCode.ERROR
    assert "z: gone" in error.message


@pytest.mark.parametrize(
    ("finished", "created", "expected"),
    [
        # the dump stopped it, then ctk recorded the checkpoint (engine nanoseconds)
        ("2026-12-02T06:02:39.123456789Z", "2026-12-02T06:02:39.700000+00:00", True),
        # rounding within a second
        ("2026-12-02T06:02:40.5Z", "2026-12-02T06:02:39.700000+00:00", True),
        # stopped (or crashed) minutes after a --leave-running checkpoint
        ("2026-12-02T06:09:00Z", "2026-12-02T06:02:39.700000+00:00", False),
        # unknown: a checkpoint ctk did not record, or Go's zero time
        ("2026-12-02T06:09:00Z", "", True),
        ("0001-01-01T00:00:00Z", "2026-12-02T06:02:39.700000+00:00", True),
        ("2026-12-02T07:09:00+01:00", "2026-12-02T06:09:00.2+00:00", True),
    ],
)
def test_stopped_by_checkpoint(finished: str, created: str, expected: bool) -> None:
    assert stopped_by_checkpoint(finished, created) is expected
