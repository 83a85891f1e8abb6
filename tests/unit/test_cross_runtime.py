"""Cross-runtime portability verdicts: what stops a checkpoint moving to the other runtime."""

from __future__ import annotations

from typing import Any

import pytest

from toolkit.migration.cross_runtime import can_restore_on, container_portable_to
from toolkit.models import CheckpointImages

STANDARD = ("/dev/null", "/dev/shm", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


def images(*mounts: str) -> CheckpointImages:
    return CheckpointImages(processes=(), external_mounts=tuple(mounts))


@pytest.mark.parametrize(("source", "dest"), [("docker", "podman"), ("podman", "docker")])
def test_standard_mounts_move_either_way(source: str, dest: str) -> None:
    ok, reason = can_restore_on(
        images(*STANDARD, "/run/.containerenv", "/sys/fs/cgroup/cpu"), dest, source_kind=source
    )
    assert ok and "live" in reason


def test_volume_blocks_the_move_and_is_named() -> None:
    ok, reason = can_restore_on(images(*STANDARD, "/data"), "podman", source_kind="docker")
    assert not ok and "/data" in reason


def test_same_runtime_and_unknown_runtime() -> None:
    assert can_restore_on(images(), "docker", source_kind="docker")[0]
    assert not can_restore_on(images(), "lxc", source_kind="docker")[0]


class FakeBackend:
    def __init__(self, kind: str, attrs: dict[str, Any]) -> None:
        self.kind = kind
        self.url = f"unix:///fake/{kind}.sock"
        self._attrs = attrs

    def raw_inspect(self, name: str) -> dict[str, Any]:
        return self._attrs


@pytest.mark.parametrize(
    ("attrs", "needle"),
    [
        ({"OCIRuntime": "crun"}, "crun"),
        ({"Mounts": [{"Type": "volume", "Destination": "/data"}]}, "/data"),
        ({"HostConfig": {"NetworkMode": "backend-net"}}, "backend-net"),
    ],
)
def test_container_refusals_say_why(attrs: dict[str, Any], needle: str) -> None:
    ok, reason = container_portable_to(FakeBackend("podman", attrs), "web1", "docker")  # type: ignore[arg-type]
    assert not ok and needle in reason


def test_container_with_ctk_containerenv_bind_is_portable() -> None:
    attrs = {
        "Mounts": [{"Type": "bind", "Source": "/dev/null", "Destination": "/run/.containerenv"}]
    }
    assert container_portable_to(FakeBackend("docker", attrs), "web1", "podman")[0]  # type: ignore[arg-type]


def test_same_engine_is_not_cross_runtime() -> None:
    assert not container_portable_to(FakeBackend("docker", {}), "web1", "docker")[0]  # type: ignore[arg-type]


def test_doctor_cross_runtime_line() -> None:
    from toolkit.doctor import cross_runtime_check
    from toolkit.models import EngineInfo

    docker = EngineInfo("docker", "unix:///var/run/docker.sock", "20.10", checkpoint_capable=True)
    podman = EngineInfo("podman", "unix:///run/podman/podman.sock", "4.3.1", default_runtime="crun")
    check = cross_runtime_check(docker, podman)
    assert check.ok and "runc" in check.detail
    assert not cross_runtime_check(docker, None).ok
    off = EngineInfo("docker", "unix:///var/run/docker.sock", "20.10", checkpoint_capable=False)
    assert "experimental" in cross_runtime_check(off, podman).detail
