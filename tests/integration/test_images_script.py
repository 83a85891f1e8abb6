"""scripts/images: the workload images from Debian's packages are in both engines under one
ID, each as its own non-root user, and a second run rebuilds nothing."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "images"
# image -> the user it runs as (images/NAME/changes)
WORKLOADS = {"redis": "redis", "postgres": "postgres", "pyweb": "nobody", "jvm": "nobody"}


def _inspect(tool: str, ref: str) -> dict[str, object]:
    proc = subprocess.run(
        [tool, "image", "inspect", ref], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"{tool} has no {ref}: {proc.stderr} (run scripts/images)"
    (image,) = json.loads(proc.stdout)
    return dict(image)


def test_workload_images_cached_and_identical() -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [str(SCRIPT), *WORKLOADS], capture_output=True, text=True, timeout=1800, check=False
    )
    assert proc.returncode == 0, proc.stderr
    first = time.monotonic() - started
    # Built now or before: a second run only compares labels and IDs.
    started = time.monotonic()
    again = subprocess.run(
        [str(SCRIPT), *WORKLOADS], capture_output=True, text=True, timeout=600, check=False
    )
    second = time.monotonic() - started
    assert again.returncode == 0, again.stderr
    assert "building" not in again.stderr and "loading" not in again.stderr, again.stderr
    assert second < 30, f"cached run took {second:.1f}s (first {first:.1f}s)"
    for name, user in WORKLOADS.items():
        docker = _inspect("docker", f"ctk-demo/{name}")
        podman = _inspect("podman", f"ctk-demo/{name}")
        # Docker says sha256:<hex>, Podman <hex>: the same image ID.
        assert str(docker["Id"]).removeprefix("sha256:") == podman["Id"], name
        config = docker["Config"]
        assert isinstance(config, dict)
        assert config["User"] == user
        assert config["Labels"]["ctk.build-hash"]


def test_dockerfile_images_are_ctk_builds_on_the_busybox_base() -> None:
    """ctk-demo/counter and memhog come from images/NAME/Dockerfile through `ctk build`: one
    layer on ctk-demo/busybox, the same ID in both engines, and a second run builds nothing."""
    names = ["counter", "memhog"]
    proc = subprocess.run(
        [str(SCRIPT), *names], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr
    again = subprocess.run(
        [str(SCRIPT), *names], capture_output=True, text=True, timeout=120, check=False
    )
    assert again.returncode == 0 and "building" not in again.stderr, again.stderr
    base = _inspect("docker", "ctk-demo/busybox")
    base_layers = base["RootFS"]["Layers"]  # type: ignore[index]
    for name in names:
        docker = _inspect("docker", f"ctk-demo/{name}")
        podman = _inspect("podman", f"ctk-demo/{name}")
        assert str(docker["Id"]).removeprefix("sha256:") == podman["Id"], name
        layers = docker["RootFS"]["Layers"]  # type: ignore[index]
        assert layers[: len(base_layers)] == base_layers, name  # built on the base
        assert len(layers) == len(base_layers) + 1, name  # COPY: one layer more
        assert docker["Config"]["Labels"]["ctk.build-hash"], name  # type: ignore[index]
