"""Engine inspect data (plain dicts, the same keys on Docker and Podman) made into ctk's models.

Raw engine JSON ends here: what leaves the backends is a model from toolkit.models.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from toolkit.models import (
    ContainerInfo,
    ContainerSpec,
    ContainerStats,
    EngineEvent,
    ExitStatus,
    FileChange,
    ImageInfo,
    ImageLayer,
    Mount,
    NetworkAttachment,
    NetworkEndpoint,
    NetworkInfo,
    PortMapping,
    ProcessList,
    RuntimeConfig,
    VolumeInfo,
)


def ports_from_inspect(ports: Mapping[str, Any]) -> tuple[PortMapping, ...]:
    """Published ports from inspect's ``NetworkSettings.Ports`` (same shape on both engines)."""
    result: list[PortMapping] = []
    for key, bindings in sorted(ports.items()):
        if not bindings:
            continue
        port, _, proto = key.partition("/")
        for binding in bindings:
            result.append(
                PortMapping(
                    container_port=int(port),
                    host_port=int(binding.get("HostPort") or 0),
                    host_ip=str(binding.get("HostIp") or ""),
                    protocol=proto or "tcp",
                )
            )
    return tuple(result)


def normalize_image_id(image_id: str) -> str:
    """``sha256:<hex>`` on both engines (Podman reports the bare hex)."""
    if not image_id:
        return ""
    return image_id if ":" in image_id else f"sha256:{image_id}"


def status_of(state: Mapping[str, Any]) -> str:
    """Docker's status words for both engines (Podman says 'configured'/'stopped' too)."""
    status = str(state.get("Status", "")).lower()
    return {"configured": "created", "stopped": "exited"}.get(status, status)


def exit_status_from_state(state: Mapping[str, Any]) -> ExitStatus:
    """An ExitStatus from inspect's ``State`` (the same keys on both engines)."""
    running = bool(state.get("Running"))
    code = state.get("ExitCode")
    return ExitStatus(
        running=running,
        status=status_of(state),
        exit_code=None if running or code is None else int(code),
        oom_killed=bool(state.get("OOMKilled")),
        finished_at=str(state.get("FinishedAt") or ""),
    )


def restart_text(policy: Mapping[str, Any] | None) -> str:
    """RestartPolicy from inspect as ``--restart`` spells it ("no" when unset)."""
    name = str((policy or {}).get("Name") or "no")
    retries = int((policy or {}).get("MaximumRetryCount") or 0)
    return f"{name}:{retries}" if name == "on-failure" and retries else name


def timestamp(text: str | None) -> str:
    """An engine's time as ISO 8601 in UTC to the second; "" for Go's zero time."""
    value = str(text or "").strip()
    if not value or value.startswith("0001-01-01"):
        return ""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)?", value)
    if not match:
        return value
    zone = match.group(2) or "Z"
    moment = datetime.fromisoformat(match.group(1) + ("+00:00" if zone == "Z" else zone))
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _env_dict(env: Any) -> dict[str, str]:
    if isinstance(env, dict):
        return {str(k): str(v) for k, v in env.items()}
    result: dict[str, str] = {}
    for item in env or ():
        key, _, value = str(item).partition("=")
        result[key] = value
    return result


def mounts_from_inspect(rows: Sequence[Mapping[str, Any]] | None) -> tuple[Mount, ...]:
    result = []
    for row in rows or ():
        result.append(
            Mount(
                target=str(row.get("Destination", "")),
                source=str(row.get("Source", "")),
                type=str(row.get("Type", "")),
                read_only=not row.get("RW", True),
                name=str(row.get("Name") or ""),
            )
        )
    return tuple(sorted(result, key=lambda m: m.target))


def networks_from_inspect(networks: Mapping[str, Any] | None) -> tuple[NetworkAttachment, ...]:
    return tuple(
        NetworkAttachment(
            name=str(name),
            ip_address=str((data or {}).get("IPAddress") or ""),
            gateway=str((data or {}).get("Gateway") or ""),
            mac_address=str((data or {}).get("MacAddress") or ""),
        )
        for name, data in sorted((networks or {}).items())
    )


def cpus_of(host_config: Mapping[str, Any]) -> float:
    """The CPU limit from NanoCpus, or from the CFS quota Podman reports instead."""
    nano = int(host_config.get("NanoCpus") or 0)
    if nano:
        return round(nano / 1e9, 3)
    quota = int(host_config.get("CpuQuota") or 0)
    period = int(host_config.get("CpuPeriod") or 0) or 100_000
    return round(quota / period, 3) if quota > 0 else 0.0


