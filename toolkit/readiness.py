"""Wait until a container is ready: a log line, an open TCP port, an HTTP 200, or a command.

Each ``wait_for_*`` polls until its condition holds and raises :class:`NotReady` (exit code 9)
with a hint when the timeout passes first, or at once when the container stops while being
waited for (no point waiting out the timeout then). A :class:`ReadyCheck` names one condition
as a value, so a test fixture can apply the same condition to a cold start and to a restore.

HTTP and port checks talk to a port the container publishes on the host: publish it on
loopback with an ephemeral host port (``PortMapping(8080, 0, "127.0.0.1")``) and the engine
picks a free one, which :func:`published_port` reads back from the container's info.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from toolkit.backends.base import Backend
from toolkit.errors import CtkError, ExitCode, InvalidArgument
from toolkit.models import ContainerInfo

DEFAULT_TIMEOUT = 60.0
_INTERVAL = 0.1


class NotReady(CtkError):
    """A readiness condition did not hold within its timeout."""

    exit_code = ExitCode.NOT_READY


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    what: str,
    hint: str = "",
    alive: Callable[[], bool] | None = None,
) -> None:
    """Poll ``predicate`` until it is true.

    Args:
        predicate: the condition; exceptions it raises count as "not yet".
        timeout: seconds to wait.
        what: the condition in words, for the error.
        hint: what to do when it times out.
        alive: when given and false, give up at once (the container has stopped).

    Raises:
        NotReady: the timeout passed, or ``alive`` said the container stopped.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (OSError, ValueError):
            pass  # refused connections, half-written output: not ready yet
        if alive is not None and not alive():
            raise NotReady(f"the container stopped while waiting for {what}", hint=hint)
        if time.monotonic() >= deadline:
            raise NotReady(f"timed out after {timeout:g}s waiting for {what}", hint=hint)
        time.sleep(_INTERVAL)


def _alive(backend: Backend, name: str) -> Callable[[], bool]:
    return lambda: backend.inspect(name).running


