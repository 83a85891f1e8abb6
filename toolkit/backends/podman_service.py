"""A temporary ``podman system service`` for one ctk call, when Podman's socket is silent.

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
from pathlib import Path

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
                    "unix:///run/podman/podman.sock &",
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
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.directory)
        atexit.unregister(self.stop)
