"""Checkpoint many containers at once with bounded parallelism.

CRIU's dump of one container leaves the CPU idle while the engine and runc set it up and write
its files; overlapping a few dumps uses that time. Failures are reported per container and never
stop the others.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from toolkit import operations
from toolkit.backends.base import Backend
from toolkit.errors import CtkError, InvalidArgument
from toolkit.models import CheckpointOptions, _Model


@dataclass(frozen=True)
class BatchResult(_Model):
    """The outcome of one container's checkpoint in a batch."""

    container: str
    ok: bool
    checkpoint: str = ""
    error: str = ""
    seconds: float = 0.0


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
    if parallel < 1:
        raise InvalidArgument(f"parallel must be at least 1, not {parallel}")

    def one(name: str) -> BatchResult:
        start = time.perf_counter()
        try:
            cp = operations.checkpoint(backend, name, options)
        except CtkError as exc:
            return BatchResult(name, False, error=exc.message, seconds=time.perf_counter() - start)
        return BatchResult(name, True, checkpoint=cp.name, seconds=time.perf_counter() - start)

    if parallel == 1:
        return [one(n) for n in names]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(one, names))
