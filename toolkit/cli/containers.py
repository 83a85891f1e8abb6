"""Container lifecycle commands: run, ps, logs, stop, rm."""

from __future__ import annotations

import os
import sys

import click

from toolkit.cli._common import json_option, print_json, print_table, state, wants_json
from toolkit.errors import CtkError, InvalidArgument
from toolkit.models import ContainerInfo, ContainerSpec, PortMapping
from toolkit.watch import record_intended_stop


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


def _parse_labels(values: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in values:
        key, _, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"bad --label value {item!r}", hint="use --label KEY=VALUE")
        labels[key] = value
    return labels


@click.command(context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run in the background and print the ID.")
@click.option("--name", help="Container name.")
@click.option("-p", "--publish", multiple=True, help="Publish a port: [IP:][HOST:]CONTAINER[/udp].")
@click.option("-e", "--env", multiple=True, help="Set an environment variable KEY=VALUE.")
@click.option("-l", "--label", multiple=True, help="Set a label KEY=VALUE.")
@click.option("--network", help="Network: bridge, host, none or a network name.")
@click.option("--hostname", help="Container hostname.")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("-u", "--user", help="User inside the container.")
@click.option("--runtime", help="OCI runtime (Podman defaults to runc, which can checkpoint).")
@click.argument("image")
@click.argument("command", nargs=-1)
@json_option
def run(
    detach: bool,
    name: str | None,
    publish: tuple[str, ...],
    env: tuple[str, ...],
    label: tuple[str, ...],
    network: str | None,
    hostname: str | None,
    workdir: str | None,
    user: str | None,
    runtime: str | None,
    image: str,
    command: tuple[str, ...],
) -> None:
    """Create and start a container from IMAGE."""
    spec = ContainerSpec(
        image=image,
        command=command,
        name=name,
        env=_parse_env(env),
        ports=_parse_ports(publish),
        labels=_parse_labels(label),
        network=network,
        hostname=hostname,
        working_dir=workdir,
        user=user,
        runtime=runtime,
    )
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
    sys.exit(backend.wait(info.id))


def _ports_text(info: ContainerInfo) -> str:
    return ", ".join(str(p) for p in info.ports)


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show stopped containers too.")
@click.option("-q", "--quiet", is_flag=True, help="Only print container IDs.")
@json_option
def ps(all_: bool, quiet: bool) -> None:
    """List containers."""
    containers = state().backend().containers(all=all_)
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
@click.argument("name")
@json_option
def logs(tail: int | None, follow: bool, name: str) -> None:
    """Print a container's output."""
    backend = state().backend()
    if follow and not wants_json():
        for chunk in backend.follow_logs(name):
            click.echo(chunk, nl=False)
        return
    text = backend.logs(name, tail=tail)
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
@click.argument("names", nargs=-1, required=True)
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
@click.argument("names", nargs=-1, required=True)
@json_option
def rm(force: bool, names: tuple[str, ...]) -> None:
    """Remove one or more containers."""
    backend = state().backend()
    _each(names, "removed", lambda n: backend.remove(n, force=force))
