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
    NotFound,
    Unsupported,
)
from toolkit.models import (
    Checkpoint,
    CheckpointOptions,
    ContainerInfo,
    ContainerSpec,
    ContainerStats,
    EngineInfo,
    ExecResult,
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
    "EngineError",
    "EngineInfo",
    "EngineRef",
    "EngineUnavailable",
    "ExecResult",
    "ExitCode",
    "ImageNotFound",
    "InvalidArgument",
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
    "get_backend",
    "lookup_engine",
    "parse_engine",
    "resolve_engine",
]
