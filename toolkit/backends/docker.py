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
import docker.types
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
    NetworkNotFound,
    Unsupported,
)
from toolkit.models import (
    Checkpoint,
    CheckpointOptions,
    ContainerInfo,
    ContainerSpec,
    EngineInfo,
    NetworkInfo,
    NetworkSpec,
    PortMapping,
    RestoreOptions,
)

DEFAULT_URL = "unix:///var/run/docker.sock"

# See DockerBackend.restore: a known dockerd race, retried.
_UPLOAD_RACE = "failed to upload checkpoint to containerd"
_RESTORE_ATTEMPTS = 4


class DockerBackend:
    """Docker Engine through the docker SDK."""

    kind = "docker"

    def __init__(self, url: str = DEFAULT_URL, *, timeout: int = 120) -> None:
        self.url = url
        try:
            self._client = docker.DockerClient(
                base_url=url,
                version="auto",
                timeout=timeout,
                # ssh:// through the system's ssh client, as the docker CLI does: it reads
                # /etc/ssh/ssh_config.d (keys, known hosts); paramiko reads ~/.ssh/config only.
                use_ssh_client=url.startswith("ssh://"),
            )
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
        for attempt in range(_RESTORE_ATTEMPTS):
            try:
                response = self._api._post(
                    self._api._url("/containers/{0}/start", attrs["Id"]),
                    params={"checkpoint": chosen.name},
                )
                self._api._raise_for_status(response)
                break
            except docker.errors.APIError as exc:
                message = _explanation(exc)
                # moby#42900: dockerd sometimes fails to hand the checkpoint to containerd
                # ("commit failed: content sha256:...: already exists") before CRIU even
                # runs; nothing has changed, and the same start succeeds when asked again.
                if _UPLOAD_RACE in message and attempt + 1 < _RESTORE_ATTEMPTS:
                    continue
                raise common.criu_error("restore", name, message) from exc
            except requests.exceptions.ConnectionError as exc:
                raise EngineUnavailable(f"Docker does not answer at {self.url}") from exc
        return self.inspect(attrs["Id"])

    def close(self) -> None:
        self._client.close()

    # -- networks -------------------------------------------------------------------------
    @contextmanager
    def _network_errors(self, network: str, *, container: str | None = None) -> Iterator[None]:
        """Like ``_errors``, but a 404 names the network and a 403 (a built-in network, or one
        with containers) is a Conflict. Callers look the container up first, so a 404 here
        is the network's."""
        try:
            yield
        except docker.errors.NotFound as exc:
            raise NetworkNotFound(f"no such network: {network}") from exc
        except docker.errors.APIError as exc:
            if exc.status_code == 403:
                raise Conflict(
                    _explanation(exc),
                    hint=f"see what uses it: ctk network inspect {network}",
                ) from exc
            with self._errors(container=container):
                raise

    def networks(self) -> list[NetworkInfo]:
        with self._errors():
            rows = self._api.networks()
        result: list[NetworkInfo] = []
        for row in sorted(rows, key=lambda r: str(r.get("Name", ""))):
            try:
                result.append(self.inspect_network(str(row["Id"])))
            except NetworkNotFound:
                continue  # removed between the list and the inspect
        return result

    def create_network(self, spec: NetworkSpec) -> NetworkInfo:
        common.validate_network_spec(spec)
        if spec.driver == "overlay":
            self._require_swarm_manager()
        ipam = None
        if spec.subnet:
            pool = docker.types.IPAMPool(subnet=spec.subnet, gateway=spec.gateway)
            ipam = docker.types.IPAMConfig(pool_configs=[pool])
        with self._network_errors(spec.name):
            existing = self._api.networks(names=[spec.name])
            if any(row.get("Name") == spec.name for row in existing):
                raise Conflict(
                    f"network {spec.name} already exists",
                    hint=f"pick another name or remove it: ctk network rm {spec.name}",
                )
            created = self._api.create_network(
                spec.name,
                driver=spec.driver,
                ipam=ipam,
                internal=spec.internal,
                labels=dict(spec.labels) or None,
                attachable=spec.attachable or None,
                check_duplicate=True,
            )
        return self.inspect_network(str(created["Id"]))

    def _require_swarm_manager(self) -> None:
        # Overlay networks live in swarm's store: without a manager Docker refuses them.
        with self._errors():
            swarm = self._client.info().get("Swarm") or {}
        if not swarm.get("ControlAvailable"):
            raise Unsupported(
                "overlay networks need this Docker to be a swarm manager",
                hint="docker swarm init --advertise-addr 127.0.0.1 (undo: docker swarm leave "
                "--force), or use a bridge network per host",
            )

    def inspect_network(self, name: str) -> NetworkInfo:
        common.validate_ref(name, what="network")
        with self._network_errors(name):
            data = self._api.inspect_network(name)
        return common.network_from_inspect(data, self.kind)

    def remove_network(self, name: str) -> None:
        common.validate_ref(name, what="network")
        with self._network_errors(name):
            self._api.remove_network(name)

    def connect_network(
        self, network: str, container: str, *, aliases: tuple[str, ...] = ()
    ) -> None:
        common.validate_ref(network, what="network")
        attrs = self._attrs(container)
        with self._network_errors(network, container=container):
            self._api.connect_container_to_network(
                attrs["Id"], network, aliases=list(aliases) or None
            )

    def disconnect_network(self, network: str, container: str, *, force: bool = False) -> None:
        common.validate_ref(network, what="network")
        attrs = self._attrs(container)
        with self._network_errors(network, container=container):
            self._api.disconnect_container_from_network(attrs["Id"], network, force=force)

    def prune_networks(self, *, labels: dict[str, str] | None = None) -> list[str]:
        filters = {"label": [f"{k}={v}" for k, v in (labels or {}).items()]} if labels else None
        with self._errors():
            result = self._api.prune_networks(filters=filters)
        return sorted(result.get("NetworksDeleted") or [])


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
