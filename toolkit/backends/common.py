"""Engine-neutral helpers shared by the backends: validation, model building, CRIU errors.

No SDK imports here: both backends use these on plain dicts, so the engines report the same
keys and values for the same container.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import platform
import re
import tarfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from toolkit.backends import DEFAULT_URLS
from toolkit.errors import (
    CheckpointError,
    CheckpointNotFound,
    Conflict,
    EngineUnavailable,
    InvalidArgument,
    Unsupported,
)
from toolkit.models import (
    ArchiveManifest,
    Checkpoint,
    ContainerInfo,
    ContainerSpec,
    ContainerStats,
    EngineInfo,
    ExitStatus,
    Mount,
    NetworkAttachment,
    NetworkEndpoint,
    NetworkInfo,
    NetworkSpec,
    PortMapping,
    ProcessList,
)

# Docker's own rule for container names, which Podman shares.
_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_CHECKPOINT_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")

# CRIU reasons that a flag fixes: (pattern in CRIU's log, hint).
KNOWN_CRIU_REASONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"established TCP|TCP connection|tcp-established|\bESTABLISHED\b", re.I),
        "the container holds an established TCP connection: retry with --tcp-established",
    ),
    (
        re.compile(r"file[- ]locks?|\bflock\b|posix lock", re.I),
        "the container holds file locks: retry with --file-locks",
    ),
    (
        re.compile(r"external (unix )?socket|unix socket.*external|sk unix.*peer", re.I),
        "the container is connected to a unix socket outside it; CRIU cannot dump that peer",
    ),
    (
        re.compile(r"unsupported.*device|character device|can't dump.*dev", re.I),
        "the container uses a device CRIU cannot checkpoint",
    ),
    (
        re.compile(r"Unexpected rt vDSO|vdso: .*(failed|unexpected|bounds)", re.I),
        "this CRIU is too old for the kernel: install CRIU >= 4.1 (scripts/setup)",
    ),
)


def validate_ref(name: str, *, what: str) -> None:
    """Reject names no engine would accept, before asking one."""
    if not name or not _NAME_RE.match(name) or len(name) > 253:
        raise InvalidArgument(
            f"invalid {what} name {name!r}",
            hint="names are letters, digits, '_', '.', '-', starting with a letter or digit",
        )


def validate_checkpoint_name(name: str) -> None:
    if not _CHECKPOINT_RE.match(name):
        raise InvalidArgument(
            f"invalid checkpoint name {name!r}",
            hint="checkpoint names are up to 128 letters, digits, '_', '.', '-'",
        )


def validate_spec(spec: ContainerSpec) -> None:
    if spec.name is not None:
        validate_ref(spec.name, what="container")
    if not spec.image or spec.image != spec.image.strip() or " " in spec.image:
        raise InvalidArgument(
            f"invalid image name {spec.image!r}", hint="e.g. ctk-demo/counter or busybox:latest"
        )


def sdk_ports(ports: Sequence[PortMapping], *, ephemeral: int | None = None) -> dict[str, Any]:
    """Ports in the ``{"80/tcp": (ip, port)}`` form both SDKs accept.

    ``ephemeral`` is how the SDK spells "any free host port" (docker: None, podman: 0).
    """
    result: dict[str, Any] = {}
    for port in ports:
        key = f"{port.container_port}/{port.protocol}"
        host_port = port.host_port or ephemeral
        result[key] = (port.host_ip, host_port) if port.host_ip else host_port
    return result


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


def criu_log_errors(text: str, *, limit: int = 8) -> str:
    """The lines of a CRIU log that say why it failed."""
    lines = [line.strip() for line in text.splitlines() if "Error" in line or "rror (" in line]
    return "\n".join(lines[-limit:])


def _log_paths(message: str) -> list[str]:
    return re.findall(r"(/[\w./@:+-]+?\.log)\b", message)


def criu_error(action: str, container: str, message: str, log_text: str = "") -> CheckpointError:
    """A CheckpointError carrying CRIU's reason and, when the reason is known, the fix."""
    if not log_text:
        for path in _log_paths(message):
            try:
                log_text = Path(path).read_text(errors="replace")
                break
            except OSError:
                continue
    tail = criu_log_errors(log_text) or criu_log_errors(message)
    haystack = f"{message}\n{log_text}"
    hint = ""
    for pattern, reason in KNOWN_CRIU_REASONS:
        if pattern.search(haystack):
            hint = reason
            break
    if not hint:
        hint = (
            f"the container was left as it was; see CRIU's reason above (ctk --debug {action} "
            "shows more)"
        )
    first = message.splitlines()[0] if message else "CRIU failed"
    reason = tail.splitlines()[-1] if tail else first
    return CheckpointError(f"{action} of {container} failed: {reason}", hint=hint, log_tail=tail)


