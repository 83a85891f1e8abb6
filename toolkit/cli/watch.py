"""``ctk watch NAME --restore-on-exit``: restore a container from its latest checkpoint when it
dies unexpectedly."""

from __future__ import annotations

import json

import click

from toolkit.cli._common import err, json_option, state, wants_json
from toolkit.cli._foreground import stop_on_signals
from toolkit.errors import InvalidArgument
from toolkit.schedule import parse_duration
from toolkit.watch import WatchEvent, WatchOptions
from toolkit.watch import watch as watch_container


def _print_event(event: WatchEvent) -> None:
    if wants_json():
        click.echo(json.dumps(event.to_dict(), sort_keys=True))
    else:
        click.echo(f"{event.time} {event.kind}: {event.message}")


@click.command()
@click.argument("name")
@click.option(
    "--restore-on-exit",
    is_flag=True,
    help="Restore from the latest checkpoint when it dies unexpectedly (else only report).",
)
@click.option(
    "--max-restarts",
    type=int,
    default=3,
    show_default=True,
    help="Give up after more crashes than this within --window.",
)
@click.option(
    "--window", default="5m", show_default=True, help="Time window for --max-restarts (e.g. 60s)."
)
@click.option("--poll", default="1s", show_default=True, help="How often to look (e.g. 500ms).")
@json_option
def watch(name: str, restore_on_exit: bool, max_restarts: int, window: str, poll: str) -> None:
    """Watch container NAME in the foreground until it is stopped on purpose or removed.

    A crash is an exit other than 0 or 143 (SIGTERM), or an OOM kill; `ctk stop` and `ctk
    checkpoint` are never crashes. Ctrl-C or SIGTERM ends the watch.
    """
    if max_restarts < 0:
        raise InvalidArgument("--max-restarts must be 0 or more")
    options = WatchOptions(
        restore=restore_on_exit,
        max_restarts=max_restarts,
        window=parse_duration(window),
        poll=parse_duration(poll),
    )
    with stop_on_signals() as stop:
        events = watch_container(state().backend(), name, options, stop=stop, on_event=_print_event)
    if not wants_json():
        restored = sum(1 for e in events if e.kind == "restored")
        err(f"watch of {name} ended; {restored} restore(s)")
