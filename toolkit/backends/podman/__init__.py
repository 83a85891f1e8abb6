"""Podman backend, split by concern like docker-py's per-resource mixins.

- :mod:`.client`: the only module that imports the podman SDK (connection, errors, inspect)
- :mod:`.lifecycle`: create, run, list, logs, stop, exec, top, stats
- :mod:`.checkpoints`: checkpoint (in place or streamed), list, restore
- :mod:`.archives`: ctk archives (export, import) and libpod export tars restored as read
- :mod:`.images`, :mod:`.networks`: images by ID; bridge networks
- :mod:`.migration`: cold moves and the cross-runtime path (templates, raw export/import)
"""

from toolkit.backends.podman.archives import PODMAN_PAYLOAD
from toolkit.backends.podman.backend import PodmanBackend
from toolkit.backends.podman.client import API_VERSION, CHECKPOINT_RUNTIME, DEFAULT_URL
from toolkit.models import PortMapping

__all__ = [
    "API_VERSION",
    "CHECKPOINT_RUNTIME",
    "DEFAULT_URL",
    "PODMAN_PAYLOAD",
    "PodmanBackend",
    "PortMapping",
]
