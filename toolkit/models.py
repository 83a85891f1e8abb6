"""ctk's own data models: the only values that cross the Backend boundary.

All are frozen dataclasses whose fields are immutable too (mappings are :class:`FrozenDict`,
sequences tuples), so results can be shared, hashed and rendered without fear of mutation;
``to_dict`` gives the stable JSON shape the CLI prints with ``--json``. Constructors still
take plain dicts and lists: ``__post_init__`` freezes them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from typing import Any, NoReturn, TypeVar

from toolkit.errors import InvalidArgument

_K = TypeVar("_K")
_V = TypeVar("_V")


class FrozenDict(dict[_K, _V]):
    """A dict that cannot change after it is made, and so can be hashed.

    A dict subclass rather than a ``MappingProxyType`` (which cannot be hashed) so that it
    still goes wherever a dict goes: ``json.dumps``, the SDKs' ``isinstance(x, dict)`` checks,
    ``{**spec.env}``, equality with plain dicts. Its values must be hashable to hash it
    (:func:`freeze` makes nested dicts and lists so).
    """

    __slots__ = ()

    def _immutable(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is immutable")

    __setitem__ = __delitem__ = _immutable
    clear = pop = popitem = setdefault = update = _immutable

    def __ior__(self, other: object) -> NoReturn:  # type: ignore[misc]
        self._immutable()

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[type[FrozenDict[_K, _V]], tuple[dict[_K, _V]]]:
        # copy, deepcopy and pickle would otherwise refill an empty one item by item
        return (type(self), (dict(self),))


class FrozenList(list[_V]):
    """A list that cannot change after it is made, and so can be hashed: what a list becomes
    inside a mapping field (``engine_data``, a manifest's ``spec``), where the data is JSON and
    its readers check ``isinstance(x, list)``. Typed sequence fields hold tuples instead."""

    __slots__ = ()

    def _immutable(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is immutable")

    __setitem__ = __delitem__ = _immutable
    append = extend = insert = remove = pop = clear = sort = reverse = _immutable

    def __iadd__(self, other: object) -> NoReturn:  # type: ignore[misc]
        self._immutable()

    def __imul__(self, other: object) -> NoReturn:
        self._immutable()

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self))

    def __reduce__(self) -> tuple[type[FrozenList[_V]], tuple[list[_V]]]:
        return (type(self), (list(self),))


def freeze(value: Any, *, nested: bool = False) -> Any:
    """``value`` with every dict made a :class:`FrozenDict` and every list a tuple (or, inside
    a mapping, a :class:`FrozenList`), all the way down; dataclasses and other values are
    returned as they are."""
    if isinstance(value, FrozenDict) or (nested and isinstance(value, FrozenList)):
        return value
    if isinstance(value, Mapping):
        return FrozenDict({k: freeze(v, nested=True) for k, v in value.items()})
    if isinstance(value, list) and nested:
        return FrozenList(freeze(v, nested=True) for v in value)
    if isinstance(value, list | tuple):
        frozen = tuple(freeze(v, nested=nested) for v in value)
        # a tuple whose items were all immutable already is returned as it was
        if isinstance(value, tuple) and all(a is b for a, b in zip(frozen, value, strict=True)):
            return value
        return frozen
    return value


def frozen_dict(items: Mapping[_K, _V] | Iterable[tuple[_K, _V]] = ()) -> FrozenDict[_K, _V]:
    """A :class:`FrozenDict` of ``items``, nested values frozen too (for field defaults)."""
    result: FrozenDict[_K, _V] = freeze(dict(items))
    return result


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class _Model:
    def __post_init__(self) -> None:
        # Frozen means frozen all the way down: a dict given for a Mapping field becomes a
        # FrozenDict, a list given for a tuple field a tuple, so every model can be hashed.
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            frozen = freeze(value)
            if frozen is not value:
                object.__setattr__(self, f.name, frozen)

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
class Mount(_Model):
    """A volume or bind mount: docker's ``-v`` forms.

    ``type`` is ``volume`` (``source`` is a volume name; empty for an anonymous volume) or
    ``bind`` (``source`` is a host path). In :class:`ContainerInfo`, ``source`` is where the
    engine keeps the data on the host and ``name`` the volume's name.
    """

    target: str
    source: str = ""
    type: str = "volume"
    read_only: bool = False
    name: str = ""

    def __str__(self) -> str:
        source = self.name or self.source
        text = f"{source}:{self.target}" if source else self.target
        return f"{text}:ro" if self.read_only else text

    @classmethod
    def parse(cls, text: str) -> Mount:
        """Docker's ``-v`` forms: ``/data``, ``NAME:/data``, ``/host:/data``, each with ``:ro``.

        Raises:
            ValueError: the text is none of those forms.
        """
        parts = text.split(":")
        read_only = False
        if len(parts) > 1 and parts[-1] in ("ro", "rw"):
            read_only = parts.pop() == "ro"
        if len(parts) == 1:
            source, target = "", parts[0]
        elif len(parts) == 2:
            source, target = parts
        else:
            raise ValueError(f"too many ':' in {text!r}")
        if not target.startswith("/"):
            raise ValueError(f"the container path must be absolute in {text!r}")
        if source.startswith("/"):
            return cls(target=target, source=source, type="bind", read_only=read_only)
        if source and not source[0].isalnum():
            raise ValueError(f"bad volume name {source!r}")
        return cls(target=target, source=source, type="volume", read_only=read_only, name=source)


@dataclass(frozen=True)
class Ulimit(_Model):
    """One resource limit: ``--ulimit nofile=1024:2048``."""

    name: str
    soft: int
    hard: int

    def __str__(self) -> str:
        return f"{self.name}={self.soft}:{self.hard}"

    @classmethod
    def parse(cls, text: str) -> Ulimit:
        """``NAME=SOFT[:HARD]``.

        Raises:
            ValueError: the text is not of that form.
        """
        name, eq, values = text.partition("=")
        soft, _, hard = values.partition(":")
        hard = hard or soft
        if not eq or not name or not soft.lstrip("-").isdigit() or not hard.lstrip("-").isdigit():
            raise ValueError(f"use NAME=SOFT[:HARD] in {text!r}")
        return cls(name=name, soft=int(soft), hard=int(hard))


@dataclass(frozen=True)
class NetworkAttachment(_Model):
    """A network a container is on, with its address there."""

    name: str
    ip_address: str = ""
    gateway: str = ""
    mac_address: str = ""


@dataclass(frozen=True)
class ContainerSpec(_Model):
    """What to create: the engine-neutral subset of ``docker run`` / ``podman run``."""

    image: str
    command: tuple[str, ...] = ()
    name: str | None = None
    env: Mapping[str, str] = field(default_factory=frozen_dict)
    ports: tuple[PortMapping, ...] = ()
    labels: Mapping[str, str] = field(default_factory=frozen_dict)
    network: str | None = None
    hostname: str | None = None
    working_dir: str | None = None
    user: str | None = None
    runtime: str | None = None
    volumes: tuple[Mount, ...] = ()
    restart: str | None = None
    """``no``, ``always``, ``unless-stopped`` or ``on-failure[:MAX]``."""
    memory: int | None = None
    """Memory limit in bytes."""
    cpus: float | None = None
    """CPU limit in CPUs (1.5 = one and a half)."""
    ulimits: tuple[Ulimit, ...] = ()
    auto_remove: bool = False
    """The engine removes the container when it exits (``--rm``)."""
    tty: bool = False
    """Give the main process a pseudo-terminal (``-t``)."""
    stdin_open: bool = False
    """Keep the main process's stdin open for an attached client (``-i``)."""
    stdin_once: bool = False
    """Close that stdin when the first attached client's input ends (``docker run -i``
    attached: ``echo hi | ctk run -i IMAGE cat`` ends when echo does)."""


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
    labels: Mapping[str, str] = field(default_factory=frozen_dict)
    engine: str = ""
    env: Mapping[str, str] = field(default_factory=frozen_dict)
    working_dir: str = ""
    user: str = ""
    hostname: str = ""
    restart_policy: str = "no"
    networks: tuple[NetworkAttachment, ...] = ()
    mounts: tuple[Mount, ...] = ()
    started_at: str = ""
    """ISO 8601 in UTC; empty when never started."""
    finished_at: str = ""
    """ISO 8601 in UTC; empty when it never exited."""
    exit_code: int = 0
    paused: bool = False
    memory: int = 0
    """Memory limit in bytes; 0 for none."""
    cpus: float = 0.0
    """CPU limit in CPUs; 0 for none."""
    auto_remove: bool = False
    tty: bool = False
    """The main process has a pseudo-terminal (``-t``)."""
    checkpoints: tuple[str, ...] = ()
    """Checkpoints ctk made of this container that it still records, oldest first."""

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass(frozen=True)
class ExecResult(_Model):
    """What a command run inside a container said, and how it ended."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""


@dataclass(frozen=True)
class ProcessList(_Model):
    """``top``: the processes of a container, as ``ps`` columns."""

    container: str
    titles: tuple[str, ...] = ()
    processes: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class ContainerStats(_Model):
    """One sample of a container's resource use."""

    id: str
    name: str
    cpu_percent: float = 0.0
    """Of one CPU, like ``docker stats``: 200.0 is two CPUs busy."""
    memory_usage: int = 0
    """Bytes, without the page cache (as ``docker stats`` reports it)."""
    memory_limit: int = 0
    memory_percent: float = 0.0
    pids: int = 0


_CHECKPOINT_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")


def validate_checkpoint_name(name: str) -> None:
    """Refuse a checkpoint name that either engine would refuse or mangle.

    Raises:
        InvalidArgument: empty, longer than 128, or other than letters, digits, '_', '.', '-'
            (starting with a letter or digit).
    """
    if not _CHECKPOINT_NAME.fullmatch(name):
        raise InvalidArgument(
            f"invalid checkpoint name {name!r}",
            hint="checkpoint names are up to 128 letters, digits, '_', '.', '-'",
        )


@dataclass(frozen=True)
class CheckpointOptions(_Model):
    """How to checkpoint. ``name`` None lets ctk pick a timestamped one.

    Raises:
        InvalidArgument: ``name`` is not a valid checkpoint name (``""`` included): checked
            here, so that every engine refuses it the same way before looking anything up.
    """

    name: str | None = None
    leave_running: bool = False
    tcp_established: bool = False
    file_locks: bool = False

    def __post_init__(self) -> None:
        if self.name is not None:
            validate_checkpoint_name(self.name)


@dataclass(frozen=True)
class RestoreOptions(_Model):
    """How to restore. ``checkpoint`` None means the latest checkpoint of the container.

    Raises:
        InvalidArgument: ``checkpoint`` is not a valid checkpoint name (``""`` included).
    """

    checkpoint: str | None = None
    tcp_established: bool = False
    file_locks: bool = False
    _: KW_ONLY
    tcp_close: bool = False
    """Restore established TCP connections closed (CRIU's ``tcp-close``): for a checkpoint
    taken with ``tcp_established`` whose peers are gone."""

    def __post_init__(self) -> None:
        if self.checkpoint is not None:
            validate_checkpoint_name(self.checkpoint)


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
    runtime_version: str = ""
    """The default runtime's version as the engine's host reports it ("" when it does not)."""
    runtime_path: str = ""
    """The default runtime's program on the engine's host, as the engine names it ("" unknown)."""


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


@dataclass(frozen=True)
class NetworkSpec(_Model):
    """What network to create: the engine-neutral subset of ``docker network create``.

    ``attachable`` matters only for Docker overlay networks (standalone containers may join);
    Podman's networks are always joinable.
    """

    name: str
    driver: str = "bridge"
    subnet: str | None = None
    gateway: str | None = None
    internal: bool = False
    attachable: bool = False
    labels: Mapping[str, str] = field(default_factory=frozen_dict)


@dataclass(frozen=True)
class NetworkEndpoint(_Model):
    """One container attached to a network, with its address there."""

    container_id: str
    name: str
    ipv4: str = ""
    mac: str = ""
    ipv6: str = ""

    @property
    def ip(self) -> str:
        """The IPv4 address without its prefix length (``10.88.0.5``)."""
        return self.ipv4.partition("/")[0]


@dataclass(frozen=True)
class NetworkInfo(_Model):
    """A network as ctk reports it, the same keys on every engine."""

    id: str
    name: str
    driver: str
    scope: str = "local"
    subnet: str = ""
    gateway: str = ""
    internal: bool = False
    attachable: bool = False
    labels: Mapping[str, str] = field(default_factory=frozen_dict)
    containers: tuple[NetworkEndpoint, ...] = ()
    created: str = ""
    engine: str = ""

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def endpoint(self, container: str) -> NetworkEndpoint | None:
        """The attachment of a container (by name or ID prefix), or None."""
        for item in self.containers:
            if container in (item.name, item.container_id) or (
                len(container) >= 12 and item.container_id.startswith(container)
            ):
                return item
        return None


COMPRESSIONS = ("zstd", "gzip", "none")
"""Compressions a ctk checkpoint archive can use; zstd is the default."""


@dataclass(frozen=True)
class ExportOptions(_Model):
    """How to checkpoint a container into an archive file.

    ``checkpoint`` holds the CRIU switches (name, leave_running, tcp_established, file_locks);
    ``compression`` is one of :data:`COMPRESSIONS`; ``sign_key`` is an ed25519 private key
    file: the archive then carries a signature over its manifest (README: Signatures).
    """

    checkpoint: CheckpointOptions = CheckpointOptions()
    compression: str = "zstd"
    _: KW_ONLY
    sign_key: str | None = None
    ignore_rootfs: bool = False
    """Leave the container's rootfs changes out of the archive (``--ignore-rootfs``): an
    import then starts from the image's files, with the checkpoint's processes."""
    ignore_volumes: bool = False
    """Leave the data of the container's volumes out (``--ignore-volumes``): the archive lists
    the volumes and says their data was left out; an import mounts volumes of those names
    (empty ones when missing)."""
    allow_mounts: tuple[str, ...] = ()
    """Host paths the container bind-mounts that the archive may name (``--allow-mount``):
    their content is not carried, the importing host must have it. Without this a bind mount
    is refused before the container is frozen."""


@dataclass(frozen=True)
class ImportOptions(_Model):
    """How to restore a container from an archive file.

    ``name`` None keeps the archived container's name; another name makes a clone that can run
    beside the original. ``ports`` replaces the archived port mappings when not empty.
    ``verify_keys`` (ed25519 public key files): the archive must be signed by one of them;
    when empty, the config file's ``[trust]`` section decides.
    """

    name: str | None = None
    tcp_established: bool = False
    file_locks: bool = False
    ignore_static_ip: bool = False
    ports: tuple[PortMapping, ...] = ()
    _: KW_ONLY
    verify_keys: tuple[str, ...] = ()
    allow_mounts: tuple[str, ...] = ()
    """Host paths the archive's container may bind-mount (and what lies below): ``--allow-mount``.

    An archive's checksums (or a signature) say nothing about what its payload asks of this
    host, so its bind mounts are refused unless the importing user names them. Its volumes
    need no such choice: ctk creates them new (a clash is a conflict)."""
    allow_host_network: bool = False
    """Let the archive's container share this host's network namespace (``network=host``):
    ``--allow-host-network``. Refused otherwise, whoever signed the archive."""
    ignore_rootfs: bool = False
    """Do not apply the archive's rootfs changes (``--ignore-rootfs``)."""
    tcp_close: bool = False
    """Restore established TCP connections closed (see :class:`RestoreOptions`)."""
    ignore_volumes: bool = False
    """Do not restore the archive's volume data (``--ignore-volumes``): the container mounts
    the volumes of those names that exist here, and new empty ones for the others."""
    reuse_volumes: bool = False
    """Mount the volumes of the archive's names (anonymous ones too) that exist here as they
    are, and restore only the missing ones from the archive: how a failed migration brings its
    source back from its own archive, beside its own volumes."""


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
    spec: Mapping[str, Any] = field(default_factory=frozen_dict)
    members: tuple[ArchiveMember, ...] = ()
    engine_data: Mapping[str, Any] = field(default_factory=frozen_dict)
    kernel: str = ""
    volumes_ignored: bool = False
    """The export left the volumes' data out (``--ignore-volumes``): ``spec.volumes`` lists
    them, no member holds their data."""

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
    timings: Mapping[str, float] = field(default_factory=frozen_dict)
    criu_stats: Mapping[str, int] = field(default_factory=frozen_dict)


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
    namespaces: Mapping[str, int] = field(default_factory=frozen_dict)
    hostname: str = ""
    criu_version: str = ""
    kernel: str = ""
    stats: Mapping[str, int] = field(default_factory=frozen_dict)
    manifest: ArchiveManifest | None = None
    external_mounts: tuple[str, ...] = ()
    """Mount points CRIU expects the restoring runtime to provide (runc's external mounts)."""


@dataclass(frozen=True)
class RegionDiff(_Model):
    """How one memory region (VMA) of a process differs between two checkpoints, in pages.

    ``changed`` pages are dumped in both with other contents; ``added``/``removed`` are dumped
    in only the second/first. ``compared`` is False when the page contents were not available
    (no pages-*.img), so only the page lists were compared.
    """

    pid: int
    region: str
    start: int
    end: int
    changed: int = 0
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    compared: bool = True


@dataclass(frozen=True)
class CheckpointDiff(_Model):
    """What changed from checkpoint ``a`` to checkpoint ``b`` (``ctk checkpoint diff``).

    Processes are matched by PID and command; ``same_tree`` says whether both trees have the
    same shape (each process's command under its parent's command, counted). Memory totals are
    in pages of ``page_size`` bytes; files and sockets as ``PID fd:target`` and socket lines.
    """

    a: str
    b: str
    page_size: int
    same_tree: bool
    processes_kept: tuple[ImageProcess, ...] = ()
    processes_added: tuple[ImageProcess, ...] = ()
    processes_removed: tuple[ImageProcess, ...] = ()
    regions: tuple[RegionDiff, ...] = ()
    pages_changed: int = 0
    pages_added: int = 0
    pages_removed: int = 0
    pages_unchanged: int = 0
    contents_compared: bool = True
    files_added: tuple[str, ...] = ()
    files_removed: tuple[str, ...] = ()
    sockets_added: tuple[str, ...] = ()
    sockets_removed: tuple[str, ...] = ()
    bytes_changed: int = 0
    bytes_added: int = 0
    bytes_removed: int = 0


# How a migration moves the processes: live (CRIU), cold (stop, start), auto (live if it can).
MIGRATION_MODES = ("auto", "live", "cold", "postcopy")
MIGRATION_PHASES = ("preflight", "image", "dump", "transfer", "restore", "verify")
"""The phases of a migration, in order; :class:`MigrationReport` times each."""


@dataclass(frozen=True)
class MigrationReport(_Model):
    """What a migration did: mode and why, per-phase seconds, bytes, downtime, outcome.

    ``status`` is ``done``, ``rolled_back`` (failed after the source was frozen; the source
    runs again) or ``failed`` (failed and could not be rolled back: see ``rolled_back`` and
    ``archive``). ``downtime`` is source frozen -> destination running, in seconds.
    ``archive`` is the kept checkpoint archive (or rootfs changes) when the migration did not
    complete, else empty.
    """

    id: str
    container: str
    target: str
    source: str
    destination: str
    mode: str
    reason: str
    status: str
    timings: Mapping[str, float] = field(default_factory=frozen_dict)
    image_bytes: int = 0
    archive_bytes: int = 0
    downtime: float = 0.0
    failed_phase: str = ""
    error: str = ""
    rolled_back: tuple[str, ...] = ()
    archive: str = ""
    source_kept: bool = False
    result: ContainerInfo | None = None
    notes: tuple[str, ...] = ()
    criu_stats: Mapping[str, Mapping[str, int]] = field(default_factory=frozen_dict)
    """CRIU's own ``dump`` and ``restore`` statistics (microseconds) where the engines keep
    them (Podman on this machine); the yardstick for the downtime."""

    @property
    def bytes_moved(self) -> int:
        return self.image_bytes + self.archive_bytes


@dataclass(frozen=True)
class DrainReport(_Model):
    """One ``drain``: a report per container that was tried, and the errors of the others."""

    source: str
    destination: str
    reports: tuple[MigrationReport, ...] = ()
    errors: Mapping[str, str] = field(default_factory=frozen_dict)

    @property
    def ok(self) -> bool:
        return not self.errors and all(r.status == "done" for r in self.reports)


@dataclass(frozen=True)
class RuntimeConfig(_Model):
    """How the engine runs a container, from its inspect: what a cross-runtime move checks.

    ``runtime`` is the OCI runtime (``runc``); ``network_mode`` the host config's network mode
    ("" when unset); ``hostname`` the container's own; ``mounts`` its volumes and bind mounts
    in the engine's order (``type`` as the engine says: ``bind``, ``volume``, ...);
    ``auto_remove`` whether it was started with ``--rm`` (``HostConfig.AutoRemove``);
    ``annotations`` its OCI annotations (runc reads ``org.criu.config`` there); ``state_dir``
    and ``upper_dir`` the engine's directory for the container and its overlay upper layer
    on the engine's host ("" where the engine does not say); ``pid`` its first process as the
    engine's host numbers it (0 when not running).
    """

    runtime: str = "runc"
    network_mode: str = ""
    hostname: str = ""
    mounts: tuple[Mount, ...] = ()
    auto_remove: bool = False
    annotations: dict[str, str] = field(default_factory=dict)
    state_dir: str = ""
    upper_dir: str = ""
    pid: int = 0


@dataclass(frozen=True)
class ImageLayer(_Model):
    """One step of an image's history (``docker history``): the instruction that made it
    and the bytes it added (0 for a metadata-only step such as CMD or LABEL)."""

    id: str
    """The image ID of this step, or ``<missing>`` for steps built elsewhere."""
    created_by: str
    size: int
    created: str = ""
    """ISO 8601 in UTC."""
    tags: tuple[str, ...] = ()
    comment: str = ""


@dataclass(frozen=True)
class ImageInfo(_Model):
    """An image as ctk reports it, the same keys on every engine.

    ``layers`` is the stack of read-only layers (``RootFS.Layers``, diff IDs), base first;
    two images built on the same base share its leading entries.
    """

    id: str
    tags: tuple[str, ...] = ()
    created: str = ""
    size: int = 0
    labels: Mapping[str, str] = field(default_factory=frozen_dict)
    layers: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    architecture: str = ""
    os: str = ""
    engine: str = ""

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class PushResult(_Model):
    """What ``ctk push`` sent: the reference, the local image ID and the registry's
    manifest digest (empty when the engine does not report it)."""

    reference: str
    id: str
    digest: str = ""


@dataclass(frozen=True)
class BuildResult(_Model):
    """What ``ctk build`` made: the image's ID, its tags and the builder's output lines."""

    id: str
    tags: tuple[str, ...] = ()
    log: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileChange(_Model):
    """One path of a container's read-write layer against its image (``docker diff``):
    ``kind`` is ``A`` (added), ``C`` (changed) or ``D`` (deleted)."""

    kind: str
    path: str


@dataclass(frozen=True)
class VolumeInfo(_Model):
    """A named volume as ctk reports it, the same keys on every engine."""

    name: str
    driver: str = "local"
    mountpoint: str = ""
    created: str = ""
    labels: Mapping[str, str] = field(default_factory=frozen_dict)
    scope: str = "local"
    engine: str = ""


@dataclass(frozen=True)
class EngineEvent(_Model):
    """One engine event (``docker events``): a container, image, volume or network that was
    created, started, died, removed, ... ``name`` is the actor's name where the engine says it."""

    type: str
    action: str
    id: str
    time: str
    """ISO 8601 in UTC."""
    name: str = ""
    attributes: Mapping[str, str] = field(default_factory=frozen_dict)
