"""Container lifecycle commands: run, ps, logs, stop, rm (more in lifecycle.py)."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from toolkit.backends.options import restart_policy
from toolkit.backends.validation import FILTER_KEYS
from toolkit.cli._common import (
    complete_containers,
    json_option,
    parse_labels,
    print_json,
    print_table,
    state,
    wants_json,
)
from toolkit.cli.parsing import parse_memory, parse_since
from toolkit.errors import CtkError, InvalidArgument
from toolkit.models import ContainerInfo, ContainerSpec, Mount, PortMapping, Ulimit
from toolkit.terminal import run_interactive
from toolkit.watch import record_intended_stop

F = TypeVar("F", bound=Callable[..., Any])


def _parse_env(values: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"bad -e value {item!r}", hint="use -e KEY=VALUE")
        env[key] = value if eq else os.environ.get(key, "")
    return env


def _parse_ports(values: tuple[str, ...]) -> tuple[PortMapping, ...]:
    ports = []
    for item in values:
        try:
            ports.append(PortMapping.parse(item))
        except ValueError as exc:
            raise InvalidArgument(
                f"bad -p value {item!r}: {exc}",
                hint="use -p CONTAINER, -p HOST:CONTAINER or -p IP:HOST:CONTAINER[/udp]",
            ) from exc
    return tuple(ports)


def _parse_mounts(values: tuple[str, ...]) -> tuple[Mount, ...]:
    mounts = []
    for item in values:
        try:
            mounts.append(Mount.parse(item))
        except ValueError as exc:
            raise InvalidArgument(
                f"bad -v value {item!r}: {exc}",
                hint="use -v /path, -v VOLUME:/path or -v /host/path:/path, each with :ro",
            ) from exc
    return tuple(mounts)


def _parse_ulimits(values: tuple[str, ...]) -> tuple[Ulimit, ...]:
    limits = []
    for item in values:
        try:
            limits.append(Ulimit.parse(item))
        except ValueError as exc:
            raise InvalidArgument(f"bad --ulimit value {item!r}: {exc}") from exc
    return tuple(limits)


_SPEC_OPTIONS = (
    click.option("--name", help="Container name."),
    click.option(
        "-p", "--publish", multiple=True, help="Publish a port: [IP:][HOST:]CONTAINER[/udp]."
    ),
    click.option("-e", "--env", multiple=True, help="Set an environment variable KEY=VALUE."),
    click.option("-l", "--label", multiple=True, help="Set a label KEY=VALUE."),
    click.option(
        "-v", "--volume", multiple=True, help="Mount a volume: /path, VOLUME:/path, /host:/path."
    ),
    click.option("--network", help="Network: bridge, host, none or a network name."),
    click.option("--hostname", help="Container hostname."),
    click.option("-w", "--workdir", help="Working directory inside the container."),
    click.option("-u", "--user", help="User inside the container."),
    click.option("--restart", help="Restart policy: no, always, unless-stopped, on-failure[:N]."),
    click.option("-m", "--memory", help="Memory limit, e.g. 64m or 1g."),
    click.option("--cpus", type=float, help="CPU limit in CPUs, e.g. 0.5."),
    click.option("--ulimit", multiple=True, help="Resource limit NAME=SOFT[:HARD]."),
    click.option("--runtime", help="OCI runtime (Podman defaults to runc, which can checkpoint)."),
    click.option("--rm", "auto_remove", is_flag=True, help="Remove the container when it exits."),
    click.option("-i", "--interactive", is_flag=True, help="Keep stdin open (attach it with run)."),
    click.option("-t", "--tty", is_flag=True, help="Give the container a pseudo-terminal."),
)


def spec_options(func: F) -> F:
    """The ``docker run``/``docker create`` options that describe a container."""
    for option in reversed(_SPEC_OPTIONS):
        func = option(func)
    return func


def build_spec(image: str, command: tuple[str, ...], options: dict[str, Any]) -> ContainerSpec:
    """A ContainerSpec from the values of :func:`spec_options`."""
    memory = options.get("memory")
    restart_policy(options.get("restart"))  # validated here: bad input never reaches an engine
    return ContainerSpec(
        image=image,
        command=command,
        name=options.get("name"),
        env=_parse_env(options.get("env", ())),
        ports=_parse_ports(options.get("publish", ())),
        labels=parse_labels(options.get("label", ())),
        network=options.get("network"),
        hostname=options.get("hostname"),
        working_dir=options.get("workdir"),
        user=options.get("user"),
        runtime=options.get("runtime"),
        volumes=_parse_mounts(options.get("volume", ())),
        restart=options.get("restart"),
        memory=parse_memory(memory) if memory else None,
        cpus=options.get("cpus"),
        ulimits=_parse_ulimits(options.get("ulimit", ())),
        auto_remove=bool(options.get("auto_remove")),
        tty=bool(options.get("tty")),
        stdin_open=bool(options.get("interactive")),
    )


@click.command(context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run in the background and print the ID.")
@spec_options
@click.argument("image")
@click.argument("command", nargs=-1)
@json_option
def run(detach: bool, image: str, command: tuple[str, ...], **options: Any) -> None:
    """Create and start a container from IMAGE.

    With -i and/or -t (and no -d) the local terminal is attached like docker's: ctrl-p ctrl-q
    detaches and leaves the container running.
    """
    spec = build_spec(image, command, options)
    attached = not detach and not wants_json()
    if attached and (spec.tty or spec.stdin_open):
        # docker run -i attached: the container's stdin closes when the local one ends.
        spec = dataclasses.replace(spec, auto_remove=False, stdin_once=spec.stdin_open)
        code = run_interactive(state().backend(), spec, remove=bool(options.get("auto_remove")))
        if code is None:
            click.echo("detached; the container is still running", err=True)
        sys.exit(0 if code is None else code)
    if attached and spec.auto_remove:
        # Attached --rm removes the container here, after reading its exit code: the engine
        # removing it itself could race the wait and lose the code.
        spec = dataclasses.replace(spec, auto_remove=False)
    backend = state().backend()
    info = backend.run(spec)
    if wants_json():
        print_json(info.to_dict())
        return
    if detach:
        click.echo(info.id)
        return
    # Attached, like docker run: stream the output, then exit with the container's code.
    for chunk in backend.follow_logs(info.id):
        click.echo(chunk, nl=False)
    code = backend.wait(info.id)
    if options.get("auto_remove"):
        backend.remove(info.id, force=True, volumes=True)
    sys.exit(code)


def _ports_text(info: ContainerInfo) -> str:
    return ", ".join(str(p) for p in info.ports)


def _parse_filters(values: tuple[str, ...]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not eq or key not in FILTER_KEYS or not value:
            raise InvalidArgument(
                f"bad --filter value {item!r}",
                hint="use --filter label=KEY[=VALUE], name=NAME, id=ID or status=STATUS",
            )
        filters.setdefault(key, []).append(value)
    return filters


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show stopped containers too.")
@click.option("-q", "--quiet", is_flag=True, help="Only print container IDs.")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="label=KEY[=VALUE], name=, id=, status=."
)
@json_option
def ps(all_: bool, quiet: bool, filters: tuple[str, ...]) -> None:
    """List containers."""
    wanted = _parse_filters(filters)
    containers = state().backend().containers(all=all_, filters=wanted or None)
    if wants_json():
        print_json([c.to_dict() for c in containers])
    elif quiet:
        for c in containers:
            click.echo(c.short_id)
    else:
        print_table(
            ["CONTAINER ID", "IMAGE", "COMMAND", "STATUS", "PORTS", "NAMES"],
            [
                [c.short_id, c.image, " ".join(c.command)[:30], c.status, _ports_text(c), c.name]
                for c in containers
            ],
        )


@click.command()
@click.option("-n", "--tail", type=int, help="Only the last N lines.")
@click.option("-f", "--follow", is_flag=True, help="Follow the output.")
@click.option("--since", help="Only output since a UNIX time, an RFC 3339 time or 10m ago.")
@click.argument("name", shell_complete=complete_containers)
@json_option
def logs(tail: int | None, follow: bool, since: str | None, name: str) -> None:
    """Print a container's output."""
    since_time = parse_since(since) if since else None
    backend = state().backend()
    if follow and not wants_json():
        for chunk in backend.follow_logs(name, tail=tail, since=since_time):
            click.echo(chunk, nl=False)
        return
    text = backend.logs(name, tail=tail, since=since_time)
    if wants_json():
        print_json({"name": name, "lines": text.splitlines()})
    else:
        click.echo(text, nl=False)


