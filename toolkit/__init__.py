"""ctk: container checkpoint/restore and lifecycle toolkit for Docker and Podman.

>>> import toolkit
>>> engine = toolkit.get_backend("docker")
>>> engine.run(toolkit.ContainerSpec(image="ctk-demo/counter", name="web1"))
>>> cp = engine.checkpoint("web1", toolkit.CheckpointOptions())
>>> engine.restore("web1", toolkit.RestoreOptions())
"""

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
    Unsupported,
)

# after the models and config: migration builds on them
from toolkit.migration import drain, migrate
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
