"""ctk migrate and drain on the testbed: host h1 -> host h2, live and cold, with faults."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import toolkit
from tests.conftest import (
    COUNTER_IMAGE,
    TEST_LABEL,
    Testbed,
    counts,
    ctk,
    last_count,
    wait_count_at_least,
    wait_for,
)
from toolkit import ContainerSpec, PortMapping
from toolkit.backends.base import Backend, VolumeData
from toolkit.errors import (
    Conflict,
    ContainerNotFound,
    CtkError,
    MigrationError,
    VolumeNotFound,
)
from toolkit.models import Mount, VolumeInfo

pytestmark = pytest.mark.testbed

ENGINES = ("docker", "podman")


@dataclass
class Hosts:
    """Source (h1) and destination (h2) engines for one test, and what the test made there."""

    testbed: Testbed
    src_kind: str
    dst_kind: str
    src: Backend
    dst: Backend
    names: list[str] = field(default_factory=list)

    @property
    def src_url(self) -> str:
        return self.testbed.hosts[0].url(self.src_kind)

    @property
    def dst_url(self) -> str:
        return self.testbed.hosts[1].url(self.dst_kind)

    @property
    def dst_address(self) -> str:
        return self.testbed.hosts[1].address

    def name(self, prefix: str = "m") -> str:
        name = f"ctk-test-{prefix}-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        return name

    def run_counter(
        self, *, port: int | None = None, image: str = COUNTER_IMAGE, **labels: str
    ) -> str:
        name = self.name()
        ports = (PortMapping(container_port=8080, host_port=port),) if port else ()
        self.src.run(
            ContainerSpec(
                image=image,
                name=name,
                labels={**TEST_LABEL, **labels},
                env={"CTK_TEST_ENV": "kept"},
                ports=ports,
            )
        )
        wait_count_at_least(self.src, name, 3)
        return name

    def cleanup(self) -> None:
        for backend in (self.src, self.dst):
            for name in self.names:
                with contextlib.suppress(CtkError):
                    backend.remove(name, force=True)
            backend.close()


def free_port() -> int:
    # Random high ports: other test sessions share the testbed hosts.
    return random.randint(20000, 29999)


def http_count(address: str, port: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{address}:{port}/count", timeout=3) as resp:
                return int(resp.read().decode().strip() or 0)
        except (OSError, ValueError) as exc:
            last = exc
            time.sleep(0.3)
    raise AssertionError(f"http://{address}:{port}/count never answered: {last}")


def assert_continued(after: list[int], history: list[int]) -> None:
    """The counter went on from where it was: no restart from 1 in the restored logs.

    Docker's restored container has fresh logs (they start after the last count seen);
    Podman's import brings the old log along (it starts with the same history).
    """
    # Sorted, with at most the checkpoint's own line twice: a dump taken while the counter was
    # writing "count=N" resumes that write, so a clone may print N again. A restart would go
    # back to 1.
    assert after == sorted(after), f"the count went back: {after}"
    assert all(after.count(n) <= 2 for n in set(after)), f"the count restarted: {after}"
    assert after.count(1) <= 1, f"the count restarted: {after}"
    assert after[0] >= history[-1] or after[: len(history)] == history, (after, history)


def _hosts(testbed: Testbed, src_kind: str, dst_kind: str) -> Iterator[Hosts]:
    hosts = Hosts(
        testbed,
        src_kind,
        dst_kind,
        testbed.hosts[0].backend(src_kind),
        testbed.hosts[1].backend(dst_kind),
    )
    try:
        yield hosts
    finally:
        hosts.cleanup()


@pytest.fixture(params=ENGINES)
def same(request: pytest.FixtureRequest, testbed: Testbed, state: Path) -> Iterator[Hosts]:
    """h1 -> h2 on the same engine kind (live)."""
    yield from _hosts(testbed, request.param, request.param)


@pytest.fixture(params=[("docker", "podman"), ("podman", "docker")], ids=["d2p", "p2d"])
def cross(request: pytest.FixtureRequest, testbed: Testbed, state: Path) -> Iterator[Hosts]:
    """h1 -> h2 across runtimes (cold)."""
    yield from _hosts(testbed, *request.param)


def test_live_migration_keeps_the_count_and_serves_on_the_destination(same: Hosts) -> None:
    port = free_port()
    name = same.run_counter(port=port)
    history = counts(same.src, name)
    before = history[-1]
    result = ctk(
        "migrate",
        name,
        "--from",
        same.src_url,
        "--to",
        same.dst_url,
        "--verify",
        f"http://{same.dst_address}:{port}/count",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "done"
    assert report["mode"] == "live"
    assert report["reason"]
    assert set(report["timings"]) >= {"preflight", "dump", "transfer", "restore", "verify"}
    assert report["archive_bytes"] > 0
    assert report["downtime"] > 0
    # the count continued: the destination's first count follows the source's last
    wait_count_at_least(same.dst, name, before + 2)
    assert_continued(counts(same.dst, name), history)
    assert http_count(same.dst_address, port) >= before
    with pytest.raises(ContainerNotFound):
        same.src.inspect(name)
    # the text report prints the downtime
    other = same.run_counter()
    text = ctk("migrate", other, "--from", same.src_url, "--to", same.dst_url)
    assert text.returncode == 0, text.stderr
    assert "downtime" in text.stdout and "mode live" in text.stdout


def test_keep_source_leaves_the_source_running(same: Hosts) -> None:
    name = same.run_counter()
    history = counts(same.src, name)
    # A new name: Podman's import keeps the container ID under the same name, and the testbed
    # hosts share this machine's runc state directory, where the running source holds that ID.
    copy = same.name("copy")
    report = toolkit.migrate(name, source=same.src, dest=same.dst, keep_source=True, new_name=copy)
    assert report.status == "done" and report.source_kept
    assert same.dst.inspect(copy).running
    wait_count_at_least(same.dst, copy, history[-1] + 2)
    assert_continued(counts(same.dst, copy), history)
    assert same.src.inspect(name).running
    wait_count_at_least(same.src, name, history[-1] + 2)


def test_keep_source_cold(cross: Hosts) -> None:
    name = cross.run_counter()
    report = toolkit.migrate(name, source=cross.src, dest=cross.dst, mode="cold", keep_source=True)
    assert report.status == "done" and report.mode == "cold"
    assert cross.dst.inspect(name).running and cross.src.inspect(name).running


def test_cold_move_across_runtimes_recreates_the_spec(cross: Hosts) -> None:
    port = free_port()
    name = cross.run_counter(port=port)
    result = ctk(
        "migrate",
        name,
        "--from",
        cross.src_url,
        "--to",
        cross.dst_url,
        "--mode",
        "cold",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "done" and report["mode"] == "cold"
    moved = cross.dst.inspect(name)
    assert moved.running and moved.engine == cross.dst_kind
    assert moved.labels.get("ctk.test") == "1"
    assert cross.dst.container_spec(name).env.get("CTK_TEST_ENV") == "kept"
    assert http_count(cross.dst_address, port) >= 1
    with pytest.raises(ContainerNotFound):
        cross.src.inspect(name)


def _engine_cli(kind: str, url: str) -> list[str]:
    socket = url.split("+", 1)[1]
    return ["docker", "-H", socket] if kind == "docker" else ["podman", "--url", socket]


def _check_image_transfer(hosts: Hosts, mode: str) -> None:
    # A fresh image (commit of a counter) only the source has; removed from both afterwards.
    seed = hosts.run_counter()
    tag = f"ctk-test/migrate-{uuid.uuid4().hex[:8]}:latest"
    src_cli = _engine_cli(hosts.src_kind, hosts.src_url)
    dst_cli = _engine_cli(hosts.dst_kind, hosts.dst_url)
    subprocess.run([*src_cli, "commit", seed, tag], check=True, capture_output=True)
    try:
        name = hosts.run_counter(image=tag)
        image_id = hosts.src.inspect(name).image_id
        assert not hosts.dst.has_image(image_id)
        report = toolkit.migrate(name, source=hosts.src, dest=hosts.dst, mode=mode)
        assert report.status == "done"
        assert report.image_bytes > 0 and "image" in report.timings
        assert hosts.dst.has_image(image_id)  # the same ID, also across runtimes
        assert hosts.dst.inspect(name).running
    finally:
        for name in hosts.names:
            for backend in (hosts.src, hosts.dst):
                with contextlib.suppress(CtkError):
                    backend.remove(name, force=True)
        for cli in (src_cli, dst_cli):
            subprocess.run([*cli, "rmi", "-f", tag], capture_output=True, check=False)


def test_missing_image_is_transferred(same: Hosts) -> None:
    _check_image_transfer(same, "live")


def test_missing_image_is_transferred_across_runtimes(cross: Hosts) -> None:
    _check_image_transfer(cross, "cold")


def test_name_clash_is_refused_in_preflight_with_nothing_changed(same: Hosts, state: Path) -> None:
    name = same.run_counter()
    same.dst.run(ContainerSpec(image=COUNTER_IMAGE, name=name, labels=dict(TEST_LABEL)))
    before_src = same.src.inspect(name)
    before_dst = same.dst.inspect(name)
    result = ctk("migrate", name, "--from", same.src_url, "--to", same.dst_url)
    assert result.returncode == toolkit.ExitCode.CONFLICT
    assert "exists on the destination" in result.stderr
    assert same.src.inspect(name).running and same.src.inspect(name).id == before_src.id
    assert same.dst.inspect(name).id == before_dst.id
    assert not (state / "migrations").exists()
    with pytest.raises(Conflict):
        toolkit.migrate(name, source=same.src, dest=same.dst)


@contextlib.contextmanager
def port_taken_in(netns: str, port: int) -> Iterator[None]:
    """A listener on ``port`` inside the destination host's network namespace."""
    code = (
        "import socket,time\n"
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('0.0.0.0',{port})); s.listen(); print('ready', flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait()


def test_restore_failure_on_destination_rolls_back(same: Hosts) -> None:
    port = free_port()
    name = same.run_counter(port=port)
    with port_taken_in(same.testbed.hosts[1].netns, port):
        before = last_count(same.src, name)
        with pytest.raises(MigrationError) as caught:
            toolkit.migrate(name, source=same.src, dest=same.dst)
    report = caught.value.report
    assert isinstance(report, toolkit.MigrationReport)
    assert report.status == "rolled_back"
    assert report.failed_phase == "restore"
    assert report.rolled_back
    _assert_archive_kept(same, dataclasses.asdict(report))
    # the source runs again with its state; the destination holds nothing
    assert same.src.inspect(name).running
    wait_count_at_least(same.src, name, before + 2)
    with pytest.raises(ContainerNotFound):
        same.dst.inspect(name)


def test_verify_by_command(same: Hosts) -> None:
    # A command run in the new container: passing keeps the move, failing rolls it back.
    name = same.run_counter()
    report = toolkit.migrate(name, source=same.src, dest=same.dst, verify="test -s /www/count")
    assert report.status == "done" and "verify" in report.timings
    other = same.run_counter()
    before = last_count(same.src, other)
    with pytest.raises(MigrationError) as caught:
        toolkit.migrate(other, source=same.src, dest=same.dst, verify="test -e /no/such/file")
    assert caught.value.report.status == "rolled_back"
    assert caught.value.report.failed_phase == "verify"
    assert same.src.inspect(other).running
    wait_count_at_least(same.src, other, before + 2)
    with pytest.raises(ContainerNotFound):
        same.dst.inspect(other)


def _assert_archive_kept(hosts: Hosts, report: dict[str, Any]) -> None:
    if hosts.src_kind == hosts.dst_kind == "podman":
        # Podman -> Podman streams, writing nothing here: the rollback restored the source
        # from the checkpoint it keeps in place.
        assert not report["archive"], report
        assert any("from its checkpoint" in line for line in report["rolled_back"]), report
    else:
        assert report["archive"] and Path(report["archive"]).is_file()


def _killed_at(hosts: Hosts, name: str, step: str) -> str:
    """Run ctk migrate paused after ``step``, SIGKILL it there; the migration ID."""
    env = {**os.environ, "CTK_MIGRATE_PAUSE_AFTER": step}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "toolkit",
            "migrate",
            name,
            "--from",
            hosts.src_url,
            "--to",
            hosts.dst_url,
        ],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert f"paused after {step}" in line, line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    journals = list((Path(os.environ["CTK_STATE_DIR"]) / "migrations").glob("m*.json"))
    assert len(journals) == 1
    return journals[0].stem


