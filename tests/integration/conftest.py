"""Network fixtures for the integration tests: labelled test networks, probes, free ports."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX_IMAGE, TEST_LABEL, Containers, unavailable, wait_for
from toolkit.backends.base import Backend
from toolkit.errors import CtkError
from toolkit.models import NetworkInfo, NetworkSpec


@dataclass
class Networks:
    """Creates labelled test networks with unique names and removes them afterwards."""

    backend: Backend
    names: list[str]

    def name(self, prefix: str = "n") -> str:
        name = f"ctk-test-{prefix}-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        return name

    def create(self, *, name: str | None = None, **fields: object) -> NetworkInfo:
        spec = NetworkSpec(
            name=name or self.name(),
            labels=dict(TEST_LABEL),
            **fields,  # type: ignore[arg-type]
        )
        if spec.name not in self.names:
            self.names.append(spec.name)
        return self.backend.create_network(spec)

    def cleanup(self) -> None:
        for name in self.names:
            with contextlib.suppress(CtkError):
                self.backend.remove_network(name)


@pytest.fixture
def networks(engine: Backend, containers: Containers) -> Iterator[Networks]:
    made = Networks(engine, [])
    yield made
    # A network cannot go while a container uses it; ``containers`` tears down after this
    # fixture, so remove its containers now (its own cleanup then finds nothing left).
    containers.cleanup()
    made.cleanup()


# The demo busybox is static glibc: its wget crashes (no NSS in a static binary), while its
# nslookup has its own DNS client and its nc works. So: resolve with nslookup (asking the
# engine's DNS server, as any program would), then speak HTTP/1.0 with nc.
PROBE_SCRIPT = r"""
host=$1 port=$2 path=$3
case $host in
  *[!0-9.]*) ip=$(nslookup "$host" 2>/dev/null | awk '/^Name:/{f=1} f && /^Address/{print $2; exit}')
             [ -n "$ip" ] || { echo "cannot resolve $host"; echo rc=9; exit 0; }
             echo "resolved $host -> $ip" ;;
  *) ip=$host ;;
esac
reply=$(printf 'GET %s HTTP/1.0\r\n\r\n' "$path" | nc -w 3 "$ip" "$port" 2>&1)
case $reply in
  "HTTP/1."*" 200 "*) printf '%s\n' "$reply" | sed '1,/^\r*$/d'; echo rc=0 ;;
  *) echo "no answer from $ip:$port"; echo rc=1 ;;
esac
"""


def probe(
    containers: Containers, host: str, port: int = 8080, path: str = "/count", *,
    network: str | None = None,
) -> str:  # fmt: skip
    """GET ``http://host:port/path`` from a throwaway busybox container (``host`` may be a
    container name, resolved by the engine's DNS); its output, ending ``rc=N``."""
    info = containers.run(
        BUSYBOX_IMAGE,
        command=("sh", "-c", PROBE_SCRIPT, "probe", host, str(port), path),
        network=network,
    )
    containers.backend.wait(info.name)
    return containers.backend.logs(info.name)


def probe_answer(output: str) -> int | None:
    """The count a probe fetched, or None when it got no answer."""
    lines = output.strip().splitlines()
    if len(lines) < 2 or lines[-1] != "rc=0":
        return None
    return int(lines[-2])


def probe_resolved(output: str) -> str | None:
    """The address a probe resolved a name to, or None."""
    for line in output.splitlines():
        if line.startswith("resolved "):
            return line.rsplit(" ", 1)[-1]
    return None


def free_port() -> int:
    """A TCP port free on the host's loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str = "/count", *, host: str = "127.0.0.1") -> str:
    """GET from the host's loopback (only loopback: tests send no traffic elsewhere)."""
    assert host.startswith("127.") or host == "localhost"
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as response:
        return str(response.read().decode().strip())


def counter_command(port: int, host: str = "") -> tuple[str, ...]:
    """The counter image's script with httpd moved to ``host:port`` (for host networking)."""
    bind = f"{host}:{port}" if host else str(port)
    return ("sh", "-c", f"sed 's/-p 8080/-p {bind}/' /counter.sh >/c.sh && exec sh /c.sh")


@dataclass
class Registry:
    """A plain-HTTP registry on the host's loopback: ``address`` is ``127.0.0.1:PORT``."""

    address: str


def _registry_answers(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Debian's docker-registry (distribution 2.8) in its own process on 127.0.0.1, its
    config and storage in a temporary directory; never the system service."""
    binary = shutil.which("docker-registry")
    if binary is None:
        unavailable("docker-registry is not installed (scripts/setup installs it)")
        raise AssertionError("unreachable")
    root = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_port()}"
    config = Path(root, "config.yml")
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {address}\n"
    )
    with Path(root, "registry.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, cwd=root
        )
    try:
        wait_for(
            lambda: proc.poll() is not None or _registry_answers(address),
            timeout=30,
            what=f"docker-registry on {address}",
        )
        assert proc.poll() is None, Path(root, "registry.log").read_text()
        yield Registry(address)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private ctk state dir (journals, records, locks, kept archives), also for the ctk
    subprocesses."""
    monkeypatch.setenv("CTK_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"
