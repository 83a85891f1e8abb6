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