def _paused_after(hosts: Hosts, name: str, step: str) -> tuple[subprocess.Popen[str], str]:
    """ctk migrate paused after ``step`` (still running); the process and the migration ID."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "toolkit", "migrate", name, "--from", hosts.src_url,
         "--to", hosts.dst_url],
        env={**os.environ, "CTK_MIGRATE_PAUSE_AFTER": step},
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if f"paused after {step}" not in line:
        proc.kill()
        raise AssertionError(line + proc.stderr.read())
    (journal,) = (Path(os.environ["CTK_STATE_DIR"]) / "migrations").glob("m*.json")
    return proc, journal.stem


def _assert_rolled_back(hosts: Hosts, name: str, migration: str, before: int) -> None:
    data = json.loads(
        (Path(os.environ["CTK_STATE_DIR"]) / "migrations" / f"{migration}.json").read_text()
    )
    assert data["state"] == "rolled_back", data
    assert hosts.src.inspect(name).running
    wait_count_at_least(hosts.src, name, before + 2)
    with pytest.raises(ContainerNotFound):
        hosts.dst.inspect(name)


def test_recover_refuses_while_the_migration_runs(same: Hosts) -> None:
    """The bug: --recover rolled back a live migration, which then restored its stale
    checkpoint on the destination and removed the running source."""
    name = same.run_counter()
    before = last_count(same.src, name)
    proc, migration = _paused_after(same, name, "dump")
    try:
        refused = ctk("migrate", "--recover", migration)
        assert refused.returncode == 5, refused.stderr
        assert f"pid {proc.pid}" in refused.stderr and "Hint:" in refused.stderr
        # recovering "everything" leaves the running one alone
        everything = ctk("migrate", "--recover", "--json")
        assert everything.returncode == 0, everything.stderr
        (report,) = json.loads(everything.stdout)
        assert report["status"] == "running" and report["id"] == migration
        # nor can another ctk touch the container meanwhile
        other = ctk("checkpoint", name, "-R", engine=same.src_url)
        assert other.returncode == 5 and f"pid {proc.pid}" in other.stderr, other.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    _assert_rolled_back(same, name, migration, before)


@pytest.mark.parametrize("step", ["dump", "restore"])
def test_sigterm_at_a_phase_rolls_back(same: Hosts, step: str) -> None:
    name = same.run_counter()
    before = last_count(same.src, name)
    proc, migration = _paused_after(same, name, step)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Interrupted by SIGTERM" in err and "Traceback" not in err
    _assert_rolled_back(same, name, migration, before)
    # the journal is final: nothing left for --recover
    again = ctk("migrate", "--recover")
    assert again.returncode == 0 and "no unfinished migrations" in again.stdout


def test_killed_after_dump_then_recover_rolls_back(same: Hosts) -> None:
    name = same.run_counter()
    before = last_count(same.src, name)
    migration = _killed_at(same, name, "dump")
    assert not same.src.inspect(name).running  # frozen by the dump, ctk gone
    result = ctk("migrate", "--recover", migration, "--json")
    assert result.returncode == 0, result.stderr
    (report,) = json.loads(result.stdout)
    assert report["status"] == "rolled_back"
    _assert_archive_kept(same, report)
    assert same.src.inspect(name).running
    wait_count_at_least(same.src, name, before + 2)
    with pytest.raises(ContainerNotFound):
        same.dst.inspect(name)
    # nothing left to recover
    again = ctk("migrate", "--recover")
    assert again.returncode == 0 and "no unfinished migrations" in again.stdout


def test_killed_after_restore_then_recover_finishes(same: Hosts) -> None:
    name = same.run_counter()
    migration = _killed_at(same, name, "restore")
    result = ctk("migrate", "--recover", "--json")
    assert result.returncode == 0, result.stderr
    (report,) = json.loads(result.stdout)
    assert report["id"] == migration and report["status"] == "done"
    assert same.dst.inspect(name).running
    with pytest.raises(ContainerNotFound):
        same.src.inspect(name)


def test_drain_moves_the_others_past_a_failure(same: Hosts) -> None:
    label = f"drain-{uuid.uuid4().hex[:6]}"
    names = [same.run_counter(**{"ctk.drain": label}) for _ in range(3)]
    # the second one clashes with a container of the same name on the destination
    same.dst.run(ContainerSpec(image=COUNTER_IMAGE, name=names[1], labels=dict(TEST_LABEL)))
    result = ctk(
        "drain",
        same.src_url,
        "--to",
        same.dst_url,
        "--label",
        f"ctk.drain={label}",
        "--parallel",
        "2",
        "--json",
    )
    assert result.returncode == toolkit.ExitCode.MIGRATION_FAILED, result.stderr
    report = json.loads(result.stdout)
    assert sorted(r["container"] for r in report["reports"]) == sorted([names[0], names[2]])
    assert all(r["status"] == "done" for r in report["reports"])
    assert list(report["errors"]) == [names[1]]
    for moved in (names[0], names[2]):
        assert same.dst.inspect(moved).running
    assert same.src.inspect(names[1]).running
    wait_for(lambda: last_count(same.src, names[1]) >= 3, what="failed one still counting")


class CuttableLink:
    """A unix-socket forwarder in front of an engine's socket, which a test can cut.

    ``cut_after(n)`` cuts it once ``n`` more bytes went from ctk to the engine: every
    connection is shut down and new ones are refused, as when the link goes down.
    """

    def __init__(self, target: str) -> None:
        import socket
        import tempfile
        import threading

        self._socket_mod = socket
        self.target = target
        self.directory = tempfile.mkdtemp(prefix="ctk-link-", dir="/tmp")
        self.path = os.path.join(self.directory, "engine.sock")
        self.up_bytes = 0
        self.limit: int | None = None
        self.cut_by_limit = False
        self.cut_done = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        sock = self._socket_mod
        while not self.cut_done.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            engine = sock.socket(sock.AF_UNIX, sock.SOCK_STREAM)
            engine.connect(self.target)
            with self._lock:
                self._conns += [client, engine]
            threading.Thread(target=self._pump, args=(client, engine, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(engine, client, False), daemon=True).start()

    def _pump(self, src: object, dst: object, upstream: bool) -> None:
        while not self.cut_done.is_set():
            try:
                data = src.recv(4096)  # type: ignore[attr-defined]
            except OSError:
                break
            if not data:
                break
            if upstream:
                with self._lock:
                    self.up_bytes += len(data)
                    over = self.limit is not None and self.up_bytes >= self.limit
                if over:
                    self.cut_by_limit = True
                    self.cut()
                    return
            try:
                dst.sendall(data)  # type: ignore[attr-defined]
            except OSError:
                break
        with contextlib.suppress(OSError):
            dst.shutdown(self._socket_mod.SHUT_WR)  # type: ignore[attr-defined]

    def cut_after(self, more: int) -> None:
        with self._lock:
            self.limit = self.up_bytes + more
        if more <= 0:
            self.cut()

    def cut(self) -> None:
        self.cut_done.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(self._socket_mod.SHUT_RDWR)
                    conn.close()

    def close(self) -> None:
        import shutil

        self.cut()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.mark.parametrize("cut_after", [0, 2048], ids=["engine-gone-before-restore", "mid-transfer"])
def test_destination_link_lost_rolls_back(same: Hosts, cut_after: int) -> None:
    """The destination stops answering after the dump (0) or mid-upload of the state (2 KiB in)."""
    name = same.run_counter()
    link = CuttableLink(same.dst_url.split("unix://", 1)[1])
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "toolkit",
                "migrate",
                name,
                "--from",
                same.src_url,
                "--to",
                f"{same.dst_kind}+unix://{link.path}",
                "--json",
            ],
            env={**os.environ, "CTK_MIGRATE_PAUSE_AFTER": "dump:3"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "paused after dump" in line, line
        before = last_count(same.src, name)
        link.cut_after(cut_after)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        link.close()
    if cut_after:
        assert link.cut_by_limit, "the upload to the destination never reached the cut"
    assert proc.returncode == toolkit.ExitCode.MIGRATION_FAILED, stderr
    report = json.loads(stdout)
    assert report["status"] == "rolled_back", report
    assert report["failed_phase"] == "restore"
    _assert_archive_kept(same, report)
    assert same.src.inspect(name).running
    wait_count_at_least(same.src, name, before + 2)
    assert_continued(counts(same.src, name), counts(same.src, name)[:1])


def _run_changer(hosts: Hosts) -> str:
    """A busybox container that deleted an image file and wrote a new one, then idles."""
    name = hosts.name("rootfs")
    hosts.src.run(
        ContainerSpec(
            image="ctk-demo/busybox",
            name=name,
            labels=dict(TEST_LABEL),
            command=(
                "sh",
                "-c",
                # idempotent: a cold move runs the command again on the destination
                "[ -f /data.txt ] || cat /proc/sys/kernel/random/uuid > /data.txt; "
                "rm -f /bin/cpio; echo ready; while true; do sleep 1; done",
            ),
        )
    )
    wait_for(lambda: "ready" in hosts.src.logs(name), what="rootfs changes made")
    return name


def _rootfs_changes(backend: Backend, name: str, tmp: Path) -> tuple[bytes, list[str]]:
    """The content of /data.txt and the deleted paths, from the container's rootfs changes."""
    import tarfile

    tar = tmp / f"{name}-{backend.kind}-{uuid.uuid4().hex[:6]}.tar"
    tmp.mkdir(parents=True, exist_ok=True)
    deleted = backend.fetch_changes(name, tar)
    with tarfile.open(tar) as archive:
        member = archive.extractfile("data.txt")
        assert member is not None
        return member.read(), deleted


