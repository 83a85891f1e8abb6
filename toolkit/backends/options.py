"""ctk's specs as the engines' request parameters (ports, restart policies, publish arguments)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from toolkit.errors import InvalidArgument
from toolkit.models import PortMapping


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


_RESTART_NAMES = ("no", "always", "unless-stopped", "on-failure")


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


def publish_arg(port: PortMapping) -> str:
    """A port mapping as ``-p``/libpod's publishPorts spell it: ``[ip:]host:ctr/proto``."""
    target = f"{port.container_port}/{port.protocol}"
    if port.host_port:
        host = f"{port.host_ip}:" if port.host_ip else ""
        return f"{host}{port.host_port}:{target}"
    # no host port: the engine picks a free one
    return f"{port.host_ip}::{target}" if port.host_ip else target
