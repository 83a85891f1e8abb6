"""ctk: container checkpoint/restore and lifecycle toolkit for Docker and Podman.

>>> import toolkit
>>> engine = toolkit.get_backend("docker")
>>> engine.run(toolkit.ContainerSpec(image="ctk-demo/counter", name="web1"))
>>> cp = engine.checkpoint("web1", toolkit.CheckpointOptions())
>>> engine.restore("web1", toolkit.RestoreOptions())
"""

from typing import TYPE_CHECKING, Any

from toolkit.backends.base import Backend
from toolkit.config import (
    EngineRef,
    TLSOptions,
    connect,
    get_backend,
    lookup_engine,
    parse_engine,
    resolve_engine,
)
from toolkit.errors import (
    ArchiveError,
    CheckpointError,
    CheckpointNotFound,
    Conflict,
    ContainerNotFound,
    CtkError,
    EngineError,
    EngineUnavailable,
    ExitCode,
    ImageNotFound,
    InvalidArgument,
    MigrationError,
    NotFound,
    RegistryUnavailable,
    Unsupported,
)
from toolkit.models import (
    Checkpoint,
    CheckpointOptions,
    ContainerInfo,
    ContainerSpec,
    ContainerStats,
    DrainReport,
    EngineInfo,
    ExecResult,
    MigrationReport,
    Mount,
    NetworkAttachment,
    PortMapping,
    ProcessList,
    RestoreOptions,
    Ulimit,
)

if TYPE_CHECKING:
    from toolkit.migration.drain import drain
    from toolkit.migration.execute import migrate


def __getattr__(name: str) -> Any:
    # The migration package loads on first use: the CLI's start-up would pay for it otherwise.
    if name in ("drain", "migrate"):
        from toolkit import migration

        return getattr(migration, name)
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")


__all__ = [
    "ArchiveError",
    "Backend",
    "Checkpoint",
    "CheckpointError",
    "CheckpointNotFound",
    "CheckpointOptions",
    "Conflict",
    "ContainerInfo",
    "ContainerNotFound",
    "ContainerSpec",
    "ContainerStats",
    "CtkError",
    "DrainReport",
    "EngineError",
    "EngineInfo",
    "EngineRef",
    "EngineUnavailable",
    "ExecResult",
    "ExitCode",
    "ImageNotFound",
    "InvalidArgument",
    "MigrationError",
    "MigrationReport",
    "Mount",
    "NetworkAttachment",
    "NotFound",
    "PortMapping",
    "ProcessList",
    "RegistryUnavailable",
    "RestoreOptions",
    "TLSOptions",
    "Ulimit",
    "Unsupported",
    "connect",
    "drain",
    "get_backend",
    "lookup_engine",
    "migrate",
    "parse_engine",
    "resolve_engine",
]