def test_cold_move_carries_rootfs_changes_to_docker(testbed: Testbed, state: Path) -> None:
    """Podman -> Docker and Docker -> Docker: added files arrive, deletions become whiteouts."""
    for src_kind in ("podman", "docker"):
        for hosts in _hosts(testbed, src_kind, "docker"):
            name = _run_changer(hosts)
            data, _ = _rootfs_changes(hosts.src, name, state)
            report = toolkit.migrate(name, source=hosts.src, dest=hosts.dst, mode="cold")
            assert report.status == "done" and report.archive_bytes > 0
            moved, deleted = _rootfs_changes(hosts.dst, name, state)
            assert moved == data  # the source's file, not one the command wrote again
            assert "/bin/cpio" in deleted


def test_cold_move_with_deletions_to_podman_rolls_back(testbed: Testbed, state: Path) -> None:
    """Podman's API cannot write whiteouts: refused at restore, the source runs again."""
    for hosts in _hosts(testbed, "docker", "podman"):
        name = _run_changer(hosts)
        with pytest.raises(MigrationError) as caught:
            toolkit.migrate(name, source=hosts.src, dest=hosts.dst, mode="cold")
        report = caught.value.report
        assert isinstance(report, toolkit.MigrationReport)
        assert report.status == "rolled_back" and report.failed_phase == "restore"
        assert "deleted" in report.error
        assert hosts.src.inspect(name).running
        with pytest.raises(ContainerNotFound):
            hosts.dst.inspect(name)


