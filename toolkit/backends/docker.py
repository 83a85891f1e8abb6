"""Docker backend: the only module that imports the ``docker`` SDK.

The SDK has no checkpoint methods, so the Engine API's experimental routes are called through
the SDK's own HTTP client: ``POST/GET/DELETE /containers/{id}/checkpoints`` and
``POST /containers/{id}/start?checkpoint=NAME``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import os
import shutil
import sys
import tarfile
import tempfile
import time
import types
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any


class _Deferred(types.ModuleType):
    """Stands in for a module in ``sys.modules`` and imports it when an attribute is read."""

    def __getattr__(self, attr: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        self.__dict__.update(vars(real))
        return getattr(real, attr)


def _defer_paramiko() -> None:
    """The docker SDK imports paramiko (0.2 s here) at import time, used only for ssh://
    without an ssh command; ctk's CLI pays that on every call unless it waits for a use."""
    if "paramiko" not in sys.modules and importlib.util.find_spec("paramiko") is not None:
        sys.modules["paramiko"] = _Deferred("paramiko")


_defer_paramiko()

import docker
import docker.errors
import docker.tls
import docker.types
import requests

from toolkit import archive, records
from toolkit.archive.changes import write_changes
from toolkit.backends import DEFAULT_URLS, inspection, shared, validation
from toolkit.backends.options import restart_policy, sdk_ports
from toolkit.criu import diagnosis
from toolkit.errors import (
    ArchiveError,
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
    ArchiveInfo,
    Checkpoint,
    CheckpointOptions,
    ContainerInfo,
    ContainerSpec,
    ContainerStats,
    EngineInfo,
    ExecResult,
    ExitStatus,
    ExportOptions,
    ImportOptions,
    NetworkInfo,
    NetworkSpec,
    PortMapping,
    ProcessList,
    RestoreOptions,
)

if TYPE_CHECKING:
    from toolkit.config import TLSOptions

DEFAULT_URL = DEFAULT_URLS["docker"]


