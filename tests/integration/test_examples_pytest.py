"""examples/pytest runs green on each engine and prints the snapshot-vs-cold-start timing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.backends.base import Backend

pytestmark = [pytest.mark.integration, pytest.mark.criu]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pytest"


def test_example_suite(engine: Backend, criu: None, tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "pytest",
        # by module, whether or not the package's entry point is installed
        *("-p", "no:ctk", "-p", "toolkit.pytest_plugin", "-p", "no:cacheprovider"),
        "--rootdir",
        str(EXAMPLE),
        "-c",
        "/dev/null",
        "--basetemp",
        str(tmp_path / "base"),
        "--ctk-engine",
        engine.kind,
        "--ctk-strict",
        str(EXAMPLE),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout
    assert "ctk snapshot timings" in proc.stdout
    line = next(line for line in proc.stdout.splitlines() if "cold start" in line)
    assert f"on {engine.kind}" in line and "restore from checkpoint" in line
