"""The multi-host testbed (scripts/testbed): two hosts, each with its own Docker and Podman.

The hosts are network namespaces on one bridge; these tests check that each host's engines
answer through ctk's library, hold the main engines' demo images under the same IDs, keep their
own state (the same container name on both hosts), reach each other over the test subnet, and
checkpoint/restore in place.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import (
    BUSYBOX_IMAGE,
    COUNTER_IMAGE,
    TEST_LABEL,
    TESTBED_SCRIPT,
    Testbed,
    TestbedHost,
    counts,
    holds,
    last_count,
    unavailable,
    wait_count_at_least,
    wait_for,
)
from toolkit import ContainerSpec, PortMapping
from toolkit.backends.base import Backend
from toolkit.config import DEFAULT_URLS, connect, parse_engine
from toolkit.errors import CtkError
from toolkit.models import CheckpointOptions, ContainerInfo, RestoreOptions

pytestmark = [pytest.mark.integration, pytest.mark.testbed]

KINDS = ("docker", "podman")


class Made:
    """Containers a test made on testbed hosts; removed at the end of the test."""

    def __init__(self) -> None:
        self.made: list[tuple[Backend, str]] = []

    def run(self, backend: Backend, name: str, image: str = COUNTER_IMAGE, **fields: object):
        self.made.append((backend, name))
        spec = ContainerSpec(image=image, name=name, labels=dict(TEST_LABEL), **fields)  # type: ignore[arg-type]
        return backend.run(spec)

    def cleanup(self) -> None:
        for backend, name in self.made:
            with contextlib.suppress(CtkError):
                backend.remove(name, force=True)


@pytest.fixture
def made() -> Iterator[Made]:
    containers = Made()
    yield containers
    containers.cleanup()


def unique(prefix: str) -> str:
    return f"ctk-test-{prefix}-{uuid.uuid4().hex[:8]}"


def image_id(socket_url: str, image: str) -> str:
    """The image's ID from the engine's Docker-compatible API (both engines serve it)."""
    sock = socket_url.split("://", 1)[1]
    proc = subprocess.run(
        [
            "curl",
            "-fsS",
            "--max-time",
            "10",
            "--unix-socket",
            sock,
            f"http://d/images/{image}/json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"{image} not on {socket_url}: {proc.stderr}"
    ident = str(json.loads(proc.stdout)["Id"])
    return ident if ident.startswith("sha256:") else f"sha256:{ident}"


def container_ip(socket_url: str, name: str) -> str:
    """The container's address on its engine's default network (Docker-compatible API)."""
    sock = socket_url.split("://", 1)[1]
    proc = subprocess.run(
        [
            "curl",
            "-fsS",
            "--max-time",
            "10",
            "--unix-socket",
            sock,
            f"http://d/containers/{name}/json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return str(json.loads(proc.stdout)["NetworkSettings"]["IPAddress"])


def in_netns(host: TestbedHost, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command in the host's network namespace (nsenter, as the testbed's daemons do)."""
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{host.netns}", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def published_port(info: ContainerInfo, container_port: int) -> int:
    return next(p.host_port for p in info.ports if p.container_port == container_port)


