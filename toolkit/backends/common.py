"""Engine-neutral helpers shared by the backends: validation, model building, CRIU errors.

No SDK imports here: both backends use these on plain dicts, so the engines report the same
keys and values for the same container.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from toolkit.errors import CheckpointError, CheckpointNotFound, InvalidArgument
from toolkit.models import Checkpoint, ContainerSpec, ExitStatus, PortMapping

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
