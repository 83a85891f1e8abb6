"""The engine-neutral half of interactive terminals: detach keys, demultiplexing, transports."""

from __future__ import annotations

import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from toolkit import terminal
from toolkit.backends import hijack
from toolkit.errors import ExitCode, InvalidArgument, Unsupported


def test_detach_sequence_parses_docker_keys() -> None:
    assert terminal.detach_sequence("ctrl-p,ctrl-q") == b"\x10\x11"
    assert terminal.detach_sequence("ctrl-a,x") == b"\x01x"
    with pytest.raises(InvalidArgument) as caught:
        terminal.detach_sequence("ctrl-pq")
    assert caught.value.exit_code == ExitCode.USAGE


def test_detach_keys_forwarded_to_an_engine_that_acts_on_them() -> None:
    watch = terminal._DetachWatch(b"\x10\x11", forward=True)
    assert watch.feed(b"ls\x10") == b"ls\x10"
    assert not watch.seen
    assert watch.feed(b"\x11") == b"\x11"  # split across two reads, still seen
    assert watch.seen


def test_detach_keys_held_back_and_dropped_when_ctk_detaches() -> None:
    watch = terminal._DetachWatch(b"\x10\x11", forward=False)
    assert watch.feed(b"ls\x10") == b"ls"  # ctrl-p could start the sequence: held
    assert watch.feed(b"x") == b"\x10x"  # it did not: sent on with what followed
    assert not watch.seen
    assert watch.feed(b"a\x10") == b"a"
    assert watch.feed(b"\x11rest") == b""
    assert watch.seen


def test_demux_splits_stdout_and_stderr_frames(capfd: pytest.CaptureFixture[str]) -> None:
    def frame(kind: int, data: bytes) -> bytes:
        return struct.pack(">BxxxL", kind, len(data)) + data

    demux = terminal._Demux()
    stream = frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"more\n")
    for i in range(len(stream)):  # byte by byte: frames split anywhere
        demux.feed(stream[i : i + 1])
    captured = capfd.readouterr()
    assert (captured.out, captured.err) == ("out\nmore\n", "err\n")


@pytest.mark.parametrize("url", ["tcp://10.0.0.1:8888", "https://h:2376"])
def test_hijack_refuses_non_unix_transports(url: str) -> None:
    with pytest.raises(Unsupported) as caught:
        hijack.unix_socket_path(url, engine="Podman")
    assert caught.value.exit_code == ExitCode.UNSUPPORTED
    assert hijack.unix_socket_path("unix:///run/podman/podman.sock", engine="Podman") == (
        "/run/podman/podman.sock"
    )


def test_podman_attach_over_tcp_is_unsupported() -> None:
    pytest.importorskip("podman")
    from toolkit.backends.podman.backend import PodmanBackend

    backend = PodmanBackend("tcp://127.0.0.1:1")  # no connection is made for this refusal
    with pytest.raises(Unsupported):
        backend.attach_socket("c1", stdin=True, detach_keys=terminal.DETACH_KEYS)
    with pytest.raises(Unsupported):
        backend.exec_socket("0123abcd", tty=True)


def test_raw_mode_is_restored_when_the_block_raises() -> None:
    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        with pytest.raises(RuntimeError), terminal._raw(slave, True):
            assert not termios.tcgetattr(slave)[3] & termios.ICANON
            raise RuntimeError("boom")
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_docker_over_ssh_is_unsupported() -> None:
    pytest.importorskip("docker")
    from toolkit.backends.docker.backend import DockerBackend

    # Not connected: the SDK would reach for the host; the check needs the URL only.
    backend = DockerBackend.__new__(DockerBackend)
    backend.url = "ssh://root@10.0.0.1"
    with pytest.raises(Unsupported) as caught:
        terminal.terminals(backend)
    assert caught.value.exit_code == ExitCode.UNSUPPORTED


@pytest.mark.parametrize(
    "args",
    [("attach", "c1"), ("exec", "-it", "c1", "sh"), ("run", "-it", "--rm", "busybox", "sh")],
)
def test_cli_terminals_over_podman_tcp_exit_6(args: tuple[str, ...]) -> None:
    pytest.importorskip("podman")
    # Nothing listens there: the refusal comes before any request.
    done = subprocess.run(
        [sys.executable, "-m", "toolkit", "--engine", "podman+tcp://127.0.0.1:9", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == ExitCode.UNSUPPORTED, done.stderr
    assert "only over a unix socket" in done.stderr
    assert "Traceback" not in done.stderr
