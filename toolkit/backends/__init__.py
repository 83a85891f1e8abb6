"""Engine backends: :mod:`toolkit.backends.base` is the boundary; one package per engine.

Importing this package loads no SDK: each engine's package imports its SDK on first use.
"""

from __future__ import annotations

# Where each engine listens unless told otherwise: the one definition ctk uses.
DEFAULT_URLS = {
    "docker": "unix:///var/run/docker.sock",
    "podman": "unix:///run/podman/podman.sock",
}

__all__ = ["DEFAULT_URLS"]
