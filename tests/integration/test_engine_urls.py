"""Engines reached by URL and by configured name: a second Podman service on a socket of its
own (unix and tcp on loopback), Docker spelled as a URL, and a stopped service's error."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import COUNTER_IMAGE, ctk, unavailable
from toolkit.config import DEFAULT_URLS, connect, get_backend, parse_engine
from toolkit.errors import CtkError, ExitCode
from toolkit.models import ContainerSpec

pytestmark = pytest.mark.integration

DEFAULT_URLS_REAL = dict(DEFAULT_URLS)["podman"]


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def podman_service(url: str) -> Iterator[subprocess.Popen[bytes]]:
    """``podman system service`` on URL for the duration; stopped by its PID afterwards."""
    binary = shutil.which("podman")
    if binary is None:
        unavailable("podman is not installed")
    proc = subprocess.Popen(
        [str(binary), "system", "service", "--time=0", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        backend = connect(parse_engine(f"podman+{url}"))
        deadline = time.monotonic() + 30
        while not backend.ping():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"podman system service {url} did not come up")
            time.sleep(0.2)
        backend.close()
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=["unix", "tcp"])
def second_podman(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a podman service ctk does not know by default."""
    if request.param == "unix":
        url = f"unix://{tmp_path}/podman.sock"
    else:
        url = f"tcp://127.0.0.1:{_free_loopback_port()}"
    with podman_service(url):
        yield f"podman+{url}"


def _remove(kind: str, name: str) -> None:
    backend = connect(parse_engine(kind))
    with contextlib.suppress(CtkError):
        backend.remove(name, force=True)
    backend.close()


def test_podman_on_another_socket(second_podman: str, config_home: Path) -> None:
    name = f"ctk-test-url-{int(time.time() * 1000) % 10**8}"
    try:
        created = ctk("run", "-d", "--name", name, "-l", "ctk.test=1", COUNTER_IMAGE,
                      engine=second_podman)  # fmt: skip
        assert created.returncode == 0, created.stderr
        rows = json.loads(ctk("ps", "--json", engine=second_podman, check=True).stdout)
        assert name in {r["name"] for r in rows}
        # a name in the config file reaches it too, as --engine and as the default
        ctk("engine", "add", "side", second_podman, check=True)
        assert ctk("pause", name, engine="side", check=True).stdout.strip() == name
        ctk("engine", "use", "side", check=True)
        info = json.loads(ctk("inspect", name, check=True).stdout)[0]
        assert info["paused"] is True and info["engine"] == "podman"
        assert ctk("rm", "-f", name, check=True).stdout.strip() == name
    finally:
        _remove("podman", name)


def test_docker_spelled_as_url(config_home: Path) -> None:
    url = f"docker+{DEFAULT_URLS['docker']}"
    if not connect(parse_engine(url)).ping():
        unavailable("docker does not answer")
    name = f"ctk-test-durl-{int(time.time() * 1000) % 10**8}"
    try:
        ctk("run", "-d", "--name", name, "-l", "ctk.test=1", COUNTER_IMAGE, engine=url, check=True)
        ctk("engine", "add", "local", url, "--default", check=True)
        assert name in ctk("ps", check=True).stdout  # the default is the named URL now
        assert ctk("stop", "-t", "1", name, check=True).stdout.strip() == name
    finally:
        _remove("docker", name)


def test_stopped_service_is_engine_unavailable(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/gone.sock"
    with podman_service(url):
        assert ctk("ps", engine=f"podman+{url}").returncode == 0
    result = ctk("ps", engine=f"podman+{url}")
    assert result.returncode == ExitCode.ENGINE_UNAVAILABLE
    assert "Traceback" not in result.stderr
    assert f"{tmp_path}/gone.sock" in result.stderr and "Hint:" in result.stderr


def test_temporary_podman_service_when_the_socket_is_silent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config_home: Path
) -> None:
    if shutil.which("podman") is None:
        unavailable("podman is not installed")
    # Stand in for the standard socket, which other tests share and which must stay up.
    silent = f"unix://{tmp_path}/silent.sock"
    monkeypatch.setitem(DEFAULT_URLS, "podman", silent)
    monkeypatch.setenv("CTK_NO_PODMAN_SERVICE", "1")
    assert not get_backend("podman").ping()
    monkeypatch.delenv("CTK_NO_PODMAN_SERVICE")

    backend = get_backend("podman")
    service = backend._service  # type: ignore[attr-defined]
    assert service is not None and service.process.poll() is None
    assert backend.url == silent  # the engine keeps its name; only the transport differs
    name = f"ctk-test-tmpsvc-{int(time.time() * 1000) % 10**8}"
    try:
        backend.run(ContainerSpec(image=COUNTER_IMAGE, name=name, labels={"ctk.test": "1"}))
        assert name in {c.name for c in backend.containers()}
        backend.close()
        assert service.process.poll() is not None  # stopped with the backend
        assert not service.directory.exists()
        # the container outlives the service: conmon, not the service, keeps it
        assert connect(parse_engine("podman+" + DEFAULT_URLS_REAL)).inspect(name).running
    finally:
        backend.close()
        _remove("podman+" + DEFAULT_URLS_REAL, name)
