"""Checkpoint and restore many containers at once (``ctk checkpoint --all``, ``restore --all``).

CRIU's dump of one container leaves the CPU idle while the engine and runc set it up and write
its files; overlapping a few dumps uses that time. Failures are reported per container and never
stop the others; :func:`failure` turns them into one error for the caller to raise.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from toolkit import operations
from toolkit.backends.base import Backend
from toolkit.errors import ContainerNotFound, CtkError, ExitCode, InvalidArgument, PartialFailure
from toolkit.models import CheckpointOptions, ContainerInfo, RestoreOptions, _Model


@dataclass(frozen=True)
class BatchResult(_Model):
    """The outcome of one container's checkpoint (or restore) in a batch.

    ``checkpoint`` is the checkpoint taken (or restored from); on failure ``error`` is the
    one-line reason and ``exit_code`` the code ctk exits with for it alone.
    """

    container: str
    ok: bool
    checkpoint: str = ""
    error: str = ""
    seconds: float = 0.0
    exit_code: int = ExitCode.OK


def _run(names: Sequence[str], one: Callable[[str], str], parallel: int) -> list[BatchResult]:
    """``one(name)`` for every name, at most ``parallel`` at a time; results in name order."""
    if parallel < 1:
        raise InvalidArgument(f"parallel must be at least 1, not {parallel}")

    def timed(name: str) -> BatchResult:
        start = time.perf_counter()
        try:
            done = one(name)
        except CtkError as exc:
            return BatchResult(
                name,
                False,
                error=exc.message,
                seconds=time.perf_counter() - start,
                exit_code=exc.exit_code,
            )
        return BatchResult(name, True, checkpoint=done, seconds=time.perf_counter() - start)

    if parallel == 1 or len(names) < 2:
        return [timed(n) for n in names]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(timed, names))


def checkpoint_many(
    backend: Backend,
    names: Sequence[str],
    options: CheckpointOptions,
    *,
    parallel: int = 4,
) -> list[BatchResult]:
    """Checkpoint every named container, at most ``parallel`` at a time.

    Returns one result per name, in the order given.

    Raises:
        InvalidArgument: ``parallel`` is below 1.
    """
    return _run(names, lambda name: operations.checkpoint(backend, name, options).name, parallel)


def _label_filters(labels: Mapping[str, str] | None) -> dict[str, list[str]] | None:
    if not labels:
        return None
    return {"label": [f"{k}={v}" if v else k for k, v in labels.items()]}


def checkpoint_all(
    backend: Backend,
    options: CheckpointOptions,
    *,
    labels: Mapping[str, str] | None = None,
    parallel: int = 2,
    before: Callable[[ContainerInfo], None] | None = None,
    failed: Callable[[ContainerInfo], None] | None = None,
) -> list[BatchResult]:
    """Checkpoint every running container (with all of ``labels``), like ``podman container
    checkpoint --all``; one result per container, sorted by name.

    ``before(info)`` runs ahead of each container's checkpoint and ``failed(info)`` after a
    failed one (the CLI tells ``ctk watch`` that the stop is on purpose, and takes it back).

    Raises:
        InvalidArgument: a bad label filter, or ``parallel`` below 1.
    """
    running = sorted(backend.containers(filters=_label_filters(labels)), key=lambda c: c.name)
    by_name = {c.name: c for c in running}

    def one(name: str) -> str:
        info = by_name[name]
        if before is not None:
            before(info)
        try:
            return operations.checkpoint(backend, name, options).name
        except CtkError:
            if failed is not None:
                failed(info)
            raise

    return _run(list(by_name), one, parallel)


_MOMENT = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


def _moment(text: str) -> datetime | None:
    """An engine's or ctk's time (nanoseconds cut to microseconds); None for none or Go's zero."""
    match = _MOMENT.match(text.strip())
    if not match or text.startswith("0001-01-01"):
        return None
    fraction = (match.group(2) or "0")[:6].ljust(6, "0")
    zone = match.group(3) or "Z"
    return datetime.fromisoformat(f"{match.group(1)}.{fraction}{'+00:00' if zone == 'Z' else zone}")


def stopped_by_checkpoint(finished_at: str, checkpoint_created: str) -> bool:
    """Whether a stopped container's last stop was the dump of its latest checkpoint.

    ctk records a checkpoint once the engine's dump returned, so a dump that stopped the
    container ended it (``finished_at``) before the record's time; a container stopped or
    crashed after a ``--leave-running`` checkpoint ended later, and ``restore --all`` leaves
    it alone (podman's ``restore --all`` takes only the containers in its Checkpointed state).
    With either time unknown (a checkpoint ctk did not make), it counts as checkpointed.
    """
    finished, created = _moment(finished_at), _moment(checkpoint_created)
    if finished is None or created is None:
        return True
    return finished <= created + _CLOCK_SLACK


# Engine and ctk read the same clock; this absorbs rounding, not skew.
_CLOCK_SLACK = timedelta(seconds=1)


def restorable(backend: Backend, labels: Mapping[str, str] | None = None) -> list[str]:
    """Names of the containers (with all of ``labels``) that a checkpoint stopped and that hold
    it still (see :func:`stopped_by_checkpoint`): what ``restore --all`` restores, by name."""
    found: list[str] = []
    for info in backend.containers(all=True, filters=_label_filters(labels)):
        if info.running:
            continue
        try:
            held = backend.checkpoints(info.name)
            if held and stopped_by_checkpoint(
                backend.exit_status(info.name).finished_at, held[-1].created
            ):
                found.append(info.name)
        except ContainerNotFound:
            continue  # removed meanwhile
    return sorted(found)


def restore_all(
    backend: Backend,
    options: RestoreOptions,
    *,
    labels: Mapping[str, str] | None = None,
    parallel: int = 2,
) -> list[BatchResult]:
    """Restore every container that a checkpoint stopped (with all of ``labels``; see
    :func:`restorable`) from its latest checkpoint (or ``options.checkpoint``), like
    ``podman container restore --all``.

    Raises:
        InvalidArgument: a bad label filter, or ``parallel`` below 1.
    """

    def one(name: str) -> str:
        chosen = options.checkpoint
        if chosen is None:
            held = backend.checkpoints(name)
            chosen = held[-1].name if held else None
        operations.restore(backend, name, options)
        return chosen or ""

    return _run(restorable(backend, labels), one, parallel)


def failure(results: Sequence[BatchResult], *, action: str) -> PartialFailure | None:
    """One error naming every container whose ``action`` failed, or None when none did.

    Its exit code is theirs when they share one, else 1.
    """
    failed = [r for r in results if not r.ok]
    if not failed:
        return None
    codes = {r.exit_code for r in failed}
    code = codes.pop() if len(codes) == 1 else ExitCode.ERROR
    detail = "; ".join(f"{r.container}: {r.error}" for r in failed)
    return PartialFailure(
        f"{action} failed for {len(failed)} of {len(results)} containers ({detail})",
        exit_code=code,
        hint="the others are done; fix these and run them by name",
    )
