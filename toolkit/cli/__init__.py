"""The ``ctk`` command: a click group of thin commands over the toolkit library."""

from __future__ import annotations

import logging
import sys
import traceback
from typing import NoReturn

import click

from toolkit.cli._common import State
from toolkit.cli.checkpoints import checkpoint, restore
from toolkit.cli.completion import completion
from toolkit.cli.containers import logs, ps, rm, run, stop
from toolkit.cli.doctor import doctor
from toolkit.cli.engines import engine as engine_group
from toolkit.cli.engines import tls_options
from toolkit.cli.events import events
from toolkit.cli.images import (
    build,
    history,
    image,
    images,
    load,
    pull,
    push,
    rmi,
    save,
    tag_command,
)
from toolkit.cli.keys import key
from toolkit.cli.layers import commit, cp, diff
from toolkit.cli.lifecycle import (
    attach,
    create,
    exec_,
    inspect,
    kill,
    pause,
    restart,
    start,
    stats,
    top,
    unpause,
    wait,
)
from toolkit.cli.migrate import drain, migrate
from toolkit.cli.networks import network, port
from toolkit.cli.volumes import volume
from toolkit.cli.watch import watch
from toolkit.config import TLSOptions
from toolkit.errors import CtkError, ExitCode
from toolkit.interrupts import Interrupted
from toolkit.interrupts import install as install_signal_handlers


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--engine",
    envvar="CTK_ENGINE",
    help="docker, podman, a configured engine name (ctk engine ls) or a URL "
    "(docker+unix:///var/run/docker.sock, docker+tcp://host:2376, docker+ssh://user@host). "
    "Env: CTK_ENGINE.",
)
@click.option("--json", "json_output", is_flag=True, help="Print machine-readable JSON.")
@click.option(
    "--debug", is_flag=True, help="Show tracebacks and ctk's own log (engine calls, cleanups)."
)
@tls_options
@click.version_option(package_name="ctk")
@click.pass_context
def cli(
    ctx: click.Context,
    engine: str | None,
    json_output: bool,
    debug: bool,
    tls: TLSOptions | None,
) -> None:
    """ctk: run, checkpoint, restore and migrate containers on Docker and Podman."""
    obj = ctx.ensure_object(State)
    obj.engine = engine
    obj.json = obj.json or json_output
    obj.debug = debug
    obj.tls = tls
    if debug:
        # ctk's module loggers (toolkit.*) on stderr; without --debug only their warnings
        # (failed cleanups) show, through logging's last-resort handler.
        logging.basicConfig(format="ctk: %(name)s: %(message)s")
        logging.getLogger("toolkit").setLevel(logging.DEBUG)


for command in (run, ps, logs, stop, rm, checkpoint, restore, doctor, migrate, drain):
    cli.add_command(command)
cli.add_command(watch)
for command in (
    create,
    start,
    restart,
    pause,
    unpause,
    kill,
    exec_,
    attach,
    inspect,
    wait,
    top,
    stats,
):
    cli.add_command(command)
cli.add_command(engine_group)
cli.add_command(completion)
cli.add_command(key)

for command in (network, port):
    cli.add_command(command)
for command in (image, images, build, tag_command, rmi, diff, commit, cp, volume, events):
    cli.add_command(command)
# docker's top-level habits for these image verbs: the same click commands as under `image`
for command in (history, save, load, pull, push):
    cli.add_command(command)


_LOG_FORMAT = "ctk: %(levelname)s %(name)s: %(message)s"


def configure_logging(debug: bool) -> None:
    """ctk's module loggers (``toolkit.*``) to stderr, one line a record: warnings and
    worse by default, everything with ``--debug``. Called again (tests call ``main`` many
    times in one process), it replaces its handler rather than adding another."""
    log = logging.getLogger("toolkit")
    for handler in list(log.handlers):
        if getattr(handler, "_ctk_cli", False):
            log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    handler.setLevel(logging.DEBUG if debug else logging.WARNING)
    handler._ctk_cli = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    # The logger's own level only opens up for --debug; otherwise it is left to the root's
    # (WARNING unless a host program, or pytest's caplog, says otherwise).
    log.setLevel(logging.DEBUG if debug else logging.NOTSET)


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the CLI and turns errors into one line, a hint and an exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    configure_logging(debug)
    # SIGTERM, SIGINT and SIGHUP unwind like an exception, so every cleanup runs (a container
    # stopped by a dump is restored, a half-written archive removed) before ctk exits 128+N.
    install_signal_handlers()
    try:
        cli.main(args=argv, prog_name="ctk", standalone_mode=False)
    except CtkError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {exc.message}", err=True)
        log_tail = getattr(exc, "log_tail", "")
        if log_tail and debug:
            click.echo(log_tail, err=True)
        if exc.hint:
            click.echo(f"Hint: {exc.hint}", err=True)
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        _interrupted(exc)
    except click.exceptions.Abort as exc:
        # click turns a KeyboardInterrupt (Interrupted is one) into Abort, keeping the cause
        if isinstance(exc.__cause__, Interrupted):
            _interrupted(exc.__cause__)
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line unless debugging
        if debug:
            raise
        click.echo(f"Error: unexpected {type(exc).__name__}: {exc}", err=True)
        click.echo("Hint: rerun with --debug for the traceback, and report it", err=True)
        sys.exit(ExitCode.ERROR)
    sys.exit(ExitCode.OK)


def _interrupted(exc: Interrupted) -> NoReturn:
    click.echo(f"Interrupted by {exc}: stopped after cleaning up.", err=True)
    sys.exit(exc.exit_code)
