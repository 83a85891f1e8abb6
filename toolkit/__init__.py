"""ctk: container checkpoint/restore and lifecycle toolkit for Docker and Podman.

>>> import toolkit
>>> engine = toolkit.get_backend("docker")
>>> engine.run(toolkit.ContainerSpec(image="ctk-demo/counter", name="web1"))
>>> cp = engine.checkpoint("web1", toolkit.CheckpointOptions())
>>> engine.restore("web1", toolkit.RestoreOptions())
"""

from toolkit.backends.base import Backend
from toolkit.config import EngineRef, connect, get_backend, parse_engine, resolve_engine
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
    DrainReport,
    EngineInfo,
    MigrationReport,
    PortMapping,
    RestoreOptions,
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
    "CtkError",
    "DrainReport",
    "EngineError",
    "EngineInfo",
    "EngineRef",
    "EngineUnavailable",
    "ExitCode",
    "ImageNotFound",
    "InvalidArgument",
    "MigrationError",
    "MigrationReport",
    "NotFound",
    "PortMapping",
    "RestoreOptions",
    "Unsupported",
    "connect",
    "drain",
    "get_backend",
    "migrate",
    "parse_engine",
    "resolve_engine",
]