def _volume_names(backend: Backend, name: str) -> dict[str, str]:
    assert isinstance(backend, VolumeData)
    return {m.target: m.name for m in backend.container_volumes(name) if m.type == "volume"}


def _remove_volumes(backend: Backend, names: Iterable[str]) -> None:
    assert isinstance(backend, VolumeData)
    for volume in names:
        with contextlib.suppress(CtkError):
            backend.remove_volume(volume, force=True)


def _cat(backend: Backend, name: str, *paths: str) -> list[str]:
    result = backend.exec(name, ["cat", *paths])
    assert result.exit_code == 0, result.stderr
    return result.stdout.split()


def _assert_volume_data(backend: Backend, name: str) -> None:
    """What :func:`_volume_case` wrote into both volumes is there."""
    assert _cat(backend, name, "/named/file", "/anon/file") == ["named-data", "anon-data"]


def _assert_no_volumes(backend: Backend, volumes: Iterable[str]) -> None:
    assert isinstance(backend, VolumeData)
    for volume in volumes:
        with pytest.raises(VolumeNotFound):
            backend.inspect_volume(volume)


def _rolled_back(move: Callable[[], object]) -> toolkit.MigrationReport:
    """Run ``move``, which must fail and roll back; its report."""
    with pytest.raises(MigrationError) as caught:
        move()
    report = caught.value.report
    assert isinstance(report, toolkit.MigrationReport)
    assert report.status == "rolled_back", report
    return report


