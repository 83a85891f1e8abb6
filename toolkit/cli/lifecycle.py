"""The rest of docker's container verbs: create, start, restart, pause, unpause, kill, exec,
inspect, wait, top, stats. Each takes several names where docker does."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from toolkit.backends.base import Backend, ContainerLayers, Images
from toolkit.cli._common import (
    complete_containers,
    inspect_each,
    json_option,
    print_json,
    print_table,
    state,
    wants_json,
)
from toolkit.cli.containers import _each, _parse_env, build_spec, spec_options
from toolkit.errors import Conflict, ContainerNotFound, ImageNotFound
from toolkit.models import ContainerInfo, ContainerStats
from toolkit.terminal import DETACH_KEYS, exec_interactive
from toolkit.terminal import attach as attach_to


@click.command(context_settings={"allow_interspersed_args": False})
@spec_options
@click.argument("image")
@click.argument("command", nargs=-1)
@json_option
def create(image: str, command: tuple[str, ...], **options: Any) -> None:
    """Create a container from IMAGE without starting it; prints its ID."""
    spec = build_spec(image, command, options)  # bad input fails before the engine is asked
    info = state().backend().create(spec)
    if wants_json():
        print_json(info.to_dict())
    else:
        click.echo(info.id)


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=complete_containers)
@json_option
def start(names: tuple[str, ...]) -> None:
    """Start one or more containers (a running one is left as it is, as docker does)."""
    backend = state().backend()
    _each(names, "started", backend.start)


@click.command()
@click.option("-t", "--time", "timeout", type=int, help="Seconds to wait before killing it.")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_containers)
@json_option
def restart(timeout: int | None, names: tuple[str, ...]) -> None:
    """Restart one or more containers."""
    backend = state().backend()
    _each(names, "restarted", lambda n: backend.restart(n, timeout=timeout))


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=complete_containers)
@json_option
def pause(names: tuple[str, ...]) -> None:
    """Freeze all processes of one or more containers (state stays in memory)."""
    backend = state().backend()
    _each(names, "paused", backend.pause)


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=complete_containers)
@json_option
def unpause(names: tuple[str, ...]) -> None:
    """Thaw one or more paused containers."""
    backend = state().backend()
    _each(names, "unpaused", backend.unpause)


@click.command()
@click.option("-s", "--signal", "signal", help="Signal to send (default KILL), e.g. TERM or 15.")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_containers)
@json_option
def kill(signal: str | None, names: tuple[str, ...]) -> None:
    """Send a signal to one or more running containers."""
    backend = state().backend()
    value: str | int | None = int(signal) if signal and signal.isdigit() else signal
    _each(names, "killed", lambda n: backend.kill(n, signal=value))


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-i", "--interactive", is_flag=True, help="Pass the local stdin to the command.")
@click.option("-t", "--tty", is_flag=True, help="Give the command a pseudo-terminal.")
@click.option("-u", "--user", help="User to run the command as.")
@click.option("-w", "--workdir", help="Working directory for the command.")
@click.option("-e", "--env", multiple=True, help="Set an environment variable KEY=VALUE.")
@click.argument("name", shell_complete=complete_containers)
@click.argument("command", nargs=-1, required=True)
@json_option
def exec_(
    interactive: bool,
    tty: bool,
    user: str | None,
    workdir: str | None,
    env: tuple[str, ...],
    name: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND in running container NAME; exits with the command's exit code.

    -i passes the local stdin, -t gives it a terminal (the local one goes raw while attached).
    """
    if (interactive or tty) and not wants_json():
        code = exec_interactive(
            state().backend(),
            name,
            command,
            tty=tty,
            stdin=interactive,
            user=user,
            workdir=workdir,
            env=_parse_env(env) or None,
        )
        sys.exit(0 if code is None else code)
    result = (
        state()
        .backend()
        .exec(name, command, user=user, workdir=workdir, env=_parse_env(env) or None)
    )
    if wants_json():
        print_json(result.to_dict())
    else:
        click.echo(result.stdout, nl=False)
        click.echo(result.stderr, nl=False, err=True)
    sys.exit(result.exit_code)


