"""Every example under examples/ runs end to end on the testbed."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Testbed

pytestmark = pytest.mark.testbed

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "CTK": f"{sys.executable} -m toolkit", **env}
    return subprocess.run(argv, capture_output=True, text=True, env=full, timeout=300, check=False)


@pytest.mark.parametrize("kind", ["docker", "podman"])
def test_migrate_py(testbed: Testbed, kind: str) -> None:
    port = str(random.randint(20000, 29999))
    result = _run([sys.executable, str(EXAMPLES / "migrate.py"), "--kind", kind, "--port", port])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: the state survived the move" in result.stdout


@pytest.mark.parametrize("kind", ["docker", "podman"])
def test_migrate_sh(testbed: Testbed, kind: str) -> None:
    port = str(random.randint(20000, 29999))
    result = _run(["sh", str(EXAMPLES / "migrate.sh"), kind], PORT=port)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: the state survived the move" in result.stdout
    assert "downtime" in result.stdout


def test_docker_to_podman_sh(testbed: Testbed) -> None:
    port = str(random.randint(20000, 29999))
    result = _run(["sh", str(EXAMPLES / "docker-to-podman.sh")], PORT=port)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "runs on Podman now" in result.stdout
