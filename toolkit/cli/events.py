"""``ctk events``: the engine's event stream, filtered, as text or JSON lines."""

from __future__ import annotations

import json

import click

from toolkit.backends.base import Events
from toolkit.cli._common import json_option, state, wants_json
from toolkit.cli.parsing import parse_since
from toolkit.errors import InvalidArgument, Unsupported


@click.command()
@click.option("--since", help="Start at this time (epoch seconds, 10m, ISO 8601). Default: now.")
@click.option("--until", help="Stop at this time; without it, follow until interrupted.")
@click.option(
    "-f",
    "--filter",
    "filters",
    multiple=True,
    help="KEY=VALUE, as docker's: container=NAME, type=container, event=start, label=K=V.",
)
@json_option
def events(since: str | None, until: str | None, filters: tuple[str, ...]) -> None:
    """Print the engine's events (one a line; --json: one JSON object a line)."""
    backend = state().backend()
    if not isinstance(backend, Events):
        raise Unsupported(f"{backend.kind} has no event stream in ctk")
    grouped: dict[str, list[str]] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"bad --filter {item!r}", hint="use --filter KEY=VALUE")
        grouped.setdefault(key, []).append(value)
    stream = backend.events(
        since=parse_since(since) if since else None,
        # the same forms: a duration means that long before now
        until=parse_since(until) if until else None,
        filters=grouped or None,
    )
    for event in stream:
        if wants_json():
            click.echo(json.dumps(event.to_dict(), sort_keys=True))
        else:
            actor = f"{event.id[:12]} ({event.name})" if event.name else event.id[:12]
            click.echo(f"{event.time} {event.type} {event.action} {actor}")
