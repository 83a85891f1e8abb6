from __future__ import annotations

from pathlib import Path

import pytest

from toolkit import records


@pytest.fixture(autouse=True)
def _state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CTK_STATE_DIR", str(tmp_path))


def test_order_follows_records() -> None:
    records.record_checkpoint("docker", "u", "cid", "zeta")
    records.record_checkpoint("docker", "u", "cid", "alpha")
    ordered = records.ordered("docker", "u", "cid", ["alpha", "zeta", "manual"], container="c")
    assert [c.name for c in ordered] == ["manual", "zeta", "alpha"]


def test_forget() -> None:
    records.record_checkpoint("podman", "u", "cid", "a")
    records.record_checkpoint("podman", "u", "cid", "b")
    records.forget_others("podman", "u", "cid", keep="b")
    assert records.names("podman", "u", "cid") == ["b"]
    records.forget_container("podman", "u", "cid")
    assert records.names("podman", "u", "cid") == []


def test_default_names_sort_by_time() -> None:
    first = records.new_checkpoint_name()
    second = records.new_checkpoint_name()
    assert first <= second and first.startswith("cp-")
