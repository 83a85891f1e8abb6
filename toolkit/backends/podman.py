"""Podman backend: the only module that imports the ``podman`` SDK.

The SDK has no checkpoint methods; the libpod routes ``POST /libpod/containers/{name}/checkpoint``
and ``/restore`` are called through the SDK's own HTTP client. Podman keeps one checkpoint per
container in place (the latest), so ctk's registry holds its name and time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import podman
import podman.errors
import requests

from toolkit import archive, registry
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
    ArchiveInfo,
    Checkpoint,
    CheckpointOptions,
    ContainerInfo,
    ContainerSpec,
    EngineInfo,
    ExitStatus,
    ExportOptions,
    ImportOptions,
    RestoreOptions,
)

DEFAULT_URL = "unix:///run/podman/podman.sock"

# bookworm's crun has no CRIU support; runc has. Containers ctk creates use runc unless the
# spec names another runtime, so that every one of them can be checkpointed.
CHECKPOINT_RUNTIME = "runc"

# libpod answers some refusals with status 500; its JSON ``cause`` is the name of the libpod
# sentinel error (define.ErrCtrStateInvalid, storage.ErrImageUnknown), stable across versions.
_STATE_CAUSES = frozenset({"container state improper", "container already exists"})
_IMAGE_CAUSES = frozenset({"image not known"})

# The libpod API version ctk speaks: Podman 4.3 (Debian 12) and 5.x (Debian 13) both serve it.
API_VERSION = "4.0.0"

# The libpod export body travels in a ctk archive under this member name.
PODMAN_PAYLOAD = "podman-checkpoint.tar"


class PodmanBackend:
    """Podman through its REST service and the podman SDK."""

    kind = "podman"

    def __init__(self, url: str = DEFAULT_URL, *, timeout: int = 120) -> None:
        self.url = url
        self._client: Any = podman.PodmanClient(base_url=url, version=API_VERSION, timeout=timeout)
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
                raise EngineUnavailable(f"Podman does not answer at {self.url}") from exc
            cause = str(exc.args[0]) if exc.args else ""
            if cause in _STATE_CAUSES or status in (304, 409):
                raise Conflict(_explanation(exc)) from exc
            if cause in _IMAGE_CAUSES:
                raise ImageNotFound(f"no such image: {image}") from exc
            if status == 400:
                raise InvalidArgument(_explanation(exc)) from exc
            raise EngineError(_explanation(exc)) from exc
        except (requests.exceptions.ConnectionError, podman.errors.PodmanError) as exc:
            raise EngineUnavailable(f"Podman does not answer at {self.url}") from exc

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
        common.validate_spec(spec)
        kwargs: dict[str, Any] = {
            "name": spec.name,
            "environment": dict(spec.env),
            "labels": dict(spec.labels),
            "ports": common.sdk_ports(spec.ports, ephemeral=0),
            "runtime": spec.runtime or CHECKPOINT_RUNTIME,
        }
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
        command = list(spec.command) or None
        with self._errors(image=spec.image):
            container = self._client.containers.create(spec.image, command, **kwargs)
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
            response = self._api.get("/containers/json", params={"all": all})
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
        common.validate_ref(name, what="container")
        with self._errors(container=name):
            response = self._api.get(f"/containers/{name}/json")
            response.raise_for_status(not_found=podman.errors.NotFound)
            attrs: dict[str, Any] = response.json()
        return attrs

    def inspect(self, name: str) -> ContainerInfo:
        return _info(self._attrs(name), self.kind)

    def logs(self, name: str, *, tail: int | None = None) -> str:
        common.validate_ref(name, what="container")
        with self._errors(container=name):
            container = self._client.containers.get(name)
            kwargs: dict[str, Any] = {"stdout": True, "stderr": True}
            if tail:
                kwargs["tail"] = tail
            chunks = container.logs(**kwargs)
            data = b"".join(chunks) if not isinstance(chunks, bytes) else chunks
        return data.decode(errors="replace")

    def follow_logs(self, name: str) -> Iterator[str]:
        common.validate_ref(name, what="container")
        with self._errors(container=name):
            container = self._client.containers.get(name)
            for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=True):
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

    def stop(self, name: str, *, timeout: int | None = None) -> None:
        attrs = self._attrs(name)
        with self._errors(container=name):
            response = self._api.post(
                f"/containers/{attrs['Id']}/stop",
                params={"timeout": timeout if timeout is not None else 10},
            )
            response.raise_for_status(not_found=podman.errors.NotFound)

    def remove(self, name: str, *, force: bool = False) -> None:
        attrs = self._attrs(name)
        with self._errors(container=name):
            response = self._api.delete(
                f"/containers/{attrs['Id']}", params={"force": force, "v": False}
            )
            response.raise_for_status(not_found=podman.errors.NotFound)
        registry.forget_container(self.kind, self.url, attrs["Id"])

    # -- checkpoint / restore -------------------------------------------------------------
    def checkpoint(self, name: str, options: CheckpointOptions) -> Checkpoint:
        attrs = self._attrs(name)
        cp_name = options.name or registry.new_checkpoint_name()
        common.validate_checkpoint_name(cp_name)
        state = attrs.get("State") or {}
        if not state.get("Running") or state.get("Paused"):
            raise Conflict(
                f"container {name} is not running; only a running container can be checkpointed",
                hint=f"start it first: ctk start {name}",
            )
        params = {
            # keep: CRIU's log and stats stay beside the images, for error reports and
            # --print-stats, and a restore does not consume the checkpoint.
            "keep": True,
            "leaveRunning": options.leave_running,
            "tcpEstablished": options.tcp_established,
            "fileLocks": options.file_locks,
        }
        try:
            response = self._api.post(f"/containers/{attrs['Id']}/checkpoint", params=params)
            response.raise_for_status()
        except podman.errors.APIError as exc:
            if getattr(exc, "status_code", None) is None:
                raise EngineUnavailable(f"Podman does not answer at {self.url}") from exc
            self._ensure_running_after_failure(attrs["Id"])
            raise common.criu_error(
                "checkpoint", name, _explanation(exc), self._criu_log(attrs, "dump.log")
            ) from exc
        record = registry.record_checkpoint(self.kind, self.url, attrs["Id"], cp_name)
        # The new checkpoint replaced the one held in place: forget older names.
        registry.forget_others(self.kind, self.url, attrs["Id"], keep=cp_name)
        return Checkpoint(name=cp_name, container=name, engine=self.kind, created=record.created)

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
        present = registry.names(self.kind, self.url, attrs["Id"]) if has_image else []
        return registry.ordered(self.kind, self.url, attrs["Id"], present, container=name)

    def remove_checkpoint(self, name: str, checkpoint: str) -> None:
        attrs = self._attrs(name)
        common.validate_checkpoint_name(checkpoint)
        if checkpoint not in {c.name for c in self.checkpoints(name)}:
            raise CheckpointNotFound(f"no checkpoint {checkpoint} for container {name}")
        # Podman has no route to delete the in-place checkpoint alone; forgetting it makes
        # ctk never restore from it, and Podman overwrites it on the next checkpoint.
        registry.forget_checkpoint(self.kind, self.url, attrs["Id"], checkpoint)

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
        common.choose_checkpoint(name, available, options.checkpoint)
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
                raise EngineUnavailable(f"Podman does not answer at {self.url}") from exc
            if exc.args and str(exc.args[0]) in _STATE_CAUSES:
                # Not CRIU: libpod refused for the container's state (e.g. a killed container
                # that libpod has not finished cleaning up yet).
                raise Conflict(_explanation(exc)) from exc
            raise common.criu_error(
                "restore", name, _explanation(exc), self._criu_log(attrs, "restore.log")
            ) from exc
        return self.inspect(attrs["Id"])

    def kill(self, name: str, *, signal: str = "KILL") -> None:
        attrs = self._attrs(name)
        with self._errors(container=name):
            response = self._api.post(f"/containers/{attrs['Id']}/kill", params={"signal": signal})
            response.raise_for_status(not_found=podman.errors.NotFound)

    def exit_status(self, name: str) -> ExitStatus:
        return common.exit_status_from_state(self._attrs(name).get("State") or {})

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
        attrs = self._attrs(name)
        cp_options = options.checkpoint
        cp_name = cp_options.name or registry.new_checkpoint_name()
        common.validate_checkpoint_name(cp_name)
        state = attrs.get("State") or {}
        if not state.get("Running") or state.get("Paused"):
            raise Conflict(
                f"container {name} is not running; only a running container can be checkpointed",
                hint=f"start it first: ctk start {name}",
            )
        engine = self.info()
        timings: dict[str, float] = {}
        with archive.staging_dir(path) as stage:
            payload = stage / PODMAN_PAYLOAD
            started = time.monotonic()
            params = {
                "export": True,
                "keep": True,
                # CRIU's stats-dump goes into the export, for inspect and --print-stats
                "printStats": True,
                "leaveRunning": cp_options.leave_running,
                "tcpEstablished": cp_options.tcp_established,
                "fileLocks": cp_options.file_locks,
            }
            try:
                response = self._api.post(
                    f"/containers/{attrs['Id']}/checkpoint", params=params, stream=True
                )
                response.raise_for_status()
                with payload.open("wb") as out:
                    for chunk in response.iter_content(chunk_size=1024 * 1024):
                        out.write(chunk)
            except podman.errors.APIError as exc:
                if getattr(exc, "status_code", None) is None:
                    raise EngineUnavailable(f"Podman does not answer at {self.url}") from exc
                self._ensure_running_after_failure(attrs["Id"])
                raise common.criu_error(
                    "checkpoint", name, _explanation(exc), self._criu_log(attrs, "dump.log")
                ) from exc
            except requests.exceptions.RequestException as exc:
                self._ensure_running_after_failure(attrs["Id"])
                raise EngineUnavailable(f"Podman broke off the export: {exc}") from exc
            timings["checkpoint"] = round(time.monotonic() - started, 3)
            registry.record_checkpoint(self.kind, self.url, attrs["Id"], cp_name)
            registry.forget_others(self.kind, self.url, attrs["Id"], keep=cp_name)
            try:
                archive.check_nested_tar(payload, what="podman checkpoint")
                manifest = common.archive_manifest(
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
        common.validate_checkpoint_name(checkpoint)
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
            common.validate_ref(options.name, what="container")
        with archive.open_archive(archive_path) as verified:
            manifest = verified.manifest
            common.require_archive_engine(manifest, self.kind, str(archive_path))
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
                    hint=common.image_missing_hint(manifest.image, manifest.image_id, self.kind),
                )
            target = options.name or manifest.container_name
            with self._errors():
                if target and self._exists(target):
                    raise Conflict(
                        f"a container named {target} exists already",
                        hint="import under another name: ctk restore --import FILE --name NEW",
                    )
            params: dict[str, Any] = {
                "import": True,
                "keep": True,
                "tcpEstablished": options.tcp_established,
                "fileLocks": options.file_locks,
                "ignoreStaticIP": options.ignore_static_ip,
                "ignoreStaticMAC": options.ignore_static_ip,
            }
            if options.name:
                params["name"] = options.name
            if options.ports:
                params["publishPorts"] = [common.publish_arg(p) for p in options.ports]
            try:
                with payload.open("rb") as body:
                    response = self._api.post(
                        "/containers/import/restore",
                        params=params,
                        data=body,
                        headers={"Content-Type": "application/x-tar"},
                    )
                    response.raise_for_status()
                new_id = str(response.json()["Id"])
            except BaseException as exc:
                # Nothing half-made: a container under the target name is the one we made.
                with contextlib.suppress(Exception):
                    if target and self._exists(target):
                        self._api.delete(
                            f"/containers/{target}", params={"force": True}
                        ).raise_for_status()
                if isinstance(exc, podman.errors.APIError):
                    if getattr(exc, "status_code", None) is None:
                        raise EngineUnavailable(f"Podman does not answer at {self.url}") from exc
                    raise common.criu_error("import", target, _explanation(exc)) from exc
                raise
        return self.inspect(new_id)

    def close(self) -> None:
        self._client.close()


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
        image_id=common.normalize_image_id(str(attrs.get("Image", ""))),
        status=common.status_of(state),
        running=bool(state.get("Running")),
        command=tuple(config.get("Cmd") or ()),
        created=str(attrs.get("Created", "")),
        ports=common.ports_from_inspect(ports),
        labels=dict(config.get("Labels") or {}),
        engine=engine,
    )
