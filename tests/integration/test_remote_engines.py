"""Engines on other hosts (issue 15): the testbed's hosts reached by socket and by ssh.

ctk must read what it needs from the engine's host through the engine: doctor's probe runs
there, CRIU's reason for a failed checkpoint and its statistics come from there. The testbed
hosts share this machine's filesystem (network namespaces only), so the tests make ctk treat
the engines' directories (Podman's StaticDir, containerd's task directory) as not visible here (``_visible_here`` patched to "no"): every
read then goes through a helper container on the testbed host, as for a truly remote engine.
Then ``docker+ssh://`` and ``podman+ssh://``: checkpoint and restore, export and import, and a
migration from host h1 to host h2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import (
    BUSYBOX_IMAGE,
    COUNTER_IMAGE,
    Testbed,
    counts,
    ctk,
    wait_count_at_least,
    wait_for,
)
from tests.integration.test_engine_host_files import _HOLDS_TCP
from tests.integration.test_testbed import KINDS, Made, unique
from toolkit.backends.base import Backend
from toolkit.config import connect, parse_engine
from toolkit.errors import CheckpointError, ContainerNotFound
from toolkit.models import (
    CheckpointOptions,
    ExportOptions,
    ImportOptions,
    RestoreOptions,
)

pytestmark = [pytest.mark.integration, pytest.mark.testbed, pytest.mark.criu]


@pytest.fixture
def made() -> Iterator[Made]:
    containers = Made()
    yield containers
    containers.cleanup()


@pytest.fixture
def remote_view(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("toolkit.backends.podman.files._visible_here", lambda _path: False)
    monkeypatch.setattr("toolkit.backends.docker.files._visible_here", lambda _path: False)


def _continued(values: list[int]) -> None:
    assert values == sorted(values) and values.count(1) <= 1, values


@pytest.mark.parametrize("kind", KINDS)
def test_doctor_probes_a_testbed_engine(testbed: Testbed, kind: str) -> None:
    host = testbed.hosts[0]
    result = ctk("doctor", host.url(kind), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    for label in ("root", "non-root"):
        assert checks[f"{kind} probe ({label})"]["ok"], checks
    assert checks[f"{kind} engine"]["detail"].endswith(host.url(kind).split("+", 1)[1])


@pytest.mark.parametrize("kind", KINDS)
def test_failed_checkpoint_on_a_testbed_host_carries_criu_reason(
    testbed: Testbed, made: Made, kind: str, remote_view: None
) -> None:
    backend = testbed.hosts[0].backend(kind)
    name = unique("tcp")
    made.run(backend, name, image=BUSYBOX_IMAGE, command=_HOLDS_TCP)
    wait_for(
        lambda: "ESTABLISHED" in backend.exec(name, ["netstat", "-tn"]).stdout,
        timeout=20,
        what="an established connection",
    )
    with pytest.raises(CheckpointError) as excinfo:
        backend.checkpoint(name, CheckpointOptions())
    assert "TCP" in str(excinfo.value), excinfo.value
    assert "--tcp-established" in excinfo.value.hint
    assert backend.inspect(name).running


@pytest.mark.parametrize("kind", KINDS)
def test_print_stats_of_a_testbed_checkpoint(
    testbed: Testbed, made: Made, kind: str, remote_view: None
) -> None:
    from toolkit.cli import cli

    host = testbed.hosts[0]
    name = unique("stats")
    made.run(host.backend(kind), name, image=COUNTER_IMAGE)
    result = CliRunner().invoke(
        cli,
        ["--engine", host.url(kind), "checkpoint", name, "--leave-running", "--print-stats"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    if kind == "docker":
        # containerd deletes CRIU's work directory, statistics and all
        assert "CRIU statistics: not kept by this engine" in result.output
        return
    assert "CRIU STATISTIC" in result.output and "frozen_time" in result.output, result.output
    assert "not readable" not in result.output


def _ssh(testbed: Testbed, index: int, kind: str) -> Backend:
    host = testbed.hosts[index]
    return connect(parse_engine(host.docker_ssh_url if kind == "docker" else host.podman_ssh_url))


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_restore_export_import_over_ssh(
    testbed: Testbed, made: Made, kind: str, tmp_path: Path
) -> None:
    src, dst = _ssh(testbed, 0, kind), _ssh(testbed, 1, kind)
    try:
        name = unique("ssh")
        made.run(src, name)
        before = wait_count_at_least(src, name, 2)
        src.checkpoint(name, CheckpointOptions(name="overssh"))
        assert not src.inspect(name).running
        assert src.restore(name, RestoreOptions(checkpoint="overssh")).running
        wait_count_at_least(src, name, before + 2)
        _continued(counts(src, name))
        archive = tmp_path / "ssh.ctk"
        src.export_checkpoint(
            name, archive, ExportOptions(checkpoint=CheckpointOptions(leave_running=True))
        )
        copy = unique("ssh-copy")
        made.made.append((dst, copy))
        history = counts(src, name)
        assert dst.import_checkpoint(archive, ImportOptions(name=copy)).running
        wait_count_at_least(dst, copy, history[-1] + 2)
        assert counts(dst, copy).count(1) <= 1
    finally:
        src.close()
        dst.close()


@pytest.mark.parametrize("kind", KINDS)
def test_migration_between_testbed_hosts_over_ssh(testbed: Testbed, made: Made, kind: str) -> None:
    h1, h2 = testbed.hosts
    src_url = h1.docker_ssh_url if kind == "docker" else h1.podman_ssh_url
    dst_url = h2.docker_ssh_url if kind == "docker" else h2.podman_ssh_url
    src, dst = h1.backend(kind), h2.backend(kind)
    name = unique("ssh-move")
    made.run(src, name)
    made.made.append((dst, name))
    before = wait_count_at_least(src, name, 2)
    result = ctk("migrate", name, "--from", src_url, "--to", dst_url, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "done" and report["mode"] == "live", report
    wait_count_at_least(dst, name, before + 2)
    assert counts(dst, name).count(1) <= 1
    with pytest.raises(ContainerNotFound):
        src.inspect(name)
