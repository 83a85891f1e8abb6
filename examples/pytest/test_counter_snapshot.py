"""Per-test fresh state from a checkpoint, with ctk's pytest plugin.

The "service" is ctk-demo/counter: its state (the count) lives only in memory and takes a
while to build up, like a warm cache. The snapshot is taken once the count reached WARM; every
test then starts from that state, however far the previous test pushed the counter.

Run it (the plugin comes with the ctk package)::

    pytest examples/pytest --ctk-engine docker --ctk-engine podman

The session summary prints the cold start (run until count=WARM) against the restore from the
checkpoint (until the same condition holds again).
"""

from __future__ import annotations

import re
import urllib.request

import pytest

from toolkit.pytest_plugin import SnapshotContainer
from toolkit.readiness import ReadyCheck, wait_until

WARM = 5
# The first count a restored counter prints is the one after the last it printed before the
# checkpoint: WARM + 1, give or take a tick spent checkpointing.
FRESH_BOUND = WARM + 3
AT_LEAST_WARM = r"count=([5-9]|[1-9][0-9]+)\b"

pytestmark = [
    pytest.mark.requires_criu,
    pytest.mark.ctk_snapshot(
        "ctk-demo/counter", ports=(8080,), ready=ReadyCheck.log(AT_LEAST_WARM, timeout=60)
    ),
]


def counts(snapshot: SnapshotContainer) -> list[int]:
    """The counts this test's container printed since its restore."""
    return [int(n) for n in re.findall(r"count=(\d+)", snapshot.logs())]


def wait_count(snapshot: SnapshotContainer, value: int) -> int:
    wait_until(
        lambda: bool(counts(snapshot)) and counts(snapshot)[-1] >= value,
        timeout=60,
        what=f"count >= {value}",
    )
    return counts(snapshot)[-1]


def http_count(snapshot: SnapshotContainer) -> int:
    with urllib.request.urlopen(snapshot.url(8080, "/count"), timeout=5) as response:
        return int(response.read().decode().strip())


def test_starts_warm_and_counts_on(ctk_snapshot: SnapshotContainer) -> None:
    start = counts(ctk_snapshot)[0]
    assert WARM < start <= FRESH_BOUND  # the snapshot's state, not a cold 1
    # Mutate the state well past anything a fresh copy could show.
    assert wait_count(ctk_snapshot, FRESH_BOUND + 3) > FRESH_BOUND


def test_next_test_starts_from_the_snapshot_again(ctk_snapshot: SnapshotContainer) -> None:
    # The previous test left its counter above FRESH_BOUND; this one starts from the snapshot.
    start = counts(ctk_snapshot)[0]
    assert WARM < start <= FRESH_BOUND
    wait_count(ctk_snapshot, start + 2)


def test_http_sees_the_snapshot_state(ctk_snapshot: SnapshotContainer) -> None:
    start = counts(ctk_snapshot)[0]
    # The counter serves its count from a file; the clone's file comes from the archive and
    # the restored counter rewrites it every second.
    wait_until(
        lambda: start <= http_count(ctk_snapshot) <= start + 3,
        timeout=30,
        what="the HTTP count to come from the restored counter",
    )
    assert http_count(ctk_snapshot) <= FRESH_BOUND + 3
