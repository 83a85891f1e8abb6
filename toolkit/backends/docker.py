"""Docker backend: the only module that imports the ``docker`` SDK.

The SDK has no checkpoint methods, so the Engine API's experimental routes are called through
the SDK's own HTTP client: ``POST/GET/DELETE /containers/{id}/checkpoints`` and
``POST /containers/{id}/start?checkpoint=NAME``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import docker.tls
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
    Unsupported,
)
from toolkit.models import (
    Checkpoint,
    CheckpointOptions,
    ContainerInfo,
    ContainerSpec,
    ContainerStats,
    EngineInfo,
    ExecResult,
    PortMapping,
    ProcessList,
    RestoreOptions,
)

if TYPE_CHECKING:
    from toolkit.config import TLSOptions

DEFAULT_URL = "unix:///var/run/docker.sock"


class DockerBackend:
    """Docker Engine through the docker SDK."""

    kind = "docker"

    def __init__(
        self, url: str = DEFAULT_URL, *, timeout: int = 120, tls: TLSOptions | None = None
    ) -> None:
        self.url = url
        extra: dict[str, Any] = {}
        if url.startswith("ssh://") and shutil.which("ssh"):
            # The ssh command, like docker's CLI: it honours ~/.ssh/config and the agent.
            extra["use_ssh_client"] = True
        try:
            if tls is not None and tls.enabled:
                client_cert = (tls.cert, tls.key) if tls.cert and tls.key else None
                extra["tls"] = docker.tls.TLSConfig(
                    client_cert=client_cert,
                    ca_cert=tls.ca_cert,
                    verify=tls.ca_cert if tls.verify and tls.ca_cert else tls.verify,
                )
            own_ca = tls is not None and bool(tls.ca_cert)
            with _ca_bundle_env_hidden() if own_ca else contextlib.nullcontext():
                self._client = docker.DockerClient(
                    base_url=url, version="auto", timeout=timeout, **extra
                )
            if own_ca:
                # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a session's CA, so
                # the engine's own CA would never be used where those are set.
                self._client.api.trust_env = False
        except docker.errors.TLSParameterError as exc:
            raise InvalidArgument(
                f"bad TLS options for {url}: {str(exc).split('.')[0]}",
                hint="--tlscacert, --tlscert and --tlskey must name readable PEM files; "
                "--tlscert and --tlskey go together",
            ) from exc
        except docker.errors.DockerException as exc:
            if url == DEFAULT_URL:
                raise EngineUnavailable(
                    f"Docker does not answer at {url}",
                    hint="start it with: scripts/engines start (or pass --engine podman)",
                ) from exc
            raise common.unavailable(self.kind, url) from exc
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
            raise common.unavailable(self.kind, self.url) from exc

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
        container = self._create(spec)
        try:
            with self._errors(container=spec.name or container.id):
                container.start()
        except Exception:
            # Never leave a half-made container behind.
            with self._errors(container=container.id):
                container.remove(force=True, v=True)
            raise
        return self.inspect(str(container.id))

    def create(self, spec: ContainerSpec) -> ContainerInfo:
        return self.inspect(str(self._create(spec).id))

    def _create(self, spec: ContainerSpec) -> Any:
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
        if spec.volumes:
            kwargs["mounts"] = [
                docker.types.Mount(
                    target=m.target,
                    source=m.source,
                    type="bind" if m.type == "bind" else "volume",
                    read_only=m.read_only,
                )
                for m in spec.volumes
            ]
        policy = common.restart_policy(spec.restart)
        if policy is not None:
            kwargs["restart_policy"] = policy
        if spec.memory:
            kwargs["mem_limit"] = spec.memory
        if spec.cpus:
            kwargs["nano_cpus"] = int(spec.cpus * 1e9)
        if spec.ulimits:
            kwargs["ulimits"] = [
                docker.types.Ulimit(name=u.name, soft=u.soft, hard=u.hard) for u in spec.ulimits
            ]
        if spec.auto_remove:
            kwargs["auto_remove"] = True
        # create + start rather than containers.run: run pulls a missing image from a
        # registry, which is unreachable here and would turn "no such image" into a timeout.
        with self._errors(image=spec.image):
            return self._client.containers.create(spec.image, **kwargs)

    def containers(
        self, *, all: bool = False, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[ContainerInfo]:
        wanted = common.validate_filters(filters)
        with self._errors():
            rows = self._api.containers(all=all, filters=wanted or None)
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
        return common.with_checkpoints(_info(self._attrs(name), self.kind), self.url)

    def logs(self, name: str, *, tail: int | None = None, since: int | None = None) -> str:
        common.validate_ref(name, what="container")
        # The SDK refuses since=0, which means "from the start" anyway.
        extra: dict[str, Any] = {"since": since} if since else {}
        with self._errors(container=name):
            data = self._api.logs(
                name, stdout=True, stderr=True, tail=tail if tail else "all", **extra
            )
        return bytes(data).decode(errors="replace")

    def follow_logs(
        self, name: str, *, tail: int | None = None, since: int | None = None
    ) -> Iterator[str]:
        common.validate_ref(name, what="container")
        # The SDK refuses since=0, which means "from the start" anyway.
        extra: dict[str, Any] = {"since": since} if since else {}
        with self._errors(container=name):
            stream = self._api.logs(
                name,
                stdout=True,
                stderr=True,
                stream=True,
                follow=True,
                tail=tail if tail else "all",
                **extra,
            )
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

    def remove(self, name: str, *, force: bool = False, volumes: bool = False) -> None:
        attrs = self._attrs(name)
        with self._errors(container=name):
            self._api.remove_container(attrs["Id"], force=force, v=volumes)
        registry.forget_container(self.kind, self.url, attrs["Id"])

    def start(self, name: str) -> None:
        common.validate_ref(name, what="container")
        # A running container answers 304, which the SDK does not raise: a no-op, as in docker.
        with self._errors(container=name):
            self._api.start(name)

    def restart(self, name: str, *, timeout: int | None = None) -> None:
        common.validate_ref(name, what="container")
        with self._errors(container=name):
            self._api.restart(name, timeout=timeout if timeout is not None else 10)

    def pause(self, name: str) -> None:
        common.validate_ref(name, what="container")
        with self._errors(container=name):
            self._api.pause(name)

    def unpause(self, name: str) -> None:
        attrs = self._attrs(name)
        # Docker 20.10 answers "is not paused" with a bare 500; the state says it plainly.
        common.require_paused(name, attrs)
        with self._errors(container=name):
            self._api.unpause(attrs["Id"])

    def kill(self, name: str, *, signal: str | int | None = None) -> None:
        common.validate_ref(name, what="container")
        with self._errors(container=name):
            self._api.kill(name, signal=signal)

    def exec(
        self,
        name: str,
        command: Sequence[str],
        *,
        user: str | None = None,
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        common.validate_ref(name, what="container")
        if not command:
            raise InvalidArgument("exec needs a command", hint="e.g. ctk exec web1 ls /")
        with self._errors(container=name):
            created = self._api.exec_create(
                name,
                list(command),
                user=user or "",
                workdir=workdir,
                environment=dict(env) if env else None,
            )
            stdout, stderr = self._api.exec_start(created["Id"], demux=True)
            exit_code = self._api.exec_inspect(created["Id"]).get("ExitCode")
        return ExecResult(
            exit_code=int(exit_code if exit_code is not None else -1),
            stdout=bytes(stdout or b"").decode(errors="replace"),
            stderr=bytes(stderr or b"").decode(errors="replace"),
        )

    def top(self, name: str) -> ProcessList:
        attrs = self._require_running(name, "top")
        with self._errors(container=name):
            data = self._api.top(attrs["Id"])
        return common.process_list(name, data)

    def stats(self, name: str) -> ContainerStats:
        attrs = self._require_running(name, "stats")
        with self._errors(container=name):
            # stream=False waits for a second sample, so precpu_stats gives a CPU delta.
            sample = self._api.stats(attrs["Id"], stream=False)
        return common.stats_from_sample(sample, name=name, container_id=attrs["Id"])

    def _require_running(self, name: str, action: str) -> dict[str, Any]:
        attrs = self._attrs(name)
        common.require_running(name, attrs, action)
        return attrs

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
            raise common.unavailable(self.kind, self.url) from exc
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
            raise common.unavailable(self.kind, self.url) from exc
        return self.inspect(attrs["Id"])

    def close(self) -> None:
        self._client.close()


@contextmanager
def _ca_bundle_env_hidden() -> Iterator[None]:
    """Hide the CA bundle variables while the client fetches the API version on creation."""
    saved = {
        k: os.environ.pop(k) for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if k in os.environ
    }
    try:
        yield
    finally:
        os.environ.update(saved)


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
        **common.lifecycle_fields(attrs),
    )


__all__ = ["DEFAULT_URL", "DockerBackend", "PortMapping"]
