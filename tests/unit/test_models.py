from __future__ import annotations

import json

import pytest

from toolkit.models import ContainerInfo, PortMapping


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80", PortMapping(80)),
        ("8080:80", PortMapping(80, 8080)),
        ("127.0.0.1:8080:80", PortMapping(80, 8080, "127.0.0.1")),
        ("127.0.0.1::80", PortMapping(80, 0, "127.0.0.1")),
        ("53:53/udp", PortMapping(53, 53, protocol="udp")),
    ],
)
def test_port_parse(text: str, expected: PortMapping) -> None:
    assert PortMapping.parse(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "80:x", "70000", "8080:80/icmp", "1:2:3:4"])
def test_port_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        PortMapping.parse(text)


def test_to_dict_is_json() -> None:
    info = ContainerInfo(
        id="a" * 64,
        name="web1",
        image="img",
        image_id="sha256:x",
        status="running",
        running=True,
        ports=(PortMapping(80, 8080),),
        labels={"k": "v"},
    )
    data = json.loads(json.dumps(info.to_dict()))
    assert data["ports"] == [
        {"container_port": 80, "host_port": 8080, "host_ip": "", "protocol": "tcp"}
    ]
    assert data["labels"] == {"k": "v"}
    assert info.short_id == "a" * 12
