"""Interactive terminals on both engines: run -it, exec -it/-i, attach and its detach keys,
driven through a real pseudo-terminal like a user at a shell."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator

import pytest

from tests.conftest import BUSYBOX_IMAGE, TEST_LABEL, Containers
from toolkit.backends.base import Backend
from toolkit.errors import ContainerNotFound, ExitCode

pytestmark = pytest.mark.integration

# Sleeps, and ends on SIGTERM at once (PID 1 ignores it otherwise and Podman's removal then
# waits its 10 s stop timeout).
IDLE = ("sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait")

# Every read from the terminal is bounded by this: a broken stream fails, never hangs.
TIMEOUT = 20.0


class Terminal:
    """``ctk ARGS`` on the slave side of a fresh pseudo-terminal; the test types on the master."""

    def __init__(self, engine: str, *args: str, rows: int = 24, columns: int = 80) -> None:
        self.master, slave = pty.openpty()
        self.set_size(rows, columns)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "toolkit", "--engine", engine, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.output = b""

    def set_size(self, rows: int, columns: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def wait_raw(self) -> None:
        """Until ctk has put the terminal in raw mode (it is attached then): a readiness wait."""
        deadline = time.monotonic() + TIMEOUT
        while termios.tcgetattr(self.master)[3] & termios.ICANON:
            assert self.proc.poll() is None, f"ctk ended early: {self._drain()!r}"
            assert time.monotonic() < deadline, "ctk never put the terminal in raw mode"
            select.select([self.master], [], [], 0.02)

    def _read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self.master, 4096)
        except OSError:  # EIO: the slave side is closed, ctk has ended
            return b""

    def _drain(self) -> bytes:
        while chunk := self._read(0.2):
            self.output += chunk
        return self.output

    def expect(self, text: str) -> None:
        """Read until ``text`` appears in the output (everything read so far counts)."""
        deadline = time.monotonic() + TIMEOUT
        while text.encode() not in self.output:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {text!r} in {self.output!r}"
            chunk = self._read(left)
            if not chunk and self.proc.poll() is not None:
                self.output += self._drain()
                assert text.encode() in self.output, f"ctk ended without {text!r}: {self.output!r}"
                return
            self.output += chunk

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait(self) -> int:
        """ctk's exit code, reading its last output so that it never blocks on a full pty."""
        deadline = time.monotonic() + TIMEOUT
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, f"ctk did not end: {self.output!r}"
            self.output += self._read(0.1)
        self._drain()
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        os.close(self.master)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


def _open(opened: list[Terminal], engine: Backend, *args: str, **size: int) -> Terminal:
    terminal = Terminal(engine.kind, *args, **size)
    opened.append(terminal)
    return terminal


def _label() -> tuple[str, str]:
    (key, value), *_ = TEST_LABEL.items()
    return "-l", f"{key}={value}"


def test_run_it_rm_reads_shell_output_and_exit_code(
    engine: Backend, containers: Containers, terminals: list[Terminal]
) -> None:
    name = containers.name("tty")
    term = _open(terminals, engine, "run", "-it", "--rm", "--name", name, *_label(),
                 BUSYBOX_IMAGE, "sh")  # fmt: skip
    term.wait_raw()
    term.expect("# ")  # the shell's prompt: it reads now
    term.type("echo $((6*7)); exit 3\n")
    term.expect("42")
    assert term.wait() == 3
    with pytest.raises(ContainerNotFound):
        engine.inspect(name)
    # The local terminal is back in cooked mode.
    assert termios.tcgetattr(term.master)[3] & termios.ICANON