def test_status_reports_every_host_up(testbed: Testbed) -> None:
    proc = subprocess.run(
        [TESTBED_SCRIPT, "status", str(len(testbed.hosts))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for host in testbed.hosts:
        line = next(row for row in proc.stdout.splitlines() if row.startswith(host.name + " "))
        assert line.split()[1:] == [host.netns, host.address, "up", "up", "up", "debian12"]


@pytest.mark.parametrize("kind", KINDS)
def test_engines_answer_with_own_state(testbed: Testbed, kind: str) -> None:
    roots = set()
    for host in testbed.hosts:
        backend = host.backend(kind)
        try:
            assert backend.ping()
            info = backend.info()
            assert info.checkpoint_capable
            assert info.root_dir.startswith(f"/var/lib/ctk-testbed/{host.name}/")
            roots.add(info.root_dir)
        finally:
            backend.close()
    assert len(roots) == len(testbed.hosts)


def test_docker_over_tcp_on_the_test_subnet(testbed: Testbed) -> None:
    for host in testbed.hosts:
        backend = connect(parse_engine(host.docker_tcp_url))
        try:
            assert backend.info().root_dir == f"/var/lib/ctk-testbed/{host.name}/docker"
        finally:
            backend.close()


@pytest.mark.parametrize("kind", KINDS)
def test_engines_over_ssh(testbed: Testbed, kind: str) -> None:
    host = testbed.hosts[0]
    login = subprocess.run(
        ["ssh", "-i", testbed.ssh_key, f"root@{host.address}", "echo $DOCKER_HOST"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == host.docker_url.removeprefix("docker+")
    url = host.docker_ssh_url if kind == "docker" else host.podman_ssh_url
    backend = connect(parse_engine(url))
    try:
        assert backend.info().root_dir.startswith(f"/var/lib/ctk-testbed/{host.name}/")
    finally:
        backend.close()


@pytest.mark.parametrize("image", [COUNTER_IMAGE, BUSYBOX_IMAGE])
def test_demo_images_have_the_main_engines_ids(testbed: Testbed, image: str) -> None:
    want = image_id(DEFAULT_URLS["docker"], image)
    assert image_id(DEFAULT_URLS["podman"], f"localhost/{image}") == want
    for host in testbed.hosts:
        assert image_id(host.docker_url.removeprefix("docker+"), image) == want
        assert image_id(host.podman_url.removeprefix("podman+"), f"localhost/{image}") == want


@pytest.mark.parametrize("kind", KINDS)
def test_published_port_reachable_from_the_other_host(
    testbed: Testbed, made: Made, kind: str
) -> None:
    h1, h2 = testbed.hosts[:2]
    backend = h1.backend(kind)
    name = unique("tb-port")
    made.run(backend, name, ports=(PortMapping(container_port=8080),))
    wait_count_at_least(backend, name, 1)
    port = published_port(backend.inspect(name), 8080)
    url = f"http://{h1.address}:{port}/count"
    # busybox-static's wget crashes on this machine: curl, run in h2's network namespace.

    def answered() -> bool:
        proc = in_netns(h2, "curl", "-fsS", "--max-time", "5", url)
        return proc.returncode == 0 and proc.stdout.strip().isdigit()

    wait_for(answered, timeout=30, what=f"{url} from {h2.netns}")


@pytest.mark.parametrize("kind", KINDS)
def test_same_name_on_both_hosts(testbed: Testbed, made: Made, kind: str) -> None:
    h1, h2 = testbed.hosts[:2]
    name = unique("tb-same")
    first = made.run(h1.backend(kind), name)
    second = made.run(h2.backend(kind), name)
    assert first.running and second.running
    assert first.id != second.id
    assert h1.backend(kind).inspect(name).id == first.id
    assert h2.backend(kind).inspect(name).id == second.id


def test_same_static_ip_on_both_hosts_podman(testbed: Testbed, made: Made) -> None:
    """Each host's Podman has its own IPAM state: one address can be taken on both hosts
    (with a shared state the second ``--ip`` would be refused as already allocated)."""
    name = unique("tb-ip")
    address = "10.88.0.250"
    for host in testbed.hosts[:2]:
        made.made.append((host.backend("podman"), name))
        url = host.podman_url.removeprefix("podman+")
        proc = subprocess.run(
            [
                "podman",
                "--url",
                url,
                "run",
                "-d",
                "--name",
                name,
                "--ip",
                address,
                "--label",
                "ctk.test=1",
                BUSYBOX_IMAGE,
                "sleep",
                "300",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert container_ip(url, name) == address


@pytest.mark.criu
@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_restore_in_place_on_a_testbed_host(
    testbed: Testbed, made: Made, kind: str
) -> None:
    from toolkit.criu.probe import probe_criu

    if not probe_criu().check_ok:
        unavailable("criu not ready")
    backend = testbed.hosts[1].backend(kind)
    name = unique("tb-cr")
    made.run(backend, name)
    before = wait_count_at_least(backend, name, 3)
    cp = backend.checkpoint(name, CheckpointOptions())
    assert not backend.inspect(name).running
    # Frozen, not running (as in test_checkpoint). Watching it stay frozen also keeps clear of
    # a Docker 20.10 race: a restore right after the checkpoint can fail with "failed to upload
    # checkpoint to containerd: ... already exists" while containerd still holds the dump's
    # content (ctk retries that error for 2.75 s too).
    stopped_at = last_count(backend, name)
    holds(lambda: last_count(backend, name) == stopped_at, seconds=2, what="count frozen")
    assert backend.restore(name, RestoreOptions(checkpoint=cp.name)).running
    wait_count_at_least(backend, name, before + 2)
    after = counts(backend, name)
    # The counter went on from where it was: it never started again at 1.
    assert after.count(1) == 1, after
    assert after == sorted(after), after


@pytest.mark.parametrize(
    "argv",
    [
        ["up", "abc"],
        ["up", "0"],
        ["up", "50", "--trixie"],
        ["status", "-1"],
        ["env"],
        ["criu"],
        ["criu", "3", "sideways"],
        ["criu", "1", "packaged"],  # h1 is a Debian 12 host
        ["down", "abc"],
    ],
)
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    proc = subprocess.run(
        [TESTBED_SCRIPT, *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("testbed: error: ")
    assert "Traceback" not in proc.stderr
