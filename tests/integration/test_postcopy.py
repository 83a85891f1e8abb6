"""ctk migrate --mode postcopy: Podman -> Podman with CRIU lazy pages, and where it cannot run.

memhog keeps its memory (a checksum over all of it, on SIGUSR1) and its counter; the source is
gone afterwards and no CRIU lazy-pages daemon or page server is left. Docker (no annotations in
20.10's API) and a Podman container made without the org.criu.config annotation get exit 6
before anything is frozen.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import toolkit
from tests.conftest import TEST_LABEL, Containers, Testbed, TestbedHost, ctk, wait_for
from toolkit import ContainerSpec
from toolkit.backends.base import Backend
from toolkit.backends.podman import PodmanBackend
from toolkit.errors import ContainerNotFound, CtkError, MigrationError
from toolkit.migration import postcopy
from toolkit.migration.execute import PAUSE_ENV

MEMHOG = "ctk-demo/memhog"
PODMAN_URL = "unix:///run/podman/podman.sock"
URLS = {"docker": "docker+unix:///var/run/docker.sock", "podman": f"podman+{PODMAN_URL}"}


def _read(backend: Backend, name: str, path: str) -> str:
    result = backend.exec(name, ["cat", path])
    return result.stdout.strip() if result.exit_code == 0 else ""


def checksum(backend: Backend, name: str) -> str:
    """memhog's checksum of all its memory, asked for with SIGUSR1 (it reads every page)."""
    backend.exec(name, ["sh", "-c", "rm -f /www/checksum; kill -USR1 1"])
    wait_for(lambda: bool(_read(backend, name, "/www/checksum")), timeout=60, what="checksum")
    return _read(backend, name, "/www/checksum")


def count(backend: Backend, name: str) -> int:
    return int(_read(backend, name, "/www/count") or 0)


def criu_left() -> list[str]:
    """CRIU processes of a post-copy (lazy-pages daemon, lazy dump serving pages) still alive."""
    left = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (proc / "comm").read_text().strip() != "criu":
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "lazy-pages" in cmdline:
                left.append(f"{proc.name}: {cmdline}")
    return left


@dataclass
class Pair:
    """Source and destination Podman for one test, and the containers made there."""

    src: PodmanBackend
    dst: PodmanBackend
    names: list[str] = field(default_factory=list)

    def name(self) -> str:
        name = f"ctk-test-pc-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        return name

    def memhog(self, mib: int) -> str:
        name = self.name()
        spec = ContainerSpec(
            image=MEMHOG, name=name, labels=dict(TEST_LABEL), env={"MEM_MIB": str(mib)}
        )
        postcopy.create_ready(self.src, spec)
        wait_for(lambda: count(self.src, name) >= 2, timeout=60, what=f"{name} counting")
        return name

    def cleanup(self) -> None:
        for backend in (self.src, self.dst):
            for name in self.names:
                with contextlib.suppress(CtkError):
                    backend.remove(name, force=True)
            backend.close()


@pytest.fixture
def local(testbed: Testbed, state: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pair]:
    """One Podman to itself under a new name: testbed host h1's, not this machine's own.

    While a lazy dump serves pages, libpod holds the container's lock, and every listing of
    all containers waits for it: on the machine's own Podman that stalled the tests other
    xdist workers run meanwhile ("Podman does not answer"). The testbed's tests run in one
    worker, one after another.
    """
    monkeypatch.setenv(postcopy.ADDRESS_ENV, testbed.hosts[0].address)
    src, dst = (testbed.hosts[0].backend("podman") for _ in range(2))
    assert isinstance(src, PodmanBackend) and isinstance(dst, PodmanBackend)
    pair = Pair(src, dst)
    try:
        yield pair
    finally:
        pair.cleanup()


@pytest.fixture
def hosts(testbed: Testbed, state: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pair]:
    """Testbed host h1's Podman -> h2's; the page server listens on h1's address."""
    monkeypatch.setenv(postcopy.ADDRESS_ENV, testbed.hosts[0].address)
    src, dst = (testbed.hosts[i].backend("podman") for i in (0, 1))
    assert isinstance(src, PodmanBackend) and isinstance(dst, PodmanBackend)
    pair = Pair(src, dst)
    try:
        yield pair
    finally:
        pair.cleanup()


