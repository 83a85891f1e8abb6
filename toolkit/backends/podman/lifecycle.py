"""Podman containers' lifecycle: create, run, list, logs, stop, exec, top, stats."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from toolkit import records
from toolkit.backends import inspection, validation
from toolkit.backends.options import restart_policy, sdk_ports
from toolkit.backends.podman.client import CHECKPOINT_RUNTIME, PodmanClient, podman
from toolkit.errors import Conflict, InvalidArgument
from toolkit.models import ContainerInfo, ContainerSpec, ContainerStats, ExecResult, ProcessList


class LifecycleMixin(PodmanClient):
    """Containers from creation to removal."""

    def run(self, spec: ContainerSpec) -> ContainerInfo:
        container_id = self._create(spec)
        try:
            with self._errors(container=spec.name or container_id):
                self._post(f"/containers/{container_id}/start")
        except Exception:
            # Never leave a half-made container behind.
            with self._errors(container=container_id):
                self._api.delete(
                    f"/containers/{container_id}", params={"force": True, "v": True}
                ).raise_for_status()
            raise
        return self.inspect(container_id)

    def create(self, spec: ContainerSpec) -> ContainerInfo:
        return self.inspect(self._create(spec))

    def _create(self, spec: ContainerSpec, *, annotations: Mapping[str, str] | None = None) -> str:
        """Create (never start) ``spec``; the new ID. ``annotations`` are OCI annotations."""
        validation.validate_spec(spec)
        kwargs: dict[str, Any] = {
            "name": spec.name,
            "environment": dict(spec.env),
            "labels": dict(spec.labels),
            "ports": sdk_ports(spec.ports, ephemeral=0),
            "runtime": spec.runtime or CHECKPOINT_RUNTIME,
        }
        if annotations:
            kwargs["annotations"] = dict(annotations)
        if spec.network in ("host", "none", "bridge"):
            kwargs["network_mode"] = spec.network
        elif spec.network:
            kwargs["networks"] = {spec.network: {}}
        for key, value in (
            ("hostname", spec.hostname),
            ("working_dir", spec.working_dir),
            ("user", spec.user),
        ):
            if value:
                kwargs[key] = value
        policy = restart_policy(spec.restart)
        if policy is not None:
            kwargs["restart_policy"] = policy
        if spec.memory:
            kwargs["mem_limit"] = spec.memory
        if spec.cpus:
            # The SDK drops nano_cpus; a CFS quota over the default period says the same.
            kwargs["cpu_period"] = 100_000
            kwargs["cpu_quota"] = int(spec.cpus * 100_000)
        if spec.ulimits:
            kwargs["ulimits"] = [
                {"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in spec.ulimits
            ]
        # The SDK renders the libpod body; ctk adds what it cannot express (anonymous volumes,
        # auto-removal) and posts it itself. Any: the SDK's renderer is private and untyped.
        manager: Any = self._client.containers
        payload: dict[str, Any] = manager._render_payload(
            {"image": spec.image, "command": list(spec.command) or None, **kwargs}
        )
        for mount in spec.volumes:
            options = ["ro"] if mount.read_only else []
            if mount.type == "bind":
                payload.setdefault("mounts", []).append(
                    {
                        "destination": mount.target,
                        "source": mount.source,
                        "type": "bind",
                        "options": [*options, "rbind"],
                    }
                )
            else:
                # An empty Name makes libpod create an anonymous volume, as `-v /data` does.
                payload.setdefault("volumes", []).append(
                    {"Name": mount.source, "Dest": mount.target, "Options": options}
                )
        if spec.auto_remove:
            payload["remove"] = True
        if spec.tty:
            payload["terminal"] = True
        if spec.stdin_open:
            payload["stdin"] = True
        with self._errors(image=spec.image):
            response = self._api.post(
                "/containers/create",
                headers={"content-type": "application/json"},
                data=podman.api.prepare_body(payload),
            )
            response.raise_for_status(not_found=podman.errors.ImageNotFound)
        return str(response.json()["Id"])

    def logs(self, name: str, *, tail: int | None = None, since: int | None = None) -> str:
        validation.validate_ref(name, what="container")
        container = self._container(name)
        with self._errors(container=name):
            kwargs: dict[str, Any] = {"stdout": True, "stderr": True}
            if tail:
                kwargs["tail"] = tail
            if since:
                kwargs["since"] = since
            chunks = container.logs(**kwargs)
            data = b"".join(chunks) if not isinstance(chunks, bytes) else chunks
        return data.decode(errors="replace")

    def follow_logs(
        self, name: str, *, tail: int | None = None, since: int | None = None
    ) -> Iterator[str]:
        validation.validate_ref(name, what="container")
        kwargs: dict[str, Any] = {"stdout": True, "stderr": True, "stream": True, "follow": True}
        if tail:
            kwargs["tail"] = tail
        if since:
            kwargs["since"] = since
        container = self._container(name)
        with self._errors(container=name):
            for chunk in container.logs(**kwargs):
                yield bytes(chunk).decode(errors="replace")

    def wait(self, name: str) -> int:
        attrs = self._attrs(name)
        with self._errors(container=name):
            response = self._api.post(
                f"/containers/{attrs['Id']}/wait",
                params={"condition": ["exited", "stopped"]},
                timeout=(10, None),
            )
            response.raise_for_status(not_found=podman.errors.NotFound)
        return int(response.json())

    def _thaw(self, attrs: dict[str, Any], name: str) -> None:
        # Docker stops and restarts a paused container; libpod refuses ("container state
        # improper"). Thawing it first gives ctk docker's behaviour on both engines.
        if (attrs.get("State") or {}).get("Paused"):
            with self._errors(container=name):
                self._post(f"/containers/{attrs['Id']}/unpause")

    def stop(self, name: str, *, timeout: int | None = None) -> None:
        attrs = self._attrs(name)
        self._thaw(attrs, name)
        with self._errors(container=name):
            response = self._api.post(
                f"/containers/{attrs['Id']}/stop",
                params={"timeout": timeout if timeout is not None else 10},
            )
            response.raise_for_status(not_found=podman.errors.NotFound)

    def remove(self, name: str, *, force: bool = False, volumes: bool = False) -> None:
        attrs = self._attrs(name)
        with self._errors(container=name):
            response = self._api.delete(
                f"/containers/{attrs['Id']}",
                # Podman 4.3's libpod route reads "volumes" and ignores "v" (the documented
                # name); send both so anonymous volumes go on every version.
                params={"force": force, "v": volumes, "volumes": volumes},
            )
            response.raise_for_status(not_found=podman.errors.NotFound)
        records.forget_container(self.kind, self.url, attrs["Id"])

    def start(self, name: str) -> None:
        attrs = self._attrs(name)
        state = attrs.get("State") or {}
        if state.get("Paused"):
            # Docker refuses this with 409; libpod's answer differs by version.
            raise Conflict(
                f"container {name} is paused; unpause it rather than start it",
                hint=f"ctk unpause {name}",
            )
        # A running container answers 304, which is not an error: a no-op, as in docker.
        with self._errors(container=name):
            self._post(f"/containers/{attrs['Id']}/start")

    def restart(self, name: str, *, timeout: int | None = None) -> None:
        attrs = self._attrs(name)
        self._thaw(attrs, name)
        with self._errors(container=name):
            self._post(f"/containers/{attrs['Id']}/restart", t=timeout if timeout else 10)

    def pause(self, name: str) -> None:
        attrs = self._attrs(name)
        with self._errors(container=name):
            self._post(f"/containers/{attrs['Id']}/pause")

    def unpause(self, name: str) -> None:
        attrs = self._attrs(name)
        with self._errors(container=name):
            self._post(f"/containers/{attrs['Id']}/unpause")

    def kill(self, name: str, *, signal: str | int | None = None) -> None:
        attrs = self._attrs(name)
        with self._errors(container=name):
            self._post(f"/containers/{attrs['Id']}/kill", signal=signal or "KILL")

    def exec(
        self,
        name: str,
        command: Sequence[str],
        *,
        user: str | None = None,
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        attrs = self._attrs(name)
        if not command:
            raise InvalidArgument("exec needs a command", hint="e.g. ctk exec web1 ls /")
        with self._errors(container=name):
            container = self._client.containers.prepare_model(attrs)
            exit_code, (stdout, stderr) = container.exec_run(
                list(command),
                user=user,
                workdir=workdir,
                environment=dict(env) if env else None,
                demux=True,
            )
        return ExecResult(
            exit_code=int(exit_code if exit_code is not None else -1),
            stdout=bytes(stdout or b"").decode(errors="replace"),
            stderr=bytes(stderr or b"").decode(errors="replace"),
        )

    def top(self, name: str) -> ProcessList:
        attrs = self._attrs(name)
        validation.require_running(name, attrs, "top")
        if (attrs.get("State") or {}).get("Paused"):
            # libpod answers 200 with an empty body for a paused container.
            raise Conflict(
                f"Podman cannot list the processes of paused container {name}",
                hint=f"unpause it first: ctk unpause {name}",
            )
        with self._errors(container=name):
            data = self._api.get(f"/containers/{attrs['Id']}/top", params={"stream": False})
            data.raise_for_status(not_found=podman.errors.NotFound)
        return inspection.process_list(name, data.json())

    def stats(self, name: str) -> ContainerStats:
        attrs = self._attrs(name)
        validation.require_running(name, attrs, "stats")
        with self._errors(container=name):
            # The Docker-compatible route: the same sample shape as Docker, so one formula.
            response = self._api.get(
                f"/containers/{attrs['Id']}/stats", params={"stream": False}, compatible=True
            )
            response.raise_for_status(not_found=podman.errors.NotFound)
        return inspection.stats_from_sample(response.json(), name=name, container_id=attrs["Id"])
