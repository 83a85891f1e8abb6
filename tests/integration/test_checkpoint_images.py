"""Checkpoint images in Podman's format: made by Podman or ctk, restored by ctk on both engines
and by Podman itself; the counter goes on from where it was."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import (
    Containers,
    ctk,
    last_count,
    unavailable,
    wait_count_at_least,
)
from toolkit.backends.base import Backend
from toolkit.config import DEFAULT_URLS, EngineRef, connect
from toolkit.errors import CtkError
from toolkit.models import CheckpointOptions, Mount


@dataclass
class Engines:
    """Both local engines, and what a test made on them (removed afterwards)."""

    docker: Backend
    podman: Backend
    images: list[tuple[Backend, str]] = field(default_factory=list)
    names: list[tuple[Backend, str]] = field(default_factory=list)

    def of(self, kind: str) -> Backend:
        return self.docker if kind == "docker" else self.podman

    def name(self, backend: Backend, prefix: str) -> str:
        made = f"ctk-test-{prefix}-{uuid.uuid4().hex[:8]}"
        self.names.append((backend, made))
        return made

    def image(self, backend: Backend) -> str:
        made = f"ctk-test-cpimage-{uuid.uuid4().hex[:8]}:1"
        self.images.append((backend, made))
        return made

    def move_image(self, source: Backend, image: str, dest: Backend) -> str:
        """``image`` saved on ``source`` and loaded on ``dest``; its ID (kept by both)."""
        image_id = source.inspect_image(image).id  # type: ignore[attr-defined]
        dest.load_image(source.save_image(image))
        self.images.append((dest, image_id))
        return str(image_id)


@pytest.fixture
def engines() -> Iterator[Engines]:
    from toolkit.criu.probe import probe_criu

    if not probe_criu().check_ok:
        unavailable("criu not ready")
    backends = {}
    for kind in ("docker", "podman"):
        backend = connect(EngineRef(kind, DEFAULT_URLS[kind]))
        if not backend.ping():
            unavailable(f"{kind} does not answer")
        backends[kind] = backend
    made = Engines(backends["docker"], backends["podman"])
    yield made
    for backend, name in made.names:
        with contextlib.suppress(CtkError):
            backend.remove(name, force=True)
    for backend, image in reversed(made.images):
        with contextlib.suppress(CtkError):
            backend.remove_image(image, force=True)  # type: ignore[attr-defined]
    for backend in backends.values():
        backend.close()


def run_counter(engines: Engines, kind: str) -> tuple[Backend, str]:
    backend = engines.of(kind)
    name = engines.name(backend, "cpimage")
    Containers(backend, []).run(name=name, labels={"ctk.test": "1"})
    wait_count_at_least(backend, name, 3)
    return backend, name


def assert_goes_on(backend: Backend, name: str, before: int, since: int) -> None:
    """The restored counter continues from ``before``: the lines since the restore go on from
    it, one by one (Podman's restored log carries the source's lines too, and the last one
    before the dump can fall in the same second as ``since``)."""
    wait_count_at_least(backend, name, before + 2)
    new = [int(c) for c in _counts_since(backend, name, since)]
    assert new, "the restored container printed nothing"
    assert before <= new[0] <= before + 2, (before, new)
    assert new == list(range(new[0], new[0] + len(new))), new


def _counts_since(backend: Backend, name: str, since: int) -> list[str]:
    import re

    return re.findall(r"count=(\d+)", backend.logs(name, since=since))


def podman_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("dest", ["docker", "podman"])
def test_podman_made_image_restored_by_ctk(engines: Engines, dest: str) -> None:
    """``podman container checkpoint --create-image`` -> ``ctk restore --image`` on each engine."""
    podman, name = run_counter(engines, "podman")
    image = engines.image(podman)
    made = podman_cli("container", "checkpoint", "--create-image", image, name)
    assert made.returncode == 0, made.stderr
    before = last_count(podman, name)
    podman.remove(name, force=True)
    target = engines.of(dest)
    ref = image if dest == "podman" else engines.move_image(podman, image, target)
    new_name = engines.name(target, "restored")

    since = int(time.time())
    restored = ctk("restore", "--image", ref, "--name", new_name, "--json", engine=dest)

    assert restored.returncode == 0, restored.stderr
    assert target.inspect(new_name).running
    assert_goes_on(target, new_name, before, since)


@pytest.mark.parametrize("source", ["docker", "podman"])
def test_ctk_image_restored_by_ctk_on_docker(engines: Engines, source: str) -> None:
    made_on, name = run_counter(engines, source)
    image = engines.image(made_on)

    created = ctk("checkpoint", name, "--create-image", image, engine=source)

    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == image
    labels_or_annotations = _annotations(source, image)
    assert labels_or_annotations["io.podman.annotations.checkpoint.name"] == name
    before = last_count(made_on, name)
    made_on.remove(name, force=True)
    docker = engines.docker
    ref = image if source == "docker" else engines.move_image(made_on, image, docker)
    since = int(time.time())

    restored = ctk("restore", "--image", ref, engine="docker")

    assert restored.returncode == 0, restored.stderr
    engines.names.append((docker, name))
    assert restored.stdout.strip() == name  # the checkpointed container's name by default
    assert_goes_on(docker, name, before, since)


@pytest.mark.parametrize("source", ["docker", "podman"])
def test_ctk_image_restored_by_podman(engines: Engines, source: str) -> None:
    """ctk's image on Podman is Podman's own: ``podman container restore IMAGE`` takes it.
    Docker has no libpod metadata to put in it, so Podman refuses ctk's Docker-made image (its
    exact answer is asserted) and ctk restores it on Podman instead."""
    made_on, name = run_counter(engines, source)
    image = engines.image(made_on)
    created = ctk("checkpoint", name, "--create-image", image, engine=source)
    assert created.returncode == 0, created.stderr
    before = last_count(made_on, name)
    made_on.remove(name, force=True)
    podman = engines.podman
    ref = image if source == "podman" else engines.move_image(made_on, image, podman)
    new_name = engines.name(podman, "restored")
    since = int(time.time())

    by_podman = podman_cli("container", "restore", "--name", new_name, ref)

    if source == "podman":
        assert by_podman.returncode == 0, by_podman.stderr
    else:
        assert by_podman.returncode != 0
        assert "image is not a checkpoint" in by_podman.stderr
        by_ctk = ctk("restore", "--image", ref, "--name", new_name, engine="podman")
        assert by_ctk.returncode == 0, by_ctk.stderr
    assert podman.inspect(new_name).running
    assert_goes_on(podman, new_name, before, since)


def _annotations(kind: str, image: str) -> dict[str, str]:
    import json

    if kind == "podman":
        out = podman_cli("image", "inspect", image, "--format", "{{json .Annotations}}")
    else:
        out = subprocess.run(
            ["docker", "image", "inspect", image, "--format", "{{json .Config.Labels}}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    data: dict[str, str] = json.loads(out.stdout)
    return data


@pytest.mark.usefixtures("criu")
def test_ordinary_image_is_refused_before_anything_is_created(
    engine: Backend, containers: Containers
) -> None:
    name = containers.name("notcp")

    result = ctk("restore", "--image", "ctk-demo/counter", "--name", name, engine=engine.kind)

    assert result.returncode == 8, result.stderr
    assert "not a checkpoint image" in result.stderr
    assert "Traceback" not in result.stderr
    assert name not in {c.name for c in engine.containers(all=True)}


@pytest.mark.usefixtures("criu")
def test_bad_image_name_refused_before_the_checkpoint(
    engine: Backend, containers: Containers
) -> None:
    info = containers.run()

    result = ctk("checkpoint", info.name, "--create-image", "Bad Name!", engine=engine.kind)

    assert result.returncode == 2, result.stderr
    assert "invalid image name" in result.stderr
    assert engine.inspect(info.name).running
    assert engine.checkpoints(info.name) == []


@pytest.mark.usefixtures("criu")
def test_missing_image_is_not_found(engine: Backend) -> None:
    result = ctk("restore", "--image", f"ctk-test-none-{uuid.uuid4().hex[:8]}", engine=engine.kind)

    assert result.returncode == 4, result.stderr


@pytest.mark.usefixtures("criu")
def test_leave_running_image_beside_the_running_source(
    engine: Backend, containers: Containers
) -> None:
    """-R keeps the source counting; the image restores as a clone under a new name."""
    info = containers.run()
    wait_count_at_least(engine, info.name, 3)
    image = f"ctk-test-cpimage-{uuid.uuid4().hex[:8]}:1"
    clone = containers.name("clone")
    try:
        from toolkit.checkpoint_images import create_image, restore_image
        from toolkit.models import ImportOptions

        made = create_image(engine, info.name, image, CheckpointOptions(leave_running=True))
        assert made.image == image and made.engine == engine.kind
        assert engine.inspect(info.name).running
        since = int(time.time())
        restored = restore_image(engine, image, ImportOptions(name=clone, ignore_static_ip=True))
        assert restored.running
        wait_count_at_least(engine, clone, 4)
        assert min(int(c) for c in _counts_since(engine, clone, since)) >= 3
        assert engine.inspect(info.name).running
    finally:
        with contextlib.suppress(CtkError):
            engine.remove(clone, force=True)
        with contextlib.suppress(CtkError):
            engine.remove_image(image, force=True)  # type: ignore[attr-defined]


@pytest.mark.usefixtures("criu")
def test_mounts_on_docker_refused_before_the_checkpoint(
    engine: Backend, containers: Containers
) -> None:
    info = containers.run(volumes=(Mount(target="/data", type="volume"),))
    image = f"ctk-test-cpimage-{uuid.uuid4().hex[:8]}:1"

    result = ctk("checkpoint", info.name, "--create-image", image, engine=engine.kind)

    if engine.kind == "podman":  # libpod carries volumes in the image, as in its export
        assert result.returncode == 0, result.stderr
        engine.remove_image(image, force=True)  # type: ignore[attr-defined]
        return
    assert result.returncode == 6, result.stderr
    assert "/data" in result.stderr
    assert engine.inspect(info.name).running
    assert engine.checkpoints(info.name) == []


@pytest.mark.usefixtures("criu")
def test_hostile_image_refused_before_anything_is_created(
    engine: Backend, containers: Containers, engines: Engines, tmp_path: Path
) -> None:
    """A checkpoint image whose spec.dump asks for an OCI hook (run on the host as root by
    runc) is refused like such an archive: exit 8, no container."""
    from tests.unit.test_archive_payload import _config, _spec, _tar

    spec = _spec()
    spec["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "touch /pwned"]}]}
    layer = tmp_path / "layer.tar"
    layer.write_bytes(
        _tar(
            [
                ("config.dump", json.dumps(_config()).encode()),
                ("spec.dump", json.dumps(spec).encode()),
                ("checkpoint/pstree.img", b"img"),
            ]
        )
    )
    image = engines.image(engines.docker)
    engines.docker.import_layer(layer, image, labels={"ctk.test": "1"})  # type: ignore[attr-defined]
    ref = image if engine.kind == "docker" else engines.move_image(engines.docker, image, engine)
    name = containers.name("hostile")

    result = ctk("restore", "--image", ref, "--name", name, engine=engine.kind)

    assert result.returncode == 8, result.stderr
    assert "hooks" in result.stderr and "Traceback" not in result.stderr
    assert name not in {c.name for c in engine.containers(all=True)}


def test_failed_import_puts_the_docker_container_back(
    engines: Engines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docker's image is made in steps after the dump (fetch, layer, import): a failure in
    any of them restores the container from the dump it just made. (Podman's is one libpod
    call, which leaves the container running when it fails.)"""
    from toolkit.checkpoint_images import create_image
    from toolkit.errors import EngineError

    docker, name = run_counter(engines, "docker")

    def broken(*_args: object, **_kwargs: object) -> str:
        raise EngineError("docker import failed: simulated")

    monkeypatch.setattr(docker, "import_layer", broken)
    before = last_count(docker, name)
    since = int(time.time())
    with pytest.raises(EngineError, match="simulated"):
        create_image(docker, name, engines.image(docker), CheckpointOptions())

    assert docker.inspect(name).running
    wait_count_at_least(docker, name, before + 2)
    # restored from the dump, not started afresh: no count=1 again
    assert min(int(c) for c in _counts_since(docker, name, since)) >= before


@pytest.mark.usefixtures("criu")
def test_tcp_established_restore_on_docker_is_unsupported(engine: Backend) -> None:
    """Docker's API has no CRIU switches: exit 6 before the image is even looked up. Podman
    takes the switch (and so looks the image up: exit 4 for one that does not exist)."""
    missing = f"ctk-test-none-{uuid.uuid4().hex[:8]}"

    result = ctk("restore", "--image", missing, "--tcp-established", engine=engine.kind)

    assert result.returncode == (6 if engine.kind == "docker" else 4), result.stderr
    if engine.kind == "docker":
        assert "--tcp-established" in result.stderr and "podman" in result.stderr