def _move_keeps_memory(pair: Pair, *, new_name: str | None) -> None:
    name = pair.memhog(64)
    before = checksum(pair.src, name)
    counted = count(pair.src, name)
    report = toolkit.migrate(
        name, source=pair.src, dest=pair.dst, mode="postcopy", new_name=new_name
    )
    target = new_name or name
    assert report.status == "done" and report.mode == "postcopy"
    stats = report.criu_stats["postcopy"]
    # 64 MiB = 16384 pages, all of them moved after the resume (lazily or in the background)
    assert stats["pages"] >= 16384, stats
    assert stats["pages_on_demand"] + stats["pages_background"] == stats["pages"]
    assert stats["bytes"] == stats["pages"] * 4096
    assert 0 < report.downtime < stats["all_pages_ms"] / 1000 + 0.001
    assert any("post-copy" in note for note in report.notes)
    assert_moved(pair, name, target, memory=before, counted=counted)
    assert criu_left() == []


def assert_moved(pair: Pair, name: str, target: str, *, memory: str, counted: int) -> None:
    """memhog ``target`` runs on the destination with the source's memory (its checksum
    ``memory``), counting on past ``counted``; the source ``name`` is gone."""
    assert checksum(pair.dst, target) == memory
    wait_for(lambda: count(pair.dst, target) > counted, timeout=20, what="count goes on")
    with pytest.raises(ContainerNotFound):
        pair.src.inspect(name)


@pytest.mark.testbed
def test_postcopy_on_one_host_keeps_memory_and_count(local: Pair) -> None:
    _move_keeps_memory(local, new_name=local.name())


@pytest.mark.testbed
def test_postcopy_across_testbed_hosts_keeps_memory_and_count(hosts: Pair) -> None:
    _move_keeps_memory(hosts, new_name=None)


