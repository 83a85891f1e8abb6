"""One way from what a user typed to a connected engine: config names, TLS kept when an
engine is opened again (drain's threads, a journal for --recover), and --debug's log."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

from toolkit import config
from toolkit.cli import configure_logging, main
from toolkit.config import EngineRef, TLSOptions
from toolkit.errors import InvalidArgument


@dataclass(eq=False)
class FakeBackend:
    """Only what resolution touches: the kind and URL every backend has."""

    kind: str
    url: str

    def close(self) -> None:
        pass


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[EngineRef]:
    """Every EngineRef connected to (no engine is contacted)."""
    refs: list[EngineRef] = []

    def fake_connect(ref: EngineRef) -> FakeBackend:
        refs.append(ref)
        return FakeBackend(ref.kind, ref.url)

    monkeypatch.setattr(config, "connect", fake_connect)
    return refs


@pytest.fixture
def config_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("CTK_ENGINE", raising=False)
    (tmp_path / "ctk").mkdir()
    (tmp_path / "ctk" / "config.toml").write_text(
        "[engines.remote]\n"
        'url = "docker+tcp://127.0.0.1:2376"\n'
        "tlsverify = true\n"
        'cacert = "/etc/ctk/ca.pem"\ncert = "/etc/ctk/cert.pem"\nkey = "/etc/ctk/key.pem"\n'
        '[engines.other-podman]\nurl = "podman+unix:///tmp/other.sock"\n'
    )
    return tmp_path


TLS = TLSOptions(True, "/etc/ctk/ca.pem", "/etc/ctk/cert.pem", "/etc/ctk/key.pem")


def test_a_configured_name_keeps_its_tls_when_opened_again(
    config_home: Path, opened: list[EngineRef]
) -> None:
    backend = config.get_backend("remote")
    assert opened == [EngineRef("docker", "tcp://127.0.0.1:2376", TLS)]
    assert config.engine_ref(backend).name == "remote"
    # drain opens the engines again in each worker thread: same URL, same TLS
    config.reopen(backend)
    assert opened[1] == opened[0] and opened[1].tls == TLS


def test_journal_record_round_trip(config_home: Path, opened: list[EngineRef]) -> None:
    record = config.engine_record(config.get_backend("remote"))
    assert record == {
        "kind": "docker",
        "url": "tcp://127.0.0.1:2376",
        "name": "remote",
        "tlsverify": "1",
        "cacert": "/etc/ctk/ca.pem",
        "cert": "/etc/ctk/cert.pem",
        "key": "/etc/ctk/key.pem",
    }
    config.open_recorded(record)
    assert opened[-1] == opened[0] and opened[-1].tls == TLS


def test_older_journals_and_plain_engines(config_home: Path, opened: list[EngineRef]) -> None:
    # journals written before TLS was recorded hold kind and url only
    config.open_recorded({"kind": "podman", "url": "unix:///tmp/other.sock"})
    assert opened[-1] == EngineRef("podman", "unix:///tmp/other.sock")
    record = config.engine_record(config.get_backend("other-podman"))
    assert record == {"kind": "podman", "url": "unix:///tmp/other.sock", "name": "other-podman"}
    # a backend made without get_backend is still known by kind and URL
    assert config.engine_ref(FakeBackend("docker", "unix:///x.sock")) == EngineRef(  # type: ignore[arg-type]
        "docker", "unix:///x.sock"
    )
    with pytest.raises(InvalidArgument):
        config.open_recorded({"kind": "lxc", "url": "unix:///x"})


def test_migrate_and_drain_resolve_engines_like_engine(
    config_home: Path, opened: list[EngineRef], monkeypatch: pytest.MonkeyPatch
) -> None:
    # --to, --from and drain's ENGINE take configured names (and keep their TLS)
    import toolkit.migration

    seen: list[tuple[str, str]] = []

    def fake_migrate(name: str, *, source: FakeBackend, dest: FakeBackend, **_: object) -> None:
        seen.append((config.engine_ref(source).name or "", config.engine_ref(dest).name or ""))
        raise InvalidArgument("stop here")

    def fake_drain(source: FakeBackend, dest: FakeBackend, **_: object) -> None:
        fake_migrate("*", source=source, dest=dest)

    monkeypatch.setattr(toolkit.migration, "migrate", fake_migrate)
    monkeypatch.setattr(toolkit.migration, "drain", fake_drain)
    for argv in (
        ["migrate", "web1", "--from", "other-podman", "--to", "remote"],
        ["drain", "other-podman", "--to", "remote"],
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert seen.pop() == ("other-podman", "remote")
        assert opened[-1].tls == TLS


def test_debug_shows_the_module_loggers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--debug", "--engine", "docker+unix:///nonexistent/ctk.sock", "ps"])
    err = capsys.readouterr().err
    assert "ctk: DEBUG toolkit.config: opening engine docker+unix:///nonexistent/ctk.sock" in err
    with pytest.raises(SystemExit):
        main(["--engine", "docker+unix:///nonexistent/ctk.sock", "ps"])
    err = capsys.readouterr().err
    assert "DEBUG" not in err and err.startswith("Error: ")


def test_warnings_show_without_debug(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(False)
    logging.getLogger("toolkit.example").warning("a cleanup failed: %s", "boom")
    logging.getLogger("toolkit.example").debug("hidden")
    configure_logging(False)  # once more: still one handler, one line
    logging.getLogger("toolkit.example").warning("again")
    assert capsys.readouterr().err.splitlines() == [
        "ctk: WARNING toolkit.example: a cleanup failed: boom",
        "ctk: WARNING toolkit.example: again",
    ]
