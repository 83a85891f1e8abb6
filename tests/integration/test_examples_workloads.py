"""examples/redis and examples/postgres, run as a newcomer would, on both engines: real
workloads as their own non-root users, checked by their own clients (see the examples' headers)."""

from __future__ import annotations

import pytest

from tests.integration.test_examples import run_example
from toolkit.backends.base import Backend

pytestmark = [pytest.mark.integration, pytest.mark.criu]


def test_redis_example(engine: Backend, criu: None) -> None:
    out = run_example("redis", engine.kind).stdout
    assert "redis-server runs as: redis" in out
    assert "after restore: the same keys, digest and run_id" in out
    assert "keys=100001 digest=" in out
    assert "the same keys, digest and run_id" in out.split("import as", 1)[1]
    assert "OK redis:" in out


def test_postgres_example(engine: Backend, criu: None) -> None:
    out = run_example("postgres", engine.kind).stdout
    assert "the server runs as: postgres" in out
    assert "10000 rows, md5 " in out
    assert "after restore: the same rows and the same postmaster" in out
    assert "the same rows and the same postmaster" in out.split("import as", 1)[1]
    assert "OK postgres:" in out
