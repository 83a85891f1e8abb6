"""DockerBackend: the concerns of this package assembled into one Backend."""

from __future__ import annotations

from toolkit.backends.base import (
    Backend,
    ContainerLayers,
    Events,
    ForeignImageRestore,
    Images,
    RuntimeInspection,
    Terminals,
    VolumeData,
    Volumes,
)
from toolkit.backends.docker.archives import ArchivesMixin
from toolkit.backends.docker.events import EventsMixin
from toolkit.backends.docker.layers import LayersMixin
from toolkit.backends.docker.lifecycle import LifecycleMixin
from toolkit.backends.docker.migration import MigrationMixin
from toolkit.backends.docker.networks import NetworksMixin
from toolkit.backends.docker.terminals import TerminalsMixin


class DockerBackend(
    LifecycleMixin,
    NetworksMixin,
    ArchivesMixin,
    MigrationMixin,
    LayersMixin,
    EventsMixin,
    TerminalsMixin,
):
    """Docker Engine through the docker SDK.

    Each concern is a mixin in its own module (lifecycle, checkpoints, archives, images,
    layers, volumes, events, networks, migration);
    :class:`~toolkit.backends.docker.client.DockerClient` holds the connection and the error
    translation they share.
    """


def _conforms(
    backend: DockerBackend,
) -> tuple[
    Backend,
    ForeignImageRestore,
    RuntimeInspection,
    Images,
    ContainerLayers,
    Volumes,
    VolumeData,
    Events,
    Terminals,
]:
    """mypy's proof that DockerBackend offers what base.py declares (never called)."""
    b = backend
    return b, b, b, b, b, b, b, b, b
