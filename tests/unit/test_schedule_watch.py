"""Pure logic of scheduled checkpoints, watch, readiness and the pytest plugin: no engine."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import ctk
from toolkit.errors import ExitCode, InvalidArgument
from toolkit.models import Checkpoint, ContainerInfo, ContainerSpec, ExitStatus, PortMapping
from toolkit.pytest_plugin import build_spec
from toolkit.readiness import (
    NotReady,
    ReadyCheck,
    http_url,
    published_port,
    wait_for_http,
    wait_for_port,
    wait_until,
)
from toolkit.schedule import (
    ScheduleOptions,
    keep_count,
    parse_duration,
    prune,
    prune_archives,
    validate,
)
from toolkit.watch import _timestamp, crashed

NOWHERE = "docker+unix:///nonexistent/docker.sock"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("30s", 30), ("500ms", 0.5), ("5m", 300), ("1h30m", 5400), ("1.5h", 5400)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "0", "5x", "m", "-1s", "1s2", "1 s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_duration(text)


class FakeBackend:
    def __init__(self, kind: str, names: list[str]) -> None:
        self.kind = kind
        self.url = "unix:///fake.sock"
        self.names = names

    def checkpoints(self, name: str) -> list[Checkpoint]:
        return [Checkpoint(name=n, container=name, engine=self.kind) for n in self.names]

    def remove_checkpoint(self, name: str, checkpoint: str) -> None:
        self.names.remove(checkpoint)


def test_prune_keeps_the_newest_scheduled_only() -> None:
    backend = FakeBackend("docker", ["manual", "auto-1", "auto-2", "auto-3", "auto-4"])
    kept, removed = prune(backend, "c", 2)  # type: ignore[arg-type]
    assert removed == ("auto-1", "auto-2") and kept == ("auto-3", "auto-4")
    assert backend.names == ["manual", "auto-3", "auto-4"]
    # never below one, whatever keep says
    kept, removed = prune(backend, "c", 0)  # type: ignore[arg-type]
    assert kept == ("auto-4",) and backend.names == ["manual", "auto-4"]


def test_schedule_validation() -> None:
    docker, podman = FakeBackend("docker", []), FakeBackend("podman", [])
    assert keep_count(docker, ScheduleOptions(every=1)) == 3  # type: ignore[arg-type]
    assert keep_count(podman, ScheduleOptions(every=1)) == 1  # type: ignore[arg-type]
    validate(podman, ScheduleOptions(every=1))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        validate(docker, ScheduleOptions(every=1, keep=0))  # type: ignore[arg-type]
    with pytest.raises(Exception, match="Podman keeps one checkpoint"):
        validate(podman, ScheduleOptions(every=1, keep=2))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="does not exist"):
        validate(docker, ScheduleOptions(every=1, export_dir=Path("/nonexistent/dir")))  # type: ignore[arg-type]
    # archives beside the engine let Podman keep more than one
    validate(podman, ScheduleOptions(every=1, keep=3, export_dir=Path("/tmp")))  # type: ignore[arg-type]


def test_prune_archives(tmp_path: Path) -> None:
    for stamp in ("20261128T100000-000001", "20261128T100001-000001", "20261128T100002-000001"):
        (tmp_path / f"web-auto-{stamp}.tar.zst").write_text("x")
    (tmp_path / "web-manual.tar.zst").write_text("x")
    (tmp_path / "other-auto-20261128T090000-000001.tar.zst").write_text("x")
    kept, removed = prune_archives(tmp_path, "web", 2)
    assert [Path(p).name for p in removed] == ["web-auto-20261128T100000-000001.tar.zst"]
    assert len(kept) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "other-auto-20261128T090000-000001.tar.zst",
        "web-auto-20261128T100001-000001.tar.zst",
        "web-auto-20261128T100002-000001.tar.zst",
        "web-manual.tar.zst",
    ]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (ExitStatus(running=True, status="running"), False),
        (ExitStatus(running=False, status="exited", exit_code=0), False),
        (ExitStatus(running=False, status="exited", exit_code=143), False),
        (ExitStatus(running=False, status="exited", exit_code=137), True),
        (ExitStatus(running=False, status="exited", exit_code=1), True),
        (ExitStatus(running=False, status="exited", exit_code=0, oom_killed=True), True),
    ],
)
def test_crashed(status: ExitStatus, expected: bool) -> None:
    assert crashed(status) is expected


def test_engine_timestamps() -> None:
    base = datetime(2026, 11, 28, 21, 8, 38, tzinfo=UTC).timestamp()
    assert _timestamp("2026-11-28T21:08:38.228123468Z") == pytest.approx(base + 0.228123)
    assert _timestamp("2026-11-28T22:08:38+01:00") == pytest.approx(base)
    assert _timestamp("0001-01-01T00:00:00Z") is None
    assert _timestamp("") is None


@pytest.mark.parametrize(
    "args",
    [
        ("restore", "c1", "--latest", "--checkpoint", "x"),
        ("checkpoint", "c1", "--keep", "2"),
        ("checkpoint", "c1", "--every", "soon"),
        ("checkpoint", "c1", "--every", "1s", "--name", "x"),
        ("watch", "c1", "--max-restarts", "-1"),
    ],
)
def test_cli_usage_errors(args: tuple[str, ...]) -> None:
    result = ctk(*args, engine=NOWHERE)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "Traceback" not in result.stderr


def test_new_commands_in_help() -> None:
    assert "watch" in ctk("--help").stdout
    assert "--every" in ctk("checkpoint", "create", "--help").stdout
    assert "--latest" in ctk("restore", "--help").stdout


# -- readiness ----------------------------------------------------------------------------
def test_wait_until_times_out_with_hint() -> None:
    with pytest.raises(NotReady) as info:
        wait_until(lambda: False, timeout=0.3, what="never", hint="do something")
    assert info.value.exit_code == ExitCode.NOT_READY and info.value.hint == "do something"
    with pytest.raises(NotReady, match="stopped"):
        wait_until(lambda: False, timeout=30, what="x", alive=lambda: False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_wait_for_port_closed_times_out() -> None:
    with pytest.raises(NotReady, match="TCP port"):
        wait_for_port("127.0.0.1", _free_port(), timeout=0.3)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"42" if self.path == "/ok" else b"no"
        self.send_response(200 if self.path == "/ok" else 503)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join()


def test_wait_for_http(http_server: int) -> None:
    assert wait_for_http(f"http://127.0.0.1:{http_server}/ok", timeout=5) == "42"
    assert wait_for_http(f"http://127.0.0.1:{http_server}/ok", timeout=5, body=r"^\d+$") == "42"
    with pytest.raises(NotReady, match="HTTP 200"):
        wait_for_http(f"http://127.0.0.1:{http_server}/bad", timeout=0.3)
    with pytest.raises(NotReady, match="body matching"):
        wait_for_http(f"http://127.0.0.1:{http_server}/ok", timeout=0.3, body="nope")


def test_published_port_and_url() -> None:
    info = ContainerInfo(
        id="x",
        name="web",
        image="i",
        image_id="",
        status="running",
        running=True,
        ports=(PortMapping(8080, 32768, "127.0.0.1"),),
    )
    assert published_port(info, 8080) == 32768
    assert http_url(info, 8080, "count") == "http://127.0.0.1:32768/count"
    with pytest.raises(InvalidArgument, match="publishes no port 9090"):
        published_port(info, 9090)
    assert str(ReadyCheck.http(8080, "/count")) == "HTTP 200 on :8080/count"


def test_build_spec_labels_and_ports() -> None:
    spec = build_spec(ContainerSpec(image="img", labels={"a": "1"}), ports=(8080,), env={"K": "v"})
    assert spec.name and spec.name.startswith("ctk-test-")
    assert spec.labels == {"a": "1", "ctk.test": "1"}
    assert spec.ports == (PortMapping(8080, 0, "127.0.0.1"),)
    assert spec.env == {"K": "v"}
