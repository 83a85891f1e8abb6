"""Podman's interactive streams: libpod's attach and exec-start hijack the connection."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

from toolkit.backends import hijack, validation
from toolkit.backends.podman.client import API_VERSION, PodmanClient, podman
from toolkit.errors import InvalidArgument

# How long an exec's exit code may lag behind the end of its stream.
_EXIT_CODE_WAIT = 5.0


class TerminalsMixin(PodmanClient):
    """The podman SDK cannot hijack: ctk speaks those two requests over the unix socket itself."""

    def _socket_path(self) -> str:
        # A temporary service or an ssh tunnel is a private unix socket (see PodmanClient);
        # tcp:// is refused as Unsupported.
        address = self._service.url if self._service is not None else self.url
        return hijack.unix_socket_path(address, engine="Podman")

    def require_streams(self) -> None:
        self._socket_path()

    def _hijack(self, target: str, *, body: object | None, container: str) -> socket.socket:
        path = self._socket_path()
        return hijack.upgrade(
            path, f"/v{API_VERSION}/libpod{target}", body=body, container=container
        )

    # Podman 4.3's HTTP attach passes the detach keys on to the process: ctk drops them
    # and closes the stream itself.
    engine_detaches = False

    def attach_socket(self, name: str, *, stdin: bool, detach_keys: str) -> socket.socket:
        validation.validate_ref(name, what="container")
        query = urlencode(
            {
                "stdin": str(stdin).lower(),
                "stdout": "true",
                "stderr": "true",
                "stream": "true",
                "detachKeys": detach_keys,
            }
        )
        return self._hijack(f"/containers/{name}/attach?{query}", body=None, container=name)

    def resize(self, name: str, *, height: int, width: int) -> None:
        with self._errors(container=name):
            response = self._api.post(
                f"/containers/{name}/resize", params={"h": height, "w": width}
            )
            response.raise_for_status(not_found=podman.errors.NotFound)

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
        body: dict[str, object] = {
            "Cmd": list(command),
            "AttachStdin": stdin,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": tty,
        }
        if user:
            body["User"] = user
        if workdir:
            body["WorkingDir"] = workdir
        if env:
            body["Env"] = [f"{k}={v}" for k, v in env.items()]
        with self._errors(container=name):
            response = self._api.post(
                f"/containers/{name}/exec",
                headers={"content-type": "application/json"},
                data=podman.api.prepare_body(body),
            )
            response.raise_for_status(not_found=podman.errors.NotFound)
        return str(response.json()["Id"])

    def exec_socket(self, exec_id: str, *, tty: bool) -> socket.socket:
        return self._hijack(
            f"/exec/{exec_id}/start", body={"Detach": False, "Tty": tty}, container=exec_id
        )

    def resize_exec(self, exec_id: str, *, height: int, width: int) -> None:
        with self._errors():
            response = self._api.post(f"/exec/{exec_id}/resize", params={"h": height, "w": width})
            response.raise_for_status()

    def exec_exit_code(self, exec_id: str) -> int:
        deadline = time.monotonic() + _EXIT_CODE_WAIT
        while True:
            with self._errors():
                response = self._api.get(f"/exec/{exec_id}/json")
                response.raise_for_status()
                data = response.json()
            code = data.get("ExitCode")
            if (not data.get("Running") and code is not None) or time.monotonic() > deadline:
                return int(code if code is not None else -1)
            time.sleep(0.05)