def _each(names: tuple[str, ...], action: str, func: object) -> None:
    """Apply ``func`` to several names like docker does: report each failure, exit non-zero."""
    assert callable(func)
    failures: list[CtkError] = []
    done: list[str] = []
    for name in names:
        try:
            func(name)
            done.append(name)
        except CtkError as exc:
            failures.append(exc)
    if wants_json():
        print_json({action: done, "errors": [f.message for f in failures]})
    else:
        for name in done:
            click.echo(name)
    if failures:
        if len(failures) == 1 and not done:
            raise failures[0]
        for failure in failures[:-1]:
            click.echo(f"Error: {failure.message}", err=True)
        raise failures[-1]


@click.command()
@click.option("-t", "--time", "timeout", type=int, help="Seconds to wait before killing it.")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_containers)
@json_option
def stop(timeout: int | None, names: tuple[str, ...]) -> None:
    """Stop one or more running containers."""
    backend = state().backend()

    def stop_one(name: str) -> None:
        record_intended_stop(backend, name)  # a running `ctk watch` must not restore it
        backend.stop(name, timeout=timeout)

    _each(names, "stopped", stop_one)


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill and remove a running container.")
@click.option("-v", "--volumes", is_flag=True, help="Remove its anonymous volumes too.")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_containers)
@json_option
def rm(force: bool, volumes: bool, names: tuple[str, ...]) -> None:
    """Remove one or more containers."""
    backend = state().backend()
    _each(names, "removed", lambda n: backend.remove(n, force=force, volumes=volumes))
