"""examples/cross-runtime: the counter moved Docker -> Podman -> Docker, run as a user would."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import unavailable
from toolkit.config import DEFAULT_URLS, EngineRef, connect
from toolkit.errors import CtkError
from toolkit.migration.cross_runtime import remove_criu_config

EXAMPLE = Path(__file__).parents[2] / "examples" / "cross-runtime" / "move_counter.py"


def test_example_moves_counter_docker_podman_docker() -> None:
    engines = [connect(EngineRef(k, DEFAULT_URLS[k])) for k in ("docker", "podman")]
    if not all(e.ping() for e in engines):
        unavailable("both docker and podman must answer")
    name = f"ctk-test-example-{uuid.uuid4().hex[:8]}"
    try:
        proc = subprocess.run(
            [sys.executable, str(EXAMPLE), "--name", name, "--label", "ctk.test=1"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert "podman: count=" in proc.stdout and "memory intact" in proc.stdout
    finally:
        for backend in engines:
            with contextlib.suppress(CtkError):
                info = backend.inspect(name)
                backend.remove(name, force=True)
                remove_criu_config(info)
            backend.close()