def test_exec_it_shell_window_size_and_exit_code(
    engine: Backend, containers: Containers, terminals: list[Terminal]
) -> None:
    target = containers.run(BUSYBOX_IMAGE, command=IDLE)
    term = _open(terminals, engine, "exec", "-it", target.name, "sh", rows=31, columns=101)
    term.wait_raw()
    term.expect("# ")
    term.type("stty size\n")
    term.expect("31 101")
    # A window resized while attached reaches the container on SIGWINCH.
    term.set_size(42, 117)
    term.proc.send_signal(signal.SIGWINCH)
    deadline = time.monotonic() + TIMEOUT
    while b"42 117" not in term.output:
        assert time.monotonic() < deadline, f"the resize never arrived: {term.output!r}"
        term.type("stty size\n")
        term.expect("# ")
        term.output += term._read(0.2)
    term.type("echo $((6*7)); exit 3\n")
    term.expect("42\r\n")
    assert term.wait() == 3
    assert engine.inspect(target.name).running


def test_exec_i_passes_piped_stdin_and_exit_code(engine: Backend, containers: Containers) -> None:
    target = containers.run(BUSYBOX_IMAGE, command=IDLE)
    argv = [sys.executable, "-m", "toolkit", "--engine", engine.kind]
    done = subprocess.run(
        [*argv, "exec", "-i", target.name, "cat"],
        input=b"hi\n",
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, b"hi\n"), done.stderr
    # Without a TTY stdout and stderr stay apart, and the command's exit code comes back.
    done = subprocess.run(
        [*argv, "exec", "-i", target.name, "sh", "-c", "cat; echo oops >&2; exit 4"],
        input=b"piped\n",
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (4, b"piped\n", b"oops\n")
    # run -i attached: the end of the pipe closes the container's stdin, so cat ends.
    name = containers.name("runi")
    done = subprocess.run(
        [*argv, "run", "-i", "--rm", "--name", name, *_label(), BUSYBOX_IMAGE, "cat"],
        input=b"through run\n",
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, b"through run\n"), done.stderr


def test_attach_reads_output_and_detach_keys_leave_it_running(
    engine: Backend, containers: Containers, terminals: list[Terminal]
) -> None:
    target = containers.run(BUSYBOX_IMAGE, command=("sh",), tty=True, stdin_open=True)
    term = _open(terminals, engine, "attach", target.name)
    term.wait_raw()
    term.type("echo $((6*7))\n")
    term.expect("42")
    term.type("\x10\x11")  # ctrl-p ctrl-q
    assert term.wait() == 0
    assert b"detached" in term.output
    assert engine.inspect(target.name).running
    # Attached again, the same shell answers; its exit ends the attach with its code.
    again = _open(terminals, engine, "attach", target.name)
    again.wait_raw()
    again.type("echo $((6*8)); exit 5\n")
    again.expect("48")
    assert again.wait() == 5
    assert not engine.inspect(target.name).running


def test_tty_needs_a_terminal(engine: Backend, containers: Containers) -> None:
    target = containers.run(BUSYBOX_IMAGE, command=IDLE)
    for args in (
        ("exec", "-it", target.name, "sh"),
        ("run", "-it", "--rm", BUSYBOX_IMAGE, "sh"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "toolkit", "--engine", engine.kind, *args],
            stdin=subprocess.DEVNULL,  # a file, whatever terminal pytest runs in
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode == ExitCode.USAGE, result.stderr
        assert "the input device is not a TTY" in result.stderr
        assert "Traceback" not in result.stderr


def test_sigterm_while_attached_restores_the_terminal(
    engine: Backend, containers: Containers, terminals: list[Terminal]
) -> None:
    target = containers.run(BUSYBOX_IMAGE, command=("sh",), tty=True, stdin_open=True)
    term = _open(terminals, engine, "attach", target.name)
    term.wait_raw()
    term.proc.send_signal(signal.SIGTERM)
    assert term.wait() == 128 + signal.SIGTERM
    assert termios.tcgetattr(term.master)[3] & termios.ICANON
    assert engine.inspect(target.name).running
    engine.kill(target.name, signal="KILL")  # sh as PID 1 ignores SIGTERM: spare the removal
