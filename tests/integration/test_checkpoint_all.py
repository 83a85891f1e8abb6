"""``ctk checkpoint --all`` and ``ctk restore --all`` with label filters, on both engines: every
matching container checkpointed and restored (the counters go on), the others untouched, and a
failure named per container with a non-zero exit."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import (
    BUSYBOX_IMAGE,
    Containers,
    counts,
    ctk,
    last_count,
    wait_count_at_least,
)
from toolkit.backends.base import Backend
from toolkit.errors import ExitCode

pytestmark = [pytest.mark.integration, pytest.mark.criu]

GROUP = "ctk.test.group"
# (the trap: a stop or the cleanup's removal ends it at once, not after the engine's 10 s)
COUNT = (
    "sh",
    "-c",
    "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo count=$i; sleep 0.2; done",
)


def _group() -> tuple[dict[str, str], str]:
    """A label no other test (or worker) uses, and its ``--label`` value."""
    value = uuid.uuid4().hex[:10]
    return {GROUP: value}, f"{GROUP}={value}"


def test_checkpoint_all_then_restore_all_by_label(
    engine: Backend, containers: Containers, criu: None
) -> None:
    labels, selector = _group()
    grouped = sorted(
        containers.run(BUSYBOX_IMAGE, command=COUNT, labels=labels).name for _ in range(2)
    )
    other = containers.run(BUSYBOX_IMAGE, command=COUNT)
    for name in (*grouped, other.name):
        wait_count_at_least(engine, name, 2)

    # `ctk checkpoint --all` is `ctk checkpoint create --all`
    done = ctk("--json", "checkpoint", "--all", "--label", selector, engine=engine.kind)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["container"] for r in rows] == grouped
    assert all(r["ok"] and r["checkpoint"].startswith("cp-") for r in rows), rows
    for row in rows:
        assert not engine.inspect(row["container"]).running
        assert [c.name for c in engine.checkpoints(row["container"])] == [row["checkpoint"]]
    assert engine.inspect(other.name).running, "a container without the label was touched"
    stopped_at = {name: last_count(engine, name) for name in grouped}

    again = ctk("--json", "restore", "--all", "--label", selector, engine=engine.kind)
    assert again.returncode == 0, again.stderr
    restored = json.loads(again.stdout)
    assert [(r["container"], r["checkpoint"], r["ok"]) for r in restored] == [
        (r["container"], r["checkpoint"], True) for r in rows
    ]
    for name in grouped:
        assert engine.inspect(name).running
        wait_count_at_least(engine, name, stopped_at[name] + 2)
        values = counts(engine, name)
        assert values.count(1) == 1, f"{name} started again instead of going on: {values}"

    # a container stopped after its checkpoint is not "checkpointed": --all leaves it stopped
    # (an empty batch, exit 0), as podman's restore --all does
    assert ctk("stop", "-t", "1", grouped[0], engine=engine.kind).returncode == 0
    empty = ctk("--json", "restore", "--all", "--label", selector, engine=engine.kind)
    assert empty.returncode == 0 and json.loads(empty.stdout) == [], empty.stderr
    assert not engine.inspect(grouped[0]).running


def test_checkpoint_all_names_the_failures(
    engine: Backend, containers: Containers, criu: None
) -> None:
    labels, selector = _group()
    good = containers.run(BUSYBOX_IMAGE, command=COUNT, labels=labels)
    # an --rm container cannot be checkpointed in place (exit 5): the batch goes on without it
    doomed = containers.run(BUSYBOX_IMAGE, command=COUNT, labels=labels, auto_remove=True)
    wait_count_at_least(engine, good.name, 1)

    result = ctk("checkpoint", "create", "--all", "-l", selector, engine=engine.kind)
    assert result.returncode == ExitCode.CONFLICT, result.stderr
    assert "checkpoint failed for 1 of 2 containers" in result.stderr
    assert f"{doomed.name}: container {doomed.name} was started with --rm" in result.stderr
    assert "Traceback" not in result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "ok" in lines[good.name] and "failed" in lines[doomed.name]
    assert not engine.inspect(good.name).running
    assert engine.inspect(doomed.name).running
    assert ctk("restore", good.name, engine=engine.kind).returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        ("checkpoint", "create", "web", "--all"),
        ("checkpoint", "create", "--label", "a=b"),
        ("checkpoint", "--all", "--export", "/tmp/x/never.ctk"),
        ("restore", "web", "--all"),
        ("restore", "--all", "--import", "/tmp/x/never.ctk"),
    ],
)
def test_all_usage_errors(args: tuple[str, ...]) -> None:
    result = ctk(*args)  # refused before any engine is asked
    assert result.returncode == ExitCode.USAGE, result
    assert "Traceback" not in result.stderr
