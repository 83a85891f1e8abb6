"""Volume commands: ``ctk volume ls|create|inspect|rm|prune``."""

from __future__ import annotations

import click

from toolkit.backends.base import Volumes
from toolkit.cli._common import (
    confirm_prune,
    inspect_each,
    json_option,
    parse_labels,
    print_json,
    print_removed,
    print_table,
    remove_each,
    state,
    wants_json,
)
from toolkit.errors import Unsupported


def _volumes() -> Volumes:
    backend = state().backend()
    if not isinstance(backend, Volumes):
        raise Unsupported(f"{backend.kind} has no volume commands in ctk")
    return backend


@click.group()
def volume() -> None:
    """Manage named volumes."""


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only print volume names.")
@click.option("-l", "--label", multiple=True, help="Only volumes with label KEY=VALUE.")
@json_option
def ls(quiet: bool, label: tuple[str, ...]) -> None:
    """List named volumes."""
    items = _volumes().volumes(labels=parse_labels(label) or None)
    if wants_json():
        print_json([v.to_dict() for v in items])
    elif quiet:
        for item in items:
            click.echo(item.name)
    else:
        print_table(["DRIVER", "VOLUME NAME"], [[v.driver, v.name] for v in items])


@volume.command("create")
@click.argument("name", required=False, default="")
@click.option("-l", "--label", multiple=True, help="Set a label KEY=VALUE.")
@json_option
def create(name: str, label: tuple[str, ...]) -> None:
    """Create a local volume (a generated name without NAME); prints its name."""
    info = _volumes().create_volume(name, labels=parse_labels(label) or None)
    if wants_json():
        print_json(info.to_dict())
    else:
        click.echo(info.name)


@volume.command("inspect")
@click.argument("names", nargs=-1, required=True)
def inspect(names: tuple[str, ...]) -> None:
    """Details of volumes, as a JSON array."""
    backend = _volumes()
    inspect_each(names, lambda name: backend.inspect_volume(name).to_dict())


@volume.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Remove even when a container uses it.")
@json_option
def rm(names: tuple[str, ...], force: bool) -> None:
    """Remove volumes."""
    backend = _volumes()

    def remove(name: str) -> list[str]:
        backend.remove_volume(name, force=force)
        return [name]

    remove_each(names, remove)


@volume.command("prune")
@click.option("-l", "--label", multiple=True, help="Only volumes with label KEY=VALUE.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@json_option
def prune(label: tuple[str, ...], yes: bool) -> None:
    """Remove volumes no container uses."""
    confirm_prune("Remove all unused volumes?", yes=yes)
    print_removed(_volumes().prune_volumes(labels=parse_labels(label) or None))
