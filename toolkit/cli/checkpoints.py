"""Checkpoint commands: ``ctk checkpoint NAME``, ``checkpoint ls|rm``, ``restore``."""

from __future__ import annotations

import click

from toolkit.cli._common import (
    DefaultGroup,
    json_option,
    print_json,
    print_table,
    state,
    wants_json,
)
from toolkit.models import CheckpointOptions, RestoreOptions


@click.group(cls=DefaultGroup, default="create")
def checkpoint() -> None:
    """Checkpoint a running container with CRIU (ctk checkpoint NAME), or manage checkpoints."""


@checkpoint.command("create")
@click.argument("name")
@click.option("--name", "cp_name", help="Checkpoint name (default: cp-<UTC time>).")
@click.option("-R", "--leave-running", is_flag=True, help="Keep the container running.")
@click.option("--tcp-established", is_flag=True, help="Dump established TCP connections too.")
@click.option("--file-locks", is_flag=True, help="Dump held file locks too.")
@json_option
def create(
    name: str, cp_name: str | None, leave_running: bool, tcp_established: bool, file_locks: bool
) -> None:
    """Checkpoint container NAME; prints the checkpoint's name."""
    options = CheckpointOptions(
        name=cp_name,
        leave_running=leave_running,
        tcp_established=tcp_established,
        file_locks=file_locks,
    )
    result = state().backend().checkpoint(name, options)
    if wants_json():
        print_json(result.to_dict())
    else:
        click.echo(result.name)


@checkpoint.command("ls")
@click.argument("name")
@json_option
def ls(name: str) -> None:
    """List the checkpoints of container NAME, oldest first."""
    items = state().backend().checkpoints(name)
    if wants_json():
        print_json([c.to_dict() for c in items])
    else:
        print_table(["CHECKPOINT", "CREATED"], [[c.name, c.created or "-"] for c in items])


@checkpoint.command("rm")
@click.argument("name")
@click.argument("checkpoint_name", metavar="CHECKPOINT")
@json_option
def rm(name: str, checkpoint_name: str) -> None:
    """Remove checkpoint CHECKPOINT of container NAME."""
    state().backend().remove_checkpoint(name, checkpoint_name)
    if wants_json():
        print_json({"removed": checkpoint_name, "container": name})
    else:
        click.echo(checkpoint_name)


@click.command()
@click.argument("name")
@click.option("--checkpoint", "cp_name", help="Checkpoint to restore (default: the latest).")
@click.option("--tcp-established", is_flag=True, help="Restore established TCP connections.")
@click.option("--file-locks", is_flag=True, help="Restore held file locks.")
@json_option
def restore(name: str, cp_name: str | None, tcp_established: bool, file_locks: bool) -> None:
    """Restore container NAME from a checkpoint; its processes continue where they were."""
    options = RestoreOptions(
        checkpoint=cp_name, tcp_established=tcp_established, file_locks=file_locks
    )
    info = state().backend().restore(name, options)
    if wants_json():
        print_json(info.to_dict())
    else:
        click.echo(info.name)
