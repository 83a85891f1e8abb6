"""Signals as exceptions, so that every cleanup path also runs for SIGTERM, SIGINT and SIGHUP.

The ``ctk`` command installs :func:`install`: the first SIGTERM, SIGINT or SIGHUP raises
:class:`Interrupted` in the main thread, which unwinds through the ``except BaseException`` and
``finally`` blocks that put a checkpointed container back; the CLI then exits with 128 + the
signal's number. Later signals are only recorded: a second Ctrl-C must not break off the
cleanup that the first one started (SIGKILL still ends everything).

Some engine calls must not be abandoned half-way: a checkpoint request cut off in the middle
leaves dockerd or libpod dumping (and stopping) the container after ctk has gone, with nobody
to start it again. :func:`shielded` holds a signal back until such a call has returned, when
the state is known and the cleanup can undo it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

PAUSE_ENV = "CTK_TEST_PAUSE_AT"
"""Test hook: ``CTK_TEST_PAUSE_AT=PHASE:FILE`` makes ctk print ``ctk: paused at PHASE`` on
stderr when it reaches PHASE and wait until FILE exists, so a test can signal it there."""


class Interrupted(KeyboardInterrupt):
    """A signal (SIGTERM, SIGINT, SIGHUP) broke off the operation; cleanups have run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention for a death by signal: 128 + its number."""
        return 128 + self.signum


class _State:
    def __init__(self) -> None:
        self.shield_depth = 0
        self.pending: int | None = None  # held back by a shield
        self.raised: int | None = None  # the first signal, already raised


_state = _State()


def _handler(signum: int, _frame: FrameType | None) -> None:
    if _state.raised is not None or _state.pending is not None:
        # A cleanup is running (or about to): let it finish.
        logger.warning("%s ignored: ctk is cleaning up", signal.Signals(signum).name)
        return
    if _state.shield_depth > 0:
        _state.pending = signum
        return
    _state.raised = signum
    raise Interrupted(signum)


def install() -> None:
    """Turn SIGTERM, SIGINT and SIGHUP into :class:`Interrupted` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    _state.__init__()  # type: ignore[misc]
    for signum in SIGNALS:
        signal.signal(signum, _handler)


@contextmanager
def shielded() -> Iterator[None]:
    """Hold SIGTERM/SIGINT/SIGHUP back while the block runs; raise it as it ends.

    For an engine call that changes a container and cannot be cancelled (a checkpoint): once
    it returned, the caller's cleanup knows what to undo. Nested shields raise at the outer end.

    Raises:
        Interrupted: a signal arrived while the block ran (raised after it, even if it failed).
    """
    _state.shield_depth += 1
    try:
        yield
    finally:
        _state.shield_depth -= 1
        if _state.shield_depth == 0 and _state.pending is not None:
            signum, _state.pending = _state.pending, None
            _state.raised = signum
            raise Interrupted(signum)


def pause_at(phase: str) -> None:
    """The test hook of :data:`PAUSE_ENV`: stop at ``phase`` until the test says go on."""
    wanted, _, release = os.environ.get(PAUSE_ENV, "").partition(":")
    if wanted != phase or not release:
        return
    print(f"ctk: paused at {phase} ({PAUSE_ENV})", file=sys.stderr, flush=True)
    released = threading.Event()
    while not Path(release).exists():
        # Short waits, so that a signal's exception is raised at once.
        released.wait(0.05)
