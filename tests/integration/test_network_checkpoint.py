"""Checkpoint and restore in place per network mode, on both engines.

The counter+HTTP container on the default bridge, on a user bridge, on the host network and
behind a port mapping: after a restore the counter continues, the port answers, the name
resolves and the address is the same (except on Docker's shared default bridge, where the
address is whatever is free at restore: see below). A host-network container holding a live TCP connection
cannot be dumped without --tcp-established: a clear CheckpointError, and it keeps running; with
it (Podman), the connection survives the checkpoint and restore.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import (
    BUSYBOX_IMAGE,
    COUNTER_IMAGE,
    Containers,
    counts,
    last_count,
    wait_count_at_least,
    wait_for,
)
from tests.integration.conftest import (
    Networks,
    counter_command,
    free_port,
    http_get,
    probe,
    probe_answer,
    probe_resolved,
)
from toolkit.backends.base import Backend
from toolkit.errors import CheckpointError, Unsupported
from toolkit.models import (
    CheckpointOptions,
    ExportOptions,
    ImportOptions,
    PortMapping,
    RestoreOptions,
)

pytestmark = [pytest.mark.integration, pytest.mark.criu]


def _answers_on_loopback(port: int) -> int:
    """The count served on 127.0.0.1:port, once it answers."""
    answer: list[int] = []

    def ready() -> bool:
        try:
            answer.append(int(http_get(port)))
        except OSError:
            return False
        return True

    wait_for(ready, timeout=20, what=f"an answer on 127.0.0.1:{port}")
    return answer[-1]


def _checkpoint_restore(engine: Backend, name: str) -> tuple[int, int]:
    """Checkpoint and restore in place; the counts just before and a while after."""
    before = wait_count_at_least(engine, name, 3)
    engine.checkpoint(name, CheckpointOptions(name="net"))
    assert not engine.inspect(name).running
    before = max(before, last_count(engine, name))
    assert engine.restore(name, RestoreOptions(checkpoint="net")).running
    after = wait_count_at_least(engine, name, before + 2)
    history = counts(engine, name)
    assert history.count(1) == 1 and history == sorted(history), history  # continued
    return before, after


@pytest.mark.parametrize("mode", ["default-bridge", "user-bridge"])
def test_bridges_keep_ip_and_name(
    engine: Backend, containers: Containers, networks: Networks, criu: None, mode: str
) -> None:
    network = "bridge" if mode == "default-bridge" else networks.create().name
    info = containers.run(COUNTER_IMAGE, network=network)
    wait_count_at_least(engine, info.name, 2)
    endpoint = engine.inspect_network(network).endpoint(info.name)
    assert endpoint is not None and endpoint.ip
    # By name on a user bridge (the engine's DNS), by address on the default bridge.
    target = info.name if mode == "user-bridge" else endpoint.ip
    out = probe(containers, target, network=network)
    assert probe_answer(out) is not None, out

    _, after = _checkpoint_restore(engine, info.name)

    again = engine.inspect_network(network).endpoint(info.name)
    assert again is not None and again.ip
    if engine.kind == "podman" or mode == "user-bridge":
        # Podman restores the address recorded in the checkpoint; on a network of its own
        # Docker hands the container its old address again.
        assert again.ip == endpoint.ip
    else:
        # Docker's default bridge: the address is released while the container is stopped
        # and the lowest free one is given on restore; another container (this machine is
        # shared) may have taken the old one. The server answers at its address now.
        target = again.ip
    out = probe(containers, target, network=network)
    assert (probe_answer(out) or 0) >= after - 1, out
    if mode == "user-bridge":
        assert probe_resolved(out) == endpoint.ip  # the name still resolves, to the same IP


def test_host_network_listening_socket(engine: Backend, containers: Containers, criu: None) -> None:
    # A listening socket in the host's network namespace is dumped and re-bound on restore.
    port = free_port()
    info = containers.run(COUNTER_IMAGE, network="host", command=counter_command(port, "127.0.0.1"))
    assert _answers_on_loopback(port) >= 1
    _, after = _checkpoint_restore(engine, info.name)
    assert _answers_on_loopback(port) >= after - 1


def test_port_mapping_keeps_answering(engine: Backend, containers: Containers, criu: None) -> None:
    port = free_port()
    mapping = PortMapping(container_port=8080, host_port=port, host_ip="127.0.0.1")
    info = containers.run(COUNTER_IMAGE, ports=(mapping,))
    assert _answers_on_loopback(port) >= 1
    _, after = _checkpoint_restore(engine, info.name)
    assert engine.inspect(info.name).ports == (mapping,)
    assert _answers_on_loopback(port) >= after - 1


def _accepting(server: socket.socket) -> Callable[[], socket.socket]:
    def accept() -> socket.socket:
        server.settimeout(20)
        conn, _ = server.accept()
        conn.settimeout(10)
        return conn

    return accept


def test_host_network_live_connection_fails_cleanly(
    engine: Backend, containers: Containers, criu: None
) -> None:
    # The test's own listener on loopback; the container (host network) connects to it.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        info = containers.run(
            BUSYBOX_IMAGE,
            network="host",
            command=("sh", "-c", f"while :; do echo tick; sleep 1; done | nc 127.0.0.1 {port}"),
        )
        conn = _accepting(server)()
        with conn:
            assert conn.recv(5) == b"tick\n"
            with pytest.raises(CheckpointError) as excinfo:
                engine.checkpoint(info.name, CheckpointOptions())
            assert "--tcp-established" in excinfo.value.hint
            assert "TCP" in excinfo.value.log_tail
            # Nothing lost: still running, the connection still carries data.
            assert engine.inspect(info.name).running
            assert engine.checkpoints(info.name) == []
            # the next tick arrives (recv waits for it, up to the socket's 10 s timeout)
            received = b""
            while b"tick" not in received:
                chunk = conn.recv(100)
                assert chunk, "the connection closed"
                received += chunk
            if engine.kind == "docker":
                with pytest.raises(Unsupported):
                    engine.checkpoint(info.name, CheckpointOptions(tcp_established=True))
                assert engine.inspect(info.name).running
                return
            # Podman passes --tcp-established to CRIU: the connection itself is dumped and
            # restored, and the same socket carries on to the test's end of it.
            engine.checkpoint(info.name, CheckpointOptions(name="tcp", tcp_established=True))
            assert not engine.inspect(info.name).running
            engine.restore(info.name, RestoreOptions(checkpoint="tcp", tcp_established=True))
            assert engine.inspect(info.name).running
            received = b""
            while received.count(b"tick") < 2:
                chunk = conn.recv(100)
                assert chunk, "the connection closed after the restore"
                received += chunk


def test_restore_elsewhere_ignore_static_ip_gets_new_ip(
    engine: Backend, containers: Containers, networks: Networks, criu: None, tmp_path: Path
) -> None:
    # "Elsewhere" here is a second container from the same checkpoint, beside the original
    # on the same user network: it cannot have the original's address, so it takes a new one.
    net = networks.create()
    original = containers.run(COUNTER_IMAGE, network=net.name)
    wait_count_at_least(engine, original.name, 2)
    first = engine.inspect_network(net.name).endpoint(original.name)
    assert first is not None
    archive = tmp_path / "web.ctk"
    engine.export_checkpoint(
        original.name, archive, ExportOptions(checkpoint=CheckpointOptions(leave_running=True))
    )
    clone = engine.import_checkpoint(
        archive, ImportOptions(name=containers.name("clone"), ignore_static_ip=True)
    )
    assert clone.running
    second = engine.inspect_network(net.name).endpoint(clone.name)
    assert second is not None and second.ip and second.ip != first.ip
    # Both answer, each under its own name, at its own address.
    for name, endpoint in ((clone.name, second), (original.name, first)):
        out = probe(containers, name, network=net.name)
        assert probe_resolved(out) == endpoint.ip and probe_answer(out) is not None, out
