"""A migration's archive is signed and verified on import: an archive changed on disk between
the export and the import (manifest edited, checksums recomputed) is refused, nothing is
created on the destination and the source runs again. Podman -> Podman streams and writes
no archive at all. Clones on the local engine (``--name``), so no testbed is needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import tamper
from tests.conftest import Containers, last_count, wait_count_at_least, wait_for
from toolkit.archive import signing
from toolkit.backends.base import Backend
from toolkit.errors import ContainerNotFound, ExitCode

pytestmark = [pytest.mark.integration, pytest.mark.criu]

PAUSE = 20  # seconds ctk sleeps after the dump (CTK_MIGRATE_PAUSE_AFTER): the test's window


def _paused_migration(engine: Backend, state: Path, name: str, clone: str) -> subprocess.Popen[str]:
    """ctk migrate NAME --name CLONE on the same engine, paused after its dump."""
    env = {**os.environ, "CTK_STATE_DIR": str(state), "CTK_MIGRATE_PAUSE_AFTER": f"dump:{PAUSE}"}
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "toolkit", "--json", "migrate", name,
            "--from", engine.kind, "--to", engine.kind, "--name", clone, "--mode", "live",
        ],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "paused after dump" not in line:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"ctk migrate did not pause: {line}{err}{out}")
    return proc


def _workdir_files(state: Path) -> list[Path]:
    return sorted(p for p in (state / "migrations").glob("m*/*") if p.is_file())


def _evil_label(doc: dict[str, Any]) -> None:
    doc["spec"]["labels"]["evil"] = "1"


@pytest.mark.parametrize("forge", [False, True], ids=["intact", "forged"])
def test_migration_archive_is_signed_and_verified(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path, forge: bool
) -> None:
    state = tmp_path / "state"
    info = containers.run()
    wait_count_at_least(engine, info.name, 2)
    at = last_count(engine, info.name)
    clone = containers.name("clone")
    proc = _paused_migration(engine, state, info.name, clone)
    try:
        files = _workdir_files(state)
        if engine.kind == "podman":
            # Podman -> Podman streams libpod's export straight into the import: no file
            # exists between the two, so there is nothing on disk to sign or to forge.
            assert not [p for p in files if p.suffix == ".ctk"], files
        else:
            (path,) = [p for p in files if p.suffix == ".ctk"]
            # the ephemeral private key lived only during the export
            assert [p.name for p in files] == [path.name], files
            status = signing.signature_status(path)
            assert status.signed and status.valid, status
            if forge:
                forged = tmp_path / "forged.ctk"
                tamper.rewrite(path, forged, manifest=_evil_label)
                os.replace(forged, path)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if forge and engine.kind == "docker":
        assert proc.returncode == ExitCode.MIGRATION_FAILED, err
        report = json.loads(out)
        assert report["status"] == "rolled_back", report
        assert "does not match its manifest" in report["error"], report
        with pytest.raises(ContainerNotFound):
            engine.inspect(clone)
        wait_for(lambda: engine.inspect(info.name).running, what="the source runs again")
        wait_count_at_least(engine, info.name, at + 2)
        return
    assert proc.returncode == 0, err
    assert json.loads(out)["status"] == "done"
    wait_count_at_least(engine, clone, at + 2)
