"""``ctk checkpoint rm`` and ``ctk checkpoint prune`` free the checkpoint's space on the engine's
host, measured with du on the engine's own storage, on both engines (Podman's libpod has no
route that deletes its checkpoint: ctk deletes the files it keeps in the container's StaticDir).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Containers, ctk, wait_count_at_least
from toolkit.backends.base import Backend
from toolkit.backends.podman.checkpoints import CHECKPOINT_FILES
from toolkit.models import CheckpointOptions

pytestmark = [pytest.mark.integration, pytest.mark.criu]


def _checkpoint_paths(engine: Backend, name: str) -> list[Path]:
    """Where the engine keeps the container's checkpoints on this host."""
    container_id = engine.inspect(name).id
    if engine.kind == "docker":
        return [Path(engine.info().root_dir) / "containers" / container_id / "checkpoints"]
    static = subprocess.run(
        ["podman", "inspect", "--format", "{{.StaticDir}}", container_id],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    return [Path(static) / item for item in CHECKPOINT_FILES]


def _du(paths: list[Path]) -> int:
    """``du -sb`` of those that exist: the bytes the checkpoints take."""
    present = [str(p) for p in paths if p.exists()]
    if not present:
        return 0
    out = subprocess.run(
        ["du", "-sbc", *present], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return int(out.splitlines()[-1].split()[0])


def test_rm_frees_the_space(engine: Backend, containers: Containers, criu: None) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    paths = _checkpoint_paths(engine, info.name)
    empty = _du(paths)
    engine.checkpoint(info.name, CheckpointOptions(name="big", leave_running=True))
    held = _du(paths)
    assert held - empty > 100_000, (empty, held)  # the counter's CRIU images: ~0.5 MB

    result = ctk("checkpoint", "rm", info.name, "big", engine=engine.kind)
    assert result.returncode == 0, result.stderr
    freed = held - _du(paths)
    print(f"{engine.kind}: checkpoint rm freed {freed} of {held - empty} bytes")
    assert freed >= held - empty, (empty, held, freed)
    assert engine.checkpoints(info.name) == []
    assert engine.inspect(info.name).running
    # the container still checkpoints and restores after it
    engine.checkpoint(info.name, CheckpointOptions(name="again"))
    assert ctk("restore", info.name, engine=engine.kind).returncode == 0


def test_prune_keeps_the_newest_and_frees_the_rest(
    engine: Backend, containers: Containers, criu: None
) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    paths = _checkpoint_paths(engine, info.name)
    for index in range(3):
        engine.checkpoint(info.name, CheckpointOptions(name=f"p{index}", leave_running=True))
    held = [c.name for c in engine.checkpoints(info.name)]
    # Docker keeps all three; Podman keeps one in place, the latest
    assert held == (["p0", "p1", "p2"] if engine.kind == "docker" else ["p2"])
    before = _du(paths)

    kept = ctk("--json", "checkpoint", "prune", info.name, "--keep", "1", "-f", engine=engine.kind)
    assert kept.returncode == 0, kept.stderr
    assert [c["name"] for c in json.loads(kept.stdout)["removed"]] == held[:-1]
    assert [c.name for c in engine.checkpoints(info.name)] == ["p2"]
    middle = _du(paths)
    if engine.kind == "docker":
        assert middle < before, (before, middle)

    result = ctk("checkpoint", "prune", info.name, "--yes", engine=engine.kind)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [info.name, "p2"]
    assert engine.checkpoints(info.name) == []
    after = _du(paths)
    print(f"{engine.kind}: prune freed {before - after} bytes ({before} -> {middle} -> {after})")
    assert after < middle and after <= 4096, (before, middle, after)
    assert engine.inspect(info.name).running


def test_prune_refuses_a_negative_keep(engine: Backend) -> None:
    result = ctk("checkpoint", "prune", "--keep", "-1", "-f", engine=engine.kind)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result


def test_prune_without_yes_asks_and_a_closed_stdin_aborts(
    engine: Backend, containers: Containers, criu: None
) -> None:
    info = containers.run()
    engine.checkpoint(info.name, CheckpointOptions(name="stays", leave_running=True))
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", "--engine", engine.kind, "checkpoint", "prune", info.name],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "Remove all checkpoints of" in result.stderr, result
    assert [c.name for c in engine.checkpoints(info.name)] == ["stays"]


def test_prune_frees_an_imported_checkpoint(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    # the engine keeps the checkpoint an import restored from, in the new container
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    path = tmp_path / "c.ctk"
    ctk("checkpoint", info.name, "--export", str(path), "-R", "--name", "shipped",
        engine=engine.kind, check=True)  # fmt: skip
    clone = containers.name("clone")
    ctk("restore", "--import", str(path), "--name", clone, engine=engine.kind, check=True)
    assert [c.name for c in engine.checkpoints(clone)] == ["shipped"]
    paths = _checkpoint_paths(engine, clone)
    assert _du(paths) > 100_000
    result = ctk("--json", "checkpoint", "prune", clone, "-f", engine=engine.kind)
    assert result.returncode == 0, result.stderr
    assert [c["name"] for c in json.loads(result.stdout)["removed"]] == ["shipped"]
    assert _du(paths) <= 4096 and engine.inspect(clone).running