# Holds /named/log open (fd 3) and appends its in-memory count to it: after a restore the
# lines go on where they were; a fresh start would write 1 again.
_APPENDER = (
    "trap 'exit 0' TERM INT; exec 3>>/named/log; n=1; "
    'while :; do echo "count=$n"; echo "$n" >&3; n=$((n + 1)); sleep 0.3 & wait $!; done'
)


def _log_lines(backend: Backend, name: str) -> list[int]:
    result = backend.exec(name, ["cat", "/named/log"])
    assert result.exit_code == 0, result.stderr
    return [int(line) for line in result.stdout.split()]


def _assert_appended_by_one_process(backend: Backend, name: str) -> None:
    # one process wrote them all, from its memory: 1, 2, 3, ... with no restart
    lines = _log_lines(backend, name)
    assert lines == list(range(1, len(lines) + 1)), lines


@dataclass
class VolumeCase:
    """A container on the source with a named volume at /named and an anonymous one at
    /anon, a file written in each; what the test must remove afterwards, on each side."""

    hosts: Hosts
    named: str
    name: str
    old: dict[str, str]
    """The source's volumes by target, before the move."""
    src_volumes: set[str]
    dst_volumes: set[str]


@contextlib.contextmanager
def _volume_case(
    hosts: Hosts,
    *,
    appender: bool = False,
    auto_remove: bool = False,
    ports: tuple[PortMapping, ...] = (),
) -> Iterator[VolumeCase]:
    """Start the container (the counter, or with ``appender`` a shell appending its count to
    /named/log, held open); afterwards remove it from both sides with the volumes it had and
    those the test adds to ``src_volumes``/``dst_volumes``."""
    named = f"ctk-test-vol-{uuid.uuid4().hex[:8]}"
    name = hosts.name("xvol" if appender else "vol")
    hosts.src.run(
        ContainerSpec(
            image=COUNTER_IMAGE,
            name=name,
            command=("sh", "-c", _APPENDER) if appender else (),
            labels=dict(TEST_LABEL),
            ports=ports,
            auto_remove=auto_remove,
            volumes=(Mount(target="/named", source=named, name=named), Mount(target="/anon")),
        )
    )
    wait_count_at_least(hosts.src, name, 3 if appender else 2)
    written = hosts.src.exec(
        name, ["sh", "-c", "echo named-data >/named/file; echo anon-data >/anon/file"]
    )
    assert written.exit_code == 0, written.stderr
    old = _volume_names(hosts.src, name)
    case = VolumeCase(hosts, named, name, old, set(old.values()), {named})
    try:
        yield case
    finally:
        for backend in (hosts.src, hosts.dst):
            with contextlib.suppress(CtkError):
                backend.remove(name, force=True)
        _remove_volumes(hosts.src, case.src_volumes)
        _remove_volumes(hosts.dst, case.dst_volumes)


