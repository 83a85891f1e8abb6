"""Engine-neutral helpers shared by the backends: validation, model building, CRIU errors.

No SDK imports here: both backends use these on plain dicts, so the engines report the same
keys and values for the same container.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from toolkit.errors import CheckpointError, CheckpointNotFound, InvalidArgument, Unsupported
from toolkit.models import (
    ArchiveManifest,
    Checkpoint,
    ContainerInfo,
    ContainerSpec,
    EngineInfo,
    ExitStatus,
    PortMapping,
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
        re.compile(r"vdso|Unexpected rt vDSO", re.I),
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


def _env_dict(env: Any) -> dict[str, str]:
    if isinstance(env, dict):
        return {str(k): str(v) for k, v in env.items()}
    result: dict[str, str] = {}
    for item in env or ():
        key, _, value = str(item).partition("=")
        result[key] = value
    return result


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
