"""What every ctk command shares: the selected engine, ``--json``, and rendering."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.shell_completion import CompletionItem

from toolkit.backends.base import Backend
from toolkit.config import TLSOptions, get_backend
from toolkit.errors import CtkError, InvalidArgument

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class State:
    """Global options, stored on the click context."""

    engine: str | None = None
    json: bool = False
    debug: bool = False
    tls: TLSOptions | None = None
    _backend: Backend | None = field(default=None, repr=False)

    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = get_backend(self.engine, tls=self.tls)
        return self._backend


def transfer_progress() -> Progress:
    """A transient progress bar (bytes, rate) on stderr, disabled when stderr is no terminal
    or the output is --json: what every transfer (export, import, save, load, migration)
    shows."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=True,
        console=Console(stderr=True),
        disable=state().json or not sys.stderr.isatty(),
    )


def with_progress(
    chunks: Iterable[bytes], description: str, *, total: int | None = None
) -> Iterator[bytes]:
    """``chunks`` passed through, with :func:`transfer_progress`'s bar."""
    bar = transfer_progress()
    if bar.disable:
        yield from chunks
        return
    with bar:
        task = bar.add_task(description, total=total)
        for chunk in chunks:
            bar.advance(task, len(chunk))
            yield chunk


@contextmanager
def archive_progress() -> Iterator[None]:
    """:func:`transfer_progress`'s bar for the archive written or read inside the block (the
    archive layer reports its payload bytes through :mod:`toolkit.archive.progress`)."""
    from toolkit.archive import progress

    bar = transfer_progress()
    if bar.disable:
        yield
        return
    tasks: list[TaskID] = []

    def start(description: str, total: int) -> None:
        tasks.append(bar.add_task(description, total=total))

    def advance(size: int) -> None:
        if tasks:
            bar.advance(tasks[-1], size)

    with bar, progress.reporting(progress.Reporter(start=start, advance=advance)):
        yield


def inspect_each(names: Sequence[str], inspect: Callable[[str], Mapping[str, Any]]) -> None:
    """``ctk inspect/image inspect/volume inspect NAME...``: a JSON array of what ``inspect``
    found for each name; each name not found is reported on stderr and the last one's error is
    raised (its exit code), after the array, as docker does."""
    found, failures = [], []
    for name in names:
        try:
            found.append(inspect(name))
        except CtkError as exc:
            failures.append(exc)
    print_json(found)
    if failures:
        for failure in failures[:-1]:
            click.echo(f"Error: {failure.message}", err=True)
        raise failures[-1]


def remove_each(names: Sequence[str], remove: Callable[[str], Sequence[str]]) -> None:
    """``ctk rmi/image rm/volume rm NAME...``: what ``remove(name)`` removed, a line each (or
    ``{"removed", "errors"}`` with --json); the others go on past a failure, whose messages
    go to stderr, and the last one's error is raised (its exit code), as docker does."""
    failures: list[CtkError] = []
    done: list[str] = []
    for name in names:
        try:
            done.extend(remove(name))
        except CtkError as exc:
            failures.append(exc)
    if wants_json():
        print_json({"removed": done, "errors": [f.message for f in failures]})
    else:
        for line in done:
            click.echo(line)
    if failures:
        for failure in failures[:-1]:
            click.echo(f"Error: {failure.message}", err=True)
        raise failures[-1]


def parse_labels(values: tuple[str, ...], *, option: str = "--label") -> dict[str, str]:
    """``KEY=VALUE`` options (``--label``, ``--filter label=``) as a dict; a bare KEY is
    ``KEY=""``."""
    labels: dict[str, str] = {}
    for item in values:
        key, _, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"bad {option} value {item!r}", hint=f"use {option} KEY=VALUE")
        labels[key] = value
    return labels


def confirm_prune(question: str, *, yes: bool) -> None:
    """Ask ``question`` on stderr unless --yes/--force was given; no answer (a script's
    closed stdin) aborts, as docker's prune does without -f."""
    if not yes:
        click.confirm(question, abort=True, err=True)


def print_removed(removed: Sequence[str]) -> None:
    """A prune's result: ``{"removed": [...]}`` with --json, else one line each."""
    if state().json:
        print_json({"removed": list(removed)})
    else:
        for name in removed:
            click.echo(name)


def human_bytes(size: int) -> str:
    """``1.2 MiB``: sizes as people read them (docker prints the same units, in SI)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def state() -> State:
    ctx = click.get_current_context()
    obj = ctx.find_object(State)
    if obj is None:
        obj = ctx.ensure_object(State)
    return obj


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(State).json = True


def json_option(func: F) -> F:
    """``--json`` on a command; means the same as ``ctk --json COMMAND``."""
    return click.option(
        "--json",
        "json_output",
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        help="Print machine-readable JSON.",
    )(func)


def wants_json() -> bool:
    return state().json


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def console() -> Console:
    # rich loads here, not at start-up: most ctk calls print one line and exit.
    from rich.console import Console

    # Piped output is for scripts: never wrap a row (grep must find the whole line).
    width = None if sys.stdout.isatty() else 1000
    return Console(soft_wrap=True, highlight=False, width=width)


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from rich.table import Table

    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    console().print(table)


def err(message: str) -> None:
    click.echo(message, file=sys.stderr)


class DefaultGroup(click.Group):
    """A group whose first argument, when not a subcommand, goes to a default one.

    ``ctk checkpoint web1`` runs ``ctk checkpoint create web1`` while ``ctk checkpoint ls``
    still lists.
    """

    def __init__(self, *args: Any, default: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default_command = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args.insert(0, self.default_command)
        return super().parse_args(ctx, args)


def complete_containers(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Shell completion of container names from the selected engine (quietly none on error)."""
    try:
        root = ctx.find_root().params
        backend = get_backend(root.get("engine"))
        names = [c.name for c in backend.containers(all=True)]
    except Exception:  # completion must never print a traceback into the shell
        return []
    return [CompletionItem(name) for name in sorted(names) if name.startswith(incomplete)]


def absolute_paths(paths: tuple[str, ...]) -> tuple[str, ...]:
    """``--allow-mount`` values: host paths, absolute, made normal (no trailing slash)."""
    result = []
    for path in paths:
        if not path.startswith("/") or "\x00" in path or ".." in path.split("/"):
            raise click.BadParameter(
                f"{path!r} is not an absolute host path (volumes need no --allow-mount)",
                param_hint="--allow-mount",
            )
        result.append("/" + "/".join(p for p in path.split("/") if p not in ("", ".")))
    return tuple(result)
