from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from toolkit.batch import checkpoint_many
from toolkit.errors import ContainerNotFound, InvalidArgument
from toolkit.models import Checkpoint, CheckpointOptions


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
