"""``ctk pull`` and ``ctk push`` against a real registry (Debian's docker-registry on the
host's loopback, plain HTTP) on both engines; no traffic leaves the host."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import BUSYBOX_IMAGE, ctk
from tests.integration.conftest import Registry, free_port
from toolkit.backends import shared
from toolkit.backends.base import Backend, Images
from toolkit.errors import ExitCode, ImageNotFound

pytestmark = pytest.mark.integration


@pytest.fixture
def tags(engine: Backend) -> Iterator[list[str]]:
    """The references a test gives images; every one removed (untagged) at the end."""
    assert isinstance(engine, Images)
    made: list[str] = []
    yield made
    for reference in made:
        with contextlib.suppress(ImageNotFound):
            engine.remove_image(reference)


def test_push_remove_pull_keeps_the_image_id(
    engine: Backend, registry: Registry, tags: list[str]
) -> None:
    assert isinstance(engine, Images)
    reference = f"{registry.address}/ctk-test/busybox:{uuid.uuid4().hex[:10]}"
    tags.append(reference)
    original = engine.inspect_image(BUSYBOX_IMAGE).id
    ctk("tag", BUSYBOX_IMAGE, reference, engine=engine.kind, check=True)

    pushed = json.loads(ctk("--json", "push", reference, engine=engine.kind, check=True).stdout)
    assert pushed["reference"] == reference and pushed["id"] == original

    ctk("rmi", reference, engine=engine.kind, check=True)
    assert reference not in engine.inspect_image(BUSYBOX_IMAGE).tags

    pulled = json.loads(
        ctk("--json", "image", "pull", reference, engine=engine.kind, check=True).stdout
    )
    assert pulled["id"] == original
    assert reference in pulled["tags"]


def test_pull_of_a_name_the_registry_lacks_is_not_found(
    engine: Backend, registry: Registry
) -> None:
    reference = f"{registry.address}/ctk-test/absent-{uuid.uuid4().hex[:8]}:1"
    result = ctk("pull", reference, engine=engine.kind)
    assert result.returncode == ExitCode.NOT_FOUND, result.stderr
    assert "Hint:" in result.stderr and "Traceback" not in result.stderr


def test_pull_from_a_closed_port_is_registry_unavailable(engine: Backend) -> None:
    reference = f"127.0.0.1:{free_port()}/ctk-test/busybox:1"
    result = ctk("pull", reference, engine=engine.kind)
    assert result.returncode == ExitCode.ENGINE_UNAVAILABLE, result.stderr
    assert "Hint: is a registry running" in result.stderr
    assert "Traceback" not in result.stderr


def test_push_of_an_image_not_held_is_not_found(engine: Backend, registry: Registry) -> None:
    result = ctk(
        "push", f"{registry.address}/ctk-test/none-{uuid.uuid4().hex[:8]}:1", engine=engine.kind
    )
    assert result.returncode == ExitCode.NOT_FOUND, result.stderr
    assert "Hint:" in result.stderr


def test_loopback_registries_skip_tls_by_default() -> None:
    assert shared.is_loopback_registry("127.0.0.1:5000/a/b:1")
    assert shared.is_loopback_registry("localhost:5000/a")
    assert shared.is_loopback_registry("[::1]:5000/a")
    assert not shared.is_loopback_registry("registry.example.com/a")
    assert not shared.is_loopback_registry("busybox")
    assert not shared.is_loopback_registry("library/busybox:1")
