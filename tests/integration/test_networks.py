"""Every network verb end to end on both engines, through the library and the CLI."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import BUSYBOX_IMAGE, COUNTER_IMAGE, Containers, ctk, wait_count_at_least
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
from toolkit.errors import (
    Conflict,
    ContainerNotFound,
    ExitCode,
    InvalidArgument,
    NetworkNotFound,
    Unsupported,
)
from toolkit.models import NetworkSpec

pytestmark = pytest.mark.integration


def _subnet() -> tuple[str, str]:
    """A /24 unlikely to clash with another test's (10.200-249.x.0/24)."""
    raw = uuid.uuid4().int
    base = f"10.{200 + raw % 50}.{(raw >> 8) % 256}"
    return f"{base}.0/24", f"{base}.1"


def test_create_inspect_ls_rm(engine: Backend, networks: Networks) -> None:
    subnet, gateway = _subnet()
    info = networks.create(subnet=subnet, gateway=gateway, internal=True)
    assert info.driver == "bridge" and info.engine == engine.kind
    assert (info.subnet, info.gateway, info.internal) == (subnet, gateway, True)
    assert info.labels == {"ctk.test": "1"} and info.containers == ()
    assert info.name in {n.name for n in engine.networks()}
    assert engine.inspect_network(info.name).id == info.id
    with pytest.raises(Conflict):
        engine.create_network(NetworkSpec(name=info.name))
    engine.remove_network(info.name)
    with pytest.raises(NetworkNotFound):
        engine.inspect_network(info.name)


def test_connect_disconnect_shows_ip_and_mac(
    engine: Backend, containers: Containers, networks: Networks
) -> None:
    subnet, _ = _subnet()
    net = networks.create(subnet=subnet)
    box = containers.run(BUSYBOX_IMAGE, command=("sleep", "300"))
    engine.connect_network(net.name, box.name)
    endpoint = engine.inspect_network(net.name).endpoint(box.name)
    assert endpoint is not None
    prefix = subnet.rsplit(".", 1)[0]
    assert endpoint.ip.startswith(prefix + ".") and len(endpoint.mac.split(":")) == 6
    with pytest.raises(Conflict):
        engine.remove_network(net.name)  # in use
    engine.disconnect_network(net.name, box.name)
    assert engine.inspect_network(net.name).endpoint(box.name) is None


def test_user_bridge_resolves_names_and_isolates(
    engine: Backend, containers: Containers, networks: Networks
) -> None:
    net = networks.create()
    other = networks.create()
    server = containers.run(COUNTER_IMAGE, network=net.name)
    wait_count_at_least(engine, server.name, 2)
    out = probe(containers, server.name, network=net.name)
    assert (probe_answer(out) or 0) >= 1, out
    ip = engine.inspect_network(net.name).endpoint(server.name)
    assert ip is not None and probe_resolved(out) == ip.ip
    # From another network neither the name nor the address answers.
    assert "rc=0" not in probe(containers, server.name, network=other.name)
    if engine.kind == "docker" or _netavark_isolates():
        assert "rc=0" not in probe(containers, ip.ip, network=other.name)
    # else: netavark 1.4 (Debian 12) writes its isolation chains but never jumps to them
    # from FORWARD, so Podman's networks there are isolated by name only, not by address.


def _netavark_isolates() -> bool:
    import subprocess

    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    return "-j NETAVARK_ISOLATION_1" in rules or "NETAVARK_ISOLATION" not in rules


@pytest.mark.parametrize("mode", ["bridge", "none", "host"])
def test_run_network_modes(engine: Backend, containers: Containers, mode: str) -> None:
    port = free_port()
    if mode == "host":
        server = containers.run(
            COUNTER_IMAGE, network="host", command=counter_command(port, "127.0.0.1")
        )
    else:
        server = containers.run(COUNTER_IMAGE, network=mode)
    wait_count_at_least(engine, server.name, 2)
    bridge = engine.inspect_network("bridge")
    if mode == "bridge":
        endpoint = bridge.endpoint(server.name)
        assert endpoint is not None and endpoint.ip
        out = probe(containers, endpoint.ip)
        assert out.strip().endswith("rc=0")
    else:
        assert bridge.endpoint(server.name) is None
    if mode == "host":
        assert int(http_get(port)) >= 1


def test_connect_with_alias_resolves(
    engine: Backend, containers: Containers, networks: Networks
) -> None:
    net = networks.create()
    server = containers.run(COUNTER_IMAGE)  # on the default network first
    engine.connect_network(net.name, server.name, aliases=("api",))
    wait_count_at_least(engine, server.name, 2)
    endpoint = engine.inspect_network(net.name).endpoint(server.name)
    assert endpoint is not None
    for name in ("api", server.name):
        out = probe(containers, name, network=net.name)
        assert probe_resolved(out) == endpoint.ip and probe_answer(out) is not None, out