@pytest.mark.testbed
def test_auto_moves_a_large_ready_container_post_copy(
    local: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--mode auto picks post-copy from the threshold on (lowered here: memhog's 64 MiB is what
    the testbed moves quickly), and says why in the report."""
    monkeypatch.setenv(postcopy.AUTO_MIB_ENV, "32")
    name = local.memhog(64)
    before = checksum(local.src, name)
    target = local.name()
    report = toolkit.migrate(name, source=local.src, dest=local.dst, mode="auto", new_name=target)
    assert report.status == "done" and report.mode == "postcopy", report
    assert report.reason.startswith("auto: post-copy") and "MiB" in report.reason, report.reason
    assert checksum(local.dst, target) == before
    assert criu_left() == []


def test_unsupported_gets_exit_6_before_freezing(
    engine: Backend, containers: Containers, state: Path
) -> None:
    """Docker has no annotations; a Podman container made without one cannot pass options."""
    name = containers.name("pc")
    containers.run(MEMHOG, name=name, env={"MEM_MIB": "8"})
    wait_for(lambda: count(engine, name) >= 2, timeout=60, what="counting")
    other = "podman" if engine.kind == "docker" else "docker"
    url = URLS
    result = ctk("migrate", name, "--to", url[other], "--mode", "postcopy", engine=url[engine.kind])
    assert result.returncode == 6, result
    assert "needs Podman at both ends" in result.stderr, result.stderr
    # nothing was frozen: it counts on, and no checkpoint was taken
    seen = count(engine, name)
    wait_for(lambda: count(engine, name) > seen, timeout=10, what="count goes on")
    assert engine.inspect(name).running
    assert engine.checkpoints(name) == []
    # the podman -> podman case: the annotation is what is missing
    if engine.kind == "podman":
        same = ctk("migrate", name, "--to", url["podman"], "--name", name + "-b",
                   "--mode", "postcopy", engine=url["podman"])  # fmt: skip
        assert same.returncode == 6 and "org.criu.config" in same.stderr, same


def _criu_pid(marker: str) -> int | None:
    """A CRIU process whose command line or open files (its images directory) name ``marker``.

    CRIU under runc rewrites its process title (``criu: dump --rpc ...``, cut short), so the
    source's dump is found by the checkpoint directory it holds open.
    """
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (proc / "comm").read_text().strip() != "criu":
                continue
            if marker in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                return int(proc.name)
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if marker in os.readlink(fd):
                        return int(proc.name)
    return None


def _tc(host: TestbedHost, *args: str) -> None:
    subprocess.run(["nsenter", f"--net=/run/netns/{host.netns}", "tc", "qdisc", *args], check=True)


def _resumed(state: Path) -> bool:
    """A migration journal under ``state`` records the destination's resume on lazy pages."""
    return any(
        postcopy.RESUMED_STEP in journal.read_text(errors="replace")
        for journal in (state / "migrations").glob("*.json")
    )


def _copying(state: Path) -> bool:
    """The daemon copies pages in the background (only once CRIU's restore is over: a daemon
    killed inside the restore leaves CRIU's restorer spinning, docs/postcopy.md)."""
    for lazy_log in state.rglob("lazy-pages.log"):
        with contextlib.suppress(OSError), lazy_log.open(errors="replace") as handle:
            if any("uffd_copy" in line for line in handle):
                return True
    return False


@pytest.mark.testbed
@pytest.mark.parametrize("victim", ["lazy-pages-daemon", "page-server", "link"])
def test_lost_copy_mid_way_leaves_the_source_running(
    local: Pair, state: Path, testbed: Testbed, victim: str
) -> None:
    """The destination's daemon or the source's page server killed while pages move, or the
    link to the source cut silently (its veth down: no FIN, no RST reaches either end)."""
    name = local.memhog(1024)
    before = checksum(local.src, name)
    source_id = local.src.inspect(name).id
    target = local.name()
    outcome: dict[str, BaseException] = {}

    def move() -> None:
        try:
            outcome["report"] = toolkit.migrate(  # type: ignore[assignment]
                name, source=local.src, dest=local.dst, mode="postcopy", new_name=target
            )
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    h1 = testbed.hosts[0]
    with contextlib.ExitStack() as undo:
        # Pages from h1 at 200 Mbit/s: 1 GiB takes some 40 s, so the blow surely falls mid-copy
        # (over the bare veth a copy could end before it).
        _tc(h1, "add", "dev", "eth0", "root", "tbf", "rate", "200mbit", "burst", "64kb",
            "latency", "100ms")  # fmt: skip
        undo.callback(_tc, h1, "del", "dev", "eth0", "root")
        mover = threading.Thread(target=move)
        mover.start()
        # The destination was resumed (its restore over: a daemon killed inside the restore
        # leaves CRIU's restorer spinning, docs/postcopy.md) and the copy has begun.
        wait_for(
            lambda: _resumed(state) and _copying(state),
            timeout=120,
            what="destination resumed, background copy under way",
        )
        if victim == "link":
            # scripts/criu-patches/0005: keepalive and a user timeout end both sides' transfer
            # about 20 s later; without it both ends waited for good.
            veth = f"ctkh{h1.name.removeprefix('h')}"
            subprocess.run(["ip", "link", "set", veth, "down"], check=True)
            undo.callback(subprocess.run, ["ip", "link", "set", veth, "up"], check=True)
        else:
            marker = "lazy-pages --page-server" if victim == "lazy-pages-daemon" else source_id
            pid = _criu_pid(marker)
            assert pid is not None, f"no CRIU process with {marker}"
            os.kill(pid, signal.SIGKILL)
        mover.join(timeout=300)
    error = outcome.get("error")
    assert isinstance(error, MigrationError), outcome
    assert error.report is not None and error.report.status == "rolled_back", error.report
    assert any("removed" in line for line in error.report.rolled_back), error.report
    if victim == "link":
        # whichever end's keepalive gives up first: the daemon's read times out, or the source's
        # probes come back unreachable
        assert re.search("timed out|No route to host", error.report.error), error.report.error
        assert error.report.failed_phase == "pages", error.report
    with pytest.raises(ContainerNotFound):
        local.dst.inspect(target)
    # the source's CRIU thawed it where it was frozen: memory intact, counting on
    assert local.src.inspect(name).running
    seen = count(local.src, name)
    wait_for(lambda: count(local.src, name) > seen, timeout=20, what="source counts on")
    assert checksum(local.src, name) == before
    wait_for(lambda: criu_left() == [], timeout=30, what="no lazy-pages CRIU left")


@pytest.mark.testbed
@pytest.mark.parametrize("when", ["frozen", "copying"])
def test_ctk_killed_mid_way_is_recovered(
    local: Pair, state: Path, testbed: Testbed, when: str
) -> None:
    """ctk SIGKILLed while the source waits frozen for the destination: ``--recover`` makes the
    source's lazy dump fail (CRIU thaws it) and rolls back. Killed while the pages move: the
    daemon copies on by itself; ``--recover`` waits for it and finishes the move."""
    name = local.memhog(64 if when == "frozen" else 1024)
    before = checksum(local.src, name)
    target = local.name()
    url = testbed.hosts[0].podman_url
    argv = [sys.executable, "-m", "toolkit", "migrate", name, "--from", url, "--to", url,
            "--name", target, "--mode", "postcopy"]  # fmt: skip
    env = dict(os.environ, **({PAUSE_ENV: "dump"} if when == "frozen" else {}))
    h1 = testbed.hosts[0]
    if when == "copying":  # slow enough that ctk surely dies mid-copy (see the test above)
        _tc(h1, "add", "dev", "eth0", "root", "tbf", "rate", "400mbit", "burst", "64kb",
            "latency", "100ms")  # fmt: skip
    mover = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:
        if when == "frozen":
            assert mover.stderr is not None
            for line in mover.stderr:
                if "paused after dump" in line:
                    break
            else:
                pytest.fail(f"ctk ended before the pause: {mover.wait()}")
        else:
            wait_for(lambda: _copying(state), timeout=120, what="background copy under way")
    finally:
        mover.kill()
        mover.wait(timeout=30)
    try:
        recovered = ctk("migrate", "--recover", "--json", timeout=600)
    finally:
        if when == "copying":
            _tc(h1, "del", "dev", "eth0", "root")
    assert recovered.returncode == 0, recovered.stderr
    (report,) = json.loads(recovered.stdout)
    if when == "frozen":
        assert report["status"] == "rolled_back", report
        with pytest.raises(ContainerNotFound):
            local.dst.inspect(target)
        seen = count(local.src, name)
        wait_for(lambda: count(local.src, name) > seen, timeout=30, what="source counts on")
        assert checksum(local.src, name) == before
    else:
        assert report["status"] == "done", json.dumps(report, indent=1)
        assert checksum(local.dst, target) == before
        with pytest.raises(ContainerNotFound):
            local.src.inspect(name)
    assert any(note.startswith("post-copy: ") for note in report["notes"]), report
    wait_for(lambda: criu_left() == [], timeout=30, what="no lazy-pages CRIU left")


def _with_volumes(pair: Pair, named: str) -> str:
    """A post-copy-ready container appending 1, 2, 3, ... to /named/log through a descriptor it
    keeps open, with an anonymous volume at /anon holding a file."""
    from tests.conftest import COUNTER_IMAGE
    from toolkit.models import Mount

    name = pair.name()
    spec = ContainerSpec(
        image=COUNTER_IMAGE,
        name=name,
        labels=dict(TEST_LABEL),
        command=(
            "sh",
            "-c",
            "exec 3>>/named/log; i=0; while :; do i=$((i+1)); echo $i >&3; sleep 0.1; done",
        ),
        volumes=(Mount(target="/named", source=named, name=named), Mount(target="/anon")),
    )
    postcopy.create_ready(pair.src, spec)
    wait_for(lambda: len(_log(pair.src, name)) >= 3, timeout=60, what=f"{name} writing")
    written = pair.src.exec(name, ["sh", "-c", "echo anon-data >/anon/file"])
    assert written.exit_code == 0, written.stderr
    return name


def _log(backend: Backend, name: str) -> list[int]:
    return [int(n) for n in _read(backend, name, "/named/log").split()]


def _volumes(backend: Backend, name: str) -> dict[str, str]:
    from toolkit.backends.base import VolumeData

    assert isinstance(backend, VolumeData)
    return {m.target: m.name for m in backend.container_volumes(name) if m.type == "volume"}


def _drop_volumes(backend: PodmanBackend, names: list[str]) -> None:
    for volume in names:
        with contextlib.suppress(CtkError):
            backend.remove_volume(volume, force=True)


@pytest.mark.testbed
def test_postcopy_carries_volume_data_and_open_files(hosts: Pair) -> None:
    """The data of both volumes arrives, and the process goes on writing through the descriptor
    it had open in the named one: the log stays 1..N with no gap and no restart."""
    named = f"ctk-test-pcvol-{uuid.uuid4().hex[:8]}"
    name = _with_volumes(hosts, named)
    old = _volumes(hosts.src, name)
    moved: dict[str, str] = {}
    try:
        before = _log(hosts.src, name)[-1]
        report = toolkit.migrate(name, source=hosts.src, dest=hosts.dst, mode="postcopy")
        assert report.status == "done" and report.mode == "postcopy", report
        moved = _volumes(hosts.dst, name)
        assert moved["/named"] == named and moved["/anon"] not in (named, "")
        assert _read(hosts.dst, name, "/anon/file") == "anon-data"
        wait_for(lambda: _log(hosts.dst, name)[-1] > before + 3, timeout=20, what="log goes on")
        log = _log(hosts.dst, name)
        assert log == list(range(1, len(log) + 1)), log
        fd = hosts.dst.exec(name, ["readlink", "/proc/1/fd/3"])
        assert fd.stdout.strip() == "/named/log", fd
        with pytest.raises(ContainerNotFound):
            hosts.src.inspect(name)
        assert criu_left() == []
    finally:
        _drop_volumes(hosts.src, list(old.values()))
        for backend in (hosts.src, hosts.dst):
            with contextlib.suppress(CtkError):
                backend.remove(name, force=True)
        _drop_volumes(hosts.dst, [named, *moved.values()])


@pytest.mark.testbed
def test_failed_postcopy_removes_the_volumes_it_made(
    hosts: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The destination's restore fails after the volumes were filled: the source thaws and
    writes on into its own volumes; the destination keeps no volume of the move."""
    from toolkit.errors import CheckpointError, VolumeNotFound

    named = f"ctk-test-pcvol-{uuid.uuid4().hex[:8]}"
    name = _with_volumes(hosts, named)
    old = _volumes(hosts.src, name)

    def failing_import(*_args: object, **_kwargs: object) -> None:
        raise CheckpointError("restore failed on the destination (injected)")

    monkeypatch.setattr(hosts.dst, "import_raw", failing_import)
    made: list[str] = []
    try:
        with pytest.raises(MigrationError) as caught:
            toolkit.migrate(name, source=hosts.src, dest=hosts.dst, mode="postcopy")
        report = caught.value.report
        assert report is not None and report.status == "rolled_back", report
        made = [
            line.split()[2] for line in report.rolled_back if line.startswith("removed volume ")
        ]
        assert named in made and len(made) == 2, report.rolled_back
        for volume in made:
            with pytest.raises(VolumeNotFound):
                hosts.dst.inspect_volume(volume)
        wait_for(lambda: hosts.src.inspect(name).running, timeout=60, what="source thawed")
        assert _volumes(hosts.src, name) == old
        seen = _log(hosts.src, name)[-1]
        wait_for(lambda: _log(hosts.src, name)[-1] > seen, timeout=20, what="source writes on")
        log = _log(hosts.src, name)
        assert log == list(range(1, len(log) + 1)), log
        assert _read(hosts.src, name, "/anon/file") == "anon-data"
        wait_for(lambda: criu_left() == [], timeout=30, what="no lazy-pages CRIU left")
    finally:
        for backend in (hosts.src, hosts.dst):
            with contextlib.suppress(CtkError):
                backend.remove(name, force=True)
        _drop_volumes(hosts.src, list(old.values()))
        _drop_volumes(hosts.dst, [named, *made])
