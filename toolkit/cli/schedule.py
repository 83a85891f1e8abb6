"""``ctk checkpoint NAME --every DURATION --keep N``: scheduled checkpoints in the foreground."""

from __future__ import annotations

import json
from pathlib import Path

import click

from toolkit.cli._common import err, state, wants_json
from toolkit.cli._foreground import stop_on_signals
from toolkit.models import CheckpointOptions
from toolkit.schedule import ScheduleEvent, ScheduleOptions, parse_duration, run_schedule


def _print_event(event: ScheduleEvent) -> None:
    if wants_json():
        # One JSON object a line: a long-running command's output stays parseable as it goes.
        click.echo(json.dumps(event.to_dict(), sort_keys=True))
    elif event.checkpoint is None:
        err(f"{event.time} run {event.run}: checkpoint failed: {event.error}")
    else:
        removed = f", removed {', '.join(event.removed)}" if event.removed else ""
        archive = f" -> {event.archive}" if event.archive else ""
        gone = (
            f", removed {len(event.removed_archives)} archive(s)" if event.removed_archives else ""
        )
        click.echo(
            f"{event.time} {event.checkpoint}{archive} (keeping {len(event.kept)}{removed}{gone})"
        )


def run_scheduled(
    name: str,
    *,
    every: str,
    keep: int | None,
    export_dir: Path | None,
    count: int | None,
    options: CheckpointOptions,
) -> None:
    """Checkpoint NAME every interval until Ctrl-C/SIGTERM (or ``count`` runs)."""
    schedule = ScheduleOptions(
        every=parse_duration(every),
        keep=keep,
        export_dir=export_dir,
        max_runs=count,
        tcp_established=options.tcp_established,
        file_locks=options.file_locks,
    )
    with stop_on_signals() as stop:
        events = run_schedule(state().backend(), name, schedule, stop=stop, on_event=_print_event)
    good = sum(1 for e in events if e.checkpoint is not None)
    if not wants_json():
        err(f"stopped after {len(events)} run(s), {good} checkpoint(s) taken")