@pytest.mark.swarm
def test_overlay(engine: Backend, networks: Networks) -> None:
    name = networks.name("ov")
    if engine.kind == "podman":
        with pytest.raises(Unsupported) as excinfo:
            networks.create(name=name, driver="overlay")
        assert "bridge" in excinfo.value.hint
        result = ctk("network", "create", "-d", "overlay", name, engine=engine.kind)
        assert result.returncode == ExitCode.UNSUPPORTED and "Hint:" in result.stderr
        return
    # Docker: overlay needs swarm; this engine is shared, so the test never inits swarm
    # (examples/overlay does, and leaves it). Without it: a clear Unsupported.
    try:
        info = networks.create(name=name, driver="overlay", attachable=True)
    except Unsupported as exc:
        assert "swarm init" in exc.hint
        return
    assert info.driver == "overlay" and info.attachable and info.scope == "swarm"


def test_errors(engine: Backend, containers: Containers, networks: Networks) -> None:
    with pytest.raises(NetworkNotFound):
        engine.remove_network("ctk-test-no-such-net")
    with pytest.raises(ContainerNotFound):
        engine.connect_network("bridge", "ctk-test-no-such-container")
    with pytest.raises(InvalidArgument):
        networks.create(subnet="10.1.2.3/24")  # host bits set
    with pytest.raises(InvalidArgument):
        networks.create(subnet="10.1.2.0/24", gateway="10.9.9.1")
    with pytest.raises(Conflict):
        engine.remove_network("bridge")
    for args, code in (
        (("network", "inspect", "ctk-test-nope"), ExitCode.NOT_FOUND),
        (("network", "rm", "ctk-test-nope"), ExitCode.NOT_FOUND),
        (("network", "connect", "ctk-test-nope", "ctk-test-nope"), ExitCode.NOT_FOUND),
        (("network", "create", "--gateway", "10.0.0.1", "ctk-test-x"), ExitCode.USAGE),
        (("network", "create", "host"), ExitCode.USAGE),
        (("network", "rm", "bridge"), ExitCode.CONFLICT),
        (("port", "ctk-test-nope"), ExitCode.NOT_FOUND),
    ):
        result = ctk(*args, engine=engine.kind)
        assert result.returncode == code, (args, result.stderr)
        assert "Traceback" not in result.stderr and "Error:" in result.stderr


def test_cli_network_verbs(engine: Backend, containers: Containers, networks: Networks) -> None:
    kind = engine.kind
    name = networks.name("cli")
    subnet, gateway = _subnet()
    label = f"ctk.test.prune={uuid.uuid4().hex[:8]}"
    result = ctk(
        "network", "create", name, "--subnet", subnet, "--gateway", gateway,
        "-l", "ctk.test=1", "-l", label, engine=kind, check=True,
    )  # fmt: skip
    assert result.stdout.strip() == name
    listed = json.loads(ctk("network", "ls", "--json", engine=kind, check=True).stdout)
    assert name in {n["name"] for n in listed}
    assert name in ctk("network", "ls", "-q", engine=kind, check=True).stdout.split()
    box = containers.run(BUSYBOX_IMAGE, command=("sleep", "300"))
    out = ctk("network", "connect", name, box.name, engine=kind, check=True).stdout
    assert box.name in out and subnet.rsplit(".", 1)[0] in out
    text = ctk("network", "inspect", name, engine=kind, check=True).stdout
    for expected in ("Driver:", "bridge", subnet, gateway, box.name):
        assert expected in text, text
    data = json.loads(ctk("--json", "network", "inspect", name, engine=kind, check=True).stdout)
    (net,) = data
    assert net["subnet"] == subnet and net["gateway"] == gateway
    (endpoint,) = net["containers"]
    assert endpoint["name"] == box.name and endpoint["ipv4"] and endpoint["mac"]
    result = ctk("network", "rm", name, engine=kind)
    assert result.returncode == ExitCode.CONFLICT and "Hint:" in result.stderr
    ctk("network", "disconnect", name, box.name, engine=kind, check=True)
    # prune removes only what the filter names: our network, nobody else's.
    pruned = ctk(
        "network", "prune", "-f", "--filter", f"label={label}", "--json", engine=kind, check=True
    )
    assert json.loads(pruned.stdout)["removed"] == [name]
    assert ctk("network", "inspect", name, engine=kind).returncode == ExitCode.NOT_FOUND
    # rm of several, one missing: the others go, the exit code is the failure's
    first = networks.create()
    result = ctk("network", "rm", first.name, "ctk-test-nope", engine=kind)
    assert result.returncode == ExitCode.NOT_FOUND and first.name in result.stdout


def test_port(engine: Backend, containers: Containers) -> None:
    fixed = free_port()
    info = containers.run(
        COUNTER_IMAGE,
        ports=(
            _mapping(f"127.0.0.1:{fixed}:8080"),
            _mapping("127.0.0.1::9000"),
            _mapping("9001/udp"),
        ),
    )
    wait_count_at_least(engine, info.name, 1)
    text = ctk("port", info.name, engine=engine.kind, check=True).stdout
    assert f"8080/tcp -> 127.0.0.1:{fixed}" in text
    assert "9000/tcp -> 127.0.0.1:" in text and "9001/udp -> " in text
    rows = json.loads(ctk("port", info.name, "9000", "--json", engine=engine.kind).stdout)
    assert len(rows) == 1 and rows[0]["host_port"] > 0 and rows[0]["host_ip"] == "127.0.0.1"
    assert int(http_get(fixed)) >= 1


def _mapping(text: str):  # type: ignore[no-untyped-def]
    from toolkit.models import PortMapping

    return PortMapping.parse(text)
