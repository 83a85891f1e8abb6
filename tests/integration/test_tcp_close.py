"""``ctk restore --tcp-close``: a checkpoint holding an established TCP connection restored with
the connection closed (CRIU's tcp-close). Podman: through an import (ctk hands CRIU the option in
a per-container config file; libpod's API has no switch), refused in place; Docker: refused,
its API passes no CRIU options (exit 6)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX_IMAGE, Containers, ctk, wait_for
from toolkit import records
from toolkit.backends.base import Backend
from toolkit.errors import ExitCode
from toolkit.models import CheckpointOptions

pytestmark = [pytest.mark.integration, pytest.mark.criu]

_PING = re.compile(r"ping(\d+)")
# PID 1 without a TERM handler waits out the engine's 10 s stop timeout on removal
SLEEPER = ("sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done")


def _ip(engine: Backend, name: str) -> str:
    out = subprocess.run(
        [engine.kind, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def _pings(engine: Backend, name: str) -> int:
    found = _PING.findall(engine.logs(name))
    return int(found[-1]) if found else 0


def _connected_client(engine: Backend, containers: Containers) -> tuple[str, str]:
    """A client holding an established connection to a server (their names); the client says
    ``closed`` (and stays up) when the connection ends."""
    server = containers.run(BUSYBOX_IMAGE, command=("sh", "-c", "sleep 100000 | nc -l -p 9000"))
    wait_for(lambda: bool(_ip(engine, server.name)), what="server address")
    script = (
        "i=0; while :; do i=$((i+1)); echo ping$i; sleep 0.3; done "
        f"| nc {_ip(engine, server.name)} 9000; echo closed; exec sleep 100000"
    )
    client = containers.run(BUSYBOX_IMAGE, command=("sh", "-c", script))
    wait_for(lambda: _pings(engine, server.name) >= 2, what="pings over TCP")
    return server.name, client.name


def test_tcp_close_refused_in_place(engine: Backend, containers: Containers, criu: None) -> None:
    info = containers.run(BUSYBOX_IMAGE, command=SLEEPER)
    engine.checkpoint(info.name, CheckpointOptions(name="cp"))
    refused = ctk("restore", info.name, "--tcp-close", engine=engine.kind)
    assert refused.returncode == ExitCode.UNSUPPORTED, refused.stderr
    assert "cannot pass --tcp-close to CRIU" in refused.stderr
    assert "Hint:" in refused.stderr and "Traceback" not in refused.stderr
    assert not engine.inspect(info.name).running  # nothing was tried
    assert ctk("restore", info.name, engine=engine.kind).returncode == 0


def test_import_with_tcp_close(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    path = tmp_path / "client.ctk"
    if engine.kind == "docker":
        # Docker can dump no established connection at all; any archive's import with
        # --tcp-close is refused before anything is created
        plain = containers.run(BUSYBOX_IMAGE, command=SLEEPER)
        done = ctk("checkpoint", plain.name, "--export", str(path), "-R", engine=engine.kind)
        assert done.returncode == 0, done.stderr
        clone = containers.name("clone")
        refused = ctk(
            "restore", "--import", str(path), "--name", clone, "--tcp-close", engine=engine.kind
        )
        assert refused.returncode == ExitCode.UNSUPPORTED, refused.stderr
        assert "Docker's API cannot pass --tcp-close to CRIU" in refused.stderr
        assert clone not in {c.name for c in engine.containers(all=True)}
        return
    server, client = _connected_client(engine, containers)
    done = ctk("checkpoint", client, "--export", str(path), "--tcp-established", engine=engine.kind)
    assert done.returncode == 0, done.stderr
    engine.remove(client, force=True)
    clone = containers.name("clone")
    # without it CRIU refuses the connection it finds in the images
    plain = ctk("restore", "--import", str(path), "--name", clone, engine=engine.kind)
    assert plain.returncode == ExitCode.CHECKPOINT_FAILED, plain.stderr
    assert clone not in {c.name for c in engine.containers(all=True)}
    restored = ctk(
        "restore", "--import", str(path), "--name", clone, "--tcp-close", engine=engine.kind
    )
    assert restored.returncode == 0, restored.stderr
    # the restored client finds its connection closed: nc ends, the script goes on
    wait_for(lambda: "closed" in engine.logs(clone), what="the connection found closed")
    assert engine.inspect(clone).running
    # the per-container CRIU config lived for the restore only
    assert not list(records.criu_config_dir().glob(f"{clone}-*.conf"))
    for name in (server, clone):  # at once: their shells ignore SIGTERM
        engine.kill(name)
