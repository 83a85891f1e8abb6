"""``ctk checkpoint diff``: two checkpoints of the counter, taken a few counts apart and left
running, show the counter's changed pages and the same process tree."""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path

import pytest

from tests.conftest import Containers, ctk, last_count, wait_count_at_least
from toolkit import operations
from toolkit.backends.base import Backend
from toolkit.errors import CtkError
from toolkit.models import CheckpointOptions, ExportOptions

pytestmark = pytest.mark.usefixtures("criu")


def _two_exports(engine: Backend, name: str, tmp_path: Path) -> tuple[Path, Path]:
    paths = []
    for label in ("a", "b"):
        count = last_count(engine, name)
        wait_count_at_least(engine, name, count + 2)  # a few counts apart
        path = tmp_path / f"{label}.tar.zst"
        options = ExportOptions(checkpoint=CheckpointOptions(leave_running=True))
        operations.export_checkpoint(engine, name, path, options)
        paths.append(path)
    return paths[0], paths[1]


def _check(data: dict[str, object]) -> None:
    assert data["same_tree"] is True
    kept = {(p["pid"], p["comm"]) for p in data["processes_kept"]}  # type: ignore[attr-defined]
    assert (1, "counter.sh") in kept and any(c == "httpd" for _, c in kept)
    # the shell's variable n (and its stack) changed: pages of pid 1 differ, compared by content
    assert data["contents_compared"] is True
    assert isinstance(data["pages_changed"], int) and data["pages_changed"] > 0
    assert data["bytes_changed"] == data["pages_changed"] * data["page_size"]  # type: ignore[operator]
    regions = data["regions"]
    assert any(r["pid"] == 1 and r["changed"] for r in regions)  # type: ignore[attr-defined]
    assert data["sockets_added"] == [] and data["sockets_removed"] == []


def test_diff_of_two_archives(engine: Backend, containers: Containers, tmp_path: Path) -> None:
    name = containers.run().name
    wait_count_at_least(engine, name, 2)
    a, b = _two_exports(engine, name, tmp_path)

    result = ctk("--json", "checkpoint", "diff", str(a), str(b))

    assert result.returncode == 0, result.stderr
    _check(json.loads(result.stdout))
    text = ctk("checkpoint", "diff", str(a), str(b))
    assert "same tree" in text.stdout and "pages changed" in text.stdout
    assert "heap" in text.stdout


def test_diff_of_two_held_checkpoints(engine: Backend, containers: Containers) -> None:
    """By name on Docker, which keeps any number; Podman keeps the latest only and says so."""
    name = containers.run().name
    wait_count_at_least(engine, name, 2)
    engine.checkpoint(name, CheckpointOptions(name="diff-a", leave_running=True))
    wait_count_at_least(engine, name, last_count(engine, name) + 2)
    engine.checkpoint(name, CheckpointOptions(name="diff-b", leave_running=True))

    result = ctk("--json", "checkpoint", "diff", name, "diff-a", "diff-b", engine=engine.kind)

    if engine.kind == "docker":
        assert result.returncode == 0, result.stderr
        _check(json.loads(result.stdout))
    else:
        assert result.returncode == 4, result.stderr
        assert "keeps only the latest" in result.stderr and "--export" in result.stderr


def test_diff_usage_errors(tmp_path: Path) -> None:
    one = ctk("checkpoint", "diff", str(tmp_path / "only-one"))
    assert one.returncode == 2 and "NAME A B" in one.stderr
    missing = ctk("checkpoint", "diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert missing.returncode == 4, missing.stderr
    bad = ctk("checkpoint", "diff", "web", "ok-name", "")
    assert bad.returncode == 2, bad.stderr
    assert "Traceback" not in one.stderr + missing.stderr + bad.stderr


def test_inspect_and_diff_of_two_checkpoint_images(engine: Backend, containers: Containers) -> None:
    from toolkit.checkpoint_images import create_image

    name = containers.run().name
    wait_count_at_least(engine, name, 2)
    images = []
    try:
        for _ in range(2):
            wait_count_at_least(engine, name, last_count(engine, name) + 2)
            image = f"ctk-test-cpdiff-{uuid.uuid4().hex[:8]}:1"
            create_image(engine, name, image, CheckpointOptions(leave_running=True))
            images.append(image)

        inspected = ctk("--json", "checkpoint", "inspect", "--image", images[0], engine=engine.kind)
        diffed = ctk("--json", "checkpoint", "diff", "--image", *images, engine=engine.kind)

        assert inspected.returncode == 0, inspected.stderr
        comms = {p["comm"] for p in json.loads(inspected.stdout)["processes"]}
        assert {"counter.sh", "httpd"} <= comms
        assert diffed.returncode == 0, diffed.stderr
        _check(json.loads(diffed.stdout))
    finally:
        for image in images:
            with contextlib.suppress(CtkError):
                engine.remove_image(image, force=True)  # type: ignore[attr-defined]
