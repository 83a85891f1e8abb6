from __future__ import annotations

import json

import pytest

from tests.conftest import ctk

pytestmark = pytest.mark.integration


def test_doctor_ready_after_setup() -> None:
    result = ctk("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ready" in result.stdout
    data = json.loads(ctk("doctor", "--json").stdout)
    assert data["ready"] is True
    names = {c["name"] for c in data["checks"]}
    assert {"docker engine", "podman engine", "criu check", "pycriu"} <= names
    # CRIU really dumps a task of another user here (ctk's rlimit patch): non-root containers
    # can be checkpointed although the bounding set lacks CAP_SYS_RESOURCE.
    [non_root] = [c for c in data["checks"] if c["name"] == "criu non-root dump"]
    assert non_root["ok"] is True, non_root


def test_non_root_probe_dumps_a_task_of_nobody() -> None:
    from toolkit.criu.probe import probe_non_root_dump

    probe = probe_non_root_dump()
    assert probe.probed and probe.ok, probe.reason


def test_doctor_names_fix_for_stopped_engine(tmp_path) -> None:
    # An engine that does not answer (a socket path with no daemon) is what a stopped dockerd
    # looks like to ctk; the line names the command that starts it.
    result = ctk("doctor", engine=f"docker+unix://{tmp_path}/docker.sock")
    assert result.returncode == 9
    assert "fix: scripts/engines start" in result.stdout
