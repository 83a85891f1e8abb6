from __future__ import annotations

from pathlib import Path

import pytest

from toolkit import registry


@pytest.fixture(autouse=True)
def _state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CTK_STATE_DIR", str(tmp_path))


def test_order_follows_records() -> None:
    registry.record_checkpoint("docker", "u", "cid", "zeta")
    registry.record_checkpoint("docker", "u", "cid", "alpha")
    ordered = registry.ordered("docker", "u", "cid", ["alpha", "zeta", "manual"], container="c")
    assert [c.name for c in ordered] == ["manual", "zeta", "alpha"]


def test_forget() -> None:
    registry.record_checkpoint("podman", "u", "cid", "a")
    registry.record_checkpoint("podman", "u", "cid", "b")
    registry.forget_others("podman", "u", "cid", keep="b")
    assert registry.names("podman", "u", "cid") == ["b"]
    registry.forget_container("podman", "u", "cid")
    assert registry.names("podman", "u", "cid") == []


def test_default_names_sort_by_time() -> None:
    first = registry.new_checkpoint_name()
    second = registry.new_checkpoint_name()
    assert first <= second and first.startswith("cp-")
