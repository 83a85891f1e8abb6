"""Network models, validation and CLI parsing: no engine needed."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from toolkit.backends import inspection, validation
from toolkit.cli import cli
from toolkit.errors import InvalidArgument
from toolkit.models import NetworkSpec

DOCKER_SHAPE = {
    "Name": "web",
    "Id": "ab" * 32,
    "Created": "2026-11-28T21:00:00Z",
    "Scope": "local",
    "Driver": "bridge",
    "IPAM": {
        "Config": [
            {"Subnet": "fd00::/64", "Gateway": "fd00::1"},
            {"Subnet": "10.90.0.0/24", "Gateway": "10.90.0.1"},
        ]
    },
    "Internal": True,
    "Attachable": False,
    "Containers": {
        "c2" * 32: {"Name": "b", "MacAddress": "02:42:0a:5a:00:03", "IPv4Address": "10.90.0.3/24"},
        "c1" * 32: {"Name": "a", "MacAddress": "02:42:0a:5a:00:02", "IPv4Address": "10.90.0.2/24"},
    },
    "Labels": {"ctk.test": "1"},
}


def test_network_from_inspect() -> None:
    info = inspection.network_from_inspect(DOCKER_SHAPE, "docker")
    assert (info.name, info.driver, info.subnet, info.gateway) == (
        "web", "bridge", "10.90.0.0/24", "10.90.0.1",
    )  # fmt: skip
    assert info.internal and not info.attachable and info.labels == {"ctk.test": "1"}
    assert [e.name for e in info.containers] == ["a", "b"]
    a = info.endpoint("a")
    assert a is not None and a.ip == "10.90.0.2" and a.mac.startswith("02:42")
    assert info.endpoint("c1" * 6) is a and info.endpoint("zz") is None
    data = info.to_dict()
    assert data["containers"][0]["ipv4"] == "10.90.0.2/24"
    json.dumps(data)


def test_network_from_inspect_minimal() -> None:
    info = inspection.network_from_inspect({"Name": "none", "Id": "x", "Driver": "null"}, "podman")
    assert info.subnet == "" and info.containers == () and info.scope == "local"


@pytest.mark.parametrize(
    "spec",
    [
        NetworkSpec(name="bad name"),
        NetworkSpec(name="host"),
        NetworkSpec(name="n", driver="macvlan"),
        NetworkSpec(name="n", subnet="10.0.0.1/24"),
        NetworkSpec(name="n", subnet="nope"),
        NetworkSpec(name="n", gateway="10.0.0.1"),
        NetworkSpec(name="n", subnet="10.0.0.0/24", gateway="10.0.1.1"),
        NetworkSpec(name="n", subnet="10.0.0.0/24", gateway="x"),
    ],
)
def test_validate_network_spec_rejects(spec: NetworkSpec) -> None:
    with pytest.raises(InvalidArgument):
        validation.validate_network_spec(spec)


def test_validate_network_spec_accepts() -> None:
    validation.validate_network_spec(
        NetworkSpec(name="n1", driver="overlay", subnet="10.0.0.0/24", gateway="10.0.0.1")
    )


def test_cli_network_help_and_usage_errors() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["network", "--help"])
    assert result.exit_code == 0
    for verb in ("ls", "create", "inspect", "rm", "connect", "disconnect", "prune"):
        assert verb in result.output
    result = runner.invoke(cli, ["network", "create", "-d", "macvlan", "n"])
    assert result.exit_code == 2
    assert runner.invoke(cli, ["port", "--help"]).exit_code == 0


def test_prune_filter_must_be_a_label() -> None:
    from tests.conftest import ctk

    result = ctk(
        "network", "prune", "-f", "--filter", "driver=bridge",
        engine="docker+unix:///nonexistent/docker.sock",
    )  # fmt: skip
    assert result.returncode == 2 and "label=KEY=VALUE" in result.stderr
