"""What both backends share: the base class of their clients, errors, hints, records."""

from __future__ import annotations

import dataclasses
import ipaddress
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from toolkit.backends import DEFAULT_URLS, validation
from toolkit.backends.inspection import (
    exit_status_from_state,
    info_from_inspect,
    runtime_config_from_inspect,
    spec_from_inspect,
)
from toolkit.errors import (
    ContainerNotFound,
    CtkError,
    EngineError,
    EngineUnavailable,
    ImageNotFound,
    NetworkNotFound,
    RegistryUnavailable,
)
from toolkit.models import (
    ArchiveManifest,
    ContainerInfo,
    ContainerSpec,
    EngineInfo,
    ExitStatus,
    Mount,
    NetworkInfo,
    RuntimeConfig,
)


def unavailable(kind: str, url: str) -> EngineUnavailable:
    """EngineUnavailable whose hint fits the address: ctk's own engines, or the user's."""
    name = kind.capitalize()
    if url == DEFAULT_URLS.get(kind):
        return EngineUnavailable(f"{name} does not answer at {url}")
    if url.startswith("unix://"):
        start = f"podman system service --time=0 {url}" if kind == "podman" else f"dockerd -H {url}"
        hint = (
            f"nothing serves {url[len('unix://') :]}: start {kind} there ({start}), "
            "or pick another engine (ctk engine ls)"
        )
    else:
        hint = f"check that {kind} is reachable at {url} and the URL is right (ctk engine ls)"
    return EngineUnavailable(f"{name} does not answer at {url}", hint=hint)


def file_from_tar(data: bytes, name: str) -> bytes | None:
    """The regular file called ``name`` in an engine's archive answer (one path's tar).

    Both engines' archive routes (``GET /containers/{id}/archive``) answer a tar of the path
    asked for; a helper container bind-mounting a host directory turns that into a read of the
    engine host's file (see the backends' ``_helper``).
    """
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.rsplit("/", 1)[-1] == name:
                extracted = tar.extractfile(member)
                return extracted.read() if extracted is not None else None
    return None


def not_found(container: str | None, explanation: str) -> CtkError:
    """The error for an engine's 404: the named container's, else the engine's own words."""
    if container is not None:
        return ContainerNotFound(f"no such container: {container}")
    return EngineError(explanation)


def with_checkpoints(info: ContainerInfo, url: str) -> ContainerInfo:
    """``info`` with the names of the checkpoints ctk recorded for it, oldest first."""
    from toolkit import records

    recorded = records.names(info.engine, url, info.id)
    if not recorded:
        return info
    ordered = records.ordered(info.engine, url, info.id, recorded, container=info.name)
    return dataclasses.replace(info, checkpoints=tuple(c.name for c in ordered))


def image_missing_hint(image: str, image_id: str, kind: str) -> str:
    return (
        f"{kind} needs the exact image the checkpoint was taken from ({image}, {image_id}): "
        f"copy it with: docker save {image} | {kind} load"
    )


def archive_manifest(
    *,
    engine: EngineInfo,
    attrs: Mapping[str, Any],
    info: ContainerInfo,
    checkpoint: str,
    engine_data: Mapping[str, Any],
    mounts: Sequence[Mount] = (),
    volumes_ignored: bool = False,
) -> ArchiveManifest:
    """The manifest of an archive being written (members are filled in by the writer).

    ``mounts``: the container's volumes and bind mounts (``spec.volumes``); ``volumes_ignored``
    says that the volumes' data was left out.
    """
    spec = dataclasses.replace(spec_from_inspect(attrs, image=info.image), volumes=tuple(mounts))
    return new_manifest(
        engine=engine,
        info=info,
        checkpoint=checkpoint,
        spec=spec,
        engine_data=engine_data,
        volumes_ignored=volumes_ignored and any(m.type == "volume" for m in mounts),
    )


def new_manifest(
    *,
    engine: EngineInfo,
    info: ContainerInfo,
    checkpoint: str,
    spec: ContainerSpec,
    engine_data: Mapping[str, Any],
    volumes_ignored: bool = False,
) -> ArchiveManifest:
    """A manifest for container ``info``'s checkpoint, dated now, with this machine's CRIU and
    kernel (the engines' APIs report neither): archives and checkpoint images alike."""
    from toolkit.criu.probe import probe_criu

    return ArchiveManifest(
        format_version=1,
        engine=engine.kind,
        engine_version=engine.version,
        criu_version=probe_criu(run_check=False).version_text,
        container_id=info.id,
        container_name=info.name,
        image=info.image,
        image_id=info.image_id,
        checkpoint=checkpoint,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        spec=spec.to_dict(),
        engine_data=dict(engine_data),
        kernel=platform.release(),
        volumes_ignored=volumes_ignored,
    )


