"""Shared fixtures: real engines, parametrised over Docker and Podman.

They are the shipped pytest plugin's (toolkit/pytest_plugin.py, loaded as ``ctk``) under the
names these tests use: ``engine`` is its ``ctk_engine`` run on both engines, ``containers``
its container factory, ``unavailable`` its strict mode. With CI=true (or CTK_STRICT=1) a
missing engine, CRIU or pycriu fails the test instead of skipping it, so a green CI run means
every integration test ran on both engines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from toolkit import ContainerSpec, PortMapping
from toolkit import pytest_plugin as plugin
from toolkit.backends.base import Backend
from toolkit.config import get_backend
from toolkit.models import ContainerInfo

ENGINES = ("docker", "podman")
COUNTER_IMAGE = "ctk-demo/counter"
BUSYBOX_IMAGE = "ctk-demo/busybox"
TEST_LABEL = {plugin.TEST_LABEL: "1"}

_CONFIG: list[pytest.Config] = []


def pytest_configure(config: pytest.Config) -> None:
    _CONFIG[:] = [config]
    # Every test that asks for an engine runs on both, unless --ctk-engine says otherwise.
    if not config.getoption("ctk_engine"):
        config.option.ctk_engine = list(ENGINES)


def strict() -> bool:
    """Whether missing prerequisites fail (the plugin's --ctk-strict, CI=true, CTK_STRICT=1)."""
    if _CONFIG:
        return plugin.is_strict(_CONFIG[0])
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("CTK_STRICT") == "1"


def unavailable(reason: str) -> None:
    """Skip, or fail under CI: a green CI must mean the test really ran."""
    if _CONFIG:
        plugin.unavailable(_CONFIG[0], reason)
    pytest.skip(reason)


INTEGRATION_DIR = Path(__file__).parent / "integration"


# tryfirst: xdist's worker reads the xdist_group marks in its own hook of this name (to suffix
# the node IDs it schedules by); run after it, the marks added here would group nothing.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration ``integration`` (so ``-m "not integration"``
    selects exactly the unit tests), and keep the tests that share machine-wide state in one
    xdist worker each (scripts/test runs the suite with ``--dist loadgroup``):

    - ``testbed``: the session fixture brings scripts/testbed up and down again in the worker
      that uses it; two workers would start it twice and one would pull it from under the other.
      The benchmark joins them: it measures P2 on the testbed when that is up, so it must not
      see it come up or go down halfway.
    - ``swarm``: a swarm on the local dockerd changes what an overlay network create answers.
    """
    for item in items:
        if item.path.is_relative_to(INTEGRATION_DIR):
            item.add_marker(pytest.mark.integration)
        fixtures = getattr(item, "fixturenames", ())
        if any(item.get_closest_marker(m) for m in ("testbed", "bench")) or "testbed" in fixtures:
            item.add_marker(pytest.mark.xdist_group("testbed"))
        elif item.get_closest_marker("swarm"):
            item.add_marker(pytest.mark.xdist_group("swarm"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail an xdist worker whose groups did not take: xdist groups by an ``@group`` suffix it
    writes into node IDs, which some pytest releases ignore (see pyproject.toml's pin). Ungrouped,
    several workers share the testbed and one tears it down under the others."""
    config = session.config
    if not hasattr(config, "workerinput") or not config.getvalue("loadgroup"):
        return
    lost = [
        i.nodeid
        for i in session.items
        if i.get_closest_marker("xdist_group") and "@" not in i.nodeid
    ]
    if lost:
        raise pytest.UsageError(
            f"--dist loadgroup does not group {lost[0]} (and {len(lost) - 1} more) with this "
            "pytest/pytest-xdist pair: reinstall the versions pyproject.toml allows (scripts/setup)"
        )


@pytest.fixture
def engine(ctk_engine: Backend) -> Backend:
    """A connected backend, once for each engine: the plugin's ``ctk_engine``."""
    return ctk_engine


@pytest.fixture
def criu(engine: Backend, pytestconfig: pytest.Config) -> None:
    """CRIU works here (and the engine can checkpoint)."""
    problem = plugin.criu_problem(pytestconfig)
    if problem:
        unavailable(problem)
    if not engine.info().checkpoint_capable:
        unavailable(f"{engine.kind} cannot checkpoint (experimental mode off?)")


class Containers(plugin.ContainerFactory):
    """The plugin's container factory as these tests spell it: ``run(image, name=...,
    **ContainerSpec fields)`` runs a labelled test container with a unique name; every name
    handed out or run is removed (with its anonymous volumes) by ``cleanup``."""

    @property
    def names(self) -> list[str]:
        return self.made

    def run(
        self, image: str = COUNTER_IMAGE, *, name: str | None = None, **fields: object
    ) -> ContainerInfo:
        spec = ContainerSpec(image=image, name=name or self.name(), **fields)  # type: ignore[arg-type]
        return self.start(spec)


@pytest.fixture
def config_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private ctk config directory ($XDG_CONFIG_HOME) and no CTK_ENGINE: the ``ctk()``
    subprocesses inherit the environment, so they read only the config file a test writes."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("CTK_ENGINE", raising=False)
    return tmp_path / "config"


@pytest.fixture
def containers(engine: Backend) -> Iterator[Containers]:
    made = Containers(engine)
    yield made
    made.cleanup()


_COUNT_RE = re.compile(r"count=(\d+)")


