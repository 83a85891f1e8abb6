"""ctk on Podman 5.4 and Docker 26.1: the testbed's Debian 13 host h3 (``scripts/testbed up 2
--trixie``), alone and against the Debian 12 host h1 (Podman 4.3, Docker 20.10).

h3 runs its engines in a root of its own (its own /run, /tmp, /etc): what ctk reaches there it
reaches through the engine, as on another machine; only the socket paths are shared.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import (
    COUNTER_IMAGE,
    TEST_LABEL,
    TESTBED_SCRIPT,
    TRIXIE_HOST,
    Testbed,
    TestbedHost,
    counts,
    ctk,
    last_count,
    wait_count_at_least,
)
from toolkit import ContainerSpec
from toolkit.backends.base import Backend, Volumes
from toolkit.errors import ContainerNotFound, CtkError, ExitCode

pytestmark = pytest.mark.testbed

ENGINES = ("docker", "podman")
# What h3's engines answer as their version (Debian 13's packages).
MODERN = {"docker": "26.1.", "podman": "5.4."}
OLD = {"docker": "20.10.", "podman": "4.3."}


@dataclass
class Made:
    """Containers a test made, by engine, removed at its end."""

    names: list[tuple[Backend, str]] = field(default_factory=list)

    def name(self, backend: Backend, prefix: str = "m") -> str:
        name = f"ctk-test-{prefix}-{uuid.uuid4().hex[:8]}"
        self.names.append((backend, name))
        return name

    def counter(self, backend: Backend) -> str:
        name = self.name(backend)
        backend.run(ContainerSpec(image=COUNTER_IMAGE, name=name, labels=dict(TEST_LABEL)))
        wait_count_at_least(backend, name, 3)
        return name


@pytest.fixture
def made() -> Iterator[Made]:
    made = Made()
    yield made
    for backend, name in made.names:
        with contextlib.suppress(CtkError):
            backend.remove(name, force=True)
    for backend in {id(b): b for b, _ in made.names}.values():
        backend.close()


def _continued(after: list[int], before: int) -> None:
    """The count went on from ``before``: never back to the start."""
    assert after == sorted(after), f"the count went back: {after}"
    assert after.count(1) <= 1 and after[-1] > before, (after, before)


def test_status_names_h3_debian_13(testbed_trixie: TestbedHost) -> None:
    proc = subprocess.run(
        [TESTBED_SCRIPT, "status", str(TRIXIE_HOST)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(row for row in proc.stdout.splitlines() if row.startswith("h3 "))
    assert line.split()[1:] == ["ctk-h3", "10.77.0.13", "up", "up", "up", "debian13"]


@pytest.mark.parametrize("kind", ENGINES)
def test_h3_runs_the_modern_engines(testbed_trixie: TestbedHost, kind: str) -> None:
    backend = testbed_trixie.backend(kind)
    try:
        info = backend.info()
    finally:
        backend.close()
    assert info.version.startswith(MODERN[kind]), info.version
    assert info.checkpoint_capable
    assert info.default_runtime == "runc", info.default_runtime


@pytest.mark.parametrize("kind", ENGINES)
def test_checkpoint_and_restore_in_place(
    testbed_trixie: TestbedHost, state: Path, made: Made, kind: str
) -> None:
    url = testbed_trixie.url(kind)
    backend = testbed_trixie.backend(kind)
    name = made.counter(backend)
    ctk("checkpoint", name, "--name", "cp1", engine=url, check=True)
    assert not backend.inspect(name).running
    frozen = last_count(backend, name)
    ctk("restore", name, "--checkpoint", "cp1", engine=url, check=True)
    wait_count_at_least(backend, name, frozen + 2)
    _continued(counts(backend, name), frozen)


@pytest.mark.parametrize("kind", ENGINES)
def test_export_and_import_as_a_clone(
    testbed_trixie: TestbedHost, state: Path, made: Made, tmp_path: Path, kind: str
) -> None:
    url = testbed_trixie.url(kind)
    backend = testbed_trixie.backend(kind)
    original = made.counter(backend)
    path = tmp_path / "web.ctk"
    ctk("checkpoint", original, "--export", str(path), "--leave-running", engine=url, check=True)
    at = last_count(backend, original)
    clone = made.name(backend, "clone")
    ctk("restore", "--import", str(path), "--name", clone, engine=url, check=True)
    assert backend.inspect(original).running and backend.inspect(clone).running
    wait_count_at_least(backend, clone, at + 2)
    values = counts(backend, clone)
    assert values == sorted(values) and values[-1] > at, values
    # Docker's clone starts a new log, whose first line continues the count.
    assert values[0] > 1 or kind == "podman", values


def _migrate(
    made: Made, src: TestbedHost, src_kind: str, dst: TestbedHost, dst_kind: str
) -> tuple[dict[str, object], Backend, str, list[int]]:
    """A counter on ``src`` moved to ``dst`` with ctk migrate: the JSON report, the
    destination's backend, the name and the source's count history."""
    source, dest = src.backend(src_kind), dst.backend(dst_kind)
    name = made.counter(source)
    made.names.append((dest, name))
    history = counts(source, name)
    result = ctk("migrate", name, "--from", src.url(src_kind), "--to", dst.url(dst_kind), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout), dest, name, history


# (engine, source host, destination host): h1 is Debian 12, h3 Debian 13.
VERSION_MOVES = [
    ("podman", 1, TRIXIE_HOST),
    ("podman", TRIXIE_HOST, 1),
    ("docker", 1, TRIXIE_HOST),
    ("docker", TRIXIE_HOST, 1),
]


@pytest.mark.parametrize(
    ("kind", "src", "dst"),
    VERSION_MOVES,
    ids=["podman-4.3-to-5.4", "podman-5.4-to-4.3", "docker-20.10-to-26", "docker-26-to-20.10"],
)
def test_live_migration_between_engine_versions(
    testbed: Testbed,
    testbed_trixie: TestbedHost,
    state: Path,
    made: Made,
    kind: str,
    src: int,
    dst: int,
) -> None:
    hosts = {1: testbed.hosts[0], TRIXIE_HOST: testbed_trixie}
    report, dest, name, history = _migrate(made, hosts[src], kind, hosts[dst], kind)
    assert report["status"] == "done" and report["mode"] == "live", report
    assert dest.inspect(name).running
    assert dest.info().version.startswith((MODERN if dst == TRIXIE_HOST else OLD)[kind])
    wait_count_at_least(dest, name, history[-1] + 2)
    values = counts(dest, name)
    # Podman's import carries the old log along; Docker's restored container starts a new one.
    assert values == sorted(values) and values.count(1) <= 1, values
    assert values[-1] > history[-1], (values, history)


def _ssh_url(host: TestbedHost, kind: str) -> str:
    return host.docker_ssh_url if kind == "docker" else host.podman_ssh_url


@pytest.mark.parametrize("kind", ENGINES, ids=["docker-20.10-to-26", "podman-4.3-to-5.4"])
def test_migration_over_ssh_to_the_newer_engine(
    testbed: Testbed, testbed_trixie: TestbedHost, state: Path, made: Made, kind: str
) -> None:
    # Both engines reached only through ssh (the testbed's key): h1's engine to h3's. Docker
    # over ssh opens a connection per request through the system ssh (about 18 s here).
    src, dst = testbed.hosts[0], testbed_trixie
    source, dest = src.backend(kind), dst.backend(kind)
    name = made.counter(source)
    made.names.append((dest, name))
    history = counts(source, name)
    result = ctk(
        "migrate", name, "--from", _ssh_url(src, kind), "--to", _ssh_url(dst, kind), "--json"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "done" and report["mode"] == "live", report
    wait_count_at_least(dest, name, history[-1] + 2)
    values = counts(dest, name)
    assert values == sorted(values) and values.count(1) <= 1, values
    if kind == "podman":  # the import brings the old log along
        assert values[: len(history)] == history
    with pytest.raises(ContainerNotFound):
        source.inspect(name)


@pytest.mark.parametrize(
    ("src_kind", "dst_kind"),
    [("docker", "podman"), ("podman", "docker")],
    ids=["docker-26-to-podman-4.3", "podman-5.4-to-docker-20.10"],
)
def test_live_migration_across_runtimes_and_versions(
    testbed: Testbed,
    testbed_trixie: TestbedHost,
    state: Path,
    made: Made,
    src_kind: str,
    dst_kind: str,
) -> None:
    report, dest, name, history = _migrate(
        made, testbed_trixie, src_kind, testbed.hosts[0], dst_kind
    )
    assert report["status"] == "done" and report["mode"] == "live", report
    assert dest.inspect(name).engine == dst_kind
    wait_count_at_least(dest, name, history[-1] + 2)
    values = counts(dest, name)
    assert values == sorted(values) and values.count(1) <= 1, values
    with pytest.raises(ContainerNotFound):
        testbed_trixie.backend(src_kind).inspect(name)


@pytest.mark.parametrize("src", [1, TRIXIE_HOST], ids=["docker-20.10", "docker-26"])
def test_live_move_into_podman_5_writes_the_criu_config_through_the_engine(
    testbed: Testbed, testbed_trixie: TestbedHost, state: Path, made: Made, src: int
) -> None:
    # h3's runc reads the per-container CRIU config on h3, whose filesystem is not this
    # machine's: ctk puts it there through Podman (a volume and a helper container), so the
    # move stays live, and leaves neither behind.
    from toolkit.migration.criu_config import VOLUME_LABEL

    hosts = {1: testbed.hosts[0], TRIXIE_HOST: testbed_trixie}
    report, dest, name, history = _migrate(made, hosts[src], "docker", testbed_trixie, "podman")
    assert report["status"] == "done" and report["mode"] == "live", report
    assert dest.info().version.startswith(MODERN["podman"])
    wait_count_at_least(dest, name, history[-1] + 2)
    values = counts(dest, name)
    assert values == sorted(values) and values.count(1) <= 1, values  # counting on, no restart
    assert isinstance(dest, Volumes)
    assert dest.volumes(labels={VOLUME_LABEL: name}) == []
    assert dest.containers(all=True, filters={"label": [f"{VOLUME_LABEL}={name}"]}) == []
    # Its annotation names a file that is gone: CRIU ignores it, a plain C/R works there.
    url = testbed_trixie.url("podman")
    ctk("checkpoint", name, "--name", "after", engine=url, check=True)
    frozen = last_count(dest, name)
    ctk("restore", name, "--checkpoint", "after", engine=url, check=True)
    wait_count_at_least(dest, name, frozen + 2)


@pytest.mark.parametrize("kind", ENGINES)
def test_doctor_on_h3_is_ready_with_the_engines_versions(
    testbed_trixie: TestbedHost, kind: str
) -> None:
    result = ctk("doctor", testbed_trixie.url(kind), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["ready"] is True
    checks = {c["name"]: c for c in data["checks"]}
    assert checks[f"{kind} engine"]["detail"].startswith(MODERN[kind]), checks
    for label in ("root", "non-root"):
        probe = checks[f"{kind} probe ({label})"]
        assert probe["ok"] and "restored, counting on" in probe["detail"], probe
    runtime = checks[f"{kind} runtime"]["detail"]
    assert runtime.startswith("runc 1.1.15"), runtime
    if kind == "podman":  # from the probe's CRIU log, read on h3
        assert "CRIU 4.1.1 (the engine's host)" in runtime, runtime


def test_doctor_reports_h3_s_runc_not_this_machine_s(testbed_trixie: TestbedHost) -> None:
    # h3's runc is Debian 13's 1.1.15 (this machine's is 1.1.5): the line is the engine host's.
    result = ctk("doctor", testbed_trixie.url("podman"), "--quick", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    runtime = checks["podman checkpoint runtime"]
    assert runtime["ok"], runtime
    assert runtime["detail"].startswith("runc 1.1.15"), runtime
    assert "at /usr/bin/runc on the engine's host" in runtime["detail"], runtime


def test_postcopy_into_h3_is_refused_as_its_host_does_not_see_ctk_s_files(
    testbed: Testbed, testbed_trixie: TestbedHost, state: Path, made: Made
) -> None:
    # Post-copy's destination reads a CRIU config and talks to a lazy-pages daemon on ctk's
    # machine: h3's Podman does not see them, proved through the engine, not guessed.
    from toolkit.errors import Unsupported
    from toolkit.migration import postcopy

    source, dest = testbed.hosts[0].backend("podman"), testbed_trixie.backend("podman")
    name = made.name(source, "pc")
    postcopy.create_ready(
        source, ContainerSpec(image=COUNTER_IMAGE, name=name, labels=dict(TEST_LABEL))
    )
    with pytest.raises(Unsupported) as excinfo:
        postcopy.check(source, dest, name)
    assert "does not see" in excinfo.value.message, excinfo.value.message
    assert excinfo.value.exit_code == ExitCode.UNSUPPORTED
    dest.close()


@contextlib.contextmanager
def packaged_criu() -> Iterator[None]:
    """h3's engines run Debian 13's own CRIU 4.1.1, without scripts/criu-patches."""
    swap = [TESTBED_SCRIPT, "criu", str(TRIXIE_HOST)]
    subprocess.run([*swap, "packaged"], check=True, capture_output=True, timeout=60)
    try:
        yield
    finally:
        subprocess.run([*swap, "patched"], check=True, capture_output=True, timeout=60)


@pytest.mark.parametrize("kind", ENGINES)
def test_unpatched_criu_fails_with_criu_s_own_reason(
    testbed_trixie: TestbedHost, state: Path, made: Made, kind: str
) -> None:
    url = testbed_trixie.url(kind)
    backend = testbed_trixie.backend(kind)
    name = made.counter(backend)  # it listens on 8080: an inet socket
    with packaged_criu():
        doctor = ctk("doctor", url, "--json")
        checkpoint = ctk("checkpoint", name, engine=url)
    assert doctor.returncode == ExitCode.NOT_READY, doctor.stdout + doctor.stderr
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    non_root = checks[f"{kind} probe (non-root)"]
    # CRIU's own words from h3: without CAP_SYS_RESOURCE it cannot read another user's rlimits
    assert not non_root["ok"] and "Can't get rlimit 0" in non_root["detail"], non_root
    assert "patched CRIU" in non_root["fix"], non_root
    # and no dump of a task with an inet socket on Linux >= 6.16
    assert checkpoint.returncode == ExitCode.CHECKPOINT_FAILED, checkpoint.stderr
    assert "sockets: Can't get 1:16 opt: Operation not supported" in checkpoint.stderr
    assert backend.inspect(name).running  # left as it was