# -- lifecycle ----------------------------------------------------------------------------------

FILTER_KEYS = ("label", "name", "id", "status")
_RESTART_NAMES = ("no", "always", "unless-stopped", "on-failure")


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


def restart_policy(text: str | None) -> dict[str, Any] | None:
    """``no|always|unless-stopped|on-failure[:MAX]`` as the Engine API's RestartPolicy."""
    if not text:
        return None
    name, _, retries = text.partition(":")
    if name not in _RESTART_NAMES or (retries and (name != "on-failure" or not retries.isdigit())):
        raise InvalidArgument(
            f"bad restart policy {text!r}",
            hint="use no, always, unless-stopped or on-failure[:MAX-RETRIES]",
        )
    return {"Name": name, "MaximumRetryCount": int(retries or 0)}


def restart_text(policy: Mapping[str, Any] | None) -> str:
    """RestartPolicy from inspect as ``--restart`` spells it ("no" when unset)."""
    name = str((policy or {}).get("Name") or "no")
    retries = int((policy or {}).get("MaximumRetryCount") or 0)
    return f"{name}:{retries}" if name == "on-failure" and retries else name


def parse_memory(text: str) -> int:
    """``512m``, ``1g``, ``1048576`` (bytes), as docker's ``--memory`` reads them."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmg]?)b?", text.strip().lower())
    if not match:
        raise InvalidArgument(f"bad memory size {text!r}", hint="e.g. 64m, 1g or a byte count")
    factor = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2)]
    return int(float(match.group(1)) * factor)


def parse_since(text: str, *, now: datetime | None = None) -> int:
    """``--since``: a UNIX time, an RFC 3339 time, or a duration back from now (``10m``)."""
    value = text.strip()
    current = now or datetime.now(UTC)
    if value.isdigit():
        return int(value)
    match = re.fullmatch(r"(\d+)([smhd])", value)
    if match:
        seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return int(current.timestamp()) - seconds
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidArgument(
            f"bad --since value {text!r}", hint="use a UNIX time, 2026-01-02T03:04:05Z or 10m"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


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


def require_running(name: str, attrs: Mapping[str, Any], action: str) -> None:
    """Conflict unless the container is running (paused counts as running, as in docker)."""
    state = attrs.get("State") or {}
    if not (state.get("Running") or state.get("Paused")):
        raise Conflict(
            f"container {name} is not running; {action} needs a running container",
            hint=f"start it first: ctk start {name}",
        )


def process_list(name: str, data: Mapping[str, Any]) -> ProcessList:
    """``top`` output (``Titles`` and ``Processes``, the same shape on both engines)."""
    return ProcessList(
        container=name,
        titles=tuple(str(t) for t in data.get("Titles") or ()),
        processes=tuple(tuple(str(c) for c in row) for row in data.get("Processes") or ()),
    )


def require_paused(name: str, attrs: Mapping[str, Any]) -> None:
    """Conflict unless the container is paused."""
    if not (attrs.get("State") or {}).get("Paused"):
        raise Conflict(f"container {name} is not paused", hint=f"pause it with: ctk pause {name}")


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


def with_checkpoints(info: ContainerInfo, url: str) -> ContainerInfo:
    """``info`` with the names of the checkpoints ctk recorded for it, oldest first."""
    from toolkit import records

    recorded = records.names(info.engine, url, info.id)
    if not recorded:
        return info
    ordered = records.ordered(info.engine, url, info.id, recorded, container=info.name)
    return dataclasses.replace(info, checkpoints=tuple(c.name for c in ordered))


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


def require_archive_engine(manifest: ArchiveManifest, kind: str, path: str) -> None:
    """Refuse an archive made by the other engine: its payload is in that engine's format."""
    if manifest.engine != kind:
        raise Unsupported(
            f"archive {path} holds a {manifest.engine or 'unknown'} checkpoint; "
            f"{kind} cannot restore it",
            hint=f"import it with: ctk --engine {manifest.engine} restore --import {path}",
        )


