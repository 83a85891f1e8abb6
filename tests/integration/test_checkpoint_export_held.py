"""``ctk checkpoint export NAME CHECKPOINT FILE``: an archive of a checkpoint the engine already
holds, no new one taken, restored by ``restore --import``; ``--ignore-rootfs`` on export and on
import leaves the container's file changes out; on both engines."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import Containers, counts, ctk, last_count, wait_count_at_least
from toolkit import archive
from toolkit.backends.base import Backend
from toolkit.errors import ExitCode
from toolkit.models import CheckpointOptions

pytestmark = [pytest.mark.integration, pytest.mark.criu]

# The counter, after writing a file into its read-write layer.
WRITES = ("sh", "-c", "echo kept >/kept.txt; exec /counter.sh")


def _kept(engine: Backend, name: str) -> str | None:
    """/kept.txt in the container, or None when it is absent."""
    done = subprocess.run(
        [engine.kind, "exec", name, "cat", "/kept.txt"], capture_output=True, text=True, timeout=60
    )
    return done.stdout.strip() if done.returncode == 0 else None


def _import(engine: Backend, containers: Containers, path: Path, *extra: str) -> str:
    clone = containers.name("clone")
    result = ctk("restore", "--import", str(path), "--name", clone, *extra, engine=engine.kind)
    assert result.returncode == 0, result.stderr
    assert engine.inspect(clone).running
    return clone


def _goes_on(engine: Backend, name: str, at: int) -> None:
    """The clone's counter goes on from the checkpoint's ``at``: it never starts again at 1."""
    wait_count_at_least(engine, name, at + 2)
    values = counts(engine, name)
    assert values == sorted(values) and values.count(1) <= 1, values
    assert values[0] > 1 or engine.kind == "podman", values  # Podman carries the old log


def test_export_held_checkpoint_restores(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    info = containers.run(command=WRITES)
    wait_count_at_least(engine, info.name, 3)
    engine.checkpoint(info.name, CheckpointOptions(name="held"))  # stops it
    at = last_count(engine, info.name)
    full, bare = tmp_path / "full.ctk", tmp_path / "bare.ctk"

    result = ctk("checkpoint", "export", info.name, "held", str(full), engine=engine.kind)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(full)
    manifest = archive.read_manifest(full)
    assert (manifest.engine, manifest.checkpoint) == (engine.kind, "held")
    result = ctk(
        "checkpoint", "export", info.name, "held", str(bare), "--ignore-rootfs",
        "--compress", "gzip", engine=engine.kind,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

    # no new checkpoint was taken and the held one is still there, restorable in place
    assert [c.name for c in engine.checkpoints(info.name)] == ["held"]
    assert not engine.inspect(info.name).running

    with_files = _import(engine, containers, full)
    _goes_on(engine, with_files, at)
    assert _kept(engine, with_files) == "kept"
    without = _import(engine, containers, bare)
    _goes_on(engine, without, at)
    assert _kept(engine, without) is None
    ignored = _import(engine, containers, full, "--ignore-rootfs")
    assert _kept(engine, ignored) is None

    assert ctk("restore", info.name, engine=engine.kind).returncode == 0
    assert engine.inspect(info.name).running


def test_export_ignore_rootfs_on_create(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    info = containers.run(command=WRITES)
    wait_count_at_least(engine, info.name, 2)
    path = tmp_path / "bare.ctk"
    result = ctk(
        "checkpoint", info.name, "--export", str(path), "--ignore-rootfs", "-R",
        engine=engine.kind,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    clone = _import(engine, containers, path)
    assert _kept(engine, clone) is None
    assert _kept(engine, info.name) == "kept"  # the original keeps its files


def test_export_held_refusals(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    path = tmp_path / "never.ctk"
    missing = ctk("checkpoint", "export", info.name, "nope", str(path), engine=engine.kind)
    assert missing.returncode == ExitCode.NOT_FOUND, missing.stderr
    assert "no checkpoint nope" in missing.stderr and "Hint:" in missing.stderr
    bad = ctk("checkpoint", "export", info.name, "../x", str(path), engine=engine.kind)
    assert bad.returncode == ExitCode.USAGE, bad.stderr
    gone = ctk("checkpoint", "export", "ctk-test-nope", "cp", str(path), engine=engine.kind)
    assert gone.returncode == ExitCode.NOT_FOUND, gone.stderr
    usage = ctk("checkpoint", info.name, "--ignore-rootfs", engine=engine.kind)
    assert usage.returncode == ExitCode.USAGE, usage.stderr
    assert not path.exists()
    assert engine.inspect(info.name).running
    if engine.kind == "podman":
        # libpod writes config.dump/spec.dump only when it exports; a checkpoint without them
        # (taken before ctk kept them, or through an engine whose directory ctk cannot see)
        # cannot become an archive
        engine.checkpoint(info.name, CheckpointOptions(name="bare", leave_running=True))
        static = subprocess.run(
            ["podman", "inspect", "--format", "{{.StaticDir}}", info.id],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        for item in ("config.dump", "spec.dump"):
            (Path(static) / item).unlink()
        refused = ctk("checkpoint", "export", info.name, "bare", str(path), engine=engine.kind)
        assert refused.returncode == ExitCode.UNSUPPORTED, refused.stderr
        assert "libpod never wrote its config.dump" in refused.stderr
        assert "Hint: take the checkpoint again with ctk" in refused.stderr
        assert not path.exists()
