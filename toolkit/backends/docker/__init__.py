"""Docker backend, split by concern like docker-py's per-resource mixins.

- :mod:`.client`: the only module that imports the docker SDK (connection, errors, inspect)
- :mod:`.lifecycle`: create, run, list, logs, stop, exec, top, stats
- :mod:`.checkpoints`: checkpoint, list, remove, restore (the experimental checkpoint routes)
- :mod:`.archives`: ctk archives (export, import)
- :mod:`.files`: helper containers that reach daemon paths through the archive API
- :mod:`.images`, :mod:`.networks`: images by ID; bridge and overlay networks
- :mod:`.migration`: cold moves and the cross-runtime path
- :mod:`.restore_log`, :mod:`.paramiko_deferral`: containerd's CRIU log; a lazy paramiko
"""

from toolkit.backends.docker.archives import DOCKER_CHECKPOINT, DOCKER_ROOTFS
from toolkit.backends.docker.backend import DockerBackend
from toolkit.backends.docker.client import DEFAULT_URL
from toolkit.models import PortMapping

__all__ = ["DEFAULT_URL", "DOCKER_CHECKPOINT", "DOCKER_ROOTFS", "DockerBackend", "PortMapping"]
