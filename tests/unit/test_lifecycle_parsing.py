"""Parsing and model building behind the lifecycle verbs: no engine needed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.conftest import ctk
from toolkit.backends import inspection, validation
from toolkit.backends.options import restart_policy
from toolkit.cli.parsing import parse_memory, parse_since
from toolkit.errors import Conflict, ContainerNotFound, EngineError, ExitCode, InvalidArgument
from toolkit.models import Mount, Ulimit

NOWHERE = "docker+unix:///nonexistent/docker.sock"


def test_mount_forms() -> None:
    assert Mount.parse("/data") == Mount(target="/data")
    assert Mount.parse("cache:/data:ro") == Mount(
        target="/data", source="cache", type="volume", read_only=True, name="cache"
    )
    assert Mount.parse("/srv/conf:/conf") == Mount(target="/conf", source="/srv/conf", type="bind")
    assert str(Mount.parse("/srv/conf:/conf:ro")) == "/srv/conf:/conf:ro"
    for bad in ("data", "a:b:c:d", "-x:/data", "/a:rel"):
        with pytest.raises(ValueError):
            Mount.parse(bad)


def test_ulimit_forms() -> None:
    assert Ulimit.parse("nofile=1024:2048") == Ulimit("nofile", 1024, 2048)
    assert Ulimit.parse("nproc=10") == Ulimit("nproc", 10, 10)
    for bad in ("nofile", "=1", "nofile=a:b"):
        with pytest.raises(ValueError):
            Ulimit.parse(bad)


def test_memory_and_restart() -> None:
    assert parse_memory("64m") == 64 * 1024**2
    assert parse_memory("1g") == 1024**3
    assert parse_memory("1.5k") == 1536
    assert parse_memory("4096") == 4096
    with pytest.raises(InvalidArgument):
        parse_memory("lots")
    assert restart_policy("on-failure:3") == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert restart_policy(None) is None
    for bad in ("sometimes", "always:3", "on-failure:x"):
        with pytest.raises(InvalidArgument):
            restart_policy(bad)
    assert inspection.restart_text({"Name": "on-failure", "MaximumRetryCount": 2}) == "on-failure:2"
    assert inspection.restart_text({"Name": ""}) == "no"


def test_since_and_timestamps() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_since("1700000000", now=now) == 1700000000
    assert parse_since("10m", now=now) == int(now.timestamp()) - 600
    assert parse_since("2026-01-02T03:04:05Z", now=now) == int(now.timestamp())
    with pytest.raises(InvalidArgument):
        parse_since("yesterday")
    assert inspection.timestamp("0001-01-01T00:00:00Z") == ""
    assert inspection.timestamp("2026-11-28T21:03:41.123456789Z") == "2026-11-28T21:03:41Z"
    assert inspection.timestamp("2026-11-28T22:03:41.5+01:00") == "2026-11-28T21:03:41Z"


def test_filters() -> None:
    assert validation.validate_filters({"label": ("a=b",)}) == {"label": ["a=b"]}
    with pytest.raises(InvalidArgument):
        validation.validate_filters({"colour": ["red"]})


def test_stats_from_sample() -> None:
    sample = {
        "cpu_stats": {
            "cpu_usage": {"total_usage": 3_000_000},
            "system_cpu_usage": 200_000_000,
            "online_cpus": 2,
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000}, "system_cpu_usage": 100_000_000},
        "memory_stats": {"usage": 10_000, "limit": 100_000, "stats": {"inactive_file": 2_000}},
        "pids_stats": {"current": 3},
    }
    stats = inspection.stats_from_sample(sample, name="web", container_id="abc")
    assert stats.cpu_percent == 4.0  # 2e6 of 1e8 system ns, times 2 CPUs
    assert stats.memory_usage == 8_000 and stats.memory_percent == 8.0 and stats.pids == 3
    empty = inspection.stats_from_sample({}, name="web", container_id="abc")
    assert empty.cpu_percent == 0.0 and empty.memory_percent == 0.0


def test_inspect_fields_from_engine_output() -> None:
    fields = inspection.lifecycle_fields(
        {
            "Config": {"Env": ["A=1", "B=x=y"], "WorkingDir": "", "Hostname": "h"},
            "State": {"StartedAt": "2026-11-28T21:03:41.1Z", "Paused": True, "ExitCode": 0},
            "HostConfig": {"CpuQuota": 50_000, "CpuPeriod": 100_000, "Memory": 1024},
            "NetworkSettings": {"Networks": {"podman": {"IPAddress": "10.88.0.2"}}},
            "Mounts": [{"Type": "bind", "Source": "/s", "Destination": "/d", "RW": False}],
        }
    )
    assert fields["env"] == {"A": "1", "B": "x=y"} and fields["working_dir"] == "/"
    assert fields["cpus"] == 0.5 and fields["memory"] == 1024 and fields["paused"] is True
    assert fields["networks"][0].ip_address == "10.88.0.2"
    assert fields["mounts"][0] == Mount(target="/d", source="/s", type="bind", read_only=True)
    assert fields["restart_policy"] == "no" and fields["finished_at"] == ""


@pytest.mark.parametrize(
    "args",
    [
        ("run", "-d", "-v", "relative", "img"),
        ("run", "-d", "--memory", "lots", "img"),
        ("run", "-d", "--restart", "sometimes", "img"),
        ("run", "-d", "--ulimit", "nofile", "img"),
        ("create", "-v", "a:b:c:d", "img"),
        ("ps", "--filter", "colour=red"),
        ("logs", "--since", "yesterday", "web1"),
    ],
)
def test_bad_options_are_usage_errors(args: tuple[str, ...]) -> None:
    result = ctk(*args, engine=NOWHERE)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("Error: ")


def test_every_verb_has_help() -> None:
    for verb in ("create", "start", "restart", "pause", "unpause", "kill", "exec", "inspect",
                 "wait", "top", "stats", "engine", "completion"):  # fmt: skip
        result = ctk(verb, "--help")
        assert result.returncode == 0 and "Usage:" in result.stdout, verb


@pytest.mark.parametrize(
    ("cause", "status", "expected"),
    [
        ("container state improper", 500, Conflict),
        ("no such container", 500, ContainerNotFound),  # removed while being inspected
        ("something else", 500, EngineError),
    ],
)
def test_podman_causes_map_to_errors(cause: str, status: int, expected: type) -> None:
    import podman.errors
    import requests

    from toolkit.backends.podman import PodmanBackend

    response = requests.Response()
    response.status_code = status
    backend = PodmanBackend("unix:///nonexistent/podman.sock")  # nothing is contacted
    with pytest.raises(expected), backend._errors(container="web1"):
        raise podman.errors.APIError(cause, response=response, explanation=f"x: {cause}")


def test_podman_inspect_asks_again_when_the_process_just_exited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Podman 4.3 answers 500 "read /proc/PID/cgroup: no such process" when the container exits
    # while it is being inspected (1 in ~150 `run` of a short command here); ctk asks again.
    import json

    import requests
    from podman.api.client import APIResponse

    from toolkit.backends import podman as podman_backend
    from toolkit.backends.podman import client as podman_client

    def answer(status: int, body: dict[str, object]) -> APIResponse:
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode()
        return APIResponse(response)

    race = {"cause": "no such process", "message": "read /proc/30513/cgroup: no such process",
            "response": 500}  # fmt: skip
    answers = [answer(500, race), answer(500, race), answer(200, {"Id": "abc", "Name": "web1"})]

    class FakeAPI:
        def get(self, path: str, **_: object) -> APIResponse:
            assert path == "/containers/web1/json"
            return answers.pop(0)

    monkeypatch.setattr(podman_client.time, "sleep", lambda _: None)
    backend = podman_backend.PodmanBackend("unix:///nonexistent/podman.sock")
    monkeypatch.setattr(backend, "_api", FakeAPI())
    assert backend._attrs("web1")["Id"] == "abc" and not answers
