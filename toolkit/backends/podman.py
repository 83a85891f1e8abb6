"""Podman backend: the only module that imports the ``podman`` SDK.

The SDK has no checkpoint methods; the libpod routes ``POST /libpod/containers/{name}/checkpoint``
and ``/restore`` are called through the SDK's own HTTP client. Podman keeps one checkpoint per
container in place (the latest), so ctk's records (toolkit.records) hold its name and time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import podman
import podman.api
import podman.errors
import requests

from toolkit import archive, records
from toolkit.archive.changes import write_changes
from toolkit.backends import DEFAULT_URLS, inspection, shared, validation
from toolkit.backends.options import publish_arg, restart_policy, sdk_ports
from toolkit.backends.podman_service import SSHTunnel, TemporaryPodmanService
from toolkit.criu import diagnosis
from toolkit.errors import (
    CheckpointNotFound,
    Conflict,
    ContainerNotFound,
    CtkError,
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

DEFAULT_URL = DEFAULT_URLS["podman"]

# bookworm's crun has no CRIU support; runc has. Containers ctk creates use runc unless the
# spec names another runtime, so that every one of them can be checkpointed.
CHECKPOINT_RUNTIME = "runc"

# libpod answers some refusals with status 500; its JSON ``cause`` is the name of the libpod
# sentinel error (define.ErrCtrStateInvalid, storage.ErrImageUnknown), stable across versions.
_STATE_CAUSES = frozenset({"container state improper", "container already exists"})
_IMAGE_CAUSES = frozenset({"image not known"})
# define.ErrNoSuchCtr: a container removed while libpod was inspecting it comes back as 500.
_MISSING_CAUSES = frozenset({"no such container"})
_NETWORK_BUSY_CAUSES = frozenset({"network is being used"})
# Podman 4.3 inspects a container that exits under it by reading /proc/PID/cgroup after the
# process is gone, and answers 500 with ESRCH (fixed in later Podman, which says "stopped").
_GONE_PID = re.compile(r"read /proc/\d+/cgroup: no such process")
# How many times, and how long apart, ctk asks again after that answer.
_INSPECT_RETRIES = (0.05, 0.1, 0.25, 0.5)

# The libpod API version ctk speaks: Podman 4.3 (Debian 12) and 5.x (Debian 13) both serve it.
API_VERSION = "4.0.0"

# The libpod export body travels in a ctk archive under this member name.
PODMAN_PAYLOAD = "podman-checkpoint.tar"


# Chunk size for streamed checkpoint exports.
_CHUNK = 1024 * 1024


def _checkpoint_params(options: CheckpointOptions, **extra: Any) -> dict[str, Any]:
    """Query of ``POST /libpod/containers/{id}/checkpoint`` for ``options``."""
    return {
        # keep: CRIU's log and stats stay beside the images, for error reports and
        # --print-stats, and a restore does not consume the checkpoint.
        "keep": True,
        "leaveRunning": options.leave_running,
        "tcpEstablished": options.tcp_established,
        "fileLocks": options.file_locks,
        **extra,
    }


def _import_params(options: ImportOptions) -> dict[str, Any]:
    """Query of ``POST /libpod/containers/import/restore`` for ``options`` (without the name)."""
    params: dict[str, Any] = {
        "import": True,
        "keep": True,
        "tcpEstablished": options.tcp_established,
        "fileLocks": options.file_locks,
        "ignoreStaticIP": options.ignore_static_ip,
        "ignoreStaticMAC": options.ignore_static_ip,
    }
    if options.ports:
        params["publishPorts"] = [publish_arg(p) for p in options.ports]
    return params


class PodmanBackend:
    """Podman through its REST service and the podman SDK."""

    kind = "podman"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: int = 120,
        service: TemporaryPodmanService | SSHTunnel | None = None,
    ) -> None:
        # With a temporary service or an ssh tunnel, ``url`` stays the engine's identity
        # (ctk's checkpoint records are keyed by it) while requests go to a private socket.
        self.url = url
        if service is None and url.startswith("ssh://"):
            service = SSHTunnel.open(url)
        self._service = service
        base_url = service.url if service is not None else url
        self._client: Any = podman.PodmanClient(
            base_url=base_url, version=API_VERSION, timeout=timeout
        )
        # Any: the checkpoint routes use the SDK client's private request helpers.
        self._api: Any = self._client.api

    # -- errors ---------------------------------------------------------------------------
    @contextmanager
    def _errors(self, *, container: str | None = None, image: str | None = None) -> Iterator[None]:
        """Translate SDK and HTTP errors into ctk's tree, by class and status code."""
        try:
            yield
        except podman.errors.ImageNotFound as exc:
            raise ImageNotFound(f"no such image: {image}") from exc
        except podman.errors.NotFound as exc:
            if container is not None:
                raise ContainerNotFound(f"no such container: {container}") from exc
            raise EngineError(_explanation(exc)) from exc
        except podman.errors.APIError as exc:
            status = getattr(exc, "status_code", None)
            if status is None:
                # The SDK wraps a failed connection into an APIError with no status.
                raise shared.unavailable(self.kind, self.url) from exc
            cause = str(exc.args[0]) if exc.args else ""
            if cause in _STATE_CAUSES or status in (304, 409):
                raise Conflict(_explanation(exc)) from exc
            if cause in _MISSING_CAUSES and container is not None:
                raise ContainerNotFound(f"no such container: {container}") from exc
            if cause in _IMAGE_CAUSES:
                raise ImageNotFound(f"no such image: {image}") from exc
            if status == 400:
                raise InvalidArgument(_explanation(exc)) from exc
            raise EngineError(_explanation(exc)) from exc
        except (requests.exceptions.ConnectionError, podman.errors.PodmanError) as exc:
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
        host = data.get("host") or {}
        store = data.get("store") or {}
        runtimes = (host.get("ociRuntime") or {}).get("name", "")
        return EngineInfo(
            kind=self.kind,
            url=self.url,
            version=str((data.get("version") or {}).get("Version", "")),
            api_version=str((data.get("version") or {}).get("APIVersion", "")),
            experimental=False,
            default_runtime=str(runtimes),
            # ctk creates its containers with runc, which supports CRIU whatever the default.
            checkpoint_capable=True,
            root_dir=str(store.get("graphRoot", "")),
        )

    # -- lifecycle ------------------------------------------------------------------------
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
        with self._errors(image=spec.image):
            response = self._api.post(
                "/containers/create",
                headers={"content-type": "application/json"},
                data=podman.api.prepare_body(payload),
            )
            response.raise_for_status(not_found=podman.errors.ImageNotFound)
        return str(response.json()["Id"])

    def _post(self, path: str, **params: Any) -> Any:
        response = self._api.post(path, params=params or None)
        response.raise_for_status(not_found=podman.errors.NotFound)
        return response

    def containers(
        self, *, all: bool = False, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[ContainerInfo]:
        wanted = validation.validate_filters(filters)
        params: dict[str, Any] = {"all": all}
        if wanted:
            params["filters"] = json.dumps(wanted)
        with self._errors():
            response = self._api.get("/containers/json", params=params)
            response.raise_for_status()
            rows = response.json() or []
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
            for delay in (*_INSPECT_RETRIES, None):
                response = self._api.get(f"/containers/{name}/json")
                if delay is not None and _GONE_PID.search(response.text or ""):
                    time.sleep(delay)
                    continue
                response.raise_for_status(not_found=podman.errors.NotFound)
                break
            attrs: dict[str, Any] = response.json()
        return attrs

    def _container(self, name: str) -> Any:
        """The SDK's model of ``name``, from ``_attrs`` (which copes with Podman 4.3's race)."""
        return self._client.containers.prepare_model(self._attrs(name))

    def inspect(self, name: str) -> ContainerInfo:
        return shared.with_checkpoints(_info(self._attrs(name), self.kind), self.url)

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

    # -- checkpoint / restore -------------------------------------------------------------
    def checkpoint(self, name: str, options: CheckpointOptions) -> Checkpoint:
        cp_name = options.name or records.new_checkpoint_name()
        attrs = self._require_checkpointable(name, cp_name)
        try:
            response = self._api.post(
                f"/containers/{attrs['Id']}/checkpoint", params=_checkpoint_params(options)
            )
            response.raise_for_status()
        except (podman.errors.APIError, requests.exceptions.RequestException) as exc:
            raise self._checkpoint_failed(name, attrs, exc) from exc
        record = self._record_checkpoint(attrs, cp_name)
        return Checkpoint(name=cp_name, container=name, engine=self.kind, created=record.created)

    def _require_checkpointable(self, name: str, cp_name: str) -> dict[str, Any]:
        attrs = self._attrs(name)
        validation.validate_checkpoint_name(cp_name)
        state = attrs.get("State") or {}
        if not state.get("Running") or state.get("Paused"):
            raise Conflict(
                f"container {name} is not running; only a running container can be checkpointed",
                hint=f"start it first: ctk start {name}",
            )
        return attrs

    def _record_checkpoint(self, attrs: dict[str, Any], cp_name: str) -> Checkpoint:
        record = records.record_checkpoint(self.kind, self.url, attrs["Id"], cp_name)
        # The new checkpoint replaced the one held in place: forget older names.
        records.forget_others(self.kind, self.url, attrs["Id"], keep=cp_name)
        return record

    def _checkpoint_failed(self, name: str, attrs: dict[str, Any], exc: Exception) -> CtkError:
        """The error for a checkpoint (or its export) that failed; the container runs again."""
        if isinstance(exc, podman.errors.APIError) and getattr(exc, "status_code", None) is None:
            return shared.unavailable(self.kind, self.url)
        self._ensure_running_after_failure(attrs["Id"])
        if isinstance(exc, podman.errors.APIError):
            return diagnosis.criu_error(
                "checkpoint", name, _explanation(exc), self._criu_log(attrs, "dump.log")
            )
        return EngineUnavailable(f"Podman broke off the export: {exc}")

    def checkpoint_stream(
        self, name: str, options: CheckpointOptions
    ) -> Generator[bytes, None, None]:
        """Checkpoint ``name`` and yield libpod's export tar as it arrives, staging nothing.

        The tar holds ``checkpoint/`` (the CRIU images, with CRIU's ``stats-dump``),
        ``rootfs-diff.tar``, ``deleted.files`` and libpod's metadata; :meth:`restore_stream`
        takes it. The checkpoint in place is kept, so :meth:`restore` can put the container
        back when what follows fails. Checks happen at once; the dump starts when the first
        chunk is asked for.

        Raises:
            Conflict: the container is not running.
            CheckpointError: CRIU failed (while iterating); the container keeps running.
        """
        cp_name = options.name or records.new_checkpoint_name()
        attrs = self._require_checkpointable(name, cp_name)
        # printStats: CRIU's stats-dump goes into the export, for inspect and --print-stats
        params = _checkpoint_params(options, export=True, printStats=True)
        return self._export_chunks(name, attrs, cp_name, params)

    def _export_chunks(
        self, name: str, attrs: dict[str, Any], cp_name: str, params: dict[str, Any]
    ) -> Generator[bytes, None, None]:
        response = None
        try:
            response = self._api.post(
                f"/containers/{attrs['Id']}/checkpoint", params=params, stream=True
            )
            response.raise_for_status()
            # libpod answers once the dump is written and kept in place: record it now, so a
            # consumer that gives up half-way can still restore it.
            self._record_checkpoint(attrs, cp_name)
            yield from response.iter_content(chunk_size=_CHUNK)
        except (podman.errors.APIError, requests.exceptions.RequestException) as exc:
            raise self._checkpoint_failed(name, attrs, exc) from exc
        finally:
            if response is not None:
                response.close()

    def _criu_log(self, attrs: dict[str, Any], filename: str) -> str:
        """CRIU's log, when the engine runs on this machine and kept it."""
        from pathlib import Path

        userdata = Path(str(attrs.get("StaticDir") or ""))
        for path in (userdata / filename, userdata / "checkpoint" / filename):
            try:
                return path.read_text(errors="replace")
            except OSError:
                continue
        return ""

    def _ensure_running_after_failure(self, container_id: str) -> None:
        # A failed dump must leave the container running; if runc did not resume it, start it.
        try:
            attrs = self._attrs(container_id)
            if not (attrs.get("State") or {}).get("Running"):
                self._api.post(f"/containers/{container_id}/start").raise_for_status()
        except Exception:
            pass

    def checkpoints(self, name: str) -> list[Checkpoint]:
        attrs = self._attrs(name)
        state = attrs.get("State") or {}
        has_image = bool(state.get("Checkpointed") or state.get("CheckpointedAt"))
        present = records.names(self.kind, self.url, attrs["Id"]) if has_image else []
        return records.ordered(self.kind, self.url, attrs["Id"], present, container=name)

    def remove_checkpoint(self, name: str, checkpoint: str) -> None:
        attrs = self._attrs(name)
        validation.validate_checkpoint_name(checkpoint)
        if checkpoint not in {c.name for c in self.checkpoints(name)}:
            raise CheckpointNotFound(f"no checkpoint {checkpoint} for container {name}")
        # Podman has no route to delete the in-place checkpoint alone; forgetting it makes
        # ctk never restore from it, and Podman overwrites it on the next checkpoint.
        records.forget_checkpoint(self.kind, self.url, attrs["Id"], checkpoint)

    def restore(self, name: str, options: RestoreOptions) -> ContainerInfo:
        attrs = self._attrs(name)
        if (attrs.get("State") or {}).get("Running"):
            raise Conflict(
                f"container {name} is running; restore replaces its processes",
                hint=f"stop it first: ctk stop {name}",
            )
        available = self.checkpoints(name)
        if (
            options.checkpoint is not None
            and available
            and options.checkpoint not in {c.name for c in available}
        ):
            raise CheckpointNotFound(
                f"no checkpoint {options.checkpoint} for container {name} "
                f"(Podman keeps only the latest in place: {available[-1].name})",
                hint="export checkpoints to keep several: ctk checkpoint NAME --export FILE",
            )
        validation.choose_checkpoint(name, available, options.checkpoint)
        params = {
            "keep": True,
            "tcpEstablished": options.tcp_established,
            "fileLocks": options.file_locks,
        }
        try:
            response = self._api.post(f"/containers/{attrs['Id']}/restore", params=params)
            response.raise_for_status()
        except podman.errors.APIError as exc:
            if getattr(exc, "status_code", None) is None:
                raise shared.unavailable(self.kind, self.url) from exc
            if exc.args and str(exc.args[0]) in _STATE_CAUSES:
                # Not CRIU: libpod refused for the container's state (e.g. a killed container
                # that libpod has not finished cleaning up yet).
                raise Conflict(_explanation(exc)) from exc
            raise diagnosis.criu_error(
                "restore", name, _explanation(exc), self._criu_log(attrs, "restore.log")
            ) from exc
        return self.inspect(attrs["Id"])

    def exit_status(self, name: str) -> ExitStatus:
        return inspection.exit_status_from_state(self._attrs(name).get("State") or {})

    # -- archives -------------------------------------------------------------------------
    def export_checkpoint(
        self, name: str, dest: str | os.PathLike[str], options: ExportOptions
    ) -> ArchiveInfo:
        """Checkpoint ``name`` into a ctk archive at ``dest`` (the libpod export as payload).

        Raises:
            InvalidArgument: unknown compression or unusable ``dest`` (container untouched).
            CheckpointError: CRIU failed; the container keeps running.
        """
        archive.validate_compression(options.compression)
        path = archive.check_destination(dest)
        cp_options = options.checkpoint
        cp_name = cp_options.name or records.new_checkpoint_name()
        attrs = self._require_checkpointable(name, cp_name)
        engine = self.info()
        timings: dict[str, float] = {}
        with archive.staging_dir(path) as stage:
            payload = stage / PODMAN_PAYLOAD
            started = time.monotonic()
            # printStats: CRIU's stats-dump goes into the export, for inspect and --print-stats
            params = _checkpoint_params(cp_options, export=True, printStats=True)
            with payload.open("wb") as out:
                for chunk in self._export_chunks(name, attrs, cp_name, params):
                    out.write(chunk)
            timings["checkpoint"] = round(time.monotonic() - started, 3)
            try:
                archive.check_nested_tar(payload, what="podman checkpoint")
                manifest = shared.archive_manifest(
                    engine=engine,
                    attrs=attrs,
                    info=_info(attrs, self.kind),
                    checkpoint=cp_name,
                    engine_data={"payload": PODMAN_PAYLOAD},
                )
                result = archive.write_archive(
                    path, manifest, [(PODMAN_PAYLOAD, payload)], compression=options.compression
                )
            except Exception:
                if not cp_options.leave_running:
                    self._restore_after_failed_export(attrs["Id"])
                raise
            from toolkit.criu.images import stats_from_tar

            stats = stats_from_tar(payload)
        return dataclasses.replace(result, timings={**timings, **result.timings}, criu_stats=stats)

    def criu_stats(self, name: str, *, phase: str) -> dict[str, int]:
        """CRIU's statistics of the container's last ``dump`` or ``restore`` (kept by ``keep``).

        Read from the container's directory: available where the engine runs on this machine.
        """
        from toolkit.criu.images import read_stats

        userdata = Path(str(self._attrs(name).get("StaticDir") or ""))
        if not userdata.parts or not userdata.is_dir():
            return {}
        return read_stats(userdata, phase=phase)

    def _restore_after_failed_export(self, container_id: str) -> None:
        # The dump stopped the container but no archive came of it: put it back as it was.
        with contextlib.suppress(Exception):
            self._api.post(
                f"/containers/{container_id}/restore", params={"keep": True}
            ).raise_for_status()

    def fetch_checkpoint_images(self, name: str, checkpoint: str, dest: Path) -> None:
        """Copy the in-place checkpoint's CRIU images into ``dest``.

        libpod has no route that hands them out, so this reads the container's directory and
        works only where the engine runs on this machine.
        """
        attrs = self._attrs(name)
        validation.validate_checkpoint_name(checkpoint)
        if checkpoint not in {c.name for c in self.checkpoints(name)}:
            raise CheckpointNotFound(f"no checkpoint {checkpoint} for container {name}")
        userdata = Path(str(attrs.get("StaticDir") or ""))
        images = userdata / "checkpoint"
        if not userdata.parts or not (images / "pstree.img").is_file():
            raise Unsupported(
                f"podman's checkpoint images of {name} are not readable from here",
                hint=f"export it and inspect the file: ctk checkpoint {name} --export FILE",
            )
        for item in images.iterdir():
            if item.is_file() and not item.is_symlink():
                shutil.copyfile(item, dest / item.name)
        for stats in ("stats-dump", "stats-restore"):
            if (userdata / stats).is_file():
                shutil.copyfile(userdata / stats, dest / stats)

    def _exists(self, name: str) -> bool:
        response = self._api.get(f"/containers/{name}/exists")
        return bool(response.status_code == 204)

    def import_checkpoint(
        self, archive_path: str | os.PathLike[str], options: ImportOptions
    ) -> ContainerInfo:
        """Create and restore a container from a ctk archive made on Podman.

        Every member is verified before anything is created; a failed restore removes the
        container the import made.

        Raises:
            ArchiveError: the archive is corrupt or hostile (nothing created).
            ImageNotFound: the checkpoint's image ID is not here.
            Conflict: a container with the target name exists.
            CheckpointError: CRIU failed to restore (nothing left behind).
        """
        if options.name is not None:
            validation.validate_ref(options.name, what="container")
        with archive.open_archive(archive_path) as verified:
            manifest = verified.manifest
            validation.require_archive_engine(manifest, self.kind, str(archive_path))
            payload = verified.member(PODMAN_PAYLOAD)
            names = archive.check_nested_tar(payload, what="podman checkpoint")
            if "rootfs-diff.tar" in names:
                with tarfile.open(payload) as outer:
                    inner = outer.extractfile("rootfs-diff.tar")
                    if inner is not None:
                        archive.check_nested_tar(
                            what="rootfs changes", allow_symlinks=True, fileobj=inner
                        )
            with self._errors():
                found = self._api.get(f"/images/{manifest.image_id}/exists")
            if found.status_code != 204:
                raise ImageNotFound(
                    f"no image {manifest.image_id} ({manifest.image}) on podman",
                    hint=shared.image_missing_hint(manifest.image, manifest.image_id, self.kind),
                )
            target = options.name or manifest.container_name
            with self._errors():
                if target and self._exists(target):
                    raise Conflict(
                        f"a container named {target} exists already",
                        hint="import under another name: ctk restore --import FILE --name NEW",
                    )
            params = _import_params(options)
            if options.name:
                params["name"] = options.name
            with payload.open("rb") as body:
                new_id = self._import_restore(body, params, target, action="import")
        return self.inspect(new_id)

    # -- migration (toolkit.migration) --------------------------------------------------
    def has_image(self, image_id: str) -> bool:
        """True when the engine holds the image with this exact ID."""
        with self._errors():
            found = self._api.get(f"/images/{image_id}/exists")
        return bool(found.status_code == 204)

    def save_image(self, image: str) -> Iterator[bytes]:
        """The image as a docker-archive tar stream (keeps the image ID across engines)."""
        with self._errors(image=image):
            response = self._api.get(
                f"/images/{image}/get", params={"format": "docker-archive"}, stream=True
            )
            response.raise_for_status(not_found=podman.errors.ImageNotFound)
            yield from response.iter_content(chunk_size=1024 * 1024)

    def load_image(self, data: Iterable[bytes]) -> None:
        """Load a docker-archive (or OCI) tar stream; image IDs are kept."""
        with self._errors():
            response = self._api.post(
                "/images/load", data=data, headers={"Content-Type": "application/x-tar"}
            )
            response.raise_for_status()

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
        with self._errors(container=name):
            response = self._api.get(f"/containers/{attrs['Id']}/changes")
            response.raise_for_status(not_found=podman.errors.NotFound)
            changes = response.json() or []

        def fetch(path: str, part: Path) -> None:
            with self._errors(container=name):
                got = self._api.get(
                    f"/containers/{attrs['Id']}/archive", params={"path": path}, stream=True
                )
                got.raise_for_status(not_found=podman.errors.NotFound)
                with part.open("wb") as handle:
                    for chunk in got.iter_content(chunk_size=1024 * 1024):
                        handle.write(chunk)

        with tempfile.TemporaryDirectory() as stage:
            return write_changes(changes, fetch, out, Path(stage))

    def create_with_changes(
        self, spec: ContainerSpec, *, image_id: str, changes: Path | None, deleted: list[str]
    ) -> ContainerInfo:
        """Create ``spec`` from image ``image_id``, apply rootfs changes, start it.

        Podman's API cannot write overlay whiteouts, so deleted paths are refused here; a
        failure removes the container again.
        """
        if deleted:
            raise Unsupported(
                f"podman cannot reproduce {len(deleted)} deleted path(s) of the source's rootfs "
                "through its API",
                hint="recreate the deletions in the image, or move it to docker",
            )
        spec = dataclasses.replace(spec, image=self.local_image(spec.image, image_id))
        container_id = self._create(spec)
        try:
            with self._errors(container=spec.name or container_id):
                if changes is not None:
                    self._container(container_id).put_archive("/", changes.read_bytes())
                self._post(f"/containers/{container_id}/start")
        except BaseException:
            with contextlib.suppress(Exception):
                self._api.delete(f"/containers/{container_id}", params={"force": True})
            raise
        return self.inspect(container_id)

    # -- cross-runtime migration (toolkit.migration.cross_runtime) -------------------------
    def raw_inspect(self, name: str) -> dict[str, Any]:
        """The engine's own inspect data of a container (mounts, runtime, host config).

        Raises:
            ContainerNotFound: no such container.
        """
        return self._attrs(name)

    def local_image(self, reference: str, image_id: str) -> str:
        """``reference`` when it names the image ``image_id`` here, else the ID itself.

        Raises:
            ImageNotFound: no image with that ID.
        """
        if not self.has_image(image_id):
            raise ImageNotFound(
                f"no image {image_id} ({reference}) on podman",
                hint=shared.image_missing_hint(reference, image_id, self.kind),
            )
        with contextlib.suppress(Exception):
            response = self._api.get(f"/images/{reference}/json")
            if response.status_code == 200:
                found = inspection.normalize_image_id(str(response.json().get("Id", "")))
                if found == inspection.normalize_image_id(image_id):
                    return reference
        return image_id

    def export_raw(
        self,
        name: str,
        dest: Path,
        *,
        checkpoint: str,
        leave_running: bool = False,
        tcp_established: bool = False,
    ) -> None:
        """Checkpoint a running container into libpod's own export tar at ``dest``.

        See :meth:`checkpoint_stream` for what the tar holds and what is kept.
        """
        options = CheckpointOptions(
            name=checkpoint, leave_running=leave_running, tcp_established=tcp_established
        )
        chunks = self.checkpoint_stream(name, options)
        with dest.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)

    def start_template(self, spec: ContainerSpec, *, annotations: dict[str, str]) -> str:
        """Create and start a container with OCI ``annotations`` (runc runtime); its ID.

        The SDK's ``run`` path has no annotations; runc reads ``org.criu.config`` from them.
        """
        container_id = self._create(spec, annotations=annotations)
        try:
            with self._errors(container=spec.name or container_id):
                self._post(f"/containers/{container_id}/start")
        except Exception:
            with contextlib.suppress(Exception):
                self._api.delete(f"/containers/{container_id}", params={"force": True})
            raise
        return container_id

    def import_raw(
        self,
        tar: Path,
        *,
        name: str,
        ports: tuple[PortMapping, ...] = (),
        tcp_established: bool = False,
        criu_log: Path | None = None,
    ) -> ContainerInfo:
        """Create and restore container ``name`` from a libpod export tar.

        A failed restore removes the container; ``criu_log`` is where the per-container CRIU
        config sent CRIU's log (libpod drops the container, and its log, on failure).

        Raises:
            Conflict: a container named ``name`` exists.
            CheckpointError: CRIU failed to restore (nothing left behind).
        """
        with tar.open("rb") as body:
            return self.restore_stream(
                body,
                ImportOptions(
                    name=name,
                    ports=ports,
                    tcp_established=tcp_established,
                    ignore_static_ip=True,
                ),
                criu_log=criu_log,
            )

    def restore_stream(
        self,
        body: Iterable[bytes] | IO[bytes],
        options: ImportOptions,
        *,
        criu_log: Path | None = None,
    ) -> ContainerInfo:
        """Create and restore a container from libpod's export tar, sent as it is read.

        ``body`` is the tar (a file, or chunks such as :meth:`checkpoint_stream` yields);
        ``options.name`` names the container (it must be given). An exception raised by the
        chunks aborts the upload and is raised again, after the container is removed.

        Raises:
            Conflict: a container named ``options.name`` exists.
            CheckpointError: CRIU failed to restore (nothing left behind).
        """
        name = options.name or ""
        validation.validate_ref(name, what="container")
        with self._errors():
            if self._exists(name):
                raise Conflict(f"a container named {name} exists already on podman")
        params = _import_params(options)
        params["name"] = name
        return self.inspect(self._import_restore(body, params, name, criu_log=criu_log))

    def _import_restore(
        self,
        body: Iterable[bytes] | IO[bytes],
        params: dict[str, Any],
        target: str | None,
        *,
        criu_log: Path | None = None,
        action: str = "restore",
    ) -> str:
        """``POST /containers/import/restore``; the new container's ID.

        Nothing half-made: on any failure a container under ``target`` is the one this made,
        and is removed.
        """
        try:
            response = self._api.post(
                "/containers/import/restore",
                params=params,
                data=body,
                headers={"Content-Type": "application/x-tar"},
            )
            response.raise_for_status()
            return str(response.json()["Id"])
        except BaseException as exc:
            with contextlib.suppress(Exception):
                if target and self._exists(target):
                    self._api.delete(
                        f"/containers/{target}", params={"force": True}
                    ).raise_for_status()
            if isinstance(exc, podman.errors.APIError):
                if getattr(exc, "status_code", None) is None:
                    raise shared.unavailable(self.kind, self.url) from exc
                log = ""
                if criu_log is not None:
                    with contextlib.suppress(OSError):
                        log = criu_log.read_text(errors="replace")
                raise diagnosis.criu_error(action, target or "", _explanation(exc), log) from exc
            raise

    def close(self) -> None:
        self._client.close()
        if self._service is not None:
            self._service.stop()

    # -- networks -------------------------------------------------------------------------
    # Podman's Docker-compatible routes report networks in Docker's shape, containers with
    # their addresses included (libpod's own inspect leaves them out), so both backends share
    # one parser. Creation uses libpod's route, whose refusals carry a ``cause``.
    @contextmanager
    def _network_errors(self, network: str, *, container: str | None = None) -> Iterator[None]:
        """Like ``_errors``, but a 404 names the network; callers look the container up first."""
        try:
            with self._errors(container=container):
                yield
        except (ContainerNotFound, EngineError) as exc:
            if isinstance(exc.__cause__, podman.errors.NotFound):
                raise NetworkNotFound(f"no such network: {network}") from exc.__cause__
            if _cause(exc.__cause__) in _NETWORK_BUSY_CAUSES:
                raise Conflict(
                    exc.message, hint=f"see what uses it: ctk network inspect {network}"
                ) from exc.__cause__
            raise

    def networks(self) -> list[NetworkInfo]:
        with self._errors():
            response = self._api.get("/networks", compatible=True)
            response.raise_for_status()
            rows = response.json() or []
        result: list[NetworkInfo] = []
        for row in sorted(rows, key=lambda r: str(r.get("Name", ""))):
            try:
                result.append(self.inspect_network(str(row["Name"])))
            except NetworkNotFound:
                continue  # removed between the list and the inspect
        return result

    def create_network(self, spec: NetworkSpec) -> NetworkInfo:
        validation.validate_network_spec(spec)
        if spec.driver == "overlay":
            raise Unsupported(
                "Podman has no overlay networks (they are a Docker swarm feature)",
                hint="create a bridge network on each host (ctk network create NAME), "
                "or use --engine docker with swarm",
            )
        body: dict[str, Any] = {
            "name": spec.name,
            "driver": spec.driver,
            "internal": spec.internal,
            "labels": dict(spec.labels),
            # The CLI turns aardvark-dns on by default, the API does not: containers on a
            # user network resolve each other by name, as on Docker.
            "dns_enabled": True,
            # Docker's bridges cannot reach each other; netavark's can unless isolated.
            "options": {"isolate": "true"},
        }
        if spec.subnet:
            subnet = {"subnet": spec.subnet}
            if spec.gateway:
                subnet["gateway"] = spec.gateway
            body["subnets"] = [subnet]
        with self._network_errors(spec.name):
            response = self._api.post("/networks/create", data=json.dumps(body))
            response.raise_for_status()
        return self.inspect_network(spec.name)

    def inspect_network(self, name: str) -> NetworkInfo:
        validation.validate_ref(name, what="network")
        with self._network_errors(name):
            response = self._api.get(f"/networks/{name}", compatible=True)
            response.raise_for_status(not_found=podman.errors.NotFound)
            data = response.json()
        return inspection.network_from_inspect(data, self.kind)

    def remove_network(self, name: str) -> None:
        validation.validate_ref(name, what="network")
        if name in validation.NETWORK_MODES or name == "podman":
            raise Conflict(
                f"{name} is a pre-defined network and cannot be removed",
                hint="remove only networks you created (ctk network ls)",
            )
        with self._network_errors(name):
            response = self._api.delete(f"/networks/{name}")
            response.raise_for_status(not_found=podman.errors.NotFound)

    def connect_network(
        self, network: str, container: str, *, aliases: tuple[str, ...] = ()
    ) -> None:
        validation.validate_ref(network, what="network")
        attrs = self._attrs(container)
        body: dict[str, Any] = {"Container": attrs["Id"]}
        if aliases:
            body["EndpointConfig"] = {"Aliases": list(aliases)}
        # The compat route, because it knows "bridge" as the default network's name.
        with self._network_errors(network, container=container):
            response = self._api.post(
                f"/networks/{network}/connect", data=json.dumps(body), compatible=True
            )
            response.raise_for_status(not_found=podman.errors.NotFound)

    def disconnect_network(self, network: str, container: str, *, force: bool = False) -> None:
        validation.validate_ref(network, what="network")
        attrs = self._attrs(container)
        body = {"Container": attrs["Id"], "Force": force}
        with self._network_errors(network, container=container):
            response = self._api.post(
                f"/networks/{network}/disconnect", data=json.dumps(body), compatible=True
            )
            response.raise_for_status(not_found=podman.errors.NotFound)

    def prune_networks(self, *, labels: dict[str, str] | None = None) -> list[str]:
        params = {}
        if labels:
            params["filters"] = json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})
        with self._errors():
            response = self._api.post("/networks/prune", params=params)
            response.raise_for_status()
            rows = response.json() or []
        return sorted(str(r.get("Name", "")) for r in rows if not r.get("Error"))


def _cause(exc: BaseException | None) -> str:
    """libpod's sentinel ``cause`` of a refusal, or ''."""
    if isinstance(exc, podman.errors.APIError) and exc.args:
        return str(exc.args[0])
    return ""


def _explanation(exc: podman.errors.APIError) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip()


def _info(attrs: dict[str, Any], engine: str) -> ContainerInfo:
    config = attrs.get("Config") or {}
    state = attrs.get("State") or {}
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    return ContainerInfo(
        id=str(attrs["Id"]),
        name=str(attrs.get("Name", "")).lstrip("/"),
        image=str(attrs.get("ImageName") or config.get("Image") or ""),
        image_id=inspection.normalize_image_id(str(attrs.get("Image", ""))),
        status=inspection.status_of(state),
        # Podman says Running false while paused; Docker (and ctk) count a paused container
        # as running: its processes exist, frozen.
        running=bool(state.get("Running") or state.get("Paused")),
        command=tuple(config.get("Cmd") or ()),
        created=str(attrs.get("Created", "")),
        ports=inspection.ports_from_inspect(ports),
        labels=dict(config.get("Labels") or {}),
        engine=engine,
        **inspection.lifecycle_fields(attrs),
    )
