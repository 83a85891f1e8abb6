"""Docker backend: the only module that imports the ``docker`` SDK.

The SDK has no checkpoint methods, so the Engine API's experimental routes are called through
the SDK's own HTTP client: ``POST/GET/DELETE /containers/{id}/checkpoints`` and
``POST /containers/{id}/start?checkpoint=NAME``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import docker
import docker.errors
import requests

from toolkit import registry
from toolkit.backends import common
from toolkit.errors import (
    CheckpointNotFound,
    Conflict,
    ContainerNotFound,
    EngineError,
    EngineUnavailable,
    ImageNotFound,
    InvalidArgument,
    Unsupported,
)
from toolkit.models import (
    Checkpoint,
    CheckpointOptions,
    ContainerInfo,
    ContainerSpec,
    EngineInfo,
    ExitStatus,
    PortMapping,
    RestoreOptions,
)

DEFAULT_URL = "unix:///var/run/docker.sock"


class DockerBackend:
    """Docker Engine through the docker SDK."""

    kind = "docker"

    def __init__(self, url: str = DEFAULT_URL, *, timeout: int = 120) -> None:
        self.url = url
        try:
            self._client = docker.DockerClient(base_url=url, version="auto", timeout=timeout)
        except docker.errors.DockerException as exc:
            raise EngineUnavailable(
                f"Docker does not answer at {url}",
                hint="start it with: scripts/engines start (or pass --engine podman)",
            ) from exc
        # Any: the checkpoint routes use the SDK client's private request helpers.
        self._api: Any = self._client.api

    # -- errors ---------------------------------------------------------------------------
    @contextmanager
    def _errors(self, *, container: str | None = None, image: str | None = None) -> Iterator[None]:
        """Translate SDK and HTTP errors into ctk's tree, by class and status code."""
        try:
            yield
        except docker.errors.ImageNotFound as exc:
            raise ImageNotFound(f"no such image: {image}") from exc
        except docker.errors.NotFound as exc:
            if container is not None:
                raise ContainerNotFound(f"no such container: {container}") from exc
            raise EngineError(_explanation(exc)) from exc
        except docker.errors.APIError as exc:
            status = exc.status_code
            if status == 409 or status == 304:
                raise Conflict(_explanation(exc)) from exc
            if status == 400:
                raise InvalidArgument(_explanation(exc)) from exc
            raise EngineError(_explanation(exc)) from exc
        except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
            raise EngineUnavailable(f"Docker does not answer at {self.url}") from exc

    # -- engine ---------------------------------------------------------------------------
    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except Exception:
            return False

    def info(self) -> EngineInfo:
        with self._errors():
            data = self._client.info()
            version = self._client.version()
        experimental = bool(version.get("Experimental") or data.get("ExperimentalBuild"))
        return EngineInfo(
            kind=self.kind,
            url=self.url,
            version=str(version.get("Version", "")),
            api_version=str(version.get("ApiVersion", "")),
            experimental=experimental,
            default_runtime=str(data.get("DefaultRuntime", "")),
            # Docker's checkpoint routes exist only with experimental mode on.
            checkpoint_capable=experimental,
            root_dir=str(data.get("DockerRootDir", "")),
        )

    # -- lifecycle ------------------------------------------------------------------------
    def run(self, spec: ContainerSpec) -> ContainerInfo:
        common.validate_spec(spec)
        kwargs: dict[str, Any] = {
            "command": list(spec.command) or None,
            "name": spec.name,
            "environment": dict(spec.env),
            "labels": dict(spec.labels),
            "ports": common.sdk_ports(spec.ports),
            "detach": True,
        }
        for key, value in (
            ("network", spec.network),
            ("hostname", spec.hostname),
            ("working_dir", spec.working_dir),
            ("user", spec.user),
            ("runtime", spec.runtime),
        ):
            if value:
                kwargs[key] = value
        # create + start rather than containers.run: run pulls a missing image from a
        # registry, which is unreachable here and would turn "no such image" into a timeout.
        with self._errors(image=spec.image):
            container = self._client.containers.create(spec.image, **kwargs)
        try:
            with self._errors(container=spec.name or container.id):
                container.start()
        except Exception:
            # Never leave a half-made container behind.
            with self._errors(container=container.id):
                container.remove(force=True)
            raise
        return self.inspect(str(container.id))

    def containers(self, *, all: bool = False) -> list[ContainerInfo]:
        with self._errors():
            rows = self._api.containers(all=all)
        result: list[ContainerInfo] = []
        for row in rows:
            try:
                result.append(self.inspect(row["Id"]))
            except ContainerNotFound:
                continue  # removed between the list and the inspect
        return result

    def _attrs(self, name: str) -> dict[str, Any]:
        common.validate_ref(name, what="container")
        with self._errors(container=name):
            attrs: dict[str, Any] = self._api.inspect_container(name)
        return attrs

    def inspect(self, name: str) -> ContainerInfo:
        return _info(self._attrs(name), self.kind)

    def logs(self, name: str, *, tail: int | None = None) -> str:
        common.validate_ref(name, what="container")
        with self._errors(container=name):
            data = self._api.logs(name, stdout=True, stderr=True, tail=tail if tail else "all")
        return bytes(data).decode(errors="replace")

    def follow_logs(self, name: str) -> Iterator[str]:
        common.validate_ref(name, what="container")
        with self._errors(container=name):
            stream = self._api.logs(name, stdout=True, stderr=True, stream=True, follow=True)
            for chunk in stream:
                yield bytes(chunk).decode(errors="replace")

    def wait(self, name: str) -> int:
        common.validate_ref(name, what="container")
        with self._errors(container=name):
            result = self._api.wait(name, timeout=None)
        return int(result.get("StatusCode", 0))

    def stop(self, name: str, *, timeout: int | None = None) -> None:
        common.validate_ref(name, what="container")
        with self._errors(container=name):
            self._api.stop(name, timeout=timeout if timeout is not None else 10)

    def remove(self, name: str, *, force: bool = False) -> None:
        attrs = self._attrs(name)
        with self._errors(container=name):
            self._api.remove_container(attrs["Id"], force=force)
        registry.forget_container(self.kind, self.url, attrs["Id"])

    # -- checkpoint / restore -------------------------------------------------------------
    def _require_checkpoint_support(self) -> None:
        if not self.info().experimental:
            raise Unsupported(
                "Docker's checkpoint API needs experimental mode",
                hint='set {"experimental": true} in /etc/docker/daemon.json and restart dockerd '
                "(scripts/setup and scripts/engines start do this)",
            )

    def checkpoint(self, name: str, options: CheckpointOptions) -> Checkpoint:
        attrs = self._attrs(name)
        cp_name = options.name or registry.new_checkpoint_name()
        common.validate_checkpoint_name(cp_name)
        if not attrs["State"]["Running"] or attrs["State"].get("Paused"):
            raise Conflict(
                f"container {name} is not running; only a running container can be checkpointed",
                hint=f"start it first: ctk start {name}",
            )
        existing = {c["Name"] for c in self._list_checkpoints(attrs["Id"])}
        if cp_name in existing:
            raise Conflict(
                f"checkpoint {cp_name} already exists for {name}",
                hint=f"pick another --name or remove it: ctk checkpoint rm {name} {cp_name}",
            )
        self._require_checkpoint_support()
        if options.tcp_established or options.file_locks:
            # Docker's checkpoint API has no such switches; runc reads them from CRIU's
            # per-container config, which a later issue wires up.
            raise Unsupported(
                "Docker's checkpoint API cannot pass --tcp-established/--file-locks to CRIU",
                hint="use --engine podman for containers with open TCP connections or file locks",
            )
        body = {"CheckpointID": cp_name, "Exit": not options.leave_running}
        try:
            response = self._api._post_json(
                self._api._url("/containers/{0}/checkpoints", attrs["Id"]), data=body
            )
            self._api._raise_for_status(response)
        except docker.errors.APIError as exc:
            self._ensure_running_after_failure(attrs["Id"])
            message = _explanation(exc)
            raise common.criu_error("checkpoint", name, message) from exc
        except requests.exceptions.ConnectionError as exc:
            raise EngineUnavailable(f"Docker does not answer at {self.url}") from exc
        record = registry.record_checkpoint(self.kind, self.url, attrs["Id"], cp_name)
        return Checkpoint(name=cp_name, container=name, engine=self.kind, created=record.created)

    def _ensure_running_after_failure(self, container_id: str) -> None:
        # A failed dump must leave the container running: runc resumes it, but if the task
        # died we start it again rather than leave the user with a stopped service.
        try:
            attrs = self._api.inspect_container(container_id)
            if not attrs["State"]["Running"]:
                self._api.start(container_id)
        except docker.errors.APIError:
            pass

    def _list_checkpoints(self, container_id: str) -> list[dict[str, Any]]:
        with self._errors(container=container_id):
            response = self._api._get(self._api._url("/containers/{0}/checkpoints", container_id))
            rows = self._api._result(response, json=True)
        return list(rows or [])

    def checkpoints(self, name: str) -> list[Checkpoint]:
        attrs = self._attrs(name)
        present = [c["Name"] for c in self._list_checkpoints(attrs["Id"])]
        return registry.ordered(self.kind, self.url, attrs["Id"], present, container=name)

    def remove_checkpoint(self, name: str, checkpoint: str) -> None:
        attrs = self._attrs(name)
        common.validate_checkpoint_name(checkpoint)
        if checkpoint not in {c["Name"] for c in self._list_checkpoints(attrs["Id"])}:
            raise CheckpointNotFound(f"no checkpoint {checkpoint} for container {name}")
        with self._errors(container=name):
            response = self._api._delete(
                self._api._url("/containers/{0}/checkpoints/{1}", attrs["Id"], checkpoint)
            )
            self._api._raise_for_status(response)
        registry.forget_checkpoint(self.kind, self.url, attrs["Id"], checkpoint)

    def restore(self, name: str, options: RestoreOptions) -> ContainerInfo:
        attrs = self._attrs(name)
        if attrs["State"]["Running"]:
            raise Conflict(
                f"container {name} is running; restore replaces its processes",
                hint=f"stop it first: ctk stop {name}",
            )
        available = self.checkpoints(name)
        chosen = common.choose_checkpoint(name, available, options.checkpoint)
        try:
            response = self._api._post(
                self._api._url("/containers/{0}/start", attrs["Id"]),
                params={"checkpoint": chosen.name},
            )
            self._api._raise_for_status(response)
        except docker.errors.APIError as exc:
            raise common.criu_error("restore", name, _explanation(exc)) from exc
        except requests.exceptions.ConnectionError as exc:
            raise EngineUnavailable(f"Docker does not answer at {self.url}") from exc
        return self.inspect(attrs["Id"])

    def kill(self, name: str, *, signal: str = "KILL") -> None:
        common.validate_ref(name, what="container")
        with self._errors(container=name):
            self._api.kill(name, signal=signal)

    def exit_status(self, name: str) -> ExitStatus:
        return common.exit_status_from_state(self._attrs(name).get("State") or {})

    def close(self) -> None:
        self._client.close()


def _explanation(exc: docker.errors.APIError) -> str:
    text = exc.explanation or str(exc)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text).strip()


def _info(attrs: dict[str, Any], engine: str) -> ContainerInfo:
    config = attrs.get("Config") or {}
    state = attrs.get("State") or {}
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    return ContainerInfo(
        id=attrs["Id"],
        name=str(attrs.get("Name", "")).lstrip("/"),
        image=str(config.get("Image", "")),
        image_id=common.normalize_image_id(str(attrs.get("Image", ""))),
        status=common.status_of(state),
        running=bool(state.get("Running")),
        command=tuple(config.get("Cmd") or ()),
        created=str(attrs.get("Created", "")),
        ports=common.ports_from_inspect(ports),
        labels=dict(config.get("Labels") or {}),
        engine=engine,
    )


__all__ = ["DEFAULT_URL", "DockerBackend", "PortMapping"]