def lifecycle_fields(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The ContainerInfo fields both engines' inspect output spells the same way."""
    config = attrs.get("Config") or {}
    state = attrs.get("State") or {}
    host = attrs.get("HostConfig") or {}
    network = attrs.get("NetworkSettings") or {}
    return {
        "env": _env_dict(config.get("Env")),
        # Docker leaves it empty for "/", Podman says "/".
        "working_dir": str(config.get("WorkingDir") or "/"),
        "user": str(config.get("User") or ""),
        "hostname": str(config.get("Hostname") or ""),
        "restart_policy": restart_text(host.get("RestartPolicy")),
        "networks": networks_from_inspect(network.get("Networks")),
        "mounts": mounts_from_inspect(attrs.get("Mounts")),
        "started_at": timestamp(state.get("StartedAt")),
        "finished_at": timestamp(state.get("FinishedAt")),
        "exit_code": int(state.get("ExitCode") or 0),
        "paused": bool(state.get("Paused")),
        "memory": int(host.get("Memory") or 0),
        "cpus": cpus_of(host),
        "auto_remove": bool(host.get("AutoRemove")),
        "tty": bool(config.get("Tty")),
    }


def stats_from_sample(sample: Mapping[str, Any], *, name: str, container_id: str) -> ContainerStats:
    """``docker stats`` numbers from one Engine API stats sample (Podman serves the same shape).

    CPU % is the container's share of the host's CPU time between the two readings in the
    sample, times the number of CPUs; memory leaves out the page cache, like docker's CLI.
    """
    cpu = sample.get("cpu_stats") or {}
    pre = sample.get("precpu_stats") or {}
    cpu_delta = int((cpu.get("cpu_usage") or {}).get("total_usage") or 0) - int(
        (pre.get("cpu_usage") or {}).get("total_usage") or 0
    )
    system_delta = int(cpu.get("system_cpu_usage") or 0) - int(pre.get("system_cpu_usage") or 0)
    online = int(cpu.get("online_cpus") or 0) or len(
        (cpu.get("cpu_usage") or {}).get("percpu_usage") or ()
    )
    percent = 0.0
    if cpu_delta > 0 and system_delta > 0:
        percent = cpu_delta / system_delta * max(online, 1) * 100.0
    memory = sample.get("memory_stats") or {}
    details = memory.get("stats") or {}
    # cgroup v2 calls the page cache inactive_file; v1 total_inactive_file or cache.
    cache = int(
        details.get("inactive_file")
        or details.get("total_inactive_file")
        or details.get("cache")
        or 0
    )
    usage = max(int(memory.get("usage") or 0) - cache, 0)
    limit = int(memory.get("limit") or 0)
    return ContainerStats(
        id=container_id,
        name=name,
        cpu_percent=round(percent, 2),
        memory_usage=usage,
        memory_limit=limit,
        memory_percent=round(usage / limit * 100.0, 2) if limit else 0.0,
        pids=int((sample.get("pids_stats") or {}).get("current") or 0),
    )


def process_list(name: str, data: Mapping[str, Any]) -> ProcessList:
    """``top`` output (``Titles`` and ``Processes``, the same shape on both engines)."""
    return ProcessList(
        container=name,
        titles=tuple(str(t) for t in data.get("Titles") or ()),
        processes=tuple(tuple(str(c) for c in row) for row in data.get("Processes") or ()),
    )


def spec_from_inspect(attrs: Mapping[str, Any], *, image: str) -> ContainerSpec:
    """The engine-neutral :class:`ContainerSpec` of an inspected container (either engine).

    What an archive records so that the container can be made again elsewhere.
    """
    config = attrs.get("Config") or {}
    host = attrs.get("HostConfig") or {}
    ports: list[PortMapping] = []
    for key, bindings in sorted((host.get("PortBindings") or {}).items()):
        port, _, proto = key.partition("/")
        for binding in bindings or ():
            ports.append(
                PortMapping(
                    container_port=int(port),
                    host_port=int(binding.get("HostPort") or 0),
                    host_ip=str(binding.get("HostIp") or ""),
                    protocol=proto or "tcp",
                )
            )
    network = str(host.get("NetworkMode") or "")
    name = str(attrs.get("Name", "")).lstrip("/")
    return ContainerSpec(
        image=image,
        command=tuple(config.get("Cmd") or ()),
        name=name or None,
        env=_env_dict(config.get("Env")),
        ports=tuple(ports),
        labels=dict(config.get("Labels") or {}),
        # the engines' default networks are recreated by default: do not name them
        network=None if network in ("", "default", "bridge") else network,
        working_dir=str(config.get("WorkingDir") or "") or None,
        user=str(config.get("User") or "") or None,
    )


def network_from_inspect(data: Mapping[str, Any], engine: str) -> NetworkInfo:
    """A NetworkInfo from Docker's network inspect shape, which Podman's compat API shares."""
    configs = (data.get("IPAM") or {}).get("Config") or []
    # The first IPv4 pool is the one containers get their address from.
    pool: Mapping[str, Any] = next(
        (c for c in configs if ":" not in str(c.get("Subnet", ""))), configs[0] if configs else {}
    )
    endpoints = []
    for container_id, entry in sorted((data.get("Containers") or {}).items()):
        endpoints.append(
            NetworkEndpoint(
                container_id=str(container_id),
                name=str(entry.get("Name", "")).lstrip("/"),
                ipv4=str(entry.get("IPv4Address") or ""),
                mac=str(entry.get("MacAddress") or ""),
                ipv6=str(entry.get("IPv6Address") or ""),
            )
        )
    return NetworkInfo(
        id=str(data.get("Id", "")),
        name=str(data.get("Name", "")),
        driver=str(data.get("Driver", "")),
        scope=str(data.get("Scope") or "local"),
        subnet=str(pool.get("Subnet") or ""),
        gateway=str(pool.get("Gateway") or ""),
        internal=bool(data.get("Internal")),
        attachable=bool(data.get("Attachable")),
        labels=dict(data.get("Labels") or {}),
        containers=tuple(sorted(endpoints, key=lambda e: e.name)),
        created=str(data.get("Created") or ""),
        engine=engine,
    )


def info_from_inspect(attrs: Mapping[str, Any], engine: str) -> ContainerInfo:
    """A ContainerInfo from an engine's container inspect (Docker's shape; Podman's adds
    ``ImageName``, the reference it was created from)."""
    config = attrs.get("Config") or {}
    state = attrs.get("State") or {}
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    return ContainerInfo(
        id=str(attrs["Id"]),
        name=str(attrs.get("Name", "")).lstrip("/"),
        image=str(attrs.get("ImageName") or config.get("Image") or ""),
        image_id=normalize_image_id(str(attrs.get("Image", ""))),
        status=status_of(state),
        # Podman says Running false while paused; Docker (and ctk) count a paused container
        # as running: its processes exist, frozen.
        running=bool(state.get("Running") or state.get("Paused")),
        command=tuple(config.get("Cmd") or ()),
        created=str(attrs.get("Created", "")),
        ports=ports_from_inspect(ports),
        labels=dict(config.get("Labels") or {}),
        engine=engine,
        **lifecycle_fields(attrs),
    )


def runtime_config_from_inspect(attrs: Mapping[str, Any]) -> RuntimeConfig:
    """The :class:`RuntimeConfig` of an inspected container (either engine)."""
    host = attrs.get("HostConfig") or {}
    return RuntimeConfig(
        runtime=str(attrs.get("OCIRuntime") or host.get("Runtime") or "runc"),
        network_mode=str(host.get("NetworkMode") or ""),
        hostname=str((attrs.get("Config") or {}).get("Hostname") or ""),
        mounts=tuple(
            Mount(
                target=str(m.get("Destination", "")),
                source=str(m.get("Source", "")),
                type=str(m.get("Type", "mount")),
            )
            for m in attrs.get("Mounts") or ()
        ),
        auto_remove=bool(host.get("AutoRemove")),
        annotations={
            str(k): str(v)
            for k, v in ((attrs.get("Config") or {}).get("Annotations") or {}).items()
        },
        state_dir=str(attrs.get("StaticDir") or ""),
        upper_dir=str(((attrs.get("GraphDriver") or {}).get("Data") or {}).get("UpperDir") or ""),
        pid=int((attrs.get("State") or {}).get("Pid") or 0),
    )


def _when(value: Any) -> str:
    """ISO 8601 in UTC from an engine's time: epoch seconds (lists, history) or a string."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
    return str(value or "")


def _tags(raw: Mapping[str, Any]) -> tuple[str, ...]:
    # Docker and Podman both say <none>:<none> for an untagged image in some listings.
    return tuple(str(t) for t in raw.get("RepoTags") or () if t and "<none>" not in str(t))


def image_from_inspect(raw: Mapping[str, Any], *, engine: str) -> ImageInfo:
    """An image from ``GET /images/{name}/json`` or one row of ``GET /images/json``
    (the same keys on both engines; a listing row has no RootFS)."""
    config = raw.get("Config") or {}
    labels = raw.get("Labels") or config.get("Labels") or {}
    return ImageInfo(
        id=normalize_image_id(str(raw.get("Id", ""))),
        tags=_tags(raw),
        created=_when(raw.get("Created")),
        size=int(raw.get("Size") or 0),
        labels={str(k): str(v) for k, v in labels.items()},
        layers=tuple(str(layer) for layer in (raw.get("RootFS") or {}).get("Layers") or ()),
        command=tuple(str(c) for c in config.get("Cmd") or ()),
        architecture=str(raw.get("Architecture") or ""),
        os=str(raw.get("Os") or ""),
        engine=engine,
    )


def layers_from_history(rows: Sequence[Mapping[str, Any]]) -> list[ImageLayer]:
    """``GET /images/{name}/history`` (newest first on both engines) as ImageLayers."""
    return [
        ImageLayer(
            id=str(row.get("Id") or "<missing>"),
            created_by=str(row.get("CreatedBy") or ""),
            size=int(row.get("Size") or 0),
            created=_when(row.get("Created")),
            tags=tuple(str(t) for t in row.get("Tags") or () if t),
            comment=str(row.get("Comment") or ""),
        )
        for row in rows
    ]


# The archive package's change kinds, the same numbers on both engines (pkg/archive).
_CHANGE_KINDS = {0: "C", 1: "A", 2: "D"}


def changes_from_api(rows: Sequence[Mapping[str, Any]] | None) -> list[FileChange]:
    """``GET /containers/{name}/changes`` as FileChanges, in path order."""
    result = []
    for row in rows or ():
        kind = row.get("Kind")
        letter = _CHANGE_KINDS.get(kind, "") if isinstance(kind, int) else str(kind)[:1].upper()
        result.append(FileChange(kind=letter or "C", path=str(row.get("Path", ""))))
    return sorted(result, key=lambda c: c.path)


def volume_from_inspect(raw: Mapping[str, Any], *, engine: str) -> VolumeInfo:
    """A volume from ``GET /volumes/{name}`` or a listing row (same keys on both engines)."""
    return VolumeInfo(
        name=str(raw.get("Name", "")),
        driver=str(raw.get("Driver") or "local"),
        mountpoint=str(raw.get("Mountpoint") or ""),
        created=_when(raw.get("CreatedAt")),
        labels={str(k): str(v) for k, v in (raw.get("Labels") or {}).items()},
        scope=str(raw.get("Scope") or "local"),
        engine=engine,
    )


def event_from_api(raw: Mapping[str, Any]) -> EngineEvent:
    """An event of ``GET /events`` (Docker) or ``GET /libpod/events`` (Podman 4 sends the same
    Docker shape: Type, Action, Actor, time/timeNano)."""
    actor = raw.get("Actor") or {}
    attributes = {str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()}
    nanos = raw.get("timeNano")
    when = datetime.fromtimestamp(int(nanos) / 1e9, UTC) if nanos else None
    return EngineEvent(
        type=str(raw.get("Type") or raw.get("type") or ""),
        action=str(raw.get("Action") or raw.get("status") or ""),
        id=str(actor.get("ID") or raw.get("id") or ""),
        time=when.isoformat().replace("+00:00", "Z") if when else _when(raw.get("time")),
        name=attributes.get("name", ""),
        attributes=attributes,
    )


def volume_mounts(
    rows: Sequence[Mapping[str, Any]] | None, *, named: Callable[[str], bool]
) -> tuple[Mount, ...]:
    """A container's volumes and bind mounts from its inspect ``Mounts``, by target.

    ``named`` tells a named volume from an anonymous one (each engine says it elsewhere): an
    anonymous volume's ``source`` is empty, as in ``-v /data``, and ``name`` holds the name
    the engine gave it.
    """
    result = []
    for row in rows or ():
        kind = str(row.get("Type") or "")
        target = str(row.get("Destination") or "")
        read_only = not row.get("RW", True)
        if kind == "volume":
            name = str(row.get("Name") or "")
            source = name if named(name) else ""
            result.append(Mount(target=target, source=source, read_only=read_only, name=name))
        else:
            source = str(row.get("Source") or "")
            result.append(Mount(target=target, source=source, type=kind, read_only=read_only))
    return tuple(sorted(result, key=lambda m: m.target))