def test_volumes_move_with_their_data(same: Hosts) -> None:
    with _volume_case(same) as case:
        before = last_count(same.src, case.name)
        report = toolkit.migrate(case.name, source=same.src, dest=same.dst)
        assert report.status == "done" and report.mode == "live"
        moved = _volume_names(same.dst, case.name)
        case.dst_volumes.update(moved.values())
        wait_count_at_least(same.dst, case.name, before + 2)
        _assert_volume_data(same.dst, case.name)
        assert moved["/named"] == case.named
        with pytest.raises(ContainerNotFound):
            same.src.inspect(case.name)


def _clash_is_refused(hosts: Hosts, state: Path, *mode: str) -> None:
    """A volume of the container's name exists on the destination: refused before the source
    is frozen or stopped, with nothing made on either side."""
    with _volume_case(hosts) as case:
        assert isinstance(hosts.dst, VolumeData)
        hosts.dst.create_volume(case.named)
        before = hosts.src.inspect(case.name)
        result = ctk("migrate", case.name, "--from", hosts.src_url, "--to", hosts.dst_url, *mode)
        assert result.returncode == toolkit.ExitCode.CONFLICT, result.stderr
        assert f"a volume named {case.named} exists on the destination" in result.stderr
        after = hosts.src.inspect(case.name)
        assert after.running and after.id == before.id and not after.checkpoints
        assert not (state / "migrations").exists()
        with pytest.raises(ContainerNotFound):
            hosts.dst.inspect(case.name)


@pytest.mark.parametrize("mode", [(), ("--mode", "cold")], ids=["live", "cold"])
def test_volume_clash_on_the_destination_is_refused_before_freezing(
    same: Hosts, state: Path, mode: tuple[str, ...]
) -> None:
    _clash_is_refused(same, state, *mode)


def test_volume_clash_across_runtimes_is_refused_before_freezing(cross: Hosts, state: Path) -> None:
    _clash_is_refused(cross, state)


def _run_with_bind(hosts: Hosts, source: str, *, counted: int) -> str:
    """A counter on the source with the host's ``source`` bind-mounted at /data."""
    name = hosts.name("bind")
    hosts.src.run(
        ContainerSpec(
            image=COUNTER_IMAGE,
            name=name,
            labels=dict(TEST_LABEL),
            volumes=(Mount(target="/data", source=source, type="bind"),),
        )
    )
    wait_count_at_least(hosts.src, name, counted)
    return name


def test_bind_mount_is_refused_before_freezing(same: Hosts) -> None:
    name = _run_with_bind(same, "/tmp", counted=1)
    result = ctk("migrate", name, "--from", same.src_url, "--to", same.dst_url)
    assert result.returncode == toolkit.ExitCode.UNSUPPORTED, result.stderr
    assert "bind-mounts the host's /tmp at /data" in result.stderr
    assert "--allow-mount /tmp" in result.stderr
    assert same.src.inspect(name).running and not same.src.inspect(name).checkpoints
    with pytest.raises(ContainerNotFound):
        same.dst.inspect(name)


def _failing(*_args: object, **_kwargs: object) -> None:
    from toolkit.errors import CheckpointError

    raise CheckpointError("restore failed on the destination (injected)")


