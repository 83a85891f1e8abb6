"""Docker reached over tcp on a loopback port, plain and with mutual TLS.

A second dockerd would need a second data root and network set-up; the Engine API is the
same wherever it listens, so a small forwarder in the test process serves Docker's socket on
127.0.0.1 (through TLS with a throw-away CA for the TLS case) and ctk talks tcp to it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import COUNTER_IMAGE, ctk, unavailable
from toolkit.config import DEFAULT_URLS, connect, parse_engine
from toolkit.errors import CtkError, ExitCode

pytestmark = pytest.mark.integration

DOCKER_SOCKET = DEFAULT_URLS["docker"].removeprefix("unix://")


class Forwarder:
    """127.0.0.1:<ephemeral port> -> a unix socket, optionally behind TLS."""

    def __init__(self, target: str, context: ssl.SSLContext | None = None) -> None:
        self.target = target
        self.context = context
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = int(self.server.getsockname()[1])
        self.open: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            if self.context is not None:
                client = self.context.wrap_socket(client, server_side=True)
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
        except OSError:
            client.close()
            return
        self.open += [client, upstream]
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # Either side ending ends the connection (TLS has no half-close).
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self.server.close()
        for sock in self.open:
            with contextlib.suppress(OSError):
                sock.close()
        self.thread.join(timeout=5)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all throw-away."""
    if shutil.which("openssl") is None:
        unavailable("openssl is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem",
             "-out", "ca.pem", "-days", "1", "-subj", "/CN=ctk-test-ca", cwd=d)  # fmt: skip
    for role, usage in (("server", "serverAuth"), ("client", "clientAuth")):
        (d / f"{role}.ext").write_text(f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{role}-key.pem",
                 "-out", f"{role}.csr", "-subj", f"/CN=ctk-test-{role}", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{role}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                 "-CAcreateserial", "-out", f"{role}.pem", "-days", "1",
                 "-extfile", f"{role}.ext", cwd=d)  # fmt: skip
    return d


def _docker_answers() -> None:
    backend = connect(parse_engine("docker"))
    if not backend.ping():
        unavailable("docker does not answer")
    backend.close()


def serve_docker(context: ssl.SSLContext | None = None) -> Iterator[str]:
    """The local dockerd's API on a loopback TCP port (TLS with ``context``): its URL until
    the generator is closed. For fixtures: ``yield from serve_docker(...)``."""
    _docker_answers()
    forwarder = Forwarder(DOCKER_SOCKET, context)
    try:
        yield f"docker+tcp://127.0.0.1:{forwarder.port}"
    finally:
        forwarder.close()


@pytest.fixture
def plain_tcp() -> Iterator[str]:
    yield from serve_docker()


@pytest.fixture
def tls_tcp(pki: Path) -> Iterator[str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    context.load_cert_chain(str(pki / "server.pem"), str(pki / "server-key.pem"))
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS, as dockerd --tlsverify does
    yield from serve_docker(context)


def _cleanup(name: str) -> None:
    backend = connect(parse_engine("docker"))
    with contextlib.suppress(CtkError):
        backend.remove(name, force=True)
    backend.close()


def test_docker_over_plain_tcp(plain_tcp: str) -> None:
    name = f"ctk-test-tcp-{uuid.uuid4().hex[:8]}"
    try:
        ctk("run", "-d", "--name", name, "-l", "ctk.test=1", COUNTER_IMAGE,
            engine=plain_tcp, check=True)  # fmt: skip
        rows = json.loads(ctk("ps", "--json", engine=plain_tcp, check=True).stdout)
        assert name in {r["name"] for r in rows}
        assert ctk("rm", "-f", name, engine=plain_tcp, check=True).stdout.strip() == name
    finally:
        _cleanup(name)


def test_docker_over_mutual_tls(tls_tcp: str, pki: Path, config_home: Path) -> None:
    flags = ("--tlsverify", "--tlscacert", str(pki / "ca.pem"),
             "--tlscert", str(pki / "client.pem"), "--tlskey", str(pki / "client-key.pem"))  # fmt: skip
    name = f"ctk-test-tls-{uuid.uuid4().hex[:8]}"
    try:
        ctk(*flags, "run", "-d", "--name", name, "-l", "ctk.test=1", COUNTER_IMAGE,
            engine=tls_tcp, check=True)  # fmt: skip
        assert name in ctk(*flags, "ps", engine=tls_tcp, check=True).stdout
        # the same, from a named engine with TLS kept in the config file
        ctk("engine", "add", "secure", tls_tcp, *flags, check=True)
        assert name in ctk("ps", engine="secure", check=True).stdout
        # TLS options in the URL itself
        query = (f"?tlsverify=1&cacert={pki}/ca.pem&cert={pki}/client.pem"
                 f"&key={pki}/client-key.pem")  # fmt: skip
        assert name in ctk("ps", engine=tls_tcp + query, check=True).stdout
        # without a client certificate the engine refuses the connection: exit 3, one line
        refused = ctk("--tlsverify", "--tlscacert", str(pki / "ca.pem"), "ps", engine=tls_tcp)
        assert refused.returncode == ExitCode.ENGINE_UNAVAILABLE, refused.stderr
        assert "Traceback" not in refused.stderr and "Hint:" in refused.stderr
        # plain http to a TLS port does not get through either
        assert ctk("ps", engine=tls_tcp).returncode == ExitCode.ENGINE_UNAVAILABLE
    finally:
        _cleanup(name)