class BackendBase:
    """What the Docker and Podman backends do alike, written once over a few engine hooks.

    Both engines answer inspect in Docker's shape (Podman adds keys), so everything built from
    an inspect lives here; an engine's client class supplies ``_attrs`` (its inspect),
    ``_container_ids`` and ``_network_refs`` (its list routes) and ``inspect_network``.
    """

    kind: str
    url: str
    # Any: the SDK's client object (docker.DockerClient or podman.PodmanClient).
    _client: Any

    # -- engine hooks ----------------------------------------------------------------------
    def _attrs(self, name: str) -> dict[str, Any]:
        """The engine's inspect data of container ``name``. Raises ContainerNotFound."""
        raise NotImplementedError

    def _container_ids(self, *, all: bool, filters: dict[str, list[str]]) -> list[str]:
        """IDs of the containers the engine lists (``filters`` already validated)."""
        raise NotImplementedError

    def _network_refs(self) -> list[str]:
        """A reference (ID or name) to every network, in the order of their names."""
        raise NotImplementedError

    def inspect_network(self, name: str) -> NetworkInfo:
        raise NotImplementedError

    # -- written once -----------------------------------------------------------------------
    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except Exception:
            # ping answers a question: any failure to answer it means "no".
            return False

    def inspect(self, name: str) -> ContainerInfo:
        return with_checkpoints(info_from_inspect(self._attrs(name), self.kind), self.url)

    def containers(
        self, *, all: bool = False, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[ContainerInfo]:
        wanted = validation.validate_filters(filters)
        result: list[ContainerInfo] = []
        for container_id in self._container_ids(all=all, filters=wanted):
            try:
                result.append(self.inspect(container_id))
            except ContainerNotFound:
                continue  # removed between the list and the inspect
        return result

    def exit_status(self, name: str) -> ExitStatus:
        return exit_status_from_state(self._attrs(name).get("State") or {})

    def networks(self) -> list[NetworkInfo]:
        result: list[NetworkInfo] = []
        for ref in self._network_refs():
            try:
                result.append(self.inspect_network(ref))
            except NetworkNotFound:
                continue  # removed between the list and the inspect
        return result

    # -- migration (toolkit.migration) --------------------------------------------------
    def mounts(self, name: str) -> tuple[str, ...]:
        """Where the container has volumes or bind mounts (their destinations)."""
        attrs = self._attrs(name)
        return tuple(str(m.get("Destination", "")) for m in attrs.get("Mounts") or ())

    def runtime_config(self, name: str) -> RuntimeConfig:
        """How the engine runs the container (runtime, network mode, mounts, hostname).

        Raises:
            ContainerNotFound: no such container.
        """
        return runtime_config_from_inspect(self._attrs(name))

    def container_spec(self, name: str) -> ContainerSpec:
        """The engine-neutral spec to make this container again elsewhere."""
        attrs = self._attrs(name)
        info = info_from_inspect(attrs, self.kind)
        return spec_from_inspect(attrs, image=info.image)


# What engines say when the registry itself is unreachable or speaks another protocol;
# matched in the engine's message because both engines report it as a plain 500.
_REGISTRY_DOWN = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "server gave http response to https client",
    "connection reset",
    "no route to host",
    "network is unreachable",
)
# ... and when the registry answers but lacks the repository, tag or manifest.
_REGISTRY_MISSING = (
    "manifest unknown",
    "name unknown",
    "not found",
    "does not exist",
    "no such image",
    "repository does not exist",
)


def registry_host(reference: str) -> str:
    """The registry part of an image reference (``docker.io`` when it names none)."""
    first, sep, _ = reference.partition("/")
    # docker's rule: the first component names a registry when it has a dot, a port or is
    # localhost; otherwise the reference is a Docker Hub name.
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def is_loopback_registry(reference: str) -> bool:
    """True when the reference's registry is on this host (localhost, 127.0.0.0/8, ::1):
    Docker treats those as insecure by itself, so ctk does the same on Podman."""
    host = registry_host(reference)
    if host.startswith("["):
        host = host[1 : host.find("]")]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def registry_error(kind: str, action: str, reference: str, message: str) -> CtkError:
    """The ctk error for a failed pull or push, from the engine's one-line message."""
    text = " ".join(message.split())
    lowered = text.lower()
    host = registry_host(reference)
    if any(m in lowered for m in _REGISTRY_DOWN):
        hint = f"is a registry running at {host}? check the address and port"
        if "server gave http response" in lowered:
            hint = (
                f"{host} speaks plain HTTP: use --no-tls-verify (podman), or list it in "
                "dockerd's insecure-registries (docker)"
            )
        return RegistryUnavailable(
            f"{kind} {action} {reference}: registry {host}: {text}", hint=hint
        )
    if any(m in lowered for m in _REGISTRY_MISSING):
        where = f"on {host}" if action == "pull" else "locally"
        hint = f"check the name and tag {where}" + (
            " (ctk images lists the local ones)" if action == "push" else ""
        )
        return ImageNotFound(f"{kind} {action} {reference}: {text}", hint=hint)
    return EngineError(f"{kind} {action} {reference}: {text}")
