from __future__ import annotations

from toolkit.config import EngineRef
from toolkit.criu.probe import CriuStatus, parse_version
from toolkit.doctor import criu_checks, engine_checks, pycriu_check
from toolkit.models import EngineInfo

DOCKER = EngineRef("docker", "unix:///var/run/docker.sock")


def test_engine_down_names_the_fix() -> None:
    [check] = engine_checks(DOCKER, None, "connection refused")
    assert not check.ok and check.fix == "scripts/engines start"


def test_experimental_off() -> None:
    info = EngineInfo(kind="docker", url=DOCKER.url, version="20.10", experimental=False)
    checks = engine_checks(DOCKER, info)
    assert checks[0].ok
    assert not checks[1].ok and "experimental" in checks[1].fix


def test_podman_runtime_is_the_engine_host_s() -> None:
    from toolkit.doctor import podman_runtime_check

    podman = EngineRef("podman", "unix:///run/ctk-testbed/h3/podman.sock")
    info = EngineInfo(
        kind="podman",
        url=podman.url,
        version="5.4.2",
        default_runtime="runc",
        runtime_version="1.1.15+ds1",
        runtime_path="/usr/bin/runc",
    )
    [engine, runtime] = engine_checks(podman, info)
    assert engine.ok and runtime == podman_runtime_check(info)
    assert runtime.ok and runtime.name == "podman checkpoint runtime"
    assert runtime.detail.startswith("runc 1.1.15+ds1 at /usr/bin/runc on the engine's host")
    crun = podman_runtime_check(
        EngineInfo(kind="podman", url=podman.url, version="5.4.2", default_runtime="crun")
    )
    assert crun.ok and "default is crun;" in crun.detail and "probe" in crun.detail


def test_old_criu() -> None:
    status = CriuStatus(
        "/usr/sbin/criu", (3, 17), False, "Error: vdso: Unexpected rt vDSO area bounds"
    )
    version, check = criu_checks(status)
    assert not version.ok and "scripts/setup" in version.fix
    assert not check.ok and "vDSO" in check.detail


def test_missing_criu_and_pycriu() -> None:
    [check] = criu_checks(CriuStatus(None, None, False, "criu not found"))
    assert not check.ok and check.fix
    assert not pycriu_check(False).ok and pycriu_check(True).ok


def test_parse_version() -> None:
    assert parse_version("Version: 4.1.1\nGitID: v4.1.1") == (4, 1, 1)
    assert parse_version("nonsense") is None


def test_non_root_check_says_why_and_what_to_do() -> None:
    from toolkit.criu.probe import NonRootDump
    from toolkit.doctor import non_root_check

    assert non_root_check(NonRootDump(True, True, "", False)).ok
    failed = non_root_check(
        NonRootDump(True, False, "Can't get rlimit 0: Operation not permitted", False)
    )
    assert not failed.ok
    assert "Can't get rlimit 0" in failed.detail and "CAP_SYS_RESOURCE" in failed.detail
    assert "scripts/setup" in failed.fix and "as root" in failed.fix
    other = non_root_check(NonRootDump(True, False, "something else", True))
    assert not other.ok and "CAP_SYS_RESOURCE" not in other.detail
    unprobed = non_root_check(NonRootDump(False, False, "needs root", None))
    assert not unprobed.ok and "as root" in unprobed.fix


def test_cap_in_bounding_set() -> None:
    from toolkit.criu.probe import CAP_SYS_RESOURCE, cap_in_bounding_set

    # this project's machines: every capability but CAP_SYS_RESOURCE (bit 24)
    assert cap_in_bounding_set(CAP_SYS_RESOURCE, "CapBnd:\t000001fffeffffff\n") is False
    assert cap_in_bounding_set(CAP_SYS_RESOURCE, "CapBnd:\t000001ffffffffff\n") is True
    assert cap_in_bounding_set(CAP_SYS_RESOURCE, "Name: x\n") is None


class _ProbeBackend:
    """A backend whose checkpoint fails the way CRIU does; records what was removed."""

    kind = "podman"

    def __init__(self) -> None:
        self.removed: list[str] = []
        self.runs: list[str] = []

    def run(self, spec: object) -> None:
        self.runs.append(spec.name)  # type: ignore[attr-defined]

    def logs(self, name: str) -> str:
        return "1\n2\n"

    def checkpoint(self, name: str, options: object) -> None:
        from toolkit.criu.diagnosis import criu_error

        log = (
            "(00.000023) Version: 4.1.1 (gitid 0)\n"
            "(00.011) Error (criu/sockets.c:123): sockets: Can't get 1:16 opt: "
            "Operation not supported\n"
            "(00.012) Error (criu/cr-dump.c:2093): Dumping FAILED.\n"
        )
        raise criu_error("checkpoint", name, "runc checkpoint failed", log)

    def stop(self, name: str, *, timeout: int | None = None) -> None:
        pass

    def remove(self, name: str, *, force: bool = False) -> None:
        self.removed.append(name)


def test_probe_failure_carries_criu_reason_and_removes_the_container() -> None:
    from toolkit.doctor import probe_once

    backend = _ProbeBackend()
    check, _ = probe_once(backend, "root", "0:0")  # type: ignore[arg-type]
    assert not check.ok and check.name == "podman probe (root)"
    assert "Can't get 1:16 opt: Operation not supported" in check.detail, check.detail
    assert check.fix
    assert backend.removed == backend.runs and backend.runs[0].startswith("ctk-doctor-")


def test_runtime_line_names_runtime_and_criu() -> None:
    from toolkit.doctor import runtime_check

    info = EngineInfo(kind="podman", url="u", version="5", default_runtime="runc")
    assert "version not reported" in runtime_check(info).detail
    seen = runtime_check(info, "4.1.1")
    assert seen.ok and seen.detail == "runc; CRIU 4.1.1 (the engine's host)"
