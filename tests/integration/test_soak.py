"""A checkpoint/restore soak per engine: many cycles, nothing lost, nothing leaked.

``CTK_SOAK_CYCLES`` sets the number of cycles (100 by default; scripts/test runs fewer, see
there). Every tenth cycle is an export (``-R``), so Docker's helper containers are exercised
too. Afterwards: the counter went strictly up across the cycles, and no container, mount,
process or helper container of the test is left.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import Containers, counts, last_count, wait_count_at_least, wait_for
from toolkit import operations
from toolkit.backends.base import Backend
from toolkit.errors import ContainerNotFound
from toolkit.models import CheckpointOptions, ExportOptions, RestoreOptions

pytestmark = [pytest.mark.integration, pytest.mark.criu, pytest.mark.slow]

CYCLES = int(os.environ.get("CTK_SOAK_CYCLES", "100"))


def _mentions(container_id: str) -> list[str]:
    """Mounts and processes on this machine that still name the container."""
    found = [
        f"mount: {line.split()[4]}"
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if container_id in line
    ]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile
        if container_id in cmdline:
            found.append(f"process {proc.name}: {cmdline[:120]}")
    return found


def _our_helpers(engine: Backend, since: datetime) -> list[str]:
    """Helper containers created since ``since`` and still there (made by this test)."""
    if engine.kind != "docker":
        return []  # only Docker's export uses helper containers
    return [
        c.name
        for c in engine.containers(all=True, filters={"label": ["ctk.helper=1"]})
        if c.created and datetime.fromisoformat(c.created.replace("Z", "+00:00")) >= since
    ]


def test_checkpoint_restore_soak(
    engine: Backend,
    containers: Containers,
    criu: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CTK_STATE_DIR", str(tmp_path / "state"))
    started_at = datetime.now(UTC)
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    archive = tmp_path / "soak.ctk"
    seen = [last_count(engine, info.name)]
    started = time.monotonic()
    for cycle in range(CYCLES):
        name = f"soak{cycle}"
        if cycle % 10 == 9:
            options = ExportOptions(checkpoint=CheckpointOptions(name=name, leave_running=True))
            operations.export_checkpoint(engine, info.name, archive, options)
            archive.unlink()
            engine.stop(info.name)
        else:
            operations.checkpoint(engine, info.name, CheckpointOptions(name=name))
        assert not engine.inspect(info.name).running
        operations.restore(engine, info.name, RestoreOptions(checkpoint=name))
        assert engine.inspect(info.name).running
        if engine.kind == "docker":
            engine.remove_checkpoint(info.name, name)  # Docker keeps each one on disk
        seen.append(last_count(engine, info.name))
    per_cycle = (time.monotonic() - started) / max(CYCLES, 1)
    print(f"\n{engine.kind}: {CYCLES} cycles, {per_cycle:.2f}s per cycle")
    # It counted on after the last restore, and never went back nor restarted.
    wait_count_at_least(engine, info.name, seen[-1] + 1)
    assert seen == sorted(seen), seen
    history = counts(engine, info.name)
    assert history.count(1) <= 1, "the counter restarted"
    # a dump taken while the counter wrote "count=N" resumes that write: N at most twice
    assert history == sorted(history) and all(history.count(n) <= 2 for n in history), history
    container_id = info.id
    engine.remove(info.name, force=True)
    with pytest.raises(ContainerNotFound):
        engine.inspect(info.name)
    wait_for(lambda: not _mentions(container_id), timeout=30, what="no mounts or processes left")
    wait_for(lambda: not _our_helpers(engine, started_at), timeout=30, what="no helper left")
    assert list(tmp_path.iterdir()) == [tmp_path / "state"]
