"""Engine URLs, named engines in the config file, precedence: no engine needed."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ctk
from toolkit.config import (
    EngineRef,
    TLSOptions,
    add_engine,
    config_path,
    configured_engines,
    lookup_engine,
    parse_engine,
    remove_engine,
    resolve_engine,
    use_engine,
)
from toolkit.errors import Conflict, ExitCode, InvalidArgument, NotFound


@pytest.fixture
def config_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("CTK_ENGINE", raising=False)
    return tmp_path


def test_parse_remote_urls() -> None:
    assert parse_engine("docker+tcp://10.0.0.5:2376") == EngineRef("docker", "tcp://10.0.0.5:2376")
    assert parse_engine("docker+ssh://me@box") == EngineRef("docker", "ssh://me@box")
    assert parse_engine("podman+ssh://me@box:2222/run/podman/podman.sock") == EngineRef(
        "podman", "ssh://me@box:2222/run/podman/podman.sock"
    )
    ref = parse_engine(
        "docker+tcp://h:2376?tlsverify=1&cacert=/c/ca.pem&cert=/c/c.pem&key=/c/k.pem"
    )
    assert ref.url == "tcp://h:2376"
    assert ref.tls == TLSOptions(verify=True, ca_cert="/c/ca.pem", cert="/c/c.pem", key="/c/k.pem")
    assert str(ref) == "docker+tcp://h:2376"


@pytest.mark.parametrize(
    "value",
    [
        "docker+tcp://host",  # no port
        "docker+tcp://host:99999",  # bad port
        "docker+ssh://me@box/var/run/docker.sock",  # docker+ssh names no socket
        "docker+unix:///x.sock?tlsverify=1",  # options only for tcp
        "docker+tcp://h:1?colour=red",  # unknown option
        "podman+ssh://",
    ],
)
def test_parse_rejects_remote(value: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_engine(value)


def test_config_round_trip(config_home: Path) -> None:
    add_engine(
        "remote", "docker+tcp://127.0.0.1:2376", tls=TLSOptions(verify=True, ca_cert="ca.pem")
    )
    add_engine("side", "podman+unix:///tmp/side.sock")
    use_engine("side")
    data = tomllib.loads(config_path().read_text())
    assert data["default"] == "side"
    assert data["engines"]["remote"]["url"] == "docker+tcp://127.0.0.1:2376"
    assert data["engines"]["remote"]["tlsverify"] is True
    assert Path(data["engines"]["remote"]["cacert"]).is_absolute()
    engines = configured_engines()
    assert engines["side"] == EngineRef("podman", "unix:///tmp/side.sock", name="side")
    assert engines["remote"].tls is not None and engines["remote"].tls.verify
    assert resolve_engine(None).url == "unix:///tmp/side.sock"
    with pytest.raises(Conflict):
        add_engine("side", "docker")
    remove_engine("side")
    assert "default" not in tomllib.loads(config_path().read_text())
    with pytest.raises(NotFound):
        remove_engine("side")
    with pytest.raises(NotFound):
        use_engine("side")
    for bad in ("docker", "podman", "a b", ""):
        with pytest.raises(InvalidArgument):
            add_engine(bad, "docker")


def test_names_work_wherever_an_engine_is_named(
    config_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_engine("side", "podman+unix:///tmp/side.sock")
    add_engine("other", "docker+unix:///tmp/other.sock")
    use_engine("other")
    assert lookup_engine("side").url == "unix:///tmp/side.sock"
    assert lookup_engine("docker").url == "unix:///var/run/docker.sock"
    monkeypatch.setenv("CTK_ENGINE", "side")
    assert resolve_engine(None).url == "unix:///tmp/side.sock"  # env beats config default
    assert resolve_engine("docker").kind == "docker"  # flag beats env
    assert resolve_engine("other").url == "unix:///tmp/other.sock"  # a name as the flag
    monkeypatch.delenv("CTK_ENGINE")
    assert resolve_engine(None).url == "unix:///tmp/other.sock"  # config default
    with pytest.raises(InvalidArgument):
        lookup_engine("nosuchname")


def test_tls_flags_only_for_tcp(config_home: Path) -> None:
    with pytest.raises(InvalidArgument):
        resolve_engine("docker", tls=TLSOptions(verify=True))
    ref = resolve_engine("docker+tcp://127.0.0.1:2376", tls=TLSOptions(verify=True))
    assert ref.tls == TLSOptions(verify=True)


def test_engine_cli(config_home: Path) -> None:
    env_url = "podman+unix:///tmp/cli.sock"
    assert ctk("engine", "add", "cli", env_url).returncode == 0
    assert ctk("engine", "add", "cli", env_url).returncode == ExitCode.CONFLICT
    assert ctk("engine", "add", "x", "lxc+unix:///a").returncode == ExitCode.USAGE
    assert ctk("engine", "use", "cli").returncode == 0
    rows = json.loads(ctk("engine", "ls", "--json").stdout)
    assert {r["name"] for r in rows} == {"docker", "podman", "cli"}
    assert [r["name"] for r in rows if r["default"]] == ["cli"]
    table = ctk("engine", "ls").stdout
    assert "cli *" in table and env_url in table
    # the named engine is the default now: nobody serves it, so exit 3 with a hint naming it
    result = ctk("ps")
    assert result.returncode == ExitCode.ENGINE_UNAVAILABLE
    assert "/tmp/cli.sock" in result.stderr and "Hint:" in result.stderr
    assert json.loads(ctk("engine", "rm", "--json", "cli").stdout) == {"removed": ["cli"]}
    assert ctk("engine", "rm", "cli").returncode == ExitCode.NOT_FOUND


@pytest.mark.parametrize(
    "url",
    [
        "docker+unix:///nonexistent/ctk.sock",
        "podman+unix:///nonexistent/ctk.sock",
        "docker+tcp://127.0.0.1:1",
        "podman+tcp://127.0.0.1:1",
    ],
)
def test_engine_unavailable_names_the_address(url: str) -> None:
    result = ctk("ps", engine=url)
    assert result.returncode == ExitCode.ENGINE_UNAVAILABLE
    lines = result.stderr.strip().splitlines()
    # plain tcp: a warning first (test_engine_hardening), then the one-line error and hint
    error, hint = [line for line in lines if not line.startswith("Warning: ")]
    assert error.startswith("Error: ") and url.split("+", 1)[1] in error
    assert hint.startswith("Hint: ") and "ctk engine ls" in hint


def test_bad_tls_files_are_usage_errors() -> None:
    result = ctk("--tlsverify", "--tlscacert", "/nonexistent/ca.pem", "ps",
                 engine="docker+tcp://127.0.0.1:1")  # fmt: skip
    assert result.returncode == ExitCode.USAGE and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "url",
    ["docker+ssh://nobody@127.0.0.1:1", "podman+ssh://nobody@127.0.0.1:1/run/podman/podman.sock"],
)
def test_ssh_engine_that_refuses(url: str, tmp_path: Path) -> None:
    # Port 1 on loopback refuses at once: ssh fails, ctk says so in one line (exit 3).
    result = ctk("ps", engine=url, timeout=60)
    assert result.returncode == ExitCode.ENGINE_UNAVAILABLE
    assert "Traceback" not in result.stderr and "Hint:" in result.stderr
