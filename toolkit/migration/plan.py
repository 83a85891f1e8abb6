"""Preflight: everything a migration checks before it touches anything.

A failed preflight raises and changes nothing. A passed one returns a :class:`Plan`: the mode
that will be used and why, whether the image must be copied, and the source's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

from toolkit import archive
from toolkit.backends.base import Backend, VolumeData, Volumes
from toolkit.errors import (
    Conflict,
    ContainerNotFound,
    InvalidArgument,
    Unsupported,
    VolumeNotFound,
)
from toolkit.models import MIGRATION_MODES, ContainerInfo, Mount, PortMapping


@dataclass(frozen=True)
class Plan:
    """What a migration will do, decided by preflight."""

    source_info: ContainerInfo
    target: str
    mode: str
    reason: str
    cross_runtime: bool
    needs_image: bool
    criu_version: str
    mounts: tuple[Mount, ...] = ()
    """The container's volumes and allowed bind mounts: their data moves with it (live: in the
    archive, or across runtimes :mod:`toolkit.migration.volume_transfer`; cold and post-copy:
    :mod:`toolkit.migration.volumes`)."""


def engine_label(backend: Backend) -> str:
    return f"{backend.kind}+{backend.url}"


def same_engine(a: Backend, b: Backend) -> bool:
    return a.kind == b.kind and a.url == b.url


def verify_is_url(verify: str) -> bool:
    """An http(s) URL is fetched from this machine; anything else is a command for exec."""
    parsed = urlparse(verify)
    return parsed.scheme in ("http", "https")


def check_verify(verify: str | None) -> None:
    """``--verify`` takes an http(s) URL, or a command run (``sh -c``) in the new container."""
    if verify is None:
        return
    if verify_is_url(verify):
        if not urlparse(verify).hostname:
            raise InvalidArgument(
                f"--verify URL {verify!r} names no host",
                hint="pass a URL the destination container answers, e.g. http://10.77.0.12:8080/",
            )
        return
    if not verify.strip():
        raise InvalidArgument(
            "--verify is empty", hint="pass an http(s) URL or a command, e.g. 'test -s /www/count'"
        )


def _clashes(wanted: PortMapping, used: PortMapping) -> bool:
    if wanted.protocol != used.protocol or wanted.host_port != used.host_port:
        return False
    wild = ("", "0.0.0.0", "::")
    return wanted.host_ip in wild or used.host_ip in wild or wanted.host_ip == used.host_ip


def preflight(
    name: str,
    *,
    source: Backend,
    dest: Backend,
    mode: str,
    new_name: str | None,
    compress: str,
    verify: str | None,
    cross_runtime_available: bool,
    allow_mounts: Sequence[str] = (),
) -> Plan:
    """Check that the migration can run; change nothing.

    Raises:
        InvalidArgument: unknown mode or compression.
        EngineUnavailable: source or destination does not answer.
        ContainerNotFound: no such container on the source.
        Conflict: the container is not running, the name is taken on the destination, or a
            host port it publishes is taken there.
        Unsupported: ``live`` asked for where the engines or CRIU cannot checkpoint.
    """
    if mode not in MIGRATION_MODES:
        raise InvalidArgument(
            f"unknown migration mode {mode!r}", hint="use live, cold, postcopy or auto"
        )
    archive.validate_compression(compress)
    check_verify(verify)
    source_engine = source.info()
    dest_engine = dest.info()  # reachable (raises EngineUnavailable)
    info = source.inspect(name)
    if not info.running:
        raise Conflict(
            f"container {name} is not running; ctk migrates running containers",
            hint=f"start it first, or recreate it on the destination by hand: {info.image}",
        )
    mounts = _mounts(name, source, dest, allow_mounts=allow_mounts)
    target = new_name or info.name
    if same_engine(source, dest) and target == info.name:
        raise Conflict(
            f"source and destination are the same engine and the name stays {target}",
            hint="pass --name NEW to clone it on the same engine, or another --to",
        )
    try:
        dest.inspect(target)
    except ContainerNotFound:
        pass
    else:
        raise Conflict(
            f"a container named {target} exists on the destination {engine_label(dest)}",
            hint="migrate under another name with --name NEW, or remove that container",
        )
    wanted = [p for p in info.ports if p.host_port]
    if wanted:
        for other in dest.containers():
            for used in other.ports:
                for port in wanted:
                    if _clashes(port, used):
                        raise Conflict(
                            f"host port {port.host_port}/{port.protocol} is taken on the "
                            f"destination by container {other.name}",
                            hint="free the port there first",
                        )
    from toolkit.criu.probe import probe_criu

    criu = probe_criu()
    can_checkpoint = (
        criu.check_ok and source_engine.checkpoint_capable and dest_engine.checkpoint_capable
    )
    why_not = ""
    if not criu.check_ok:
        why_not = "CRIU is not usable here (ctk doctor says why)"
    elif not source_engine.checkpoint_capable:
        why_not = f"{source.kind} at the source cannot checkpoint (experimental mode off?)"
    elif not dest_engine.checkpoint_capable:
        why_not = f"{dest.kind} at the destination cannot checkpoint (experimental mode off?)"
    cross = source.kind != dest.kind
    if cross and can_checkpoint and not cross_runtime_available:
        can_checkpoint = False
        why_not = (
            f"live {source.kind} -> {dest.kind} needs toolkit.migration.cross_runtime, "
            "which this ctk lacks"
        )
    if mode in ("live", "postcopy") and not can_checkpoint:
        raise Unsupported(f"cannot migrate {name} {mode}: {why_not}", hint="use --mode cold")
    if mode == "postcopy":
        # toolkit.migration.postcopy.check says what else it needs, before the journal
        chosen, reason = "postcopy", "asked for postcopy (lazy pages)"
    elif mode == "cold":
        chosen, reason = "cold", "asked for cold (memory state is not kept)"
    elif can_checkpoint:
        chosen = "live"
        reason = "asked for live" if mode == "live" else "auto: both sides can checkpoint"
        if cross:
            reason += f" (cross-runtime {source.kind} -> {dest.kind})"
    else:
        chosen, reason = "cold", f"auto: {why_not}; cold move (memory state is not kept)"
    return Plan(
        source_info=info,
        target=target,
        mode=chosen,
        reason=reason,
        cross_runtime=cross,
        needs_image=not dest.has_image(info.image_id),
        criu_version=criu.version_text,
        mounts=mounts,
    )


def _mounts(
    name: str, source: Backend, dest: Backend, *, allow_mounts: Sequence[str]
) -> tuple[Mount, ...]:
    """The container's volumes and bind mounts, checked before anything is frozen.

    Named and anonymous volumes move with their data; a bind mount only with the user's
    ``--allow-mount`` (the destination must have the path: its content does not move); a named
    volume that exists on the destination is a conflict, as on import.

    Raises:
        Unsupported: a bind mount not allowed, or a mount of another kind.
        Conflict: a named volume of the container exists on the destination.
    """
    from toolkit.archive.volumes import harmless_bind
    from toolkit.backends.volume_data import allowed

    if not isinstance(source, VolumeData):
        return ()
    mounts = tuple(m for m in source.container_volumes(name) if not harmless_bind(m))
    for mount in mounts:
        if mount.type == "bind" and not allowed(mount.source, allow_mounts):
            raise Unsupported(
                f"container {name} bind-mounts the host's {mount.source} at {mount.target}; "
                "ctk moves volumes, not host directories",
                hint="if the destination has that directory too: --allow-mount "
                f"{mount.source} (its content does not move)",
            )
        if mount.type not in ("bind", "volume"):
            raise Unsupported(f"container {name} has a {mount.type} mount at {mount.target}")
    named = [m.source for m in mounts if m.type == "volume" and m.source]
    if named and isinstance(dest, Volumes):
        for volume in named:
            try:
                dest.inspect_volume(volume)
            except VolumeNotFound:
                continue
            raise Conflict(
                f"a volume named {volume} exists on the destination {engine_label(dest)}",
                hint="remove it there (ctk volume rm), or move the container's data by hand",
            )
    return mounts
