"""Network commands: ``ctk network ls|create|inspect|rm|connect|disconnect|prune`` and ``port``."""

from __future__ import annotations

import click

from toolkit.cli._common import (
    confirm_prune,
    json_option,
    parse_labels,
    print_json,
    print_removed,
    print_table,
    state,
    wants_json,
)
from toolkit.cli.containers import _each
from toolkit.errors import InvalidArgument
from toolkit.models import NetworkInfo, NetworkSpec, PortMapping


def _yes(value: bool) -> str:
    return "true" if value else "false"


@click.group()
def network() -> None:
    """Manage networks: bridge (one host) and overlay (Docker swarm, several hosts)."""


@network.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only print network names.")
@json_option
def ls(quiet: bool) -> None:
    """List networks."""
    items = state().backend().networks()
    if wants_json():
        print_json([n.to_dict() for n in items])
    elif quiet:
        for item in items:
            click.echo(item.name)
    else:
        print_table(
            ["NETWORK ID", "NAME", "DRIVER", "SCOPE", "SUBNET", "CONTAINERS"],
            [
                [n.short_id, n.name, n.driver, n.scope, n.subnet or "-", str(len(n.containers))]
                for n in items
            ],
        )


@network.command("create")
@click.argument("name")
@click.option(
    "-d",
    "--driver",
    type=click.Choice(["bridge", "overlay"]),
    default="bridge",
    show_default=True,
    help="bridge: one host; overlay: across Docker swarm hosts (Docker only).",
)
@click.option("--subnet", help="Subnet in CIDR form, e.g. 10.90.0.0/24.")
@click.option("--gateway", help="Gateway address inside --subnet.")
@click.option("--internal", is_flag=True, help="No route out: containers reach only each other.")
@click.option("--attachable", is_flag=True, help="Let plain containers join an overlay network.")
@click.option("-l", "--label", multiple=True, help="Set a label KEY=VALUE.")
@json_option
def create(
    name: str,
    driver: str,
    subnet: str | None,
    gateway: str | None,
    internal: bool,
    attachable: bool,
    label: tuple[str, ...],
) -> None:
    """Create network NAME; prints its name."""
    spec = NetworkSpec(
        name=name,
        driver=driver,
        subnet=subnet,
        gateway=gateway,
        internal=internal,
        attachable=attachable,
        labels=parse_labels(label),
    )
    info = state().backend().create_network(spec)
    if wants_json():
        print_json(info.to_dict())
    else:
        click.echo(info.name)


def _render(info: NetworkInfo) -> None:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(info.labels.items())) or "-"
    for key, value in (
        ("Name", info.name),
        ("ID", info.id),
        ("Driver", info.driver),
        ("Scope", info.scope),
        ("Subnet", info.subnet or "-"),
        ("Gateway", info.gateway or "-"),
        ("Internal", _yes(info.internal)),
        ("Attachable", _yes(info.attachable)),
        ("Labels", labels),
    ):
        click.echo(f"{key + ':':<12}{value}")
    if not info.containers:
        click.echo(f"{'Containers:':<12}-")
        return
    click.echo("Containers:")
    print_table(
        ["  NAME", "IPV4", "MAC", "CONTAINER ID"],
        [
            [f"  {e.name}", e.ipv4 or "-", e.mac or "-", e.container_id[:12]]
            for e in info.containers
        ],
    )


@network.command("inspect")
@click.argument("names", nargs=-1, required=True)
@json_option
def inspect(names: tuple[str, ...]) -> None:
    """Show networks: driver, subnet, gateway and each container with its IP and MAC.

    With --json, a list with one object per NAME (like docker network inspect).
    """
    backend = state().backend()
    items = [backend.inspect_network(name) for name in names]
    if wants_json():
        print_json([n.to_dict() for n in items])
        return
    for index, item in enumerate(items):
        if index:
            click.echo()
        _render(item)


@network.command("rm")
@click.argument("names", nargs=-1, required=True)
@json_option
def rm(names: tuple[str, ...]) -> None:
    """Remove one or more networks (none of their containers may still use them)."""
    backend = state().backend()
    _each(names, "removed", backend.remove_network)


@network.command("connect")
@click.argument("network_name", metavar="NETWORK")
@click.argument("container")
@click.option("--alias", multiple=True, help="Another name the container answers to there.")
@json_option
def connect(network_name: str, container: str, alias: tuple[str, ...]) -> None:
    """Attach CONTAINER to NETWORK."""
    backend = state().backend()
    backend.connect_network(network_name, container, aliases=alias)
    endpoint = backend.inspect_network(network_name).endpoint(container)
    if wants_json():
        print_json(
            {"network": network_name, "container": container}
            | ({"endpoint": endpoint.to_dict()} if endpoint else {})
        )
    else:
        address = f" {endpoint.ipv4}" if endpoint and endpoint.ipv4 else ""
        click.echo(f"{container} -> {network_name}{address}")


@network.command("disconnect")
@click.argument("network_name", metavar="NETWORK")
@click.argument("container")
@click.option("-f", "--force", is_flag=True, help="Detach even if the container is not running.")
@json_option
def disconnect(network_name: str, container: str, force: bool) -> None:
    """Detach CONTAINER from NETWORK."""
    state().backend().disconnect_network(network_name, container, force=force)
    if wants_json():
        print_json({"network": network_name, "container": container, "disconnected": True})
    else:
        click.echo(f"{container} -x {network_name}")


@network.command("prune")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    help="Only networks with this label: --filter label=KEY=VALUE (repeatable).",
)
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@json_option
def prune(filters: tuple[str, ...], force: bool) -> None:
    """Remove every user network no container uses; prints the names removed."""
    raw: list[str] = []
    for item in filters:
        kind, eq, value = item.partition("=")
        if kind != "label" or not eq or not value:
            raise InvalidArgument(
                f"bad --filter value {item!r}", hint="use --filter label=KEY=VALUE"
            )
        raw.append(value)
    labels = parse_labels(tuple(raw), option="--filter label")
    scope = f" with labels {labels}" if labels else ""
    confirm_prune(f"Remove all unused networks{scope}?", yes=force)
    print_removed(state().backend().prune_networks(labels=labels or None))


@click.command()
@click.argument("name")
@click.argument("private", required=False, metavar="[PORT[/PROTO]]")
@json_option
def port(name: str, private: str | None) -> None:
    """Show the published ports of container NAME (only PORT's when given)."""
    mappings: tuple[PortMapping, ...] = state().backend().inspect(name).ports
    if private:
        number, _, proto = private.partition("/")
        if not number.isdigit():
            raise InvalidArgument(f"bad port {private!r}", hint="e.g. ctk port web1 8080/tcp")
        mappings = tuple(
            m
            for m in mappings
            if m.container_port == int(number) and m.protocol == (proto or "tcp")
        )
    if wants_json():
        print_json([m.to_dict() for m in mappings])
        return
    for m in mappings:
        click.echo(f"{m.container_port}/{m.protocol} -> {m.host_ip or '0.0.0.0'}:{m.host_port}")