@click.command()
@click.option("--no-stdin", is_flag=True, help="Do not attach stdin.")
@click.option(
    "--detach-keys",
    default=DETACH_KEYS,
    show_default=True,
    help="The keys that detach and leave the container running.",
)
@click.argument("name", shell_complete=complete_containers)
def attach(no_stdin: bool, detach_keys: str, name: str) -> None:
    """Attach the local stdin, stdout and stderr to running container NAME's main process.

    Exits with its exit code when it ends; the detach keys leave it running.
    """
    code = attach_to(state().backend(), name, stdin=not no_stdin, detach_keys=detach_keys)
    if code is None:
        click.echo(f"detached from {name}; it is still running", err=True)
    sys.exit(0 if code is None else code)


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=complete_containers)
@json_option
def inspect(names: tuple[str, ...]) -> None:
    """Details of one or more containers, as a JSON array (like docker inspect)."""
    backend = state().backend()
    inspect_each(names, lambda name: _with_layers(backend, backend.inspect(name)))


def _with_layers(backend: Backend, info: ContainerInfo) -> dict[str, Any]:
    """The container's inspect plus its layers: the image's read-only stack (base first) and
    the size of its own read-write layer on top."""
    data = info.to_dict()
    if isinstance(backend, ContainerLayers):
        data["rw_layer_size"] = backend.layer_size(info.id)
    if isinstance(backend, Images):
        try:
            data["image_layers"] = list(backend.inspect_image(info.image_id).layers)
        except ImageNotFound:
            data["image_layers"] = []  # removed with --force while the container lives on
    return data


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=complete_containers)
@json_option
def wait(names: tuple[str, ...]) -> None:
    """Block until one or more containers stop; print their exit codes."""
    backend = state().backend()
    codes = {name: backend.wait(name) for name in names}
    if wants_json():
        print_json([{"name": name, "exit_code": code} for name, code in codes.items()])
    else:
        for code in codes.values():
            click.echo(str(code))


@click.command()
@click.argument("name", shell_complete=complete_containers)
@json_option
def top(name: str) -> None:
    """The processes running in a container."""
    result = state().backend().top(name)
    if wants_json():
        print_json(result.to_dict())
    else:
        print_table(list(result.titles), [list(row) for row in result.processes])


def _size(value: int) -> str:
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.4g}{unit}"
        amount /= 1024
    return f"{amount:.4g}GiB"


def _print_stats(samples: list[ContainerStats]) -> None:
    print_table(
        ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"],
        [
            [
                s.id[:12],
                s.name,
                f"{s.cpu_percent:.2f}%",
                f"{_size(s.memory_usage)} / {_size(s.memory_limit)}",
                f"{s.memory_percent:.2f}%",
                str(s.pids),
            ]
            for s in samples
        ],
    )


def _sample(backend: Backend, name: str, *, named: bool) -> ContainerStats | None:
    try:
        return backend.stats(name)
    except (Conflict, ContainerNotFound):
        if named:
            raise
        return None  # stopped or removed since the list was taken


@click.command()
@click.option("--no-stream", is_flag=True, help="Print one sample and exit.")
@click.argument("names", nargs=-1, shell_complete=complete_containers)
@json_option
def stats(no_stream: bool, names: tuple[str, ...]) -> None:
    """CPU and memory use of containers (all running ones when none are named)."""
    backend = state().backend()
    targets = list(names) or [c.name for c in backend.containers()]
    # Streaming redraws in place on a terminal; piped, each sample follows the last. --json
    # prints one sample: a stream of JSON documents is not JSON.
    redraw = sys.stdout.isatty()
    while True:
        samples = [s for s in (_sample(backend, n, named=bool(names)) for n in targets) if s]
        if wants_json():
            print_json([s.to_dict() for s in samples])
            return
        if redraw and not no_stream:
            click.clear()
        _print_stats(samples)
        if no_stream:
            return
        time.sleep(1)
