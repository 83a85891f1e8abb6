"""Local sockets for Podman: a temporary ``podman system service`` when Podman's socket is
silent, and an ssh tunnel to a remote Podman.

Podman needs no daemon: its REST service is an ordinary process. Where nothing serves the
standard socket (no systemd socket activation, service not started) but the ``podman`` binary
is installed, ctk starts the service on a private socket, uses it, and stops it when the
backend is closed or the process exits. Containers started through it keep running: conmon,
not the service, is their parent.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from toolkit.backends import DEFAULT_URLS
from toolkit.errors import EngineUnavailable

DISABLE_ENV = "CTK_NO_PODMAN_SERVICE"
"""Set to 1 to never start a temporary service."""


class TemporaryPodmanService:
    """One ``podman system service`` process on a socket in a private temporary directory."""

    def __init__(self, process: subprocess.Popen[bytes], directory: Path) -> None:
        self.process = process
        self.directory = directory
        self.socket_path = directory / "podman.sock"
        self.url = f"unix://{self.socket_path}"

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(cls, *, binary: str | None = None, timeout: float = 30.0) -> TemporaryPodmanService:
        """Start the service and wait until its socket accepts connections.

        Raises:
            EngineUnavailable: podman is not installed, or the service did not come up.
        """
        path = binary or shutil.which("podman")
        if not path:
            raise EngineUnavailable(
                "Podman does not answer and the podman command is not installed",
                hint="install podman, or start the engines with: scripts/engines start",
            )
        directory = Path(tempfile.mkdtemp(prefix="ctk-podman-"))
        log = (directory / "service.log").open("wb")
        process = subprocess.Popen(
            [path, "system", "service", "--time=0", f"unix://{directory}/podman.sock"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            # conmon inherits the service's directory and fails once it is removed.
            cwd="/",
        )
        log.close()
        service = cls(process, directory)
        # Registered before waiting, so even an interrupted start leaves nothing behind.
        atexit.register(service.stop)
        deadline = time.monotonic() + timeout
        while not service._accepts():
            if process.poll() is not None or time.monotonic() > deadline:
                reason = service._log_tail()
                service.stop()
                raise EngineUnavailable(
                    f"a temporary podman system service did not start: {reason}",
                    hint="start it yourself: podman system service --time=0 "
                    f"{DEFAULT_URLS['podman']} &",
                )
            time.sleep(0.1)
        return service

    def _accepts(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.socket_path))
            except OSError:
                return False
        return True

    def _log_tail(self) -> str:
        try:
            lines = (self.directory / "service.log").read_text(errors="replace").splitlines()
        except OSError:
            return "no output"
        return lines[-1] if lines else "no output"

    def stop(self) -> None:
        """Stop the process (by its PID) and remove the socket directory; idempotent."""
        _stop(self.process, self.directory, self.stop)


class SSHTunnel:
    """``ssh -N -L`` from a private local socket to a remote Podman socket.

    ctk opens the tunnel itself rather than through the SDK's adapter, which turns off host
    key checking and waits five minutes for an ssh that has already failed.
    """

    def __init__(self, process: subprocess.Popen[bytes], directory: Path) -> None:
        self.process = process
        self.directory = directory
        self.socket_path = directory / "podman.sock"
        self.url = f"unix://{self.socket_path}"

    @classmethod
    def open(cls, url: str, *, timeout: float = 30.0) -> SSHTunnel:
        """Open a tunnel for ``ssh://user@host[:port]/path.sock``.

        Raises:
            EngineUnavailable: no ssh command, or ssh failed or did not forward in time.
        """
        from urllib.parse import urlparse

        ssh = shutil.which("ssh")
        if not ssh:
            raise EngineUnavailable(
                f"cannot reach {url}: the ssh command is not installed",
                hint="install openssh-client",
            )
        parsed = urlparse(url)
        remote = parsed.path or DEFAULT_URLS["podman"].removeprefix("unix://")
        target = f"{parsed.username}@{parsed.hostname}" if parsed.username else parsed.hostname
        directory = Path(tempfile.mkdtemp(prefix="ctk-ssh-"))
        command = [ssh, "-N", "-o", "ExitOnForwardFailure=yes", "-o", "ConnectTimeout=10"]
        port_flag = f"-p {parsed.port} " if parsed.port else ""
        if parsed.port:
            command += ["-p", str(parsed.port)]
        # "--": whatever the target says, ssh reads it as the destination, never as an option
        # (a host "-oProxyCommand=..." would run a command here); config.parse_engine also
        # refuses such targets.
        command += ["-L", f"{directory}/podman.sock:{remote}", "--", str(target)]
        log = (directory / "ssh.log").open("wb")
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        tunnel = cls(process, directory)
        atexit.register(tunnel.stop)
        deadline = time.monotonic() + timeout
        while not tunnel.socket_path.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                reason = _last_line(directory / "ssh.log")
                tunnel.stop()
                raise EngineUnavailable(
                    f"Podman does not answer at {url}: {reason}",
                    hint=f"check that `ssh {port_flag}{target}` logs in and that a podman "
                    f"service listens on {remote} there",
                )
            time.sleep(0.1)
        return tunnel

    def stop(self) -> None:
        """Close the tunnel (by the ssh PID) and remove its directory; idempotent."""
        _stop(self.process, self.directory, self.stop)


def _stop(process: subprocess.Popen[bytes], directory: Path, hook: Callable[[], None]) -> None:
    """Terminate ``process`` (kill it after 15 s), remove ``directory``, drop the atexit hook."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    with contextlib.suppress(OSError):
        shutil.rmtree(directory)
    atexit.unregister(hook)


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no output"
    return lines[-1] if lines else "no output"
