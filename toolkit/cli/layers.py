"""A container's read-write layer: ``ctk diff``, ``ctk commit``, ``ctk cp``."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit import copying
from toolkit.backends.base import ContainerLayers
from toolkit.cli._common import (
    complete_containers,
    json_option,
    parse_labels,
    print_json,
    state,
    wants_json,
)
from toolkit.errors import InvalidArgument, Unsupported


def _layers() -> ContainerLayers:
    backend = state().backend()
    if not isinstance(backend, ContainerLayers):
        raise Unsupported(f"{backend.kind} has no container layer commands in ctk")
    return backend


@click.command()
@click.argument("name", shell_complete=complete_containers)
@json_option
def diff(name: str) -> None:
    """The container's read-write layer over its image: A added, C changed, D deleted."""
    changes = _layers().changes(name)
    if wants_json():
        print_json([c.to_dict() for c in changes])
    else:
        for change in changes:
            click.echo(f"{change.kind} {change.path}")


@click.command()
@click.argument("name", shell_complete=complete_containers)
@click.argument("image")
@click.option("-m", "--message", default="", help="A commit message (the layer's comment).")
@click.option("-l", "--label", multiple=True, help="Set a label KEY=VALUE on the image.")
@click.option(
    "--pause/--no-pause", default=True, show_default=True, help="Pause it while committing."
)
@json_option
def commit(name: str, image: str, message: str, label: tuple[str, ...], pause: bool) -> None:
    """Save container NAME's read-write layer as one more layer: a new image IMAGE[:TAG]."""
    image_id = _layers().commit(
        name, image, message=message, labels=parse_labels(label) or None, pause=pause
    )
    if wants_json():
        print_json({"id": image_id, "image": image})
    else:
        click.echo(image_id)


@click.command()
@click.argument("source")
@click.argument("dest")
def cp(source: str, dest: str) -> None:
    """Copy files between a container and the host: ctk cp NAME:PATH HOSTPATH, or
    ctk cp HOSTPATH NAME:PATH (into PATH when it is a directory, else as PATH)."""
    src_name, src_path = copying.split_target(source)
    dest_name, dest_path = copying.split_target(dest)
    if (src_name is None) == (dest_name is None):
        raise InvalidArgument(
            "one side of ctk cp must be NAME:PATH and the other a host path",
            hint="e.g. ctk cp web1:/etc/hostname ./hostname",
        )
    backend = _layers()
    if src_name is not None:
        copying.copy_from_container(backend, src_name, src_path, Path(dest_path))
    else:
        assert dest_name is not None
        copying.copy_to_container(backend, Path(src_path), dest_name, dest_path)
