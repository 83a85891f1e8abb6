"""CRIU's restore log, copied out of containerd's shim directory while a restore runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Where the local dockerd's containerd shim runs CRIU (containerd namespace "moby"): under
# the containerd that scripts/engines starts, or under one dockerd manages itself.
_SHIM_DIRS = (
    "/run/ctk/containerd/io.containerd.runtime.v2.task/moby",
    "/var/run/docker/containerd/daemon/io.containerd.runtime.v2.task/moby",
    "/run/docker/containerd/daemon/io.containerd.runtime.v2.task/moby",
)


@contextmanager
def _watch_restore_log(container_id: str, kept: list[str], *, local: bool) -> Iterator[None]:
    """Copy CRIU's restore.log while a restore runs: containerd deletes it when CRIU fails.

    Best effort, and only for the local default daemon, whose shim directory is known.
    """
    import threading

    if not local:
        yield
        return
    paths = [Path(d) / container_id / "work" / "restore.log" for d in _SHIM_DIRS]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for path in paths:
                with contextlib.suppress(OSError):
                    text = path.read_text(errors="replace")
                    if text:
                        kept[:] = [text]
            done.wait(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=2)
