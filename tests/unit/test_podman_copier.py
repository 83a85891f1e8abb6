"""Podman's copier losing its helper process: one more put, only for that error."""

from __future__ import annotations

import pytest

from toolkit.backends.podman.client import COPIER_LOST, once_more_if_copier_lost
from toolkit.errors import EngineError


def _flaky(errors: list[str]) -> tuple[list[int], object]:
    calls: list[int] = []

    def put() -> None:
        calls.append(1)
        if len(calls) <= len(errors):
            raise EngineError(errors[len(calls) - 1])

    return calls, put


def test_a_lost_copier_is_tried_once_more() -> None:
    calls, put = _flaky([f"{COPIER_LOST}: write |1: broken pipe"])
    once_more_if_copier_lost(put, "put")  # type: ignore[arg-type]
    assert len(calls) == 2


def test_twice_lost_or_another_error_is_raised() -> None:
    calls, put = _flaky([f"{COPIER_LOST}: a", f"{COPIER_LOST}: b"])
    with pytest.raises(EngineError):
        once_more_if_copier_lost(put, "put")  # type: ignore[arg-type]
    assert len(calls) == 2
    calls, put = _flaky(["no such file or directory"])
    with pytest.raises(EngineError):
        once_more_if_copier_lost(put, "put")  # type: ignore[arg-type]
    assert len(calls) == 1
