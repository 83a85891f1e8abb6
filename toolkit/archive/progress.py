"""A progress hook for the archive layer: the writer and the reader report payload bytes.

The CLI draws a bar from it (toolkit.cli._common.archive_progress); the library knows nothing
of terminals. A contextvar, so that the hook reaches write_archive/open_archive through the
backends without a parameter on every call between, and stays with its own thread of work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class Reporter:
    """Called as the payload moves: ``start(description, total bytes)``, then ``advance(n)``."""

    start: Callable[[str, int], None]
    advance: Callable[[int], None]


_current: ContextVar[Reporter | None] = ContextVar("ctk_archive_progress", default=None)


@contextmanager
def reporting(reporter: Reporter) -> Iterator[None]:
    """Report the archive payload written or read inside the block to ``reporter``."""
    token = _current.set(reporter)
    try:
        yield
    finally:
        _current.reset(token)


def start(description: str, total: int) -> None:
    """A transfer of ``total`` payload bytes begins (no-op without a reporter)."""
    reporter = _current.get()
    if reporter is not None:
        reporter.start(description, total)


def advance(size: int) -> None:
    """``size`` more payload bytes written or read (no-op without a reporter)."""
    reporter = _current.get()
    if reporter is not None:
        reporter.advance(size)
