"""Docker's interactive streams: attach, exec with stdin or a TTY, resize."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

from toolkit.backends import validation
from toolkit.backends.docker.client import DockerClient
from toolkit.errors import InvalidArgument, Unsupported

# How long an exec's exit code may lag behind the end of its stream.
_EXIT_CODE_WAIT = 5.0


def _socket_of(raw: Any, url: str) -> socket.socket:
    """The OS socket under what the SDK returns (a SocketIO over unix/tcp, the socket for TLS)."""
    sock = getattr(raw, "_sock", raw)
    if not isinstance(sock, socket.socket):
        # ssh:// through the ssh command: a pipe to a process, no socket to select on.
        raise Unsupported(
            f"ctk cannot attach to Docker over {url.split('://', 1)[0]}://",
            hint="run ctk on the engine's host, or reach its socket over tcp://",
        )
    sock.settimeout(None)
    return sock


class TerminalsMixin(DockerClient):
    """attach_socket, exec_start(socket=True) and the resize routes of the Engine API."""

    # The daemon watches stdin for the detach keys and ends the stream, leaving the
    # container (and its StdinOnce stdin) alone.
    engine_detaches = True

    def require_streams(self) -> None:
        if self.url.startswith("ssh://"):
            # The SDK carries ssh:// through the ssh command or paramiko: no socket to select on.
            raise Unsupported(
                "ctk cannot attach to Docker over ssh://",
                hint="run ctk on the engine's host, or reach its socket over tcp://",
            )

    def attach_socket(self, name: str, *, stdin: bool, detach_keys: str) -> socket.socket:
        validation.validate_ref(name, what="container")
        params = {
            "stdin": int(stdin),
            "stdout": 1,
            "stderr": 1,
            "stream": 1,
            "detachKeys": detach_keys,
        }
        with self._errors(container=name):
            raw = self._api.attach_socket(name, params=params)
        return _socket_of(raw, self.url)

    def resize(self, name: str, *, height: int, width: int) -> None:
        with self._errors(container=name):
            self._api.resize(name, height=height, width=width)

    def exec_create(
        self,
        name: str,
        command: Sequence[str],
        *,
        tty: bool,
        stdin: bool,
        user: str | None = None,
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        validation.validate_ref(name, what="container")
        if not command:
            raise InvalidArgument("exec needs a command", hint="e.g. ctk exec -it web1 sh")
        with self._errors(container=name):
            created = self._api.exec_create(
                name,
                list(command),
                stdin=stdin,
                tty=tty,
                user=user or "",
                workdir=workdir,
                environment=dict(env) if env else None,
            )
        return str(created["Id"])

    def exec_socket(self, exec_id: str, *, tty: bool) -> socket.socket:
        with self._errors():
            raw = self._api.exec_start(exec_id, tty=tty, socket=True)
        return _socket_of(raw, self.url)

    def resize_exec(self, exec_id: str, *, height: int, width: int) -> None:
        with self._errors():
            self._api.exec_resize(exec_id, height=height, width=width)

    def exec_exit_code(self, exec_id: str) -> int:
        deadline = time.monotonic() + _EXIT_CODE_WAIT
        while True:
            with self._errors():
                data = self._api.exec_inspect(exec_id)
            code = data.get("ExitCode")
            if (not data.get("Running") and code is not None) or time.monotonic() > deadline:
                return int(code if code is not None else -1)
            time.sleep(0.05)
