"""Remote engines: a CA given means verification on, plain tcp warns once, and ssh targets
cannot smuggle options to ssh. No engine needed (ssh goes only to a closed loopback port)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import ctk
from toolkit.config import TLSOptions, add_engine, connect, lookup_engine, parse_engine
from toolkit.errors import EngineUnavailable, ExitCode, InvalidArgument


@pytest.fixture
def config_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("CTK_ENGINE", raising=False)
    return tmp_path


def test_ca_means_verify() -> None:
    assert TLSOptions(ca_cert="/c/ca.pem").verify
    assert not TLSOptions(cert="/c/c.pem", key="/c/k.pem").verify
    ref = parse_engine("docker+tcp://h:2376?cacert=/c/ca.pem")
    assert ref.tls is not None and ref.tls.verify and ref.tls.ca_cert == "/c/ca.pem"
    ref = parse_engine("docker+tcp://h:2376?tlsverify=0&cacert=/c/ca.pem")
    assert ref.tls is not None and ref.tls.verify


def test_ca_means_verify_in_config(config_home: Path) -> None:
    (config_home / "ctk").mkdir()
    (config_home / "ctk" / "config.toml").write_text(
        '[engines.r]\nurl = "docker+tcp://h:2376"\ncacert = "/c/ca.pem"\n'
    )
    ref = lookup_engine("r")
    assert ref.tls is not None and ref.tls.verify
    saved = add_engine("s", "docker+tcp://h:2376", tls=TLSOptions(ca_cert="/c/ca.pem"))
    assert saved.tls is not None and saved.tls.verify


def test_plain_tcp_warns_once(capsys: pytest.CaptureFixture[str]) -> None:
    ref = parse_engine("podman+tcp://127.0.0.1:1")
    for _ in range(2):
        connect(ref).close()
    err = capsys.readouterr().err
    assert err.count("Warning: podman+tcp://127.0.0.1:1 is plain TCP") == 1, err
    assert "podman+ssh://" in err
    connect(parse_engine("podman+unix:///nonexistent/x.sock")).close()
    assert capsys.readouterr().err == ""


def test_plain_tcp_warning_in_the_cli() -> None:
    result = ctk("ps", engine="docker+tcp://127.0.0.1:1")
    assert result.returncode == ExitCode.ENGINE_UNAVAILABLE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("Warning: docker+tcp://127.0.0.1:1 is plain")
    assert "--tlsverify" in lines[0]
    assert lines[1].startswith("Error: ") and lines[2].startswith("Hint: ")


HOSTILE_SSH = [
    "docker+ssh://-oProxyCommand=>pwned",
    "podman+ssh://-oProxyCommand=>pwned/run/podman/podman.sock",
    "docker+ssh://-oProxyCommand=>pwned@127.0.0.1:1",
    "podman+ssh://-oProxyCommand=>pwned@127.0.0.1:1/run/podman/podman.sock",
    "docker+ssh://me@-evil",
    "docker+ssh://me:secret@box",
    "docker+ssh://me@box%20-oX",
    "docker+ssh://m e@box",
    "podman+ssh://me@box/run/podman/pod man.sock",
    "docker+ssh://me@bo\x01x",
]


@pytest.mark.parametrize("url", HOSTILE_SSH)
def test_hostile_ssh_targets_refused(url: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_engine(url)


@pytest.mark.parametrize(
    "url",
    [
        "docker+ssh://me@box",
        "docker+ssh://box:2222",
        "docker+ssh://deploy.user@10.0.0.5",
        "podman+ssh://root@[::1]:22/run/podman/podman.sock",
        "podman+ssh://me@my-host.example/run/user/1000/podman/podman.sock",
    ],
)
def test_good_ssh_targets_accepted(url: str) -> None:
    assert parse_engine(url).kind in ("docker", "podman")


@pytest.mark.parametrize("url", HOSTILE_SSH[2:4])
def test_hostile_ssh_target_in_the_cli(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where a ProxyCommand ">pwned..." would create its file
    result = ctk("ps", engine=url, timeout=60)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "may not begin with '-'" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_ssh_tunnel_passes_the_target_after_double_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even past the URL check, ssh reads the target as a destination, never as an option."""
    from toolkit.backends.podman_service import SSHTunnel

    if shutil.which("ssh") is None:
        pytest.skip("no ssh command")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EngineUnavailable) as info:
        SSHTunnel.open("ssh://-oProxyCommand=>pwned@127.0.0.1:1/run/podman/podman.sock")
    # ssh read "-oProxyCommand=>pwned@127.0.0.1" as the destination (and refused its user
    # name), not as an option; without "--" it printed its usage: no destination left
    assert "remote username contains invalid characters" in info.value.message, info.value
    assert "destination [command" not in info.value.message
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("pwned")]
