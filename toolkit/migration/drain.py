"""Drain an engine: migrate every matching running container, continuing past failures."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from toolkit.backends.base import Backend
from toolkit.config import reopen
from toolkit.errors import CtkError, InvalidArgument, MigrationError
from toolkit.migration.execute import migrate
from toolkit.migration.plan import engine_label
from toolkit.models import DrainReport, MigrationReport


def drain(
    source: Backend,
    dest: Backend,
    *,
    labels: Mapping[str, str] | None = None,
    parallel: int = 1,
    mode: str = "auto",
    compress: str = "zstd",
    on_result: Callable[[str, MigrationReport | None, str], None] | None = None,
) -> DrainReport:
    """Migrate every running container of ``source`` whose labels match, to ``dest``.

    Each container is migrated on its own (``parallel`` at a time, each with its own engine
    connections); a failure is recorded and the others continue. ``on_result(name, report,
    error)`` is called as each one ends.

    Raises:
        InvalidArgument: ``parallel`` below 1.
    """
    if parallel < 1:
        raise InvalidArgument("--parallel must be 1 or more")
    wanted = dict(labels or {})
    names = sorted(
        c.name for c in source.containers() if all(c.labels.get(k) == v for k, v in wanted.items())
    )

    def one(name: str) -> tuple[str, MigrationReport | None, str]:
        # the same engines, with the settings they were opened with (TLS, Podman service)
        src = reopen(source)
        dst = reopen(dest)
        try:
            done = migrate(name, source=src, dest=dst, mode=mode, compress=compress)
            outcome: tuple[str, MigrationReport | None, str] = (name, done, "")
        except MigrationError as exc:
            report = exc.report if isinstance(exc.report, MigrationReport) else None
            outcome = (name, report, exc.message)
        except CtkError as exc:
            outcome = (name, None, exc.message)
        finally:
            src.close()
            dst.close()
        if on_result is not None:
            on_result(*outcome)
        return outcome

    pool = ThreadPoolExecutor(max_workers=parallel)
    try:
        outcomes = list(pool.map(one, names))
    except BaseException:
        # Interrupted (a signal reaches the main thread only): the migrations under way end
        # as they would (done or rolled back), and no further one starts.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return DrainReport(
        source=engine_label(source),
        destination=engine_label(dest),
        reports=tuple(r for _, r, _ in outcomes if r is not None),
        errors={n: e for n, _, e in outcomes if e},
    )
