"""Engine selection, in one place: ``--engine`` flag > ``CTK_ENGINE`` > config file > autodetect.

An engine is named ``docker`` or ``podman`` (their standard local sockets) or by URL:
``docker+unix:///path.sock``, ``podman+unix:///path.sock``. Backends are imported lazily so
that ``import toolkit`` and ``ctk --help`` work without the SDKs.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from toolkit.backends.base import Backend
from toolkit.errors import EngineUnavailable, InvalidArgument

KINDS = ("docker", "podman")
DEFAULT_URLS = {
    "docker": "unix:///var/run/docker.sock",
    "podman": "unix:///run/podman/podman.sock",
}
_SCHEMES = ("unix", "tcp", "ssh", "http")


@dataclass(frozen=True)
class EngineRef:
    """Which engine to talk to: its kind and its API URL."""

    kind: str
    url: str

    def __str__(self) -> str:
        return f"{self.kind}+{self.url}"


def parse_engine(value: str) -> EngineRef:
    """Parse ``docker``, ``podman`` or ``KIND+SCHEME://...`` into an EngineRef."""
    text = value.strip()
    if text in KINDS:
        return EngineRef(text, DEFAULT_URLS[text])
    kind, plus, url = text.partition("+")
    if not plus or kind not in KINDS:
        raise InvalidArgument(
            f"unknown engine {value!r}",
            hint="use docker, podman, or a URL like docker+unix:///var/run/docker.sock",
        )
    parsed = urlparse(url)
    if parsed.scheme not in _SCHEMES:
        raise InvalidArgument(
            f"unsupported engine URL {url!r}",
            hint="URL schemes: unix:///path.sock, tcp://host:port, ssh://user@host",
        )
    if parsed.scheme == "unix" and not parsed.path:
        raise InvalidArgument(f"engine URL {url!r} names no socket path")
    if parsed.scheme in ("tcp", "ssh", "http") and not parsed.hostname:
        raise InvalidArgument(f"engine URL {url!r} names no host")
    return EngineRef(kind, url)


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/ctk/config.toml``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ctk" / "config.toml"


def _from_config() -> EngineRef | None:
    path = config_path()
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidArgument(f"cannot read {path}: {exc}", hint="fix or remove the file") from exc
    default = data.get("default")
    if not default:
        return None
    engines = data.get("engines") or {}
    entry = engines.get(default)
    if isinstance(entry, dict) and entry.get("url"):
        return parse_engine(str(entry["url"]))
    return parse_engine(str(default))


def connect(ref: EngineRef) -> Backend:
    """A backend for the engine (nothing is contacted yet)."""
    if ref.kind == "docker":
        from toolkit.backends.docker import DockerBackend

        return DockerBackend(ref.url)
    from toolkit.backends.podman import PodmanBackend

    return PodmanBackend(ref.url)


def resolve_engine(flag: str | None = None) -> EngineRef:
    """The engine to use, by precedence: flag > CTK_ENGINE > config default > autodetect."""
    for value in (flag, os.environ.get("CTK_ENGINE")):
        if value:
            return parse_engine(value)
    configured = _from_config()
    if configured is not None:
        return configured
    for kind in KINDS:
        ref = EngineRef(kind, DEFAULT_URLS[kind])
        if _socket_exists(ref) and connect(ref).ping():
            return ref
    raise EngineUnavailable(
        "no container engine answers (tried docker, then podman)",
        hint="start them with: scripts/engines start, or pass --engine URL",
    )


def _socket_exists(ref: EngineRef) -> bool:
    parsed = urlparse(ref.url)
    return parsed.scheme != "unix" or Path(parsed.path).exists()


def get_backend(flag: str | None = None) -> Backend:
    """The backend selected by precedence."""
    return connect(resolve_engine(flag))
