from __future__ import annotations

import json
import time

import pytest

from tests.conftest import ctk, wait_for
from toolkit.backends.base import Backend

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


def _doctor_containers(engine: Backend) -> set[str]:
    return {c.name for c in engine.containers(all=True, filters={"label": ["ctk.doctor=1"]})}


def test_doctor_engine_probes_checkpoint_and_restore_through_the_engine(
    engine: Backend, criu: None
) -> None:
    before = _doctor_containers(engine)
    started = time.monotonic()
    result = ctk("doctor", f"{engine.kind}+{engine.url}", "--json")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    for label in ("root", "non-root"):
        probe = checks[f"{engine.kind} probe ({label})"]
        assert probe["ok"] and "restored, counting on" in probe["detail"], probe
    runtime = checks[f"{engine.kind} runtime"]["detail"]
    assert runtime.startswith("runc "), runtime
    if engine.kind == "podman":
        # read from the probe's own CRIU log on the engine's host
        assert "CRIU 4.1.1 (the engine's host)" in runtime, runtime
    # only this engine: the other one is not looked at
    other = "podman" if engine.kind == "docker" else "docker"
    assert f"{other} engine" not in checks
    assert elapsed < 30, elapsed  # about 3 s on an idle machine; shared CI machines are slower
    # nothing left behind (other workers' probes may come and go meanwhile)
    wait_for(
        lambda: not (_doctor_containers(engine) - before),
        timeout=20,
        what="the probe containers to be gone",
    )


def test_doctor_quick_skips_the_probe(engine: Backend) -> None:
    result = ctk("doctor", f"{engine.kind}+{engine.url}", "--quick", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert f"{engine.kind} runtime" in checks
    assert not any("probe" in name for name in checks), checks
    if engine.kind == "podman":
        # the runc the engine reports (here: this machine's, as the engine shares it)
        info = engine.info()
        runtime = checks["podman checkpoint runtime"]
        assert runtime["ok"], runtime
        assert runtime["detail"].startswith(
            f"runc {info.runtime_version} at {info.runtime_path} on the engine's host"
        ), runtime


def test_doctor_probe_missing_image_fails_with_the_fix(
    engine: Backend, criu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from toolkit import doctor

    monkeypatch.setattr(doctor, "PROBE_IMAGE", "ctk-demo/no-such-image-for-doctor")
    check, _ = doctor.probe_once(engine, "root", "0:0")
    assert not check.ok
    assert "not on the engine" in check.detail and f"{engine.kind} load" in check.fix
