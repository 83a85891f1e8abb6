from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.config import DEFAULT_URLS, EngineRef, parse_engine, resolve_engine
from toolkit.errors import ExitCode, InvalidArgument


def test_parse_names() -> None:
    assert parse_engine("docker") == EngineRef("docker", DEFAULT_URLS["docker"])
    assert parse_engine("podman") == EngineRef("podman", DEFAULT_URLS["podman"])


def test_parse_urls() -> None:
    assert parse_engine("docker+unix:///tmp/d.sock") == EngineRef("docker", "unix:///tmp/d.sock")
    assert parse_engine("podman+tcp://127.0.0.1:8888").url == "tcp://127.0.0.1:8888"


@pytest.mark.parametrize("value", ["lxc", "docker+ftp://x", "docker+unix://", "podman+tcp://", ""])
def test_parse_rejects(value: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_engine(value)
    assert info.value.exit_code == ExitCode.USAGE


def test_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "ctk").mkdir()
    (tmp_path / "ctk" / "config.toml").write_text(
        'default = "remote"\n[engines.remote]\nurl = "podman+unix:///tmp/p.sock"\n'
    )
    monkeypatch.setenv("CTK_ENGINE", "docker+unix:///tmp/env.sock")
    assert resolve_engine("podman").kind == "podman"  # flag wins
    assert resolve_engine(None).url == "unix:///tmp/env.sock"  # then the environment
    monkeypatch.delenv("CTK_ENGINE")
    assert resolve_engine(None) == EngineRef("podman", "unix:///tmp/p.sock")  # then config