def counts(backend: Backend, name: str) -> list[int]:
    return [int(m) for m in _COUNT_RE.findall(backend.logs(name))]


def last_count(backend: Backend, name: str) -> int:
    values = counts(backend, name)
    return values[-1] if values else 0


def wait_for(predicate: Callable[[], bool], *, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def holds(predicate: Callable[[], bool], *, seconds: float, what: str) -> None:
    """Assert that ``predicate`` stays true for ``seconds``, checked every 0.2 s: for what must
    *not* happen (a frozen counter moving). It fails as soon as the condition breaks; the
    positive conditions are waited for with :func:`wait_for`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), f"no longer true: {what}"
        time.sleep(0.2)
    assert predicate(), f"no longer true: {what}"


def wait_count_at_least(backend: Backend, name: str, value: int, timeout: float = 30) -> int:
    wait_for(lambda: last_count(backend, name) >= value, timeout=timeout, what=f"count>={value}")
    return last_count(backend, name)


@dataclass
class CtkResult:
    returncode: int
    stdout: str
    stderr: str


def ctk(
    *args: str, engine: str | None = None, check: bool = False, timeout: float = 180
) -> CtkResult:
    """Run the real ``ctk`` CLI in a subprocess."""
    argv = [sys.executable, "-m", "toolkit"]
    if engine:
        argv += ["--engine", engine]
    proc = subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    result = CtkResult(proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"ctk {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return result


__all__ = [
    "BUSYBOX_IMAGE",
    "COUNTER_IMAGE",
    "PortMapping",
    "counts",
    "ctk",
    "last_count",
    "wait_count_at_least",
    "wait_for",
]


# -- the multi-host testbed (scripts/testbed) ------------------------------------------------

TESTBED_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts", "testbed")
TESTBED_HOSTS = 2


@dataclass(frozen=True)
class TestbedHost:
    """One testbed host: a network namespace with its own dockerd, Podman service and sshd."""

    __test__ = False  # not a test class, though its name starts with "Test"
    name: str
    netns: str
    address: str
    docker_url: str
    podman_url: str
    docker_tcp_url: str
    docker_ssh_url: str
    podman_ssh_url: str

    def url(self, kind: str) -> str:
        """The ``--engine`` URL of this host's ``docker`` or ``podman`` (unix socket)."""
        return {"docker": self.docker_url, "podman": self.podman_url}[kind]

    def backend(self, kind: str) -> Backend:
        """A connected backend for this host's engine of ``kind``."""
        return get_backend(self.url(kind))


@dataclass(frozen=True)
class Testbed:
    """The hosts of a running testbed, and the ssh key that logs in to them as root."""

    __test__ = False
    hosts: tuple[TestbedHost, ...]
    ssh_key: str = "/var/lib/ctk-testbed/ssh/id_ed25519"


def testbed_host(index: int) -> TestbedHost:
    """Host ``index`` (1-based) as scripts/testbed lays it out."""
    addr = f"10.77.0.{10 + index}"
    run = f"/run/ctk-testbed/h{index}"
    return TestbedHost(
        name=f"h{index}",
        netns=f"ctk-h{index}",
        address=addr,
        docker_url=f"docker+unix://{run}/docker.sock",
        podman_url=f"podman+unix://{run}/podman.sock",
        docker_tcp_url=f"docker+tcp://{addr}:2375",
        docker_ssh_url=f"docker+ssh://root@{addr}",
        podman_ssh_url=f"podman+ssh://root@{addr}{run}/podman.sock",
    )


@pytest.fixture(scope="session")
def testbed() -> Iterator[Testbed]:
    """``scripts/testbed up 2`` for the session, ``scripts/testbed down`` at its end.

    A testbed that was already fully up before the session (someone else's) is left up, and
    so is every testbed when ``CTK_TESTBED_KEEP=1``.
    """
    if os.geteuid() != 0:
        unavailable("the testbed needs root (network namespaces, dockerd)")
    status = subprocess.run(
        [TESTBED_SCRIPT, "status", str(TESTBED_HOSTS)], capture_output=True, check=False
    )
    ours = status.returncode != 0 and os.environ.get("CTK_TESTBED_KEEP") != "1"
    up = subprocess.run(
        [TESTBED_SCRIPT, "up", str(TESTBED_HOSTS)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        if up.returncode != 0:
            unavailable(f"scripts/testbed up failed: {up.stderr[-1500:]}")
        yield Testbed(tuple(testbed_host(i) for i in range(1, TESTBED_HOSTS + 1)))
    finally:
        if ours:
            subprocess.run([TESTBED_SCRIPT, "down"], capture_output=True, timeout=600, check=False)


# The Debian 13 host `scripts/testbed up 2 --trixie` adds: Podman 5.4 and Docker 26.1.
TRIXIE_HOST = TESTBED_HOSTS + 1


@pytest.fixture(scope="session")
def testbed_trixie(testbed: Testbed) -> TestbedHost:
    """The testbed's Debian 13 host h3, brought up beside h1 and h2 (and down with them).

    Its root is built once into /var/cache/ctk/trixie (a few minutes: mmdebstrap and CRIU's
    build) and reused by every later ``up``, which then takes seconds plus the image loads.
    """
    up = subprocess.run(
        [TESTBED_SCRIPT, "up", str(TESTBED_HOSTS), "--trixie"],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    if up.returncode != 0:
        unavailable(f"scripts/testbed up --trixie failed: {up.stderr[-1500:]}")
    return testbed_host(TRIXIE_HOST)
