"""The whole ctk error tree.

Every error ctk raises on purpose is a :class:`CtkError`: a one-line message, a hint that says
what to do about it, and the process exit code the CLI uses. Backends translate SDK and HTTP
errors into this tree in one place each (by status code and exception class); nothing here
imports an SDK.
"""

from __future__ import annotations


class ExitCode:
    """Documented exit codes of the ``ctk`` command (see README)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    ENGINE_UNAVAILABLE = 3
    NOT_FOUND = 4
    CONFLICT = 5
    UNSUPPORTED = 6
    CHECKPOINT_FAILED = 7
    ARCHIVE_INVALID = 8
    NOT_READY = 9
    MIGRATION_FAILED = 10


class CtkError(Exception):
    """Base of every error ctk raises deliberately."""

    exit_code: int = ExitCode.ERROR
    default_hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message


class InvalidArgument(CtkError):
    """The caller passed something ctk cannot use (a bad name, URL, option value)."""

    exit_code = ExitCode.USAGE


class EngineUnavailable(CtkError):
    """The selected engine does not answer."""

    exit_code = ExitCode.ENGINE_UNAVAILABLE
    default_hint = "start the engines with: scripts/engines start"


class RegistryUnavailable(EngineUnavailable):
    """The registry a pull or push names does not answer (or speaks plain HTTP to a TLS
    client); exit code 3 like an engine that does not answer."""

    default_hint = "check the registry address and that it runs (HOST:PORT/NAME:TAG)"


class NotFound(CtkError):
    """Something named by the caller does not exist."""

    exit_code = ExitCode.NOT_FOUND


class ContainerNotFound(NotFound):
    default_hint = "list containers with: ctk ps -a"


class ImageNotFound(NotFound):
    default_hint = (
        "list images with: docker images / podman images (build the demo ones: scripts/images)"
    )


class CheckpointNotFound(NotFound):
    default_hint = "list checkpoints with: ctk checkpoint ls NAME"


class NetworkNotFound(NotFound):
    default_hint = "list networks with: ctk network ls"


class VolumeNotFound(NotFound):
    default_hint = "list volumes with: ctk volume ls"


class Conflict(CtkError):
    """The request clashes with the current state (name in use, wrong container state)."""

    exit_code = ExitCode.CONFLICT


class Unsupported(CtkError):
    """The engine (or this machine) lacks the concept the caller asked for."""

    exit_code = ExitCode.UNSUPPORTED


class CheckpointError(CtkError):
    """CRIU failed to dump or restore. ``log_tail`` holds the reason from CRIU's own log."""

    exit_code = ExitCode.CHECKPOINT_FAILED

    def __init__(self, message: str, *, hint: str | None = None, log_tail: str = "") -> None:
        super().__init__(message, hint=hint)
        self.log_tail = log_tail


class ArchiveError(CtkError):
    """A checkpoint archive is corrupt, hostile or of an unknown format."""

    exit_code = ExitCode.ARCHIVE_INVALID


class NoSpace(CtkError):
    """The file system ctk writes an archive or its staging files to is full."""

    exit_code = ExitCode.ERROR


class EngineError(CtkError):
    """The engine refused a request for a reason ctk has no finer class for."""

    exit_code = ExitCode.ERROR


class MigrationError(CtkError):
    """A migration failed after it changed something; ``report`` says what was rolled back."""

    exit_code = ExitCode.MIGRATION_FAILED

    def __init__(self, message: str, *, hint: str | None = None, report: object = None) -> None:
        super().__init__(message, hint=hint)
        self.report = report


class PartialFailure(CtkError):
    """An operation on several containers failed for some of them (``checkpoint --all``).

    The exit code is the failures' own when they all share one, else 1 (any other error).
    """

    def __init__(self, message: str, *, exit_code: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code
