"""A CA given means the engine's certificate is verified against it, with or without
--tlsverify: a server whose certificate another CA signed is refused (exit 3).

Docker is reached through the loopback TLS forwarder of test_engine_tcp; Podman's REST
service has no TLS at all, so there TLS options are refused (exit 6) and plain tcp warns."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CtkResult, ctk, unavailable
from tests.integration.test_engine_tcp import _openssl, serve_docker
from tests.integration.test_engine_urls import _free_loopback_port, podman_service
from toolkit.errors import ExitCode

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_cas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CA A and CA B (throw-away), and a server certificate for 127.0.0.1 signed by B."""
    if shutil.which("openssl") is None:
        unavailable("openssl is needed to make test certificates")
    d = tmp_path_factory.mktemp("two-cas")
    for ca in ("a", "b"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"ca-{ca}-key.pem",
                 "-out", f"ca-{ca}.pem", "-days", "1", "-subj", f"/CN=ctk-test-ca-{ca}",
                 cwd=d)  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server-key.pem",
             "-out", "server.csr", "-subj", "/CN=ctk-test-server", cwd=d)  # fmt: skip
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca-b.pem", "-CAkey", "ca-b-key.pem",
             "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "server.ext",
             cwd=d)  # fmt: skip
    return d


@pytest.fixture
def server_of_ca_b(two_cas: Path) -> Iterator[str]:
    """Docker's API over TLS on loopback, with a certificate CA B signed; no client cert asked,
    so only the client's check of the server decides."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(two_cas / "server.pem"), str(two_cas / "server-key.pem"))
    yield from serve_docker(context)


def _refused(result: CtkResult) -> None:
    assert result.returncode == ExitCode.ENGINE_UNAVAILABLE, result.stderr
    assert "Traceback" not in result.stderr and "Hint:" in result.stderr


def test_docker_ca_without_tlsverify_verifies(
    server_of_ca_b: str, two_cas: Path, config_home: Path
) -> None:
    ca_a, ca_b = str(two_cas / "ca-a.pem"), str(two_cas / "ca-b.pem")
    # --tlscacert alone
    _refused(ctk("--tlscacert", ca_a, "ps", engine=server_of_ca_b))
    # ?cacert= in the URL
    _refused(ctk("ps", engine=f"{server_of_ca_b}?cacert={ca_a}"))
    # cacert in the config file, no tlsverify
    (config_home / "ctk").mkdir(parents=True)
    (config_home / "ctk" / "config.toml").write_text(
        f'[engines.remote]\nurl = "{server_of_ca_b}"\ncacert = "{ca_a}"\n'
    )
    _refused(ctk("ps", engine="remote"))
    # the right CA: the same server is reached
    result = ctk("--tlscacert", ca_b, "ps", engine=server_of_ca_b)
    assert result.returncode == 0, result.stderr
    assert "Warning:" not in result.stderr  # TLS: no plain-tcp warning


def test_podman_has_no_tls_and_plain_tcp_warns(two_cas: Path, config_home: Path) -> None:
    url = f"tcp://127.0.0.1:{_free_loopback_port()}"
    with podman_service(url):
        result = ctk("--tlscacert", str(two_cas / "ca-a.pem"), "ps", engine=f"podman+{url}")
        assert result.returncode == ExitCode.UNSUPPORTED, result.stderr
        assert "no TLS" in result.stderr and "Hint:" in result.stderr
        plain = ctk("ps", engine=f"podman+{url}")
        assert plain.returncode == 0, plain.stderr
        assert plain.stderr.count("Warning: podman+tcp://") == 1, plain.stderr
