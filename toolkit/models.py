"""ctk's own data models: the only values that cross the Backend boundary.

All are frozen dataclasses so results can be shared, hashed and rendered without fear of
mutation; ``to_dict`` gives the stable JSON shape the CLI prints with ``--json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class _Model:
    def to_dict(self) -> dict[str, Any]:
        """The model as plain JSON-ready data (stable keys)."""
        result = _jsonable(self)
        assert isinstance(result, dict)
        return result


@dataclass(frozen=True)
class PortMapping(_Model):
    """One published port: ``host_ip:host_port -> container_port/protocol``.

    ``host_port`` 0 asks the engine for an ephemeral port.
    """

    container_port: int
    host_port: int = 0
    host_ip: str = ""
    protocol: str = "tcp"

    def __str__(self) -> str:
        host = f"{self.host_ip}:" if self.host_ip else ""
        return f"{host}{self.host_port}->{self.container_port}/{self.protocol}"

    @classmethod
    def parse(cls, text: str) -> PortMapping:
        """Docker's ``-p`` forms: ``80``, ``8080:80``, ``127.0.0.1:8080:80``, ``53:53/udp``.

        Raises:
            ValueError: the text is none of those forms.
        """
        spec, _, protocol = text.partition("/")
        protocol = protocol or "tcp"
        if protocol not in ("tcp", "udp", "sctp"):
            raise ValueError(f"unknown protocol {protocol!r}")
        parts = spec.rsplit(":", 2)
        host_ip, host_port = "", "0"
        if len(parts) == 1:
            container = parts[0]
        elif len(parts) == 2:
            host_port, container = parts
        else:
            host_ip, host_port, container = parts
        if ":" in host_ip and not host_ip.startswith("["):
            raise ValueError(f"write an IPv6 host address in brackets in {text!r}")
        host_ip = host_ip.strip("[]")
        if not container.isdigit() or not (host_port or "0").isdigit():
            raise ValueError(f"ports must be numbers in {text!r}")
        numbers = (int(container), int(host_port or 0))
        if not 0 < numbers[0] < 65536 or not 0 <= numbers[1] < 65536:
            raise ValueError(f"port out of range in {text!r}")
        return cls(
            container_port=numbers[0], host_port=numbers[1], host_ip=host_ip, protocol=protocol
        )


@dataclass(frozen=True)
class ContainerSpec(_Model):
    """What to create: the engine-neutral subset of ``docker run`` / ``podman run``."""

    image: str
    command: tuple[str, ...] = ()
    name: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    ports: tuple[PortMapping, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    network: str | None = None
    hostname: str | None = None
    working_dir: str | None = None
    user: str | None = None
    runtime: str | None = None


@dataclass(frozen=True)
class ContainerInfo(_Model):
    """A container as ctk reports it, the same keys on every engine."""

    id: str
    name: str
    image: str
    image_id: str
    status: str
    running: bool
    command: tuple[str, ...] = ()
    created: str = ""
    ports: tuple[PortMapping, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    engine: str = ""

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass(frozen=True)
class CheckpointOptions(_Model):
    """How to checkpoint. ``name`` None lets ctk pick a timestamped one."""

    name: str | None = None
    leave_running: bool = False
    tcp_established: bool = False
    file_locks: bool = False


@dataclass(frozen=True)
class RestoreOptions(_Model):
    """How to restore. ``checkpoint`` None means the latest checkpoint of the container."""

    checkpoint: str | None = None
    tcp_established: bool = False
    file_locks: bool = False


@dataclass(frozen=True)
class Checkpoint(_Model):
    """A checkpoint held by an engine for one container."""

    name: str
    container: str
    engine: str
    created: str = ""


@dataclass(frozen=True)
class EngineInfo(_Model):
    """What an engine says about itself."""

    kind: str
    url: str
    version: str
    api_version: str = ""
    experimental: bool = False
    default_runtime: str = ""
    checkpoint_capable: bool = False
    root_dir: str = ""


@dataclass(frozen=True)
class ExitStatus(_Model):
    """How a container last ended, or that it is still running.

    ``exit_code`` is None while it runs; 137 means SIGKILL, 143 SIGTERM (128 + signal).
    """

    running: bool
    status: str
    exit_code: int | None = None
    oom_killed: bool = False
    finished_at: str = ""


COMPRESSIONS = ("zstd", "gzip", "none")
"""Compressions a ctk checkpoint archive can use; zstd is the default."""


@dataclass(frozen=True)
class ExportOptions(_Model):
    """How to checkpoint a container into an archive file.

    ``checkpoint`` holds the CRIU switches (name, leave_running, tcp_established, file_locks);
    ``compression`` is one of :data:`COMPRESSIONS`.
    """

    checkpoint: CheckpointOptions = CheckpointOptions()
    compression: str = "zstd"


@dataclass(frozen=True)
class ImportOptions(_Model):
    """How to restore a container from an archive file.

    ``name`` None keeps the archived container's name; another name makes a clone that can run
    beside the original. ``ports`` replaces the archived port mappings when not empty.
    """

    name: str | None = None
    tcp_established: bool = False
    file_locks: bool = False
    ignore_static_ip: bool = False
    ports: tuple[PortMapping, ...] = ()


@dataclass(frozen=True)
class ArchiveMember(_Model):
    """One payload file of a ctk archive, with the checksum the reader verifies."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ArchiveManifest(_Model):
    """``ctk-manifest.json``: the first member of every ctk checkpoint archive.

    ``spec`` is the archived container's :class:`ContainerSpec` as a dict; ``engine_data``
    holds what only that engine's import needs (e.g. Docker's deleted paths).
    """

    format_version: int
    engine: str
    engine_version: str
    criu_version: str
    container_id: str
    container_name: str
    image: str
    image_id: str
    checkpoint: str
    created: str
    spec: dict[str, Any] = field(default_factory=dict)
    members: tuple[ArchiveMember, ...] = ()
    engine_data: dict[str, Any] = field(default_factory=dict)
    kernel: str = ""

    @property
    def payload_size(self) -> int:
        return sum(m.size for m in self.members)


@dataclass(frozen=True)
class ArchiveInfo(_Model):
    """A written (or verified) archive: where, how big, how compressed, and its manifest.

    ``timings`` is ctk's wall time per phase in seconds (checkpoint, fetch, checksum, write);
    ``criu_stats`` CRIU's own dump statistics when the engine keeps them (Podman does).
    """

    path: str
    size: int
    compression: str
    manifest: ArchiveManifest
    timings: dict[str, float] = field(default_factory=dict)
    criu_stats: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageProcess(_Model):
    """One process in a checkpoint's CRIU images (PIDs as seen inside the container)."""

    pid: int
    ppid: int
    comm: str
    threads: int
    pages: int
    memory_bytes: int
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageSocket(_Model):
    """An inet or unix socket in a checkpoint's CRIU images."""

    family: str
    type: str
    state: str
    local: str
    remote: str = ""


@dataclass(frozen=True)
class CheckpointImages(_Model):
    """What the CRIU images of one checkpoint hold, decoded with pycriu.

    ``stats`` is CRIU's own dump statistics (``stats-dump``) when the engine kept them;
    ``manifest`` is set when the images came from a ctk archive.
    """

    processes: tuple[ImageProcess, ...]
    sockets: tuple[ImageSocket, ...] = ()
    namespaces: dict[str, int] = field(default_factory=dict)
    hostname: str = ""
    criu_version: str = ""
    kernel: str = ""
    stats: dict[str, int] = field(default_factory=dict)
    manifest: ArchiveManifest | None = None
