"""Checks on what users and archives ask of an engine, made before any engine is asked.

Shared by both backends; no SDK imports.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from toolkit.errors import CheckpointNotFound, Conflict, InvalidArgument, Unsupported
from toolkit.models import ArchiveManifest, Checkpoint, ContainerSpec, NetworkSpec

# Re-exported: the backends validate names through this module.
from toolkit.models import validate_checkpoint_name as validate_checkpoint_name

# Docker's own rule for container names, which Podman shares.
# Used with fullmatch: "$" alone also matches before a final newline, which let "cp\n" through.
_NAME_RE = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def validate_ref(name: str, *, what: str) -> None:
    """Reject names no engine would accept, before asking one."""
    if not name or not _NAME_RE.fullmatch(name) or len(name) > 253:
        raise InvalidArgument(
            f"invalid {what} name {name!r}",
            hint="names are letters, digits, '_', '.', '-', starting with a letter or digit",
        )


def auto_removed(attrs: Mapping[str, Any]) -> bool:
    """True for a container started with ``--rm`` (inspect's ``HostConfig.AutoRemove``)."""
    return bool((attrs.get("HostConfig") or {}).get("AutoRemove"))


def refuse_auto_remove_in_place(name: str, attrs: Mapping[str, Any]) -> None:
    """Refuse an in-place checkpoint of an ``--rm`` container, before anything is frozen.

    The engine removes such a container as soon as it stops, and the checkpoints it holds with
    it: dockerd deletes it right after a dump that stops it (``ctk restore`` then finds nothing),
    and libpod refuses the checkpoint outright. Even with ``--leave-running`` the checkpoint
    could never be restored in place, since stopping the container removes it: the state has
    to go into a file.

    Raises:
        Conflict: the container was started with ``--rm``.
    """
    if auto_removed(attrs):
        raise Conflict(
            f"container {name} was started with --rm: its engine removes it, with any "
            "checkpoint kept in it, as soon as it stops",
            hint=f"checkpoint it into a file instead: ctk checkpoint {name} --export FILE "
            "(with -R it keeps running)",
        )


def refuse_mounts_in_held_export(name: str, attrs: Mapping[str, Any]) -> None:
    """Refuse ``checkpoint export`` of a held checkpoint of a container with volumes or bind
    mounts: what they held when the checkpoint was taken is gone (only a new checkpoint's
    export can carry it), and CRIU's restore of the files open there would not match.

    Raises:
        Unsupported: the container mounts something.
    """
    mounted = [str(m.get("Destination", "")) for m in attrs.get("Mounts") or ()]
    if mounted:
        raise Unsupported(
            f"container {name} has volumes or bind mounts ({', '.join(mounted)}), whose "
            "content at the time of a held checkpoint is not kept",
            hint=f"export a new checkpoint instead: ctk checkpoint {name} --export FILE",
        )


def validate_spec(spec: ContainerSpec) -> None:
    if spec.name is not None:
        validate_ref(spec.name, what="container")
    if not spec.image or spec.image != spec.image.strip() or " " in spec.image:
        raise InvalidArgument(
            f"invalid image name {spec.image!r}", hint="e.g. ctk-demo/counter or busybox:latest"
        )


def choose_checkpoint(
    container: str, available: Sequence[Checkpoint], wanted: str | None
) -> Checkpoint:
    """The named checkpoint, or the latest one when none is named."""
    if not available:
        raise CheckpointNotFound(
            f"container {container} has no checkpoint to restore from",
            hint=f"make one first: ctk checkpoint {container}",
        )
    if wanted is None:
        return available[-1]
    validate_checkpoint_name(wanted)
    for checkpoint in available:
        if checkpoint.name == wanted:
            return checkpoint
    names = ", ".join(c.name for c in available)
    raise CheckpointNotFound(f"no checkpoint {wanted} for container {container} (has: {names})")


FILTER_KEYS = ("label", "name", "id", "status")


def validate_filters(filters: Mapping[str, Sequence[str]] | None) -> dict[str, list[str]]:
    """``docker ps --filter`` keys both engines understand the same way."""
    result: dict[str, list[str]] = {}
    for key, values in (filters or {}).items():
        if key not in FILTER_KEYS:
            raise InvalidArgument(
                f"unknown filter {key!r}", hint=f"filters: {', '.join(FILTER_KEYS)}"
            )
        result[key] = [str(v) for v in values]
    return result


def require_running(name: str, attrs: Mapping[str, Any], action: str) -> None:
    """Conflict unless the container is running (paused counts as running, as in docker)."""
    state = attrs.get("State") or {}
    if not (state.get("Running") or state.get("Paused")):
        raise Conflict(
            f"container {name} is not running; {action} needs a running container",
            hint=f"start it first: ctk start {name}",
        )


def require_paused(name: str, attrs: Mapping[str, Any]) -> None:
    """Conflict unless the container is paused."""
    if not (attrs.get("State") or {}).get("Paused"):
        raise Conflict(f"container {name} is not paused", hint=f"pause it with: ctk pause {name}")


def require_archive_engine(manifest: ArchiveManifest, kind: str, path: str) -> None:
    """Refuse an archive made by the other engine: its payload is in that engine's format."""
    if manifest.engine != kind:
        raise Unsupported(
            f"archive {path} holds a {manifest.engine or 'unknown'} checkpoint; "
            f"{kind} cannot restore it",
            hint=f"import it with: ctk --engine {manifest.engine} restore --import {path}",
        )


NETWORK_DRIVERS = ("bridge", "overlay")


# Names Docker gives its built-in networks; a container joins these by network mode.
NETWORK_MODES = ("bridge", "host", "none")


def validate_network_spec(spec: NetworkSpec) -> None:
    """Reject a network no engine would create, before asking one."""
    validate_ref(spec.name, what="network")
    if spec.name in NETWORK_MODES:
        raise InvalidArgument(
            f"network name {spec.name!r} is reserved for the built-in network mode",
            hint="pick another name",
        )
    if spec.driver not in NETWORK_DRIVERS:
        raise InvalidArgument(
            f"unknown network driver {spec.driver!r}", hint="use --driver bridge or overlay"
        )
    subnet = None
    if spec.subnet:
        try:
            subnet = ipaddress.ip_network(spec.subnet, strict=True)
        except ValueError as exc:
            raise InvalidArgument(
                f"invalid subnet {spec.subnet!r}: {exc}", hint="e.g. --subnet 10.90.0.0/24"
            ) from exc
    if spec.gateway:
        if subnet is None:
            raise InvalidArgument(
                "--gateway needs --subnet", hint="e.g. --subnet 10.90.0.0/24 --gateway 10.90.0.1"
            )
        try:
            gateway = ipaddress.ip_address(spec.gateway)
        except ValueError as exc:
            raise InvalidArgument(f"invalid gateway {spec.gateway!r}: {exc}") from exc
        if gateway not in subnet:
            raise InvalidArgument(
                f"gateway {spec.gateway} is outside subnet {spec.subnet}",
                hint="pick a gateway address inside the subnet",
            )
