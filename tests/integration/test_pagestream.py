"""ctk migrate --mode live through CRIU's page server (toolkit/migration/pagestream.py).

A Podman container made post-copy-ready (the org.criu.config annotation) moves live with its
pages written straight into the destination container; memhog keeps its memory checksum and
its counter, the source is gone and no page server is left. ctk killed once the source is
dumped: ``--recover`` gives the pages back to the source's checkpoint and restores it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import toolkit
from tests.conftest import Testbed, ctk, wait_for
from tests.integration.test_postcopy import (  # noqa: F401
    Pair,
    assert_moved,
    checksum,
    count,
    hosts,
)
from toolkit.errors import ContainerNotFound
from toolkit.migration import postcopy
from toolkit.migration.execute import PAUSE_ENV


def page_servers_left() -> list[str]:
    """``criu page-server`` processes still alive."""
    left = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if cmdline.startswith("criu page-server") or " page-server --images-dir" in cmdline:
                left.append(f"{proc.name}: {cmdline}")
    return left


@contextlib.contextmanager
def _ctk_paused_at(step: str, name: str, testbed: Testbed) -> Iterator[None]:
    """A ``ctk migrate --mode live`` h1 -> h2 of ``name`` paused after ``step``; SIGKILLed
    when the block ends."""
    argv = [sys.executable, "-m", "toolkit", "migrate", name,
            "--from", testbed.hosts[0].podman_url, "--to", testbed.hosts[1].podman_url,
            "--mode", "live"]  # fmt: skip
    mover = subprocess.Popen(
        argv, env=dict(os.environ, **{PAUSE_ENV: step}), stderr=subprocess.PIPE, text=True
    )
    try:
        assert mover.stderr is not None
        for line in mover.stderr:
            if f"paused after {step}" in line:
                break
        else:
            pytest.fail(f"ctk ended before the pause: {mover.wait()}")
        yield
    finally:
        mover.kill()
        mover.wait(timeout=30)


@pytest.mark.testbed
def test_live_move_writes_the_pages_into_the_destination(hosts: Pair) -> None:  # noqa: F811
    name = hosts.memhog(64)
    before = checksum(hosts.src, name)
    counted = count(hosts.src, name)
    report = toolkit.migrate(name, source=hosts.src, dest=hosts.dst, mode="live")
    assert report.status == "done" and report.mode == "live", report
    assert any(note.startswith("page server: ") for note in report.notes), report.notes
    # CRIU's own times are there, the downtime counts from the freeze
    assert report.criu_stats["dump"]["frozen_time"] > 0
    assert report.criu_stats["restore"]["restore_time"] > 0
    assert 0 < report.downtime < report.timings["dump"] + report.timings["restore"] + 0.5
    assert_moved(hosts, name, name, memory=before, counted=counted)
    assert page_servers_left() == []


@pytest.mark.testbed
def test_ctk_killed_after_the_dump_rolls_back_with_the_pages(
    hosts: Pair,  # noqa: F811
    state: Path,
    testbed: Testbed,
) -> None:
    """The source dumped (CRIU ended it), its pages only in ctk's work directory: ctk dies.
    ``--recover`` removes the destination's container, puts the pages back into the source's
    checkpoint and restores it: same memory, counting on."""
    name = hosts.memhog(64)
    before = checksum(hosts.src, name)
    with _ctk_paused_at("dump", name, testbed):
        # libpod's checkpoint call ends (and ctk records the checkpoint) while ctk waits
        wait_for(
            lambda: any(c.name.startswith("migrate-") for c in hosts.src.checkpoints(name)),
            timeout=30,
            what="the source's checkpoint recorded",
        )
    recovered = ctk("migrate", "--recover", "--json", timeout=300)
    assert recovered.returncode == 0, recovered.stderr
    (report,) = json.loads(recovered.stdout)
    assert report["status"] == "rolled_back", json.dumps(report, indent=1)
    with pytest.raises(ContainerNotFound):
        hosts.dst.inspect(name)
    seen = count(hosts.src, name)
    wait_for(lambda: count(hosts.src, name) > seen, timeout=30, what="source counts on")
    assert checksum(hosts.src, name) == before
    assert page_servers_left() == []


@pytest.mark.testbed
def test_ctk_killed_with_the_destination_prepared_recover_removes_it(
    hosts: Pair,  # noqa: F811
    state: Path,
    testbed: Testbed,
) -> None:
    """ctk dies after it made the destination's container, before the freeze: ``--recover``
    removes that container; the source never stopped."""
    name = hosts.memhog(64)
    before = checksum(hosts.src, name)
    with _ctk_paused_at("prepare", name, testbed):
        assert hosts.dst.inspect(name).name == name  # the prepared copy is there
    recovered = ctk("migrate", "--recover", "--json", timeout=300)
    assert recovered.returncode == 0, recovered.stderr
    (report,) = json.loads(recovered.stdout)
    assert report["status"] == "aborted", json.dumps(report, indent=1)
    with pytest.raises(ContainerNotFound):
        hosts.dst.inspect(name)
    assert hosts.src.inspect(name).running
    assert checksum(hosts.src, name) == before
    assert page_servers_left() == []


@pytest.mark.testbed
def test_engine_in_another_network_namespace_without_an_address_streams(
    hosts: Pair,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unknown where the testbed host's CRIU reaches this machine: libpod's stream, as before."""
    monkeypatch.delenv(postcopy.ADDRESS_ENV)
    name = hosts.memhog(16)
    report = toolkit.migrate(name, source=hosts.src, dest=hosts.dst, mode="live")
    assert report.status == "done", report
    assert not any(note.startswith("page server: ") for note in report.notes), report.notes
    assert hosts.dst.inspect(name).running