def wait_for_log(
    backend: Backend,
    name: str,
    pattern: str | re.Pattern[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    skip: int = 0,
) -> str:
    """Wait for a line of the container's output to match ``pattern`` (``re.search``).

    Args:
        backend: the engine.
        name: the container.
        pattern: a regular expression.
        timeout: seconds to wait.
        skip: ignore the first ``skip`` characters of the output (what an earlier run of the
            same container printed, e.g. before a restore).

    Returns:
        The first matching line.

    Raises:
        NotReady: no line matched in time, or the container stopped.
    """
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    found: list[str] = []

    def matched() -> bool:
        for line in backend.logs(name)[skip:].splitlines():
            if regex.search(line):
                found.append(line)
                return True
        return False

    wait_until(
        matched,
        timeout=timeout,
        what=f"a line matching {regex.pattern!r} in the output of {name}",
        hint=f"see what it printed: ctk logs {name}",
        alive=_alive(backend, name),
    )
    return found[0]


def wait_for_port(
    host: str,
    port: int,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Wait until a TCP connection to ``host:port`` succeeds.

    Raises:
        NotReady: nothing accepted a connection in time.
    """

    def connects() -> bool:
        with socket.create_connection((host, port), timeout=2):
            return True

    wait_until(
        connects,
        timeout=timeout,
        what=f"TCP port {host}:{port} to accept connections",
        hint="check that the service listens on the published container port (ctk ps shows it)",
        alive=alive,
    )


def wait_for_http(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    body: str | re.Pattern[str] | None = None,
    alive: Callable[[], bool] | None = None,
) -> str:
    """Wait until a GET of ``url`` answers 200 (and its body matches ``body``, if given).

    Returns:
        The body of the first good answer.

    Raises:
        NotReady: no good answer in time.
    """
    regex = re.compile(body) if isinstance(body, str) else body
    found: list[str] = []

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode(errors="replace")
                ok = response.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False
        if ok and (regex is None or regex.search(text)):
            found.append(text)
            return True
        return False

    matching = f" with a body matching {regex.pattern!r}" if regex is not None else ""
    wait_until(
        answers,
        timeout=timeout,
        what=f"HTTP 200{matching} from {url}",
        hint=f"try it by hand: wget -qO- {url}",
        alive=alive,
    )
    return found[0]


def wait_for_command(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Wait until a host command exits 0 (run again each poll, each run at most 10 s).

    Raises:
        NotReady: it never succeeded in time.
    """

    def succeeds() -> bool:
        try:
            done = subprocess.run(list(argv), capture_output=True, timeout=10, check=False)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    wait_until(
        succeeds,
        timeout=timeout,
        what=f"the command {' '.join(argv)!r} to succeed",
        hint="run the command by hand to see why it fails",
        alive=alive,
    )


def published_port(info: ContainerInfo, container_port: int, *, protocol: str = "tcp") -> int:
    """The host port the engine published ``container_port`` on.

    Raises:
        InvalidArgument: the container does not publish that port.
    """
    for port in info.ports:
        if port.container_port == container_port and port.protocol == protocol:
            return port.host_port
    raise InvalidArgument(
        f"container {info.name} publishes no port {container_port}/{protocol}",
        hint='publish it: ContainerSpec(ports=(PortMapping(8080, 0, "127.0.0.1"),))',
    )


def http_url(info: ContainerInfo, container_port: int, path: str = "/") -> str:
    """``http://HOST:PORT/path`` for a container port published on the host."""
    host = "127.0.0.1"
    for port in info.ports:
        if port.container_port == container_port and port.host_ip not in ("", "0.0.0.0", "::"):
            host = port.host_ip
    return f"http://{host}:{published_port(info, container_port)}/{path.lstrip('/')}"


@dataclass(frozen=True)
class ReadyCheck:
    """One readiness condition, as a value. Build it with the class methods.

    ``ReadyCheck.log(r"count=5\\b")``, ``ReadyCheck.http(8080, "/count")``,
    ``ReadyCheck.port(8080)``, ``ReadyCheck.command("pg_isready", "-h", "127.0.0.1")``.
    """

    kind: str
    pattern: str = ""
    container_port: int = 0
    path: str = "/"
    argv: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def log(cls, pattern: str, *, timeout: float = DEFAULT_TIMEOUT) -> ReadyCheck:
        """A line of output matches the regular expression ``pattern``."""
        return cls("log", pattern=pattern, timeout=timeout)

    @classmethod
    def http(
        cls,
        container_port: int,
        path: str = "/",
        *,
        body: str = "",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> ReadyCheck:
        """GET of ``path`` on the published ``container_port`` answers 200 (body matching)."""
        return cls("http", pattern=body, container_port=container_port, path=path, timeout=timeout)

    @classmethod
    def port(cls, container_port: int, *, timeout: float = DEFAULT_TIMEOUT) -> ReadyCheck:
        """The published ``container_port`` accepts TCP connections."""
        return cls("port", container_port=container_port, timeout=timeout)

    @classmethod
    def command(cls, *argv: str, timeout: float = DEFAULT_TIMEOUT) -> ReadyCheck:
        """A host command exits 0."""
        return cls("command", argv=tuple(argv), timeout=timeout)

    def __str__(self) -> str:
        if self.kind == "log":
            return f"log line /{self.pattern}/"
        if self.kind == "http":
            body = f" body /{self.pattern}/" if self.pattern else ""
            return f"HTTP 200 on :{self.container_port}{self.path}{body}"
        if self.kind == "port":
            return f"TCP port {self.container_port}"
        return f"command {' '.join(self.argv)}"


def wait_ready(
    backend: Backend, info: ContainerInfo, check: ReadyCheck, *, log_offset: int = 0
) -> None:
    """Wait until ``check`` holds for the container ``info``.

    Args:
        backend: the engine.
        info: the container, as last inspected (its published ports are read from here).
        check: the condition.
        log_offset: for log checks, ignore the output before this character offset.

    Raises:
        NotReady: the condition did not hold within ``check.timeout``.
        InvalidArgument: an unknown check, or a port the container does not publish.
    """
    alive = _alive(backend, info.id)
    if check.kind == "log":
        wait_for_log(backend, info.id, check.pattern, timeout=check.timeout, skip=log_offset)
    elif check.kind == "http":
        url = http_url(info, check.container_port, check.path)
        wait_for_http(url, timeout=check.timeout, body=check.pattern or None, alive=alive)
    elif check.kind == "port":
        port = published_port(info, check.container_port)
        wait_for_port("127.0.0.1", port, timeout=check.timeout, alive=alive)
    elif check.kind == "command":
        wait_for_command(check.argv, timeout=check.timeout, alive=alive)
    else:
        raise InvalidArgument(f"unknown readiness check {check.kind!r}")
