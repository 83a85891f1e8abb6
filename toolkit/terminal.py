"""The local end of an attached stream: raw terminal, window size, stdin and output pumped.

Engine-neutral: a backend hands over a hijacked socket (see :class:`toolkit.backends.base.
Terminals`); this module copies the local stdin into it and its output to stdout/stderr until
the engine closes it. The terminal goes back to how it was on every way out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import struct
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType

from toolkit.backends.base import Backend, Terminals
from toolkit.errors import Conflict, CtkError, InvalidArgument, Unsupported
from toolkit.models import ContainerSpec

logger = logging.getLogger(__name__)

DETACH_KEYS = "ctrl-p,ctrl-q"
"""docker's and Podman's default: the engine ends the attach, the container keeps running."""

Resize = Callable[[int, int], None]
"""Tell the engine the terminal's size: (height, width)."""


def require_terminal(tty: bool) -> None:
    """Refuse ``-t`` when stdin is not a terminal, as docker does.

    Raises:
        InvalidArgument: ``tty`` and stdin is a pipe or a file.
    """
    if tty and not os.isatty(sys.stdin.fileno()):
        raise InvalidArgument(
            "the input device is not a TTY",
            hint="drop -t when stdin is a pipe or a file (keep -i to pass it on)",
        )


def window_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on ``fd``, or None when it is not one."""
    try:
        columns, rows = os.get_terminal_size(fd)
    except OSError:
        return None
    return (rows, columns) if rows and columns else None


class _Hangup(BaseException):
    """SIGTERM or SIGHUP while attached. A BaseException: no ``except Exception`` on the way
    (a resize in flight) may swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _raw(fd: int, enabled: bool) -> Iterator[None]:
    """The terminal on ``fd`` in raw mode for the block: keys go to the container as typed."""
    if not enabled:
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        # TCSADRAIN, not setraw's default TCSAFLUSH: what was typed ahead still reaches the
        # container.
        tty.setraw(fd, termios.TCSADRAIN)
        yield
    finally:
        # TCSADRAIN: the container's last output reaches the screen before cooked mode returns.
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _signals(on_winch: Callable[[], None]) -> Iterator[None]:
    """SIGWINCH resizes; SIGTERM and SIGHUP end the session through the finally clauses."""

    def hangup(signum: int, _frame: FrameType | None) -> None:
        raise _Hangup(signum)

    def winch(_signum: int, _frame: FrameType | None) -> None:
        on_winch()

    handlers = {signal.SIGTERM: hangup, signal.SIGHUP: hangup, signal.SIGWINCH: winch}
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _Demux:
    """docker's and libpod's multiplexed stream (no TTY): 8-byte headers, then a frame."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= 8:
            kind, size = struct.unpack(">BxxxL", self._buffer[:8])
            if len(self._buffer) < 8 + size:
                return
            frame, self._buffer = self._buffer[8 : 8 + size], self._buffer[8 + size :]
            _write_all(2 if kind == 2 else 1, frame)


def detach_sequence(keys: str) -> bytes:
    """The bytes of a docker-style detach-keys value (``ctrl-p,ctrl-q``; ``a`` is itself).

    Raises:
        InvalidArgument: a key that is neither ``ctrl-X`` nor one character.
    """
    sequence = bytearray()
    for key in keys.split(","):
        key = key.strip()
        lower = key.lower()
        if lower.startswith("ctrl-") and len(key) == 6 and "@" <= key[5].upper() <= "_":
            sequence.append(ord(key[5].upper()) - 64)
        elif len(key) == 1:
            sequence += key.encode()
        else:
            raise InvalidArgument(
                f"bad detach keys {keys!r}", hint="e.g. --detach-keys ctrl-p,ctrl-q"
            )
    return bytes(sequence)


class _DetachWatch:
    """Sees the detach sequence in what the user types.

    ``forward``: the engine acts on the keys itself (Docker), so they go through and the engine
    ends the stream. Otherwise (Podman's attach passes them on) ctk holds back what could be
    the start of the sequence, drops the sequence itself and ends the stream from here.
    """

    def __init__(self, sequence: bytes, *, forward: bool) -> None:
        self._sequence = sequence
        self._forward = forward
        self._held = b""
        self._tail = b""
        self.seen = False

    def feed(self, data: bytes) -> bytes:
        """What of ``data`` to send on."""
        if not self._sequence or self.seen:
            return data
        if self._forward:
            # Everything goes through; the tail of earlier reads finds a split sequence.
            window = self._tail + data
            self.seen = self._sequence in window
            self._tail = window[len(window) - len(self._sequence) + 1 :]
            return data
        window = self._held + data
        self._held = b""
        at = window.find(self._sequence)
        if at >= 0:
            self.seen = True
            return window[:at]
        for size in range(min(len(window), len(self._sequence) - 1), 0, -1):
            if self._sequence.startswith(window[-size:]):
                self._held = window[-size:]
                return window[:-size]
        return window


# After the detach keys, how long to wait for the engine to end the stream itself.
_DETACH_GRACE = 3.0


def stream(
    sock: socket.socket,
    *,
    tty: bool,
    stdin: bool,
    resize: Resize | None = None,
    detach_keys: str = "",
    engine_detaches: bool = True,
) -> bool:
    """Pump stdin into ``sock`` and its output out until the engine closes it.

    Returns True when the user typed ``detach_keys`` (the engine ends the stream and leaves
    the process running), False when the process's output ended.

    ``tty``: the process has a pseudo-terminal, so the output is one raw stream and a local
    terminal goes raw; otherwise the output is multiplexed (stdout and stderr frames).
    ``stdin``: send the local stdin; its end half-closes the socket so the process reads EOF.
    ``resize`` is called with the window size now and on every SIGWINCH.
    ``engine_detaches``: the engine ends the stream on ``detach_keys`` itself (see
    :attr:`toolkit.backends.base.Terminals.engine_detaches`).

    Raises:
        SystemExit: SIGTERM or SIGHUP arrived (128 + the signal), after the terminal is restored.
    """
    in_fd = sys.stdin.fileno()
    local_tty = tty and stdin and os.isatty(in_fd)
    size_fd = in_fd if os.isatty(in_fd) else sys.stdout.fileno()

    def send_size() -> None:
        size = window_size(size_fd)
        if resize is not None and size is not None:
            try:
                resize(*size)
            except Exception as exc:  # a resize lost is cosmetic; the session goes on
                logger.debug("resize failed: %s", exc)

    demux = None if tty else _Demux()
    reading_stdin = stdin
    watch = _DetachWatch(
        detach_sequence(detach_keys) if detach_keys else b"", forward=engine_detaches
    )
    try:
        with _signals(send_size), _raw(in_fd, local_tty):
            send_size()
            while True:
                wanted: list[int | socket.socket] = [sock]
                if reading_stdin:
                    wanted.append(in_fd)
                if watch.seen:
                    # The engine ends the stream on the detach keys; stop reading stdin and
                    # give it a moment, then end it from here.
                    wanted = [sock]
                try:
                    ready, _, _ = select.select(
                        wanted, [], [], _DETACH_GRACE if watch.seen else None
                    )
                except InterruptedError:
                    continue
                if not ready:
                    return True
                if sock in ready:
                    try:
                        data = sock.recv(65536)
                    except ConnectionError:
                        data = b""
                    if not data:
                        return watch.seen
                    if demux is None:
                        _write_all(sys.stdout.fileno(), data)
                    else:
                        demux.feed(data)
                if in_fd in ready and not watch.seen:
                    data = os.read(in_fd, 65536)
                    if data:
                        data = watch.feed(data)
                        if data:
                            sock.sendall(data)
                        if watch.seen and not engine_detaches:
                            return True
                    else:
                        reading_stdin = False
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_WR)
    except _Hangup as exc:
        raise SystemExit(128 + exc.signum) from None
    finally:
        sock.close()


def terminals(backend: Backend) -> Terminals:
    """``backend`` as a :class:`Terminals`.

    Raises:
        Unsupported: the engine's backend has no interactive streams.
    """
    if not isinstance(backend, Terminals):
        raise Unsupported(f"{backend.kind} has no interactive streams in ctk")
    backend.require_streams()
    return backend


def run_interactive(backend: Backend, spec: ContainerSpec, *, remove: bool) -> int | None:
    """Create ``spec``, attach, start it and pump until it ends: its exit code.

    None when the user detached (the container runs on). ``remove`` removes it after it ends
    (``--rm``): ctk does it after reading the exit code, so the engine never races the wait.
    """
    engine = terminals(backend)
    require_terminal(spec.tty)
    info = backend.create(spec)
    detached = False
    try:
        sock = engine.attach_socket(info.id, stdin=spec.stdin_open, detach_keys=DETACH_KEYS)
        try:
            backend.start(info.id)
        except BaseException:
            sock.close()
            raise
        detached = stream(
            sock,
            tty=spec.tty,
            stdin=spec.stdin_open,
            resize=lambda h, w: engine.resize(info.id, height=h, width=w) if spec.tty else None,
            detach_keys=DETACH_KEYS if spec.stdin_open else "",
            engine_detaches=engine.engine_detaches,
        )
        if detached:
            return None
        return backend.wait(info.id)
    finally:
        if remove and not detached:
            try:
                backend.remove(info.id, force=True, volumes=True)
            except CtkError as exc:
                logger.warning("could not remove %s: %s", info.id, exc.message)


def exec_interactive(
    backend: Backend,
    name: str,
    command: Sequence[str],
    *,
    tty: bool,
    stdin: bool,
    user: str | None = None,
    workdir: str | None = None,
    env: Mapping[str, str] | None = None,
) -> int | None:
    """Run ``command`` in ``name`` attached to the local terminal: its exit code (None when
    the user detached)."""
    engine = terminals(backend)
    require_terminal(tty)
    exec_id = engine.exec_create(
        name, command, tty=tty, stdin=stdin, user=user, workdir=workdir, env=env
    )
    sock = engine.exec_socket(exec_id, tty=tty)
    detached = stream(
        sock,
        tty=tty,
        stdin=stdin,
        resize=lambda h, w: engine.resize_exec(exec_id, height=h, width=w) if tty else None,
        detach_keys=DETACH_KEYS if stdin and tty else "",
        engine_detaches=engine.engine_detaches,
    )
    if detached:
        return None
    return engine.exec_exit_code(exec_id)


def attach(backend: Backend, name: str, *, stdin: bool, detach_keys: str) -> int | None:
    """Attach to running container ``name``'s main process: its exit code when it ends, None
    when the user detached."""
    engine = terminals(backend)
    detach_sequence(detach_keys)  # bad keys fail before the engine is asked
    info = backend.inspect(name)
    if not info.running:
        raise Conflict(f"container {name} is not running", hint=f"start it first: ctk start {name}")
    if info.tty and stdin:
        require_terminal(True)
    sock = engine.attach_socket(info.id, stdin=stdin, detach_keys=detach_keys)
    detached = stream(
        sock,
        tty=info.tty,
        stdin=stdin,
        resize=lambda h, w: engine.resize(info.id, height=h, width=w) if info.tty else None,
        detach_keys=detach_keys if stdin else "",
        engine_detaches=engine.engine_detaches,
    )
    if detached:
        return None
    return backend.wait(info.id)