def test_failed_move_of_rm_container_brings_it_back_beside_its_volumes(
    same: Hosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An --rm source is gone with its dump: the rollback imports it again from the archive,
    mounting its named volume as it is and its anonymous one (gone with it) from the archive."""
    with _volume_case(same, auto_remove=True) as case:
        monkeypatch.setattr(same.dst, "import_checkpoint", _failing)
        report = _rolled_back(lambda: toolkit.migrate(case.name, source=same.src, dest=same.dst))
        assert any("re-imported" in line for line in report.rolled_back), report.rolled_back
        assert same.src.inspect(case.name).running
        back = _volume_names(same.src, case.name)
        case.src_volumes.update(back.values())
        assert back["/named"] == case.named
        _assert_volume_data(same.src, case.name)


def test_volumes_move_live_across_runtimes(cross: Hosts) -> None:
    """Docker <-> Podman: the named volume arrives under its name, the anonymous one as a new
    volume, both with their data; the process goes on appending to the file it holds open."""
    with _volume_case(cross, appender=True) as case:
        name = case.name
        report = toolkit.migrate(name, source=cross.src, dest=cross.dst, mode="live")
        assert report.status == "done" and report.mode == "live", report
        moved = _volume_names(cross.dst, name)
        case.dst_volumes.update(moved.values())
        assert moved["/named"] == case.named and moved["/anon"] != case.old["/anon"]
        _assert_volume_data(cross.dst, name)
        first = _log_lines(cross.dst, name)
        wait_for(lambda: len(_log_lines(cross.dst, name)) > len(first) + 2, what="appending")
        _assert_appended_by_one_process(cross.dst, name)
        with pytest.raises(ContainerNotFound):
            cross.src.inspect(name)
        # its anonymous volume went with it; the named one stays (the user's)
        _assert_no_volumes(cross.src, [case.old["/anon"]])


def test_failed_restore_across_runtimes_removes_the_volumes_it_made(
    cross: Hosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The destination's restore fails after the data was copied: the volumes made there go,
    the source runs again from its checkpoint with its own volumes and data."""
    with _volume_case(cross, appender=True) as case:
        name = case.name
        assert isinstance(cross.dst, VolumeData)
        # other test sessions share the hosts: the volumes this move made, by name
        made: list[str] = []
        create_volume = cross.dst.create_volume

        def recording(*args: Any, **kwargs: Any) -> VolumeInfo:
            info = create_volume(*args, **kwargs)
            made.append(info.name)
            return info

        monkeypatch.setattr(cross.dst, "create_volume", recording)
        hook = "import_raw" if cross.dst_kind == "podman" else "start_from_images"
        monkeypatch.setattr(cross.dst, hook, _failing)
        report = _rolled_back(
            lambda: toolkit.migrate(name, source=cross.src, dest=cross.dst, mode="live")
        )
        assert report.failed_phase == "restore", report
        assert cross.src.inspect(name).running
        assert _volume_names(cross.src, name) == case.old
        _assert_volume_data(cross.src, name)
        _assert_appended_by_one_process(cross.src, name)
        with pytest.raises(ContainerNotFound):
            cross.dst.inspect(name)
        assert case.named in made and len(made) >= 2, made  # the named one and the anonymous one
        _assert_no_volumes(cross.dst, made)


def test_postgres_with_its_data_volume_moves_live_across_runtimes(cross: Hosts) -> None:
    """PostgreSQL as user postgres, its cluster on a named volume: Docker <-> Podman with the
    same postmaster over the same rows, the data directory still postgres's, writing on.
    Podman -> Docker also carries /dev/shm's files (PostgreSQL's dynamic shared memory)."""
    from tests.integration.workloads import (
        PG_ROWS,
        POSTGRES_IMAGE,
        fill_postgres,
        pg_ready,
        pg_state,
        psql,
    )

    volume = f"ctk-test-pgdata-{uuid.uuid4().hex[:8]}"
    pgdata = "/var/lib/postgresql/15/main"
    name = cross.name("pg")
    cross.src.run(
        ContainerSpec(
            image=POSTGRES_IMAGE,
            name=name,
            labels=dict(TEST_LABEL),
            volumes=(Mount(target=pgdata, source=volume, name=volume),),
        )
    )
    try:
        fill_postgres(cross.src, name)
        before = pg_state(cross.src, name)
        report = toolkit.migrate(name, source=cross.src, dest=cross.dst, mode="live")
        assert report.status == "done" and report.mode == "live", report
        assert _volume_names(cross.dst, name)[pgdata] == volume
        wait_for(lambda: pg_ready(cross.dst, name), timeout=60, what="pg_isready after")
        assert pg_state(cross.dst, name) == before  # the same postmaster, the same rows
        owner = cross.dst.exec(name, ("stat", "-c", "%U %a", pgdata))
        assert owner.stdout.strip() == "postgres 700", owner
        shm = cross.dst.exec(name, ("sh", "-c", "stat -c %a /dev/shm && ls /dev/shm"))
        assert shm.exit_code == 0 and shm.stdout.split()[0] == "1777", shm
        assert "PostgreSQL." in shm.stdout, shm  # its segments, mapped by the postmaster
        # a new segment: a parallel query (dynamic shared memory in /dev/shm)
        psql(
            cross.dst,
            name,
            "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; "
            "SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0; "
            "SELECT count(*) FROM ctk_rows",
        )
        psql(cross.dst, name, f"INSERT INTO ctk_rows VALUES ({PG_ROWS + 1}, 'after the move')")
        psql(cross.dst, name, "CHECKPOINT")  # the write reaches the volume's files
        assert pg_state(cross.dst, name).rows == PG_ROWS + 1
        with pytest.raises(ContainerNotFound):
            cross.src.inspect(name)
    finally:
        for backend in (cross.src, cross.dst):
            with contextlib.suppress(CtkError):
                backend.remove(name, force=True, volumes=True)
        _remove_volumes(cross.src, [volume])
        _remove_volumes(cross.dst, [volume])


def test_killed_across_runtimes_with_volumes_then_recover_removes_them(cross: Hosts) -> None:
    """ctk killed with the source frozen: --recover restores the source and removes the volumes
    the move had made on the destination (the journal lists them), so a retry finds no clash."""
    with _volume_case(cross, appender=True) as case:
        name, named = case.name, case.named
        migration = _killed_at(cross, name, "dump")
        journal = Path(os.environ["CTK_STATE_DIR"]) / "migrations" / f"{migration}.json"
        made = list(json.loads(journal.read_text())["extra"]["dest_volumes"])
        case.dst_volumes.update(made)
        assert named in made and len(made) == 2, made
        result = ctk("migrate", "--recover", migration, "--json")
        assert result.returncode == 0, result.stderr
        (report,) = json.loads(result.stdout)
        assert report["status"] == "rolled_back", report
        assert any(f"removed volume {named}" in line for line in report["rolled_back"]), report
        assert cross.src.inspect(name).running
        _assert_volume_data(cross.src, name)
        _assert_no_volumes(cross.dst, made)
        with pytest.raises(ContainerNotFound):
            cross.dst.inspect(name)


def test_bind_mount_across_runtimes_only_when_allowed(cross: Hosts, tmp_path: Path) -> None:
    """Refused before freezing without --allow-mount; with it, the container moves live and
    mounts the same host directory there (the testbed's hosts share this machine's files)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "file").write_text("host-data\n")
    name = _run_with_bind(cross, str(shared), counted=2)
    refused = ctk("migrate", name, "--from", cross.src_url, "--to", cross.dst_url)
    assert refused.returncode == toolkit.ExitCode.UNSUPPORTED, refused.stderr
    assert f"--allow-mount {shared}" in refused.stderr
    assert cross.src.inspect(name).running and not cross.src.inspect(name).checkpoints
    before = last_count(cross.src, name)
    moved = ctk(
        "migrate", name, "--from", cross.src_url, "--to", cross.dst_url,
        "--mode", "live", "--allow-mount", str(shared),
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    wait_count_at_least(cross.dst, name, before + 2)
    assert _cat(cross.dst, name, "/data/file") == ["host-data"]
    with pytest.raises(ContainerNotFound):
        cross.src.inspect(name)


def test_cold_move_carries_volume_data(same: Hosts) -> None:
    """Cold: the named volume under its name, the anonymous one as a new volume, data in both."""
    _cold_move_carries_volume_data(same)


def test_cold_move_across_runtimes_carries_volume_data(cross: Hosts) -> None:
    """The same, Docker <-> Podman (the volumes' data through each engine's helpers)."""
    _cold_move_carries_volume_data(cross)


def _cold_move_carries_volume_data(hosts: Hosts) -> None:
    with _volume_case(hosts) as case:
        name = case.name
        big = hosts.src.exec(name, ["dd", "if=/dev/urandom", "of=/named/big", "bs=1M", "count=4"])
        assert big.exit_code == 0, big.stderr
        report = toolkit.migrate(name, source=hosts.src, dest=hosts.dst, mode="cold")
        assert report.status == "done" and report.mode == "cold"
        # the volume's data moved once: not again as rootfs changes (the archive routes read
        # through the mount)
        assert 4 << 20 < report.archive_bytes < 6 << 20, report.archive_bytes
        moved = _volume_names(hosts.dst, name)
        case.dst_volumes.update(moved.values())
        assert moved["/named"] == case.named
        assert moved["/anon"] and moved["/anon"] != case.named
        wait_count_at_least(hosts.dst, name, 2)
        _assert_volume_data(hosts.dst, name)
        with pytest.raises(ContainerNotFound):
            hosts.src.inspect(name)


def test_failed_cold_move_removes_the_volumes_it_made(same: Hosts) -> None:
    """The destination cannot start it (its host port is taken there): the rollback removes the
    container and the volumes the move made; the source runs again with its volumes."""
    port = free_port()
    with _volume_case(same, ports=(PortMapping(container_port=8080, host_port=port),)) as case:
        name = case.name
        with port_taken_in(same.testbed.hosts[1].netns, port):
            report = _rolled_back(
                lambda: toolkit.migrate(name, source=same.src, dest=same.dst, mode="cold")
            )
        made = [
            line.split()[2] for line in report.rolled_back if line.startswith("removed volume ")
        ]
        case.dst_volumes.update(made)
        assert case.named in made and len(made) == 2, report.rolled_back
        _assert_no_volumes(same.dst, made)
        with pytest.raises(ContainerNotFound):
            same.dst.inspect(name)
        wait_for(lambda: same.src.inspect(name).running, what="source running")
        assert _volume_names(same.src, name) == case.old
        _assert_volume_data(same.src, name)
