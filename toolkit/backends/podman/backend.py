"""PodmanBackend: the concerns of this package assembled into one Backend."""

from __future__ import annotations

from toolkit.backends.base import (
    Backend,
    ContainerLayers,
    CriuLogs,
    Events,
    Images,
    RuntimeInspection,
    SharedFilesystem,
    StreamingCheckpoints,
    TemplateRestore,
    Terminals,
    VolumeData,
    Volumes,
)
from toolkit.backends.podman.events import EventsMixin
from toolkit.backends.podman.layers import LayersMixin
from toolkit.backends.podman.migration import MigrationMixin
from toolkit.backends.podman.networks import NetworksMixin
from toolkit.backends.podman.terminals import TerminalsMixin
from toolkit.backends.podman.volumes import VolumesMixin


class PodmanBackend(
    MigrationMixin, NetworksMixin, LayersMixin, VolumesMixin, EventsMixin, TerminalsMixin
):
    """Podman through its REST service and the podman SDK.

    Each concern is a mixin in its own module (lifecycle, checkpoints, archives, images,
    layers, volumes, events, networks, migration);
    :class:`~toolkit.backends.podman.client.PodmanClient` holds the connection and the error
    translation they share.
    """


def _conforms(
    backend: PodmanBackend,
) -> tuple[
    Backend,
    StreamingCheckpoints,
    TemplateRestore,
    RuntimeInspection,
    CriuLogs,
    SharedFilesystem,
    Images,
    ContainerLayers,
    Volumes,
    VolumeData,
    Events,
    Terminals,
]:
    """mypy's proof that PodmanBackend offers what base.py declares (never called)."""
    b = backend
    return b, b, b, b, b, b, b, b, b, b, b, b
