"""Checkpoint commands: ``ctk checkpoint NAME``, ``checkpoint ls|rm``, ``restore``."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli._common import (
    DefaultGroup,
    json_option,
    print_json,
    print_table,
    state,
    wants_json,
)
from toolkit.cli.schedule import run_scheduled
from toolkit.errors import CtkError, InvalidArgument
from toolkit.models import CheckpointOptions, RestoreOptions
from toolkit.watch import forget_intended_stop, record_intended_stop


@click.group(cls=DefaultGroup, default="create")
def checkpoint() -> None:
    """Checkpoint a running container with CRIU (ctk checkpoint NAME), or manage checkpoints."""


@checkpoint.command("create")
@click.argument("name")
@click.option("--name", "cp_name", help="Checkpoint name (default: cp-<UTC time>).")
@click.option("-R", "--leave-running", is_flag=True, help="Keep the container running.")
@click.option("--tcp-established", is_flag=True, help="Dump established TCP connections too.")
@click.option("--file-locks", is_flag=True, help="Dump held file locks too.")
@click.option("--every", help="Checkpoint every DURATION (30s, 10m, 1h) until Ctrl-C.")
@click.option("--keep", type=int, help="With --every: keep N newest (3; Podman: 1).")
@click.option("--export-dir", type=click.Path(path_type=Path), help="With --every: archives here.")
@click.option("--count", type=int, help="With --every: stop after N checkpoints.")
@json_option
def create(
    name: str,
    cp_name: str | None,
    leave_running: bool,
    tcp_established: bool,
    file_locks: bool,
    every: str | None,
    keep: int | None,
    export_dir: Path | None,
    count: int | None,
) -> None:
    """Checkpoint container NAME; prints the checkpoint's name.

    With --every, checkpoints it (left running) on a schedule in the foreground, keeping the
    --keep newest scheduled checkpoints, until Ctrl-C or SIGTERM.
    """
    options = CheckpointOptions(
        name=cp_name,
        leave_running=leave_running,
        tcp_established=tcp_established,
        file_locks=file_locks,
    )
    if every is not None:
        if cp_name is not None:
            raise InvalidArgument(
                "--name and --every do not go together", hint="scheduled ones are named auto-*"
            )
        run_scheduled(
            name, every=every, keep=keep, export_dir=export_dir, count=count, options=options
        )
        return
    if count is not None or export_dir is not None or keep is not None:
        raise InvalidArgument(
            "--keep, --count and --export-dir need --every", hint="e.g. --every 10m --keep 3"
        )
    if not leave_running:
        # The container stops: tell a running `ctk watch` that this is not a crash.
        record_intended_stop(state().backend(), name)
    try:
        result = state().backend().checkpoint(name, options)
    except CtkError:
        forget_intended_stop(state().backend(), name)  # it failed, so it keeps running
        raise
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
@click.option("--latest", is_flag=True, help="Restore the newest checkpoint (the default).")
@click.option("--tcp-established", is_flag=True, help="Restore established TCP connections.")
@click.option("--file-locks", is_flag=True, help="Restore held file locks.")
@json_option
def restore(
    name: str, cp_name: str | None, latest: bool, tcp_established: bool, file_locks: bool
) -> None:
    """Restore container NAME from a checkpoint; its processes continue where they were."""
    if latest and cp_name is not None:
        raise InvalidArgument("--latest and --checkpoint do not go together")
    options = RestoreOptions(
        checkpoint=cp_name, tcp_established=tcp_established, file_locks=file_locks
    )
    info = state().backend().restore(name, options)
    if wants_json():
        print_json(info.to_dict())
    else:
        click.echo(info.name)
