"""examples/redis, examples/postgres and examples/postgres-session.py, run as a newcomer would,
on both engines: real workloads as their own non-root users, checked by their own clients (see
the examples' headers)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.integration.test_examples import EXAMPLES, run_example
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


def test_postgres_session_example(engine: Backend, criu: None) -> None:
    # A Python example (psycopg holds the session): run with this interpreter and this tree.
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent), "CTK_TEST": "1"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "postgres-session.py"), "--engine", engine.kind],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "Traceback" not in out + proc.stderr
    assert "PostgreSQL runs as postgres" in out
    if engine.kind == "docker":
        assert "unsupported (exit 6)" in out and "Hint: use --engine podman" in out
    else:
        assert "notes has 4 rows, committed" in out
        assert "OK postgres-session: the open session" in out