class DockerBackend:
    """Docker Engine through the docker SDK."""

    kind = "docker"

    def __init__(
        self, url: str = DEFAULT_URL, *, timeout: int = 120, tls: TLSOptions | None = None
    ) -> None:
        self.url = url
        extra: dict[str, Any] = {}
        if url.startswith("ssh://") and shutil.which("ssh"):
            # The ssh command, as docker's CLI does: it reads the system's and the user's
            # ssh_config (keys, known hosts) and the agent; paramiko reads ~/.ssh/config only.
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
            raise shared.unavailable(self.kind, url) from exc
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
            raise shared.unavailable(self.kind, self.url) from exc

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
        validation.validate_spec(spec)
        kwargs: dict[str, Any] = {
            "command": list(spec.command) or None,
            "name": spec.name,
            "environment": dict(spec.env),
            "labels": dict(spec.labels),
            "ports": sdk_ports(spec.ports),
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
        policy = restart_policy(spec.restart)
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
        wanted = validation.validate_filters(filters)
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
        validation.validate_ref(name, what="container")
        with self._errors(container=name):
            attrs: dict[str, Any] = self._api.inspect_container(name)
        return attrs

    def inspect(self, name: str) -> ContainerInfo:
        return shared.with_checkpoints(_info(self._attrs(name), self.kind), self.url)

    def logs(self, name: str, *, tail: int | None = None, since: int | None = None) -> str:
        validation.validate_ref(name, what="container")
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
        validation.validate_ref(name, what="container")
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
        validation.validate_ref(name, what="container")
        with self._errors(container=name):
            result = self._api.wait(name, timeout=None)
        return int(result.get("StatusCode", 0))

    def stop(self, name: str, *, timeout: int | None = None) -> None:
        validation.validate_ref(name, what="container")
        with self._errors(container=name):
            self._api.stop(name, timeout=timeout if timeout is not None else 10)

    def remove(self, name: str, *, force: bool = False, volumes: bool = False) -> None:
        attrs = self._attrs(name)
        with self._errors(container=name):
            self._api.remove_container(attrs["Id"], force=force, v=volumes)
        records.forget_container(self.kind, self.url, attrs["Id"])

    def start(self, name: str) -> None:
        validation.validate_ref(name, what="container")
        # A running container answers 304, which the SDK does not raise: a no-op, as in docker.
        with self._errors(container=name):
            self._api.start(name)

    def restart(self, name: str, *, timeout: int | None = None) -> None:
        validation.validate_ref(name, what="container")
        with self._errors(container=name):
            self._api.restart(name, timeout=timeout if timeout is not None else 10)

    def pause(self, name: str) -> None:
        validation.validate_ref(name, what="container")
        with self._errors(container=name):
            self._api.pause(name)

    def unpause(self, name: str) -> None:
        attrs = self._attrs(name)
        # Docker 20.10 answers "is not paused" with a bare 500; the state says it plainly.
        validation.require_paused(name, attrs)
        with self._errors(container=name):
            self._api.unpause(attrs["Id"])

    def kill(self, name: str, *, signal: str | int | None = None) -> None:
        validation.validate_ref(name, what="container")
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
        validation.validate_ref(name, what="container")
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
        return inspection.process_list(name, data)

    def stats(self, name: str) -> ContainerStats:
        attrs = self._require_running(name, "stats")
        with self._errors(container=name):
            # stream=False waits for a second sample, so precpu_stats gives a CPU delta.
            sample = self._api.stats(attrs["Id"], stream=False)
        return inspection.stats_from_sample(sample, name=name, container_id=attrs["Id"])

    def _require_running(self, name: str, action: str) -> dict[str, Any]:
        attrs = self._attrs(name)
        validation.require_running(name, attrs, action)
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
        cp_name = options.name or records.new_checkpoint_name()
        validation.validate_checkpoint_name(cp_name)
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

        def post() -> None:
            response = self._api._post_json(
                self._api._url("/containers/{0}/checkpoints", attrs["Id"]), data=body
            )
            self._api._raise_for_status(response)

        try:
            # A dump that stopped the container cannot be taken again.
            self._retry_blob_race(post, lambda: self._is_running(attrs["Id"]))
        except docker.errors.APIError as exc:
            self._ensure_running_after_failure(attrs["Id"])
            message = _explanation(exc)
            raise diagnosis.criu_error("checkpoint", name, message) from exc
        except requests.exceptions.ConnectionError as exc:
            raise shared.unavailable(self.kind, self.url) from exc
        record = records.record_checkpoint(self.kind, self.url, attrs["Id"], cp_name)
        return Checkpoint(name=cp_name, container=name, engine=self.kind, created=record.created)

    def _is_running(self, container_id: str) -> bool:
        try:
            return bool(self._api.inspect_container(container_id)["State"]["Running"])
        except docker.errors.APIError:
            return False

    @staticmethod
    def _retry_blob_race(call: Callable[[], None], may_retry: Callable[[], bool]) -> None:
        """Runs ``call``, again while it fails on containerd's blob race and ``may_retry()``.

        dockerd uploads checkpoint data to containerd's content store and, on restore, the
        checkpoint as a tar; a blob of the same digest that was deleted but not yet garbage
        collected makes the upload fail with "commit failed: content ...: already exists"
        (moby#42900). A restore right after a checkpoint re-uploads the very tar that the
        checkpoint produced; a checkpoint re-uploads the container's unchanged spec. The
        collector frees the blob within about a second (scripts/engines configures it to
        do so at once), so waiting and retrying succeeds. Nothing changed on a failed
        upload, except that a dump with Exit may already have stopped the container,
        which ``may_retry`` reports.
        """
        for delay in (*_BLOB_RACE_DELAYS, None):
            try:
                call()
                return
            except docker.errors.APIError as exc:
                message = _explanation(exc)
                race = "content sha256:" in message and "already exists" in message
                if delay is None or not race or not may_retry():
                    raise
                time.sleep(delay)

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
        return records.ordered(self.kind, self.url, attrs["Id"], present, container=name)

    def remove_checkpoint(self, name: str, checkpoint: str) -> None:
        attrs = self._attrs(name)
        validation.validate_checkpoint_name(checkpoint)
        if checkpoint not in {c["Name"] for c in self._list_checkpoints(attrs["Id"])}:
            raise CheckpointNotFound(f"no checkpoint {checkpoint} for container {name}")
        with self._errors(container=name):
            response = self._api._delete(
                self._api._url("/containers/{0}/checkpoints/{1}", attrs["Id"], checkpoint)
            )
            self._api._raise_for_status(response)
        records.forget_checkpoint(self.kind, self.url, attrs["Id"], checkpoint)

    def restore(self, name: str, options: RestoreOptions) -> ContainerInfo:
        attrs = self._attrs(name)
        if attrs["State"]["Running"]:
            raise Conflict(
                f"container {name} is running; restore replaces its processes",
                hint=f"stop it first: ctk stop {name}",
            )
        available = self.checkpoints(name)
        chosen = validation.choose_checkpoint(name, available, options.checkpoint)
        try:
            self._start_from_checkpoint(attrs["Id"], chosen.name)
        except docker.errors.APIError as exc:
            raise diagnosis.criu_error("restore", name, _explanation(exc)) from exc
        except requests.exceptions.ConnectionError as exc:
            raise shared.unavailable(self.kind, self.url) from exc
        return self.inspect(attrs["Id"])

    def exit_status(self, name: str) -> ExitStatus:
        return inspection.exit_status_from_state(self._attrs(name).get("State") or {})

    def _start_from_checkpoint(self, container_id: str, checkpoint: str) -> None:
        """``POST /containers/{id}/start?checkpoint=NAME``, retried on containerd's blob race."""

        def start() -> None:
            response = self._api._post(
                self._api._url("/containers/{0}/start", container_id),
                params={"checkpoint": checkpoint},
            )
            self._api._raise_for_status(response)

        self._retry_blob_race(start, lambda: True)

    # -- archives -------------------------------------------------------------------------
    @contextmanager
    def _helper(self, image: str, binds: dict[str, str]) -> Iterator[str]:
        """A created, never started container that bind-mounts daemon paths for the archive API.

        This reaches ``<DockerRootDir>/containers/<id>`` through the engine itself, so it works
        on a remote daemon too; the command is never run.
        """
        host_config = self._api.create_host_config(
            binds=[f"{source}:{target}" for source, target in binds.items()],
            network_mode="none",
        )
        with self._errors(image=image):
            created = self._api.create_container(
                image,
                command=["/ctk-helper-never-started"],
                name=f"ctk-helper-{uuid.uuid4().hex[:12]}",
                labels={"ctk.helper": "1"},
                host_config=host_config,
                network_disabled=True,
            )
        try:
            yield str(created["Id"])
        finally:
            with contextlib.suppress(docker.errors.APIError, requests.exceptions.RequestException):
                self._api.remove_container(created["Id"], force=True, v=False)

    def _fetch(self, container: str, path: str, out: Path) -> None:
        with self._errors(container=container):
            stream, _stat = self._api.get_archive(container, path)
            with out.open("wb") as handle:
                for chunk in stream:
                    handle.write(chunk)

    def _fetch_changes(self, container_id: str, out: Path, stage: Path) -> list[str]:
        """The container's rootfs changes: changed and added files into ``out``; deleted paths.

        Only leaves are fetched (a changed directory's listed children come on their own), so an
        added file in /etc does not drag the whole of /etc along.
        """
        with self._errors(container=container_id):
            changes = self._api.diff(container_id) or []
        return write_changes(
            changes, lambda path, part: self._fetch(container_id, path, part), out, stage
        )

    def export_checkpoint(
        self, name: str, dest: str | os.PathLike[str], options: ExportOptions
    ) -> ArchiveInfo:
        """Checkpoint ``name`` into a ctk archive at ``dest``.

        Docker has no export: ctk checkpoints through the API, fetches the checkpoint files
        through a helper container that bind-mounts the container's directory, and adds the
        rootfs changes (``/containers/{id}/changes`` + ``get_archive``) and the create spec.

        Raises:
            InvalidArgument: unknown compression or unusable ``dest`` (container untouched).
            CheckpointError: CRIU failed; the container keeps running.
        """
        archive.validate_compression(options.compression)
        path = archive.check_destination(dest)
        attrs = self._attrs(name)
        engine = self.info()
        timings: dict[str, float] = {}
        with archive.staging_dir(path) as stage:
            started = time.monotonic()
            cp = self.checkpoint(name, options.checkpoint)
            timings["checkpoint"] = round(time.monotonic() - started, 3)
            try:
                started = time.monotonic()
                cp_tar = stage / DOCKER_CHECKPOINT
                source = f"{engine.root_dir}/containers/{attrs['Id']}"
                with self._helper(attrs["Image"], {source: "/ctk/container"}) as helper:
                    self._fetch(helper, f"/ctk/container/checkpoints/{cp.name}", cp_tar)
                rootfs_tar = stage / DOCKER_ROOTFS
                deleted = self._fetch_changes(attrs["Id"], rootfs_tar, stage)
                timings["fetch"] = round(time.monotonic() - started, 3)
                manifest = shared.archive_manifest(
                    engine=engine,
                    attrs=attrs,
                    info=_info(attrs, self.kind),
                    checkpoint=cp.name,
                    engine_data={"deleted": deleted, "storage_driver": engine_driver(self)},
                )
                result = archive.write_archive(
                    path,
                    manifest,
                    [(DOCKER_CHECKPOINT, cp_tar), (DOCKER_ROOTFS, rootfs_tar)],
                    compression=options.compression,
                )
            except BaseException:
                if not options.checkpoint.leave_running:
                    # The dump stopped the container but no archive came of it: put it back.
                    with contextlib.suppress(Exception):
                        self.restore(attrs["Id"], RestoreOptions(checkpoint=cp.name))
                raise
        return dataclasses.replace(result, timings={**timings, **result.timings})

    def _create_stopped(
        self,
        spec: ContainerSpec,
        image: str,
        *,
        ipc_mode: str | None = None,
        binds: dict[str, str] | None = None,
    ) -> str:
        """Create (never start) ``spec`` from ``image``; the new ID.

        ``binds`` is ``{host path: container path}``.
        """
        ports = sdk_ports(spec.ports)
        host_config = self._api.create_host_config(
            port_bindings=ports or None,
            network_mode=spec.network or None,
            runtime=spec.runtime or None,
            ipc_mode=ipc_mode,
            binds=[f"{src}:{dst}" for src, dst in (binds or {}).items()] or None,
        )
        with self._errors(image=image):
            created = self._api.create_container(
                image,
                command=list(spec.command) or None,
                name=spec.name,
                environment=dict(spec.env),
                labels=dict(spec.labels),
                ports=[tuple(k.split("/")) for k in ports] or None,
                host_config=host_config,
                hostname=spec.hostname,
                working_dir=spec.working_dir,
                user=spec.user,
            )
        return str(created["Id"])

    def import_checkpoint(
        self, archive_path: str | os.PathLike[str], options: ImportOptions
    ) -> ContainerInfo:
        """Create a container from a ctk archive made on Docker and start it from the checkpoint.

        Every member is verified before anything is created. Then: create the container from
        the archived spec, apply the rootfs changes (``put_archive``; deletions as overlay
        whiteouts in the container's upper directory), place the checkpoint in
        ``<DockerRootDir>/containers/<id>/checkpoints/`` through a helper container, and start
        from it. A failure removes the container the import made.

        Raises:
            ArchiveError: the archive is corrupt or hostile (nothing created).
            ImageNotFound: the checkpoint's image ID is not here.
            Conflict: a container with the target name exists.
            Unsupported: CRIU options Docker cannot pass, or deletions on a non-overlay2 daemon.
            CheckpointError: CRIU failed to restore (nothing left behind).
        """
        if options.name is not None:
            validation.validate_ref(options.name, what="container")
        if options.tcp_established or options.file_locks:
            raise Unsupported(
                "Docker's API cannot pass --tcp-established/--file-locks to CRIU",
                hint="use --engine podman for containers with open TCP connections or file locks",
            )
        with archive.open_archive(archive_path) as verified:
            manifest = verified.manifest
            validation.require_archive_engine(manifest, self.kind, str(archive_path))
            cp_tar = verified.member(DOCKER_CHECKPOINT)
            rootfs_tar = verified.member(DOCKER_ROOTFS)
            cp_names = archive.check_nested_tar(cp_tar, what="docker checkpoint")
            archive.check_nested_tar(rootfs_tar, what="rootfs changes", allow_symlinks=True)
            deleted = _checked_deletions(manifest.engine_data.get("deleted") or [])
            validation.validate_checkpoint_name(manifest.checkpoint)
            self._require_checkpoint_support()
            engine = self.info()
            image = self._local_image(manifest.image, manifest.image_id)
            spec = archive.spec_from_dict(manifest.spec)
            spec = dataclasses.replace(
                spec,
                name=options.name or manifest.container_name,
                ports=options.ports or spec.ports,
            )
            validation.validate_spec(spec)
            if deleted and engine_driver(self) != "overlay2":
                raise Unsupported(
                    "the archive deletes files, which ctk applies as overlay2 whiteouts; this "
                    f"daemon uses {engine_driver(self)}",
                )
            if spec.name and self._exists(spec.name):
                raise Conflict(
                    f"a container named {spec.name} exists already",
                    hint="import under another name: ctk restore --import FILE --name NEW",
                )
            placed = verified.directory / "placed.tar"
            _rename_checkpoint(cp_tar, placed, cp_names, manifest.checkpoint)
            new_id = self._create_stopped(spec, image)
            try:
                with self._errors(container=new_id), rootfs_tar.open("rb") as data:
                    self._api.put_archive(new_id, "/", data)
                binds = {f"{engine.root_dir}/containers/{new_id}": "/ctk/container"}
                if deleted:
                    upper = self._api.inspect_container(new_id)["GraphDriver"]["Data"]["UpperDir"]
                    binds[str(upper)] = "/ctk/upper"
                with self._helper(image, binds) as helper:
                    if deleted:
                        with self._errors(container=helper):
                            self._api.put_archive(helper, "/ctk/upper", _whiteouts(deleted))
                    with self._errors(container=helper), placed.open("rb") as data:
                        self._api.put_archive(helper, "/ctk/container", data)
                try:
                    self._start_from_checkpoint(new_id, manifest.checkpoint)
                except docker.errors.APIError as exc:
                    raise diagnosis.criu_error(
                        "import", spec.name or new_id, _explanation(exc)
                    ) from exc
                except requests.exceptions.ConnectionError as exc:
                    raise shared.unavailable(self.kind, self.url) from exc
            except BaseException:
                # Nothing half-made: the container this import created goes again.
                with contextlib.suppress(Exception):
                    self._api.remove_container(new_id, force=True, v=True)
                raise
        records.record_checkpoint(self.kind, self.url, new_id, manifest.checkpoint)
        return self.inspect(new_id)

    def fetch_checkpoint_images(self, name: str, checkpoint: str, dest: Path) -> None:
        """Copy a checkpoint's CRIU images into ``dest`` through a helper container."""
        from toolkit.criu.images import extract_images

        attrs = self._attrs(name)
        validation.validate_checkpoint_name(checkpoint)
        if checkpoint not in {c["Name"] for c in self._list_checkpoints(attrs["Id"])}:
            raise CheckpointNotFound(f"no checkpoint {checkpoint} for container {name}")
        source = f"{self.info().root_dir}/containers/{attrs['Id']}"
        with tempfile.TemporaryDirectory() as tmp:
            tar = Path(tmp) / "checkpoint.tar"
            with self._helper(attrs["Image"], {source: "/ctk/container"}) as helper:
                self._fetch(helper, f"/ctk/container/checkpoints/{checkpoint}", tar)
            extract_images(tar, dest)

    def criu_stats(self, name: str, *, phase: str) -> dict[str, int]:
        """Empty: Docker (containerd) removes CRIU's work directory with its stats files."""
        self._attrs(name)
        return {}

    def _exists(self, name: str) -> bool:
        try:
            with self._errors(container=name):
                self._api.inspect_container(name)
        except ContainerNotFound:
            return False
        return True

    def _local_image(self, reference: str, image_id: str) -> str:
        """The reference when it names the archived image ID here, else the ID itself."""
        try:
            found = self._api.inspect_image(image_id)
        except docker.errors.NotFound as exc:
            raise ImageNotFound(
                f"no image {image_id} ({reference}) on docker",
                hint=shared.image_missing_hint(reference, image_id, self.kind),
            ) from exc
        with contextlib.suppress(docker.errors.APIError):
            if reference and self._api.inspect_image(reference)["Id"] == found["Id"]:
                return reference
        return str(found["Id"])

    # -- migration (toolkit.migration) --------------------------------------------------
    # -- cross-runtime migration (toolkit.migration.cross_runtime) -------------------------
    def raw_inspect(self, name: str) -> dict[str, Any]:
        """The engine's own inspect data of a container (mounts, runtime, host config).

        Raises:
            ContainerNotFound: no such container.
        """
        return self._attrs(name)

    def has_image(self, image_id: str) -> bool:
        """True when the engine holds the image with this exact ID."""
        try:
            with self._errors(image=image_id):
                self._api.inspect_image(image_id)
        except ImageNotFound:
            return False
        return True

    def save_image(self, image: str) -> Iterator[bytes]:
        """The image as a docker-archive tar stream (``docker save``)."""
        with self._errors(image=image):
            stream = self._api.get_image(image, chunk_size=1024 * 1024)
            for chunk in stream:
                yield bytes(chunk)

    def load_image(self, data: Iterable[bytes]) -> None:
        """Load a docker-archive tar stream (``docker load``); image IDs are kept."""
        with self._errors():
            for line in self._api.load_image(data):
                if isinstance(line, dict) and line.get("error"):
                    raise EngineError(f"docker load failed: {line['error']}")

    def mounts(self, name: str) -> tuple[str, ...]:
        """Where the container has volumes or bind mounts (their destinations)."""
        attrs = self._attrs(name)
        return tuple(str(m.get("Destination", "")) for m in attrs.get("Mounts") or ())

    def container_spec(self, name: str) -> ContainerSpec:
        """The engine-neutral spec to make this container again elsewhere."""
        attrs = self._attrs(name)
        info = _info(attrs, self.kind)
        return inspection.spec_from_inspect(attrs, image=info.image)

    def fetch_changes(self, name: str, out: Path) -> list[str]:
        """The container's rootfs changes as a tar at ``out``; the deleted paths."""
        attrs = self._attrs(name)
        with tempfile.TemporaryDirectory() as stage:
            return self._fetch_changes(attrs["Id"], out, Path(stage))

    def create_with_changes(
        self, spec: ContainerSpec, *, image_id: str, changes: Path | None, deleted: list[str]
    ) -> ContainerInfo:
        """Create ``spec`` from image ``image_id``, apply rootfs changes, start it.

        Deletions become overlay2 whiteouts as in :meth:`import_checkpoint`. A failure removes
        the container again.
        """
        validation.validate_spec(spec)
        image = self._local_image(spec.image, image_id)
        checked = _checked_deletions(deleted)
        if checked and engine_driver(self) != "overlay2":
            raise Unsupported(f"cannot apply deletions on a {engine_driver(self)} daemon")
        new_id = self._create_stopped(spec, image)
        try:
            if changes is not None:
                with self._errors(container=new_id), changes.open("rb") as data:
                    self._api.put_archive(new_id, "/", data)
            if checked:
                upper = self._api.inspect_container(new_id)["GraphDriver"]["Data"]["UpperDir"]
                with (
                    self._helper(image, {str(upper): "/ctk/upper"}) as helper,
                    self._errors(container=helper),
                ):
                    self._api.put_archive(helper, "/ctk/upper", _whiteouts(checked))
            with self._errors(container=spec.name or new_id):
                self._api.start(new_id)
        except BaseException:
            with contextlib.suppress(Exception):
                self._api.remove_container(new_id, force=True, v=True)
            raise
        return self.inspect(new_id)

    def create_for_images(
        self,
        spec: ContainerSpec,
        *,
        image_id: str,
        shareable_ipc: bool = False,
        binds: dict[str, str] | None = None,
    ) -> str:
        """Create (never start) a container that CRIU images from elsewhere can restore into.

        ``shareable_ipc`` makes /dev/shm a bind mount (as Podman's is) instead of a tmpfs, and
        ``binds`` (``{host path: container path}``) adds the bind mounts the images expect, so
        that runc offers CRIU every external mount the images name. Returns the new ID.

        Raises:
            ImageNotFound: the image ID is not here.
            Conflict: the name is in use.
        """
        validation.validate_spec(spec)
        image = self._local_image(spec.image, image_id)
        return self._create_stopped(
            spec, image, ipc_mode="shareable" if shareable_ipc else None, binds=binds
        )

    def start_from_images(
        self,
        container_id: str,
        images: Path,
        *,
        checkpoint: str,
        rootfs: Path | None = None,
        deleted: list[str] | None = None,
    ) -> ContainerInfo:
        """Place CRIU images (a flat directory) as checkpoint ``checkpoint`` and start from it.

        ``rootfs`` (a tar of changed files, applied at ``/``) and ``deleted`` (paths, applied as
        overlay2 whiteouts) carry the source's filesystem changes. The container is left as it
        is on failure: the caller removes it.

        Raises:
            CheckpointError: CRIU failed to restore.
        """
        validation.validate_checkpoint_name(checkpoint)
        engine = self.info()
        gone = _checked_deletions(list(deleted or []))
        if gone and engine_driver(self) != "overlay2":
            raise Unsupported(
                "the source deleted files, which ctk applies as overlay2 whiteouts; this "
                f"daemon uses {engine_driver(self)}",
            )
        if rootfs is not None:
            with self._errors(container=container_id), rootfs.open("rb") as data:
                self._api.put_archive(container_id, "/", data)
        attrs = self._attrs(container_id)
        binds = {f"{engine.root_dir}/containers/{container_id}": "/ctk/container"}
        if gone:
            binds[str(attrs["GraphDriver"]["Data"]["UpperDir"])] = "/ctk/upper"
        placed = io.BytesIO()
        with tarfile.open(fileobj=placed, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for directory in ("checkpoints", f"checkpoints/{checkpoint}"):
                info = tarfile.TarInfo(directory)
                info.type, info.mode = tarfile.DIRTYPE, 0o700
                tar.addfile(info)
            for item in sorted(images.iterdir()):
                if item.is_file() and not item.is_symlink():
                    tar.add(item, arcname=f"checkpoints/{checkpoint}/{item.name}")
        with self._helper(attrs["Image"], binds) as helper:
            if gone:
                with self._errors(container=helper):
                    self._api.put_archive(helper, "/ctk/upper", _whiteouts(gone))
            with self._errors(container=helper):
                self._api.put_archive(helper, "/ctk/container", placed.getvalue())
        kept: list[str] = []
        try:
            with _watch_restore_log(container_id, kept, local=self.url == DEFAULT_URL):
                self._start_from_checkpoint(container_id, checkpoint)
        except docker.errors.APIError as exc:
            log = kept[0] if kept else ""
            raise diagnosis.criu_error("restore", container_id, _explanation(exc), log) from exc
        except requests.exceptions.ConnectionError as exc:
            raise EngineUnavailable(f"Docker does not answer at {self.url}") from exc
        records.record_checkpoint(self.kind, self.url, container_id, checkpoint)
        return self.inspect(container_id)

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
        validation.validate_network_spec(spec)
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
        validation.validate_ref(name, what="network")
        with self._network_errors(name):
            data = self._api.inspect_network(name)
        return inspection.network_from_inspect(data, self.kind)

    def remove_network(self, name: str) -> None:
        validation.validate_ref(name, what="network")
        with self._network_errors(name):
            self._api.remove_network(name)

    def connect_network(
        self, network: str, container: str, *, aliases: tuple[str, ...] = ()
    ) -> None:
        validation.validate_ref(network, what="network")
        attrs = self._attrs(container)
        with self._network_errors(network, container=container):
            self._api.connect_container_to_network(
                attrs["Id"], network, aliases=list(aliases) or None
            )

    def disconnect_network(self, network: str, container: str, *, force: bool = False) -> None:
        validation.validate_ref(network, what="network")
        attrs = self._attrs(container)
        with self._network_errors(network, container=container):
            self._api.disconnect_container_from_network(attrs["Id"], network, force=force)

    def prune_networks(self, *, labels: dict[str, str] | None = None) -> list[str]:
        filters = {"label": [f"{k}={v}" for k, v in (labels or {}).items()]} if labels else None
        with self._errors():
            result = self._api.prune_networks(filters=filters)
        return sorted(result.get("NetworksDeleted") or [])


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


# Waits between attempts on containerd's blob race: its default collector runs about
# once a second, so three retries over 2.75 s outlast it.
_BLOB_RACE_DELAYS = (0.25, 0.5, 2.0)


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
        image_id=inspection.normalize_image_id(str(attrs.get("Image", ""))),
        status=inspection.status_of(state),
        running=bool(state.get("Running")),
        command=tuple(config.get("Cmd") or ()),
        created=str(attrs.get("Created", "")),
        ports=inspection.ports_from_inspect(ports),
        labels=dict(config.get("Labels") or {}),
        engine=engine,
        **inspection.lifecycle_fields(attrs),
    )


# Where the local dockerd's containerd shim runs CRIU (containerd namespace "moby"): under
# the containerd that scripts/engines starts, or under one dockerd manages itself.
_SHIM_DIRS = (
    "/run/ctk/containerd/io.containerd.runtime.v2.task/moby",
    "/var/run/docker/containerd/daemon/io.containerd.runtime.v2.task/moby",
    "/run/docker/containerd/daemon/io.containerd.runtime.v2.task/moby",
)


@contextmanager
def _watch_restore_log(container_id: str, kept: list[str], *, local: bool) -> Iterator[None]:
    """Copy CRIU's restore.log while a restore runs: containerd deletes it when CRIU fails.

    Best effort, and only for the local default daemon, whose shim directory is known.
    """
    import threading

    if not local:
        yield
        return
    paths = [Path(d) / container_id / "work" / "restore.log" for d in _SHIM_DIRS]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for path in paths:
                with contextlib.suppress(OSError):
                    text = path.read_text(errors="replace")
                    if text:
                        kept[:] = [text]
            done.wait(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=2)


# Member names of a Docker payload inside a ctk archive.
DOCKER_CHECKPOINT = "docker-checkpoint.tar"
DOCKER_ROOTFS = "docker-rootfs.tar"


def engine_driver(backend: DockerBackend) -> str:
    """The daemon's storage driver (overlay2 is the one whose whiteouts ctk writes)."""
    with backend._errors():
        return str(backend._client.info().get("Driver", ""))


def _checked_deletions(items: Any) -> list[str]:
    if not isinstance(items, list):
        raise ArchiveError("manifest's deleted-path list is malformed")
    result: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.startswith("/"):
            raise ArchiveError(f"manifest names a bad deleted path {item!r}")
        result.append(str(archive.check_member_name(item[1:], where="deleted path")))
    return result


def _whiteouts(deleted: list[str]) -> bytes:
    """A tar of overlay whiteouts (character devices 0:0): how overlay2 records a deletion.

    ``put_archive`` cannot delete; written into the container's upper directory before it
    starts, these hide the image's files exactly as ``rm`` in the container did.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in deleted:
            info = tarfile.TarInfo(path)
            info.type, info.devmajor, info.devminor, info.mode = tarfile.CHRTYPE, 0, 0, 0o600
            tar.addfile(info)
    return buffer.getvalue()


def _rename_checkpoint(source: Path, dest: Path, names: list[str], checkpoint: str) -> None:
    """Re-root ``get_archive``'s ``<name>/...`` as ``checkpoints/<checkpoint>/...``."""
    with (
        tarfile.open(source) as src,
        tarfile.open(dest, mode="w", format=tarfile.PAX_FORMAT) as out,
    ):
        top = tarfile.TarInfo("checkpoints")
        top.type, top.mode = tarfile.DIRTYPE, 0o700
        out.addfile(top)
        for member, name in zip(src.getmembers(), names, strict=True):
            parts = PurePosixPath(name).parts
            if member.isdir() and len(parts) == 1:
                member.name = f"checkpoints/{checkpoint}"
            else:
                member.name = "/".join(("checkpoints", checkpoint, *parts[1:]))
            data = src.extractfile(member) if member.isfile() else None
            out.addfile(member, data)


__all__ = ["DEFAULT_URL", "DockerBackend", "PortMapping"]