def image_missing_hint(image: str, image_id: str, kind: str) -> str:
    return (
        f"{kind} needs the exact image the checkpoint was taken from ({image}, {image_id}): "
        f"copy it with: docker save {image} | {kind} load"
    )


def publish_arg(port: PortMapping) -> str:
    """A port mapping as ``-p``/libpod's publishPorts spell it: ``[ip:]host:ctr/proto``."""
    target = f"{port.container_port}/{port.protocol}"
    if port.host_port:
        host = f"{port.host_ip}:" if port.host_ip else ""
        return f"{host}{port.host_port}:{target}"
    # no host port: the engine picks a free one
    return f"{port.host_ip}::{target}" if port.host_ip else target


def archive_manifest(
    *,
    engine: EngineInfo,
    attrs: Mapping[str, Any],
    info: ContainerInfo,
    checkpoint: str,
    engine_data: Mapping[str, Any],
) -> ArchiveManifest:
    """The manifest of an archive being written (members are filled in by the writer)."""
    from toolkit.criu.probe import probe_criu

    spec = spec_from_inspect(attrs, image=info.image)
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
    )


# -- networks ----------------------------------------------------------------------------

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


def write_changes(
    changes: Sequence[Mapping[str, Any]],
    fetch: Callable[[str, Path], None],
    out: Path,
    stage: Path,
) -> list[str]:
    """A container's rootfs changes: changed and added files into the tar ``out``; deleted paths.

    ``changes`` is the engine's ``/containers/{id}/changes`` list (Kind 0 changed, 1 added,
    2 deleted); ``fetch(path, tar)`` writes the engine's archive of one path. Only leaves are
    fetched (a changed directory's listed children come on their own), so an added file in
    /etc does not drag the whole of /etc along.
    """
    from toolkit.errors import ContainerNotFound, EngineError

    kinds = {str(c["Path"]): int(c["Kind"]) for c in changes}
    deleted = sorted(p for p, k in kinds.items() if k == 2)
    present = [p for p, k in kinds.items() if k in (0, 1)]
    leaves = sorted(p for p in present if not any(q.startswith(p.rstrip("/") + "/") for q in kinds))
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as combined:
        for leaf in leaves:
            part = stage / "part.tar"
            try:
                fetch(leaf, part)
            except (ContainerNotFound, EngineError):
                continue  # gone between the diff and the fetch (a temp file)
            parent = str(PurePosixPath(leaf).parent).lstrip("/")
            with tarfile.open(part) as piece:
                for member in piece:
                    data = piece.extractfile(member) if member.isfile() else None
                    member.name = f"{parent}/{member.name}" if parent else member.name
                    if member.islnk():
                        member.linkname = (
                            f"{parent}/{member.linkname}" if parent else member.linkname
                        )
                    combined.addfile(member, data)
            part.unlink()
    return deleted
