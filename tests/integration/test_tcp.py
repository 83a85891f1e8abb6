"""A container holding an established TCP connection: the hint, and --tcp-established."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import BUSYBOX_IMAGE, Containers, ctk, wait_for
from toolkit.backends.base import Backend
from toolkit.errors import ExitCode

pytestmark = [pytest.mark.integration, pytest.mark.criu]

_PING = re.compile(r"ping(\d+)")


def _ip(engine: Backend, name: str) -> str:
    out = subprocess.run(
        [engine.kind, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def _pings(engine: Backend, name: str) -> list[int]:
    return [int(n) for n in _PING.findall(engine.logs(name))]


def _last_ping(engine: Backend, name: str) -> int:
    pings = _pings(engine, name)
    return pings[-1] if pings else 0


def test_established_tcp_connection(engine: Backend, containers: Containers, criu: None) -> None:
    # The server keeps its stdin open so that nc never closes the connection on its own.
    server = containers.run(BUSYBOX_IMAGE, command=("sh", "-c", "sleep 100000 | nc -l -p 9000"))
    wait_for(lambda: bool(_ip(engine, server.name)), what="server address")
    address = _ip(engine, server.name)
    client = containers.run(
        BUSYBOX_IMAGE,
        command=(
            "sh",
            "-c",
            f"i=0; while :; do i=$((i+1)); echo ping$i; sleep 1; done | nc {address} 9000",
        ),
    )
    wait_for(lambda: _last_ping(engine, server.name) >= 2, what="pings over TCP")

    refused = ctk("checkpoint", client.name, engine=engine.kind)
    assert refused.returncode == ExitCode.CHECKPOINT_FAILED, refused.stderr
    assert (
        "Hint: the container holds an established TCP connection: retry with "
        "--tcp-established" in refused.stderr
    )
    assert "Traceback" not in refused.stderr
    assert engine.inspect(client.name).running
    before = _last_ping(engine, server.name)
    wait_for(lambda: _last_ping(engine, server.name) > before, what="connection still alive")

    result = ctk("checkpoint", client.name, "--tcp-established", engine=engine.kind)
    if engine.kind == "docker":
        # Docker's checkpoint API has no way to hand CRIU this option.
        assert result.returncode == ExitCode.UNSUPPORTED, result.stderr
        assert "--engine podman" in result.stderr
        assert engine.inspect(client.name).running
        return
    assert result.returncode == 0, result.stderr
    assert not engine.inspect(client.name).running
    frozen_at = _last_ping(engine, server.name)
    ctk("restore", client.name, "--tcp-established", engine=engine.kind, check=True)
    # The same connection carries on: the numbering continues, no reconnect from ping1.
    wait_for(lambda: _last_ping(engine, server.name) >= frozen_at + 2, what="pings after restore")
    pings = _pings(engine, server.name)
    assert pings == sorted(pings) and pings.count(1) == 1, pings
