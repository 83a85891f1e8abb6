"""scripts/engines: the daemons it starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

RUN = Path("/run/ctk")


@pytest.mark.parametrize("daemon", ["containerd", "dockerd", "podman"])
def test_daemons_run_in_the_root_directory(daemon: str) -> None:
    # Started from a CI clone that is removed afterwards, a Podman service kept that directory
    # and every later container start failed in conmon ("write child: broken pipe").
    pidfile = RUN / f"{daemon}.pid"
    if not pidfile.exists():
        pytest.skip(f"{daemon} was not started by scripts/engines")
    pid = pidfile.read_text().strip()
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
