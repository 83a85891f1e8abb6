from __future__ import annotations

import pytest

from toolkit.backends import inspection, validation
from toolkit.backends.options import publish_arg, sdk_ports
from toolkit.criu import diagnosis
from toolkit.errors import CheckpointNotFound, InvalidArgument
from toolkit.models import Checkpoint, ContainerSpec, PortMapping


def test_validate_ref() -> None:
    validation.validate_ref("web1", what="container")
    for bad in ("", "-x", "a b", "a/b", "../x"):
        with pytest.raises(InvalidArgument):
            validation.validate_ref(bad, what="container")


def test_validate_spec_image() -> None:
    with pytest.raises(InvalidArgument):
        validation.validate_spec(ContainerSpec(image="bad image"))


def test_ports_roundtrip() -> None:
    ports = inspection.ports_from_inspect(
        {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9000"}], "53/udp": None}
    )
    assert ports == (PortMapping(8080, 9000, "127.0.0.1"),)
    assert sdk_ports(ports) == {"8080/tcp": ("127.0.0.1", 9000)}
    assert sdk_ports((PortMapping(80),)) == {"80/tcp": None}


def test_normalize_image_id_and_status() -> None:
    assert inspection.normalize_image_id("abc") == "sha256:abc"
    assert inspection.normalize_image_id("sha256:abc") == "sha256:abc"
    assert inspection.status_of({"Status": "configured"}) == "created"
    assert inspection.status_of({"Status": "running"}) == "running"


def test_choose_checkpoint() -> None:
    cps = [Checkpoint("a", "c", "docker", "1"), Checkpoint("b", "c", "docker", "2")]
    assert validation.choose_checkpoint("c", cps, None).name == "b"
    assert validation.choose_checkpoint("c", cps, "a").name == "a"
    with pytest.raises(CheckpointNotFound):
        validation.choose_checkpoint("c", cps, "zz")
    with pytest.raises(CheckpointNotFound) as info:
        validation.choose_checkpoint("c", [], None)
    assert "ctk checkpoint c" in info.value.hint


@pytest.mark.parametrize(
    ("log", "flag"),
    [
        (
            "Error (criu/sk-inet.c:191): inet: Connected TCP socket, consider using --tcp-established option.",
            "--tcp-established",
        ),
        (
            "Error (criu/file-lock.c:100): Some file locks are hold without --file-locks option",
            "--file-locks",
        ),
    ],
)
def test_criu_error_hints(log: str, flag: str) -> None:
    error = diagnosis.criu_error("checkpoint", "web1", "criu failed: type NOTIFY", log)
    assert flag in error.hint
    assert "Error (" in error.log_tail
    assert error.message.startswith("checkpoint of web1 failed")


def test_criu_error_reads_log_named_in_message(tmp_path) -> None:
    log = tmp_path / "criu-dump.log"
    log.write_text("(00.1) Error (criu/cr-dump.c:1): something broke\n")
    error = diagnosis.criu_error("checkpoint", "w", f"criu failed: log file: {log}")
    assert "something broke" in error.message


def test_spec_from_inspect_and_publish_arg() -> None:
    attrs = {
        "Name": "/web1",
        "Config": {"Cmd": ["sh"], "Env": ["A=1", "B=x=y"], "Labels": {"l": "v"}, "User": ""},
        "HostConfig": {
            "NetworkMode": "default",
            "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9000"}]},
        },
    }
    spec = inspection.spec_from_inspect(attrs, image="ctk-demo/counter")
    assert spec.name == "web1" and spec.command == ("sh",)
    assert spec.env == {"A": "1", "B": "x=y"} and spec.network is None and spec.user is None
    assert spec.ports == (PortMapping(8080, 9000, "127.0.0.1"),)
    assert publish_arg(spec.ports[0]) == "127.0.0.1:9000:8080/tcp"
    assert publish_arg(PortMapping(80)) == "80/tcp"
    assert publish_arg(PortMapping(80, host_ip="127.0.0.1")) == "127.0.0.1::80/tcp"


def test_vdso_hint_only_for_vdso_failures() -> None:
    # Every CRIU log mentions the vDSO while it works; only its failure means "CRIU too old".
    ok_log = "(00.01) vdso: Parsing at 7ffc\nError (criu/sk-inet.c:1): something else\n"
    assert "too old" not in diagnosis.criu_error("restore", "w", "failed", ok_log).hint
    bad_log = "Error (criu/vdso.c:1): vdso: Unexpected rt vDSO area bounds\n"
    assert "too old" in diagnosis.criu_error("restore", "w", "failed", bad_log).hint


def test_docker_backend_loads_paramiko_only_for_ssh() -> None:
    # The docker SDK imports paramiko at import time; ctk defers it (0.2 s of every CLI call).
    import subprocess
    import sys

    code = (
        "import sys, toolkit.backends.docker as d\n"
        "import docker.transport\n"
        "assert hasattr(docker.transport, 'SSHHTTPAdapter')\n"
        "assert 'paramiko.client' not in sys.modules, 'paramiko loaded'\n"
        "import paramiko\n"
        "assert paramiko.SSHClient and 'paramiko.client' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_inspect_parser_serves_both_engines() -> None:
    # Docker says Running while paused, Podman does not; both count as running in ctk.
    docker_attrs = {
        "Id": "d1",
        "Name": "/web",
        "Image": "sha256:abc",
        "Config": {"Image": "ctk-demo/counter"},
        "State": {"Status": "paused", "Running": True, "Paused": True},
    }
    podman_attrs = {
        "Id": "p1",
        "Name": "web",
        "Image": "abc",
        "ImageName": "localhost/ctk-demo/counter:latest",
        "Config": {"Image": "ctk-demo/counter"},
        "State": {"Status": "paused", "Running": False, "Paused": True},
    }
    docker_info = inspection.info_from_inspect(docker_attrs, "docker")
    podman_info = inspection.info_from_inspect(podman_attrs, "podman")
    assert docker_info.running and podman_info.running
    assert docker_info.name == podman_info.name == "web"
    assert docker_info.image == "ctk-demo/counter"
    assert podman_info.image == "localhost/ctk-demo/counter:latest"


def test_runtime_config_from_inspect() -> None:
    attrs = {
        "OCIRuntime": "runc",
        "HostConfig": {"NetworkMode": "bridge", "Runtime": "crun"},
        "Config": {"Hostname": "h1"},
        "Mounts": [{"Type": "bind", "Source": "/dev/null", "Destination": "/run/.containerenv"}],
    }
    config = inspection.runtime_config_from_inspect(attrs)
    assert (config.runtime, config.network_mode, config.hostname) == ("runc", "bridge", "h1")
    assert config.mounts[0].target == "/run/.containerenv" and config.mounts[0].type == "bind"
    assert inspection.runtime_config_from_inspect({}).runtime == "runc"
