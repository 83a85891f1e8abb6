"""An HTTP request whose connection the engine takes over as a raw two-way stream.

Attach and exec-start "hijack" the connection: after the response's headers the socket carries
the process's stdin one way and its output the other. The podman SDK has no call for that, so
ctk speaks the request itself over the service's unix socket. Nothing here imports an SDK.
"""

from __future__ import annotations

import json
import logging
import socket
from urllib.parse import urlsplit

from toolkit.errors import (
    Conflict,
    ContainerNotFound,
    EngineError,
    EngineUnavailable,
    InvalidArgument,
    Unsupported,
)

logger = logging.getLogger(__name__)

# The status line and headers end here; a larger head is not an engine's answer.
_MAX_HEAD = 64 * 1024


def unix_socket_path(url: str, *, engine: str) -> str:
    """The filesystem path of a ``unix://`` engine URL.

    Raises:
        Unsupported: for ssh:// and tcp:// URLs, whose transports ctk cannot hijack.
    """
    parts = urlsplit(url)
    if parts.scheme in ("unix", "http+unix"):
        return parts.path or parts.netloc
    raise Unsupported(
        f"ctk attaches to {engine} only over a unix socket, not {parts.scheme}://",
        hint="run ctk on the engine's host, or use the engine's own CLI there",
    )


def _read_head(sock: socket.socket) -> bytes:
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        # One byte at a time: what follows the head is the stream and must stay in the socket.
        byte = sock.recv(1)
        if not byte:
            break
        head += byte
        if len(head) > _MAX_HEAD:
            break
    return head


def _refusal(status: int, body: str, *, container: str) -> Exception:
    try:
        message = str(json.loads(body).get("message") or body)
    except (ValueError, AttributeError):
        message = body
    message = message.strip() or f"status {status}"
    if status == 404:
        return ContainerNotFound(f"no such container: {container}")
    if status == 409:
        return Conflict(message)
    if status == 400:
        return InvalidArgument(message)
    return EngineError(message)


def upgrade(
    path: str,
    target: str,
    *,
    body: object | None = None,
    container: str,
    timeout: float = 30.0,
) -> socket.socket:
    """POST ``target`` (path and query, already URL-encoded) on the engine at unix socket
    ``path``; the hijacked socket.

    Raises:
        EngineUnavailable: the socket does not answer.
        ContainerNotFound, Conflict, EngineError: the engine refuses (by status code).
    """
    payload = json.dumps(body).encode() if body is not None else b""
    request = (
        f"POST {target} HTTP/1.1\r\n"
        "Host: d\r\n"
        "Connection: Upgrade\r\n"
        "Upgrade: tcp\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(request)
        head = _read_head(sock)
    except OSError as exc:
        sock.close()
        raise EngineUnavailable(f"the engine at {path} does not answer: {exc}") from exc
    status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    fields = status_line.split(" ", 2)
    status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    if status not in (101, 200):
        try:
            rest = sock.recv(65536).decode(errors="replace")
        except OSError:
            rest = ""
        sock.close()
        logger.debug("hijack of %s refused: %s %s", target, status_line, rest)
        raise _refusal(status, rest, container=container)
    # The stream has no deadline: a shell may sit idle for hours.
    sock.settimeout(None)
    return sock
