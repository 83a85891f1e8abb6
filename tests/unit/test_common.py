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
        "State": {"Pid": 4242},
    }
    config = inspection.runtime_config_from_inspect(attrs)
    assert (config.runtime, config.network_mode, config.hostname) == ("runc", "bridge", "h1")
    assert config.pid == 4242 and inspection.runtime_config_from_inspect({}).pid == 0
    assert config.mounts[0].target == "/run/.containerenv" and config.mounts[0].type == "bind"
    assert inspection.runtime_config_from_inspect({}).runtime == "runc"


# What CRIU 4.1.1 without ctk's rlimit patch logs for a non-root task where the bounding set
# lacks CAP_SYS_RESOURCE (seen on the project's machines).
_RLIMIT_LOG = """\
(00.001) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
(00.020) Error (criu/cr-dump.c:371): Can't get rlimit 0: Operation not permitted
(00.020) Error (criu/cr-dump.c:1720): Dump core (pid: 13552) failed with -1
(00.031) Error (criu/cr-dump.c:2111): Dumping FAILED.
"""


def test_criu_error_carries_first_real_error_line() -> None:
    error = diagnosis.criu_error(
        "checkpoint", "db", "criu failed: type NOTIFY errno 0", _RLIMIT_LOG
    )
    assert error.message == "checkpoint of db failed: Can't get rlimit 0: Operation not permitted"
    assert "FAILED" not in error.message
    assert "CAP_SYS_RESOURCE" in error.hint and "scripts/setup" in error.hint
    # the whole story stays in the tail
    assert "Dumping FAILED" in error.log_tail


def test_criu_error_restore_skips_noise() -> None:
    log = (
        "(00.01) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: x\n"
        "(00.20) 1: Error (criu/files-reg.c:2100): Can't open file app.log: No such file\n"
        "(00.21) Error (criu/cr-restore.c:2000): Restoring FAILED.\n"
    )
    error = diagnosis.criu_error("restore", "web", "failed", log)
    assert error.message == "restore of web failed: Can't open file app.log: No such file"


def test_criu_error_without_error_lines_keeps_engine_message() -> None:
    error = diagnosis.criu_error("checkpoint", "w", "container is paused\nmore")
    assert error.message == "checkpoint of w failed: container is paused"


def test_criu_first_error() -> None:
    assert diagnosis.criu_first_error(_RLIMIT_LOG) == "Can't get rlimit 0: Operation not permitted"
    assert diagnosis.criu_first_error("(0.1) Error (criu/cr-dump.c:1): Dumping FAILED.\n") == ""
    assert diagnosis.criu_first_error("no errors here") == ""


_TCP_LOG = (
    "(00.1) Error (criu/sk-inet.c:191): inet: Connected TCP socket, consider using "
    "--tcp-established option.\n(00.2) Error (criu/cr-dump.c:2111): Dumping FAILED.\n"
)


def test_criu_error_hint_matches_what_was_typed() -> None:
    plain = diagnosis.criu_error("checkpoint", "w", "failed", _TCP_LOG)
    assert "retry with --tcp-established" in plain.hint
    given = diagnosis.criu_error(
        "checkpoint", "w", "failed", _TCP_LOG, given=diagnosis.criu_flags(tcp_established=True)
    )
    assert "retry with" not in given.hint
    assert "--tcp-established was given" in given.hint
    # another switch given does not hide this hint
    locks = diagnosis.criu_error(
        "checkpoint", "w", "failed", _TCP_LOG, given=diagnosis.criu_flags(file_locks=True)
    )
    assert "retry with --tcp-established" in locks.hint


def test_criu_flags() -> None:
    assert diagnosis.criu_flags() == frozenset()
    assert diagnosis.criu_flags(tcp_established=True, file_locks=True) == {
        "--tcp-established",
        "--file-locks",
    }


def test_podman_params_name_the_switches_given() -> None:
    from toolkit.backends.podman.checkpoints import _given

    assert _given({"tcpEstablished": True, "fileLocks": False}) == {"--tcp-established"}
    assert _given({"keep": True}) == frozenset()


def test_cross_runtime_reason_is_first_real_error() -> None:
    from toolkit.errors import CheckpointError
    from toolkit.migration.cross_runtime import _criu_reason

    exc = CheckpointError("restore of x failed: y", log_tail=_RLIMIT_LOG)
    assert _criu_reason(exc) == "Can't get rlimit 0: Operation not permitted"
    assert _criu_reason(CheckpointError("plain", log_tail="")) == "plain"


@pytest.mark.parametrize("bad", ["", " ", "-x", "a/b", "x" * 129])
def test_checkpoint_names_refused_in_options(bad: str) -> None:
    from toolkit.models import CheckpointOptions, RestoreOptions

    with pytest.raises(InvalidArgument):
        CheckpointOptions(name=bad)
    with pytest.raises(InvalidArgument):
        RestoreOptions(checkpoint=bad)
    CheckpointOptions(name="cp-1.a_b")
    RestoreOptions(checkpoint=None)
