"""Checkpoint commands: ``ctk checkpoint NAME``, ``checkpoint ls|rm``, ``restore``."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from toolkit import batch, operations
from toolkit.archive import export_signer, validate_compression
from toolkit.archive.signing import (
    SignatureStatus,
    check_head,
    configured_signing_key,
    import_trust,
    signature_status,
)
from toolkit.backends.base import Backend
from toolkit.cli._common import (
    DefaultGroup,
    absolute_paths,
    archive_progress,
    confirm_prune,
    json_option,
    parse_labels,
    print_json,
    print_table,
    state,
    wants_json,
)
from toolkit.cli.schedule import run_scheduled
from toolkit.errors import ContainerNotFound, CtkError, InvalidArgument, Unsupported
from toolkit.models import (
    CheckpointDiff,
    CheckpointImages,
    CheckpointOptions,
    ContainerInfo,
    ExportOptions,
    ImageProcess,
    ImportOptions,
    PortMapping,
    RestoreOptions,
    validate_checkpoint_name,
)
from toolkit.watch import forget_intended_stop, record_intended_stop


@click.group(cls=DefaultGroup, default="create")
def checkpoint() -> None:
    """Checkpoint a running container with CRIU (ctk checkpoint NAME), or manage checkpoints."""


@checkpoint.command("create")
@click.argument("name", required=False)
@click.option("-a", "--all", "all_", is_flag=True, help="Checkpoint every running container.")
@click.option(
    "-l",
    "--label",
    "labels",
    multiple=True,
    metavar="KEY[=VALUE]",
    help="With --all: only containers with this label (repeatable: all of them).",
)
@click.option("--name", "cp_name", help="Checkpoint name (default: cp-<UTC time>).")
@click.option("-R", "--leave-running", is_flag=True, help="Keep the container running.")
@click.option("--tcp-established", is_flag=True, help="Dump established TCP connections too.")
@click.option("--file-locks", is_flag=True, help="Dump held file locks too.")
@click.option(
    "-e",
    "--export",
    "export_path",
    type=click.Path(dir_okay=False),
    help="Write the checkpoint to this ctk archive file (restore it with --import).",
)
@click.option(
    "--create-image",
    "create_image",
    metavar="IMAGE",
    help="Write the checkpoint as a checkpoint image (Podman's format; restore it with "
    "restore --image IMAGE, or podman container restore IMAGE).",
)
@click.option(
    "-c",
    "--compress",
    "compression",
    metavar="zstd|gzip|none",
    help="Compression of the --export archive (default: zstd).",
)
@click.option(
    "--sign",
    "sign_key",
    type=click.Path(dir_okay=False),
    help="Sign the --export archive with this ed25519 private key (ctk key generate); "
    "default: [trust] signing_key of the config file.",
)
@click.option(
    "--ignore-rootfs",
    is_flag=True,
    help="With --export: leave the container's file changes out of the archive.",
)
@click.option(
    "--ignore-volumes",
    is_flag=True,
    help="With --export: leave the volumes' data out of the archive (it says so); an import "
    "mounts volumes of the same names, empty ones where missing.",
)
@click.option(
    "--allow-mount",
    "allow_mounts",
    multiple=True,
    metavar="PATH",
    help="With --export: let the archive name this bind-mounted host path (repeatable); its "
    "content is not carried. Without it a bind mount is refused before anything is frozen.",
)
@click.option(
    "--print-stats", is_flag=True, help="Show CRIU's statistics and ctk's time per phase."
)
@click.option("--every", help="Checkpoint every DURATION (30s, 10m, 1h) until Ctrl-C.")
@click.option("--keep", type=int, help="With --every: keep N newest (3; Podman: 1).")
@click.option("--export-dir", type=click.Path(path_type=Path), help="With --every: archives here.")
@click.option("--count", type=int, help="With --every: stop after N checkpoints.")
@json_option
def create(
    name: str | None,
    all_: bool,
    labels: tuple[str, ...],
    cp_name: str | None,
    leave_running: bool,
    tcp_established: bool,
    file_locks: bool,
    export_path: str | None,
    create_image: str | None,
    compression: str | None,
    sign_key: str | None,
    ignore_rootfs: bool,
    ignore_volumes: bool,
    allow_mounts: tuple[str, ...],
    print_stats: bool,
    every: str | None,
    keep: int | None,
    export_dir: Path | None,
    count: int | None,
) -> None:
    """Checkpoint container NAME; prints the checkpoint's name (with --export: the file).

    With --all (and --label filters), every running container: one line each, and a non-zero
    exit naming those that failed. With --every, checkpoints it (left running) on a schedule in
    the foreground, keeping the --keep newest scheduled checkpoints, until Ctrl-C or SIGTERM.
    """
    options = CheckpointOptions(
        name=cp_name,
        leave_running=leave_running,
        tcp_established=tcp_established,
        file_locks=file_locks,
    )
    if ignore_rootfs and export_path is None:
        raise click.UsageError("--ignore-rootfs needs --export FILE")
    if all_ or labels:
        if not all_ or name is not None:
            raise click.UsageError("give the container NAME, or --all (with --label filters)")
        if export_path or every or print_stats or create_image is not None:
            raise click.UsageError(
                "--all does not go with --export, --every, --create-image or --print-stats"
            )
        _checkpoint_all(options, labels)
        return
    if name is None:
        raise click.UsageError("give the container NAME, or --all")
    if create_image is not None:
        if every is not None or export_path is not None or compression or sign_key:
            raise click.UsageError(
                "--create-image does not go with --every, --export, --compress or --sign"
            )
        _create_image(name, create_image, options, print_stats)
        return
    if every is not None:
        if cp_name is not None or export_path is not None or sign_key is not None:
            raise InvalidArgument(
                "--name, --export and --sign do not go with --every",
                hint="scheduled checkpoints are named auto-*; archives: --export-dir DIR",
            )
        run_scheduled(
            name, every=every, keep=keep, export_dir=export_dir, count=count, options=options
        )
        return
    if count is not None or export_dir is not None or keep is not None:
        raise InvalidArgument(
            "--keep, --count and --export-dir need --every", hint="e.g. --every 10m --keep 3"
        )
    if export_path is None:
        if compression is not None or sign_key is not None or ignore_volumes or allow_mounts:
            raise click.UsageError(
                "--compress, --sign, --ignore-volumes and --allow-mount need --export FILE"
            )
        started = time.monotonic()
        backend = state().backend()
        if not leave_running:
            # The container stops: tell a running `ctk watch` that this is not a crash.
            record_intended_stop(backend, name)
        try:
            result = operations.checkpoint(backend, name, options)
        except CtkError:
            forget_intended_stop(backend, name)  # it failed, so it keeps running
            raise
        timings = {"checkpoint": round(time.monotonic() - started, 3)}
        criu = _criu_stats(backend, name, "dump") if print_stats else {}
        _render(result.to_dict(), result.name, timings if print_stats else None, criu)
        return
    # Before connecting: a typo must not cost a checkpoint, nor wait for an engine.
    validate_compression(compression or "zstd")
    sign_key = sign_key or configured_signing_key()
    export_signer(sign_key)  # a bad key file must not cost a checkpoint either
    export = ExportOptions(
        checkpoint=options,
        compression=compression or "zstd",
        sign_key=sign_key,
        ignore_rootfs=ignore_rootfs,
        ignore_volumes=ignore_volumes,
        allow_mounts=absolute_paths(allow_mounts),
    )
    started = time.monotonic()
    with archive_progress():
        info = operations.export_checkpoint(state().backend(), name, export_path, export)
    timings = {**info.timings, "total": round(time.monotonic() - started, 3)}
    _render(info.to_dict(), info.path, timings if print_stats else None, info.criu_stats)


def _checkpoint_all(options: CheckpointOptions, labels: tuple[str, ...]) -> None:
    backend = state().backend()

    def before(info: ContainerInfo) -> None:
        if not options.leave_running:
            # it stops: tell a running `ctk watch` that this is not a crash
            record_intended_stop(backend, info.name)

    results = batch.checkpoint_all(
        backend,
        options,
        labels=parse_labels(labels),
        before=before,
        failed=lambda info: forget_intended_stop(backend, info.name),
    )
    _render_batch(results, action="checkpoint")


def _render_batch(results: list[batch.BatchResult], *, action: str) -> None:
    """One row per container (or JSON); raises the failures as one error."""
    if wants_json():
        print_json([r.to_dict() for r in results])
    else:
        print_table(
            ["CONTAINER", "CHECKPOINT", "RESULT"],
            [
                [r.container, r.checkpoint or "-", "ok" if r.ok else f"failed: {r.error}"]
                for r in results
            ],
        )
    problem = batch.failure(results, action=action)
    if problem is not None:
        raise problem


@checkpoint.command("export")
@click.argument("name")
@click.argument("checkpoint_name", metavar="CHECKPOINT")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "-c",
    "--compress",
    "compression",
    metavar="zstd|gzip|none",
    help="Compression of the archive (default: zstd).",
)
@click.option(
    "--sign",
    "sign_key",
    type=click.Path(dir_okay=False),
    help="Sign the archive with this ed25519 private key; default: [trust] signing_key.",
)
@click.option(
    "--ignore-rootfs", is_flag=True, help="Leave the container's file changes out of the archive."
)
@json_option
def export_cmd(
    name: str,
    checkpoint_name: str,
    file: str,
    compression: str | None,
    sign_key: str | None,
    ignore_rootfs: bool,
) -> None:
    """Write checkpoint CHECKPOINT of container NAME, already held, to archive FILE.

    The same archive as checkpoint --export, with no new checkpoint taken (restore it with
    restore --import FILE); the rootfs changes are the container's as they are now.
    """
    validate_checkpoint_name(checkpoint_name)  # before any lookup
    validate_compression(compression or "zstd")
    sign_key = sign_key or configured_signing_key()
    export_signer(sign_key)
    export = ExportOptions(
        compression=compression or "zstd", sign_key=sign_key, ignore_rootfs=ignore_rootfs
    )
    with archive_progress():
        info = operations.export_held(state().backend(), name, checkpoint_name, file, export)
    _render(info.to_dict(), info.path, None, {})


@checkpoint.command("prune")
@click.argument("name", required=False)
@click.option("--keep", type=int, default=0, show_default=True, help="Keep the N newest.")
@click.option("-f", "--yes", "--force", "yes", is_flag=True, help="Do not ask.")
@json_option
def prune(name: str | None, keep: int, yes: bool) -> None:
    """Remove the checkpoints of container NAME (default: of every container) but the --keep
    newest, freeing their space on the engine's host; prints those removed."""
    if keep < 0:
        raise InvalidArgument(f"--keep must be 0 or more, not {keep}")
    whose = f"of {name}" if name else "of every container"
    kept = f" but the {keep} newest" if keep else ""
    confirm_prune(f"Remove all checkpoints {whose}{kept}?", yes=yes)
    removed = operations.prune_checkpoints(state().backend(), name, keep=keep)
    if wants_json():
        print_json({"removed": [c.to_dict() for c in removed]})
    else:
        for item in removed:
            click.echo(f"{item.container} {item.name}")


def _create_image(name: str, image: str, options: CheckpointOptions, print_stats: bool) -> None:
    from toolkit.checkpoint_images import create_image, validate_reference

    validate_reference(image)  # before connecting: a typo must not cost a checkpoint
    started = time.monotonic()
    backend = state().backend()
    if not options.leave_running:
        record_intended_stop(backend, name)  # not a crash for a running `ctk watch`
    try:
        made = create_image(backend, name, image, options)
    except CtkError:
        forget_intended_stop(backend, name)
        raise
    timings = {"checkpoint": round(time.monotonic() - started, 3)}
    criu = _criu_stats(backend, name, "dump") if print_stats else {}
    _render(made.to_dict(), made.image, timings if print_stats else None, criu)


_MICROSECONDS = re.compile(r"_time$")


def _criu_stats(backend: Backend, name: str, phase: str) -> Mapping[str, int] | str:
    """CRIU's statistics of ``phase``, or why the engine's host could not hand them out."""
    try:
        return backend.criu_stats(name, phase=phase)
    except Unsupported as exc:
        return exc.message


def _render(
    data: dict[str, Any],
    line: str,
    timings: Mapping[str, float] | None,
    criu: Mapping[str, int] | str,
) -> None:
    """The result line (or JSON); with --print-stats, ctk's phases and CRIU's statistics.

    ``criu`` is a string when the statistics were kept but are not readable from here.
    """
    if wants_json():
        if timings is not None:
            stats: dict[str, Any] = {"ctk_seconds": timings, "criu": criu}
            if isinstance(criu, str):
                stats.update(criu={}, criu_unreadable=criu)
            data = {**data, "stats": stats}
        print_json(data)
        return
    click.echo(line)
    if timings is None:
        return
    print_table(["CTK PHASE", "SECONDS"], [[k, f"{v:.3f}"] for k, v in timings.items()])
    if isinstance(criu, str):
        click.echo(f"CRIU statistics: not readable from here: {criu}")
        return
    if not criu:
        click.echo("CRIU statistics: not kept by this engine")
        return
    rows = [
        [key, f"{value / 1000:.1f} ms" if _MICROSECONDS.search(key) else str(value)]
        for key, value in sorted(criu.items())
    ]
    print_table(["CRIU STATISTIC", "VALUE"], rows)


@checkpoint.command("ls")
@click.argument("name", required=False)
@json_option
def ls(name: str | None) -> None:
    """List the checkpoints of container NAME (default: of every container), oldest first."""
    backend = state().backend()
    if name is not None:
        items = backend.checkpoints(name)
        if wants_json():
            print_json([c.to_dict() for c in items])
        else:
            print_table(["CHECKPOINT", "CREATED"], [[c.name, c.created or "-"] for c in items])
        return
    items = []
    for container in backend.containers(all=True):
        try:
            items.extend(backend.checkpoints(container.name))
        except ContainerNotFound:
            continue  # removed meanwhile
    if wants_json():
        print_json([c.to_dict() for c in items])
    else:
        print_table(
            ["CONTAINER", "CHECKPOINT", "CREATED"],
            [[c.container, c.name, c.created or "-"] for c in items],
        )


@checkpoint.command("rm")
@click.argument("name")
@click.argument("checkpoint_name", metavar="CHECKPOINT")
@json_option
def rm(name: str, checkpoint_name: str) -> None:
    """Remove checkpoint CHECKPOINT of container NAME, with its files on the engine's host."""
    validate_checkpoint_name(checkpoint_name)  # before any lookup: one answer on every engine
    operations.remove_checkpoint(state().backend(), name, checkpoint_name)
    if wants_json():
        print_json({"removed": checkpoint_name, "container": name})
    else:
        click.echo(checkpoint_name)


@checkpoint.command("inspect")
@click.argument("target", metavar="FILE|NAME|IMAGE")
@click.argument("checkpoint_name", metavar="[CHECKPOINT]", required=False)
@click.option("--image", "is_image", is_flag=True, help="TARGET is a checkpoint image.")
@json_option
def inspect_cmd(target: str, checkpoint_name: str | None, is_image: bool) -> None:
    """Show what a checkpoint holds: processes, memory, files, sockets, namespaces.

    Give an archive FILE (from --export), a container NAME and one of its CHECKPOINTs, or
    --image and a checkpoint IMAGE.
    """
    from toolkit.criu.images import inspect_archive, inspect_checkpoint

    signature = None
    if is_image:
        if checkpoint_name is not None:
            raise click.UsageError("--image takes the IMAGE alone")
        from toolkit.checkpoint_images import unpacked
        from toolkit.criu.images import read_images

        with unpacked(state().backend(), target) as (directory, source_kind):
            images = read_images(directory)
    elif checkpoint_name is None:
        signature = signature_status(target)
        images = inspect_archive(target)
        source_kind = images.manifest.engine if images.manifest is not None else ""
    else:
        validate_checkpoint_name(checkpoint_name)  # before any lookup
        backend = state().backend()
        images = inspect_checkpoint(backend, target, checkpoint_name)
        source_kind = backend.kind
    other, possible, reason = _other_runtime(images, source_kind)
    if wants_json():
        print_json(
            {
                **images.to_dict(),
                "cross_runtime": {"runtime": other, "possible": possible, "reason": reason},
                **({"signature": signature.to_dict()} if signature is not None else {}),
            }
        )
        return
    render_images(images)
    if signature is not None:
        click.echo(f"\nsignature:  {_signature_line(signature)}")
    click.echo(
        f"\nrestore on {other or 'the other runtime'}: {'yes' if possible else 'no'} ({reason})"
    )


@checkpoint.command("diff")
@click.argument("targets", nargs=-1, required=True, metavar="NAME A B | FILE_A FILE_B")
@click.option("--image", "images", is_flag=True, help="A and B are checkpoint images.")
@json_option
def diff_cmd(targets: tuple[str, ...], images: bool) -> None:
    """Compare two checkpoints: processes, memory pages (by region), open files, sockets.

    Give container NAME and two of its checkpoints A and B, two archive files, or --image and
    two checkpoint images.
    """
    from contextlib import ExitStack

    from toolkit.criu.diff import diff_directories, extracted, fetched

    if len(targets) not in (2, 3) or (images and len(targets) != 2):
        raise click.UsageError(
            "give NAME A B (two checkpoints of a container), FILE_A FILE_B, or --image "
            "IMAGE_A IMAGE_B"
        )
    with ExitStack() as stack:
        if images:
            from toolkit.checkpoint_images import unpacked

            first, second = targets
            backend = state().backend()
            a = stack.enter_context(unpacked(backend, first))[0]
            b = stack.enter_context(unpacked(backend, second))[0]
        elif len(targets) == 3:
            name, first, second = targets
            for cp_name in (first, second):
                validate_checkpoint_name(cp_name)  # before any lookup
            backend = state().backend()
            a = stack.enter_context(fetched(backend, name, first))
            b = stack.enter_context(fetched(backend, name, second))
        else:
            first, second = targets
            a = stack.enter_context(extracted(first))
            b = stack.enter_context(extracted(second))
        result = diff_directories(a, b, label_a=first, label_b=second)
    if wants_json():
        print_json(result.to_dict())
        return
    _render_diff(result)


def _render_diff(result: CheckpointDiff) -> None:
    def procs(items: tuple[ImageProcess, ...]) -> str:
        return ", ".join(f"{p.pid} {p.comm}" for p in items) or "-"

    tree = "same tree" if result.same_tree else "the tree changed"
    click.echo(f"{result.a} -> {result.b}")
    click.echo(f"processes: {tree}")
    click.echo(f"  kept:    {procs(result.processes_kept)}")
    click.echo(f"  added:   {procs(result.processes_added)}")
    click.echo(f"  removed: {procs(result.processes_removed)}")
    how = "contents compared" if result.contents_compared else "page lists only: no contents"
    click.echo(
        f"memory:    {result.pages_changed} pages changed ({result.bytes_changed} bytes), "
        f"{result.pages_added} added, {result.pages_removed} removed, "
        f"{result.pages_unchanged} unchanged ({how})"
    )
    if result.regions:
        click.echo("")
        print_table(
            ["PID", "REGION", "ADDRESS", "CHANGED", "ADDED", "REMOVED"],
            [
                [
                    str(r.pid),
                    r.region,
                    f"{r.start:x}-{r.end:x}",
                    str(r.changed),
                    str(r.added),
                    str(r.removed),
                ]
                for r in result.regions
            ],
        )
    click.echo("")
    for label, items in (
        ("files +", result.files_added),
        ("files -", result.files_removed),
        ("sockets +", result.sockets_added),
        ("sockets -", result.sockets_removed),
    ):
        click.echo(f"{label:<10} {', '.join(items) or '-'}")


def _signature_line(status: SignatureStatus) -> str:
    if not status.signed:
        return "none (unsigned archive)"
    if not status.valid:
        return f"INVALID: does not match the manifest (claims key {status.key_id})"
    trusted = (
        f"trusted key {status.trusted_key}"
        if status.trusted_key
        else "not a key in [trust] trusted_keys; check it with restore --verify PUBKEY"
    )
    return f"{status.algorithm} by key {status.key_id} ({trusted})"


def _other_runtime(images: CheckpointImages, source_kind: str) -> tuple[str, bool, str]:
    """Whether the checkpoint can be restored on the other runtime (docker <-> podman)."""
    from toolkit.migration.cross_runtime import can_restore_on

    other = {"docker": "podman", "podman": "docker"}.get(source_kind, "")
    possible, reason = can_restore_on(images, other, source_kind=source_kind)
    return other, possible, reason


def _mount_line(mount: Mapping[str, Any]) -> str:
    target = mount.get("target")
    if mount.get("type") == "bind":
        return f"{target} (bind {mount.get('source')})"
    kind = "volume" if mount.get("source") else "anonymous volume"
    return f"{target} ({kind} {mount.get('name')})"


def render_images(images: CheckpointImages) -> None:
    """The human view of ``ctk checkpoint inspect``."""
    manifest = images.manifest
    if manifest is not None:
        click.echo(
            f"archive:    format {manifest.format_version}, {manifest.engine} "
            f"{manifest.engine_version}, created {manifest.created}"
        )
        click.echo(f"container:  {manifest.container_name} ({manifest.container_id[:12]})")
        click.echo(f"image:      {manifest.image} ({manifest.image_id})")
        click.echo(f"checkpoint: {manifest.checkpoint}")
        members = ", ".join(f"{m.name} ({m.size} B)" for m in manifest.members)
        click.echo(f"members:    {members}")
        mounts = manifest.spec.get("volumes") or []
        if mounts:
            shown = ", ".join(_mount_line(m) for m in mounts if isinstance(m, dict))
            left_out = " (data left out: --ignore-volumes)" if manifest.volumes_ignored else ""
            click.echo(f"mounts:     {shown}{left_out}")
    click.echo(f"CRIU:       {images.criu_version or 'unknown'}   kernel: {images.kernel or '-'}")
    click.echo(f"hostname:   {images.hostname or '-'}")
    namespaces = " ".join(f"{k}:{v}" for k, v in sorted(images.namespaces.items()))
    click.echo(f"namespaces: {namespaces or '-'}")
    total = sum(p.memory_bytes for p in images.processes)
    click.echo(f"memory:     {total} bytes in {len(images.processes)} processes\n")
    print_table(
        ["PID", "PPID", "COMMAND", "THREADS", "PAGES", "BYTES"],
        [
            [str(p.pid), str(p.ppid), p.comm, str(p.threads), str(p.pages), str(p.memory_bytes)]
            for p in images.processes
        ],
    )
    click.echo("")
    print_table(
        ["PID", "FD", "FILE"],
        [[str(p.pid), *f.split(":", 1)] for p in images.processes for f in p.files],
    )
    if images.sockets:
        click.echo("")
        print_table(
            ["FAMILY", "TYPE", "STATE", "LOCAL", "REMOTE"],
            [[s.family, s.type, s.state, s.local, s.remote or "-"] for s in images.sockets],
        )
    if images.stats:
        click.echo("")
        print_table(["CRIU STAT", "VALUE"], [[k, str(v)] for k, v in sorted(images.stats.items())])


@click.command()
@click.argument("name", required=False)
@click.option(
    "-a",
    "--all",
    "all_",
    is_flag=True,
    help="Restore every stopped container that holds a checkpoint (its latest).",
)
@click.option(
    "-l",
    "--label",
    "labels",
    multiple=True,
    metavar="KEY[=VALUE]",
    help="With --all: only containers with this label (repeatable: all of them).",
)
@click.option("--checkpoint", "cp_name", help="Checkpoint to restore (default: the latest).")
@click.option("--latest", is_flag=True, help="Restore the newest checkpoint (the default).")
@click.option("--tcp-established", is_flag=True, help="Restore established TCP connections.")
@click.option(
    "--tcp-close", is_flag=True, help="Restore established TCP connections closed (CRIU)."
)
@click.option(
    "--ignore-rootfs",
    is_flag=True,
    help="With --import: do not apply the archive's file changes.",
)
@click.option("--file-locks", is_flag=True, help="Restore held file locks.")
@click.option(
    "-i",
    "--import",
    "import_path",
    type=click.Path(dir_okay=False),
    help="Create the container from this ctk archive (made by checkpoint --export).",
)
@click.option(
    "--image",
    "image",
    metavar="IMAGE",
    help="Create the container from this checkpoint image (made by checkpoint "
    "--create-image, or by podman container checkpoint --create-image).",
)
@click.option(
    "-n",
    "--name",
    "new_name",
    help="With --import or --image: name of the new container (a clone).",
)
@click.option(
    "--ignore-static-ip",
    is_flag=True,
    help="With --import or --image: let the engine pick a new IP.",
)
@click.option(
    "--verify",
    "verify_keys",
    multiple=True,
    type=click.Path(dir_okay=False),
    metavar="PUBKEY",
    help="With --import: refuse the archive unless this ed25519 public key signed it "
    "(repeatable: any of them).",
)
@click.option(
    "-p",
    "--publish",
    "publish",
    multiple=True,
    metavar="[IP:]HOST:CTR",
    help="With --import or --image: publish ports instead of the archived ones (repeatable).",
)
@click.option(
    "--allow-mount",
    "allow_mounts",
    multiple=True,
    metavar="PATH",
    help="With --import or --image: let the archived container bind-mount this host path "
    "(repeatable); archives are refused if they bind-mount anything not named here. The "
    "archive's volumes need no such choice: ctk creates them new.",
)
@click.option(
    "--ignore-volumes",
    is_flag=True,
    help="With --import: do not restore the archive's volume data; the container mounts the "
    "volumes of those names that exist here, new empty ones for the others.",
)
@click.option(
    "--allow-host-network",
    is_flag=True,
    help="With --import or --image: let an archived container of network=host share this "
    "host's network "
    "(refused otherwise).",
)
@click.option(
    "--print-stats", is_flag=True, help="Show CRIU's statistics and ctk's time per phase."
)
@json_option
def restore(
    name: str | None,
    all_: bool,
    labels: tuple[str, ...],
    cp_name: str | None,
    latest: bool,
    tcp_established: bool,
    tcp_close: bool,
    ignore_rootfs: bool,
    file_locks: bool,
    import_path: str | None,
    image: str | None,
    new_name: str | None,
    ignore_static_ip: bool,
    verify_keys: tuple[str, ...],
    publish: tuple[str, ...],
    allow_mounts: tuple[str, ...],
    ignore_volumes: bool,
    allow_host_network: bool,
    print_stats: bool,
) -> None:
    """Restore container NAME from a checkpoint; its processes continue where they were.

    With --import FILE, create the container from a checkpoint archive instead (on this or
    another host), with --image IMAGE from a checkpoint image (Podman's format, made by
    either engine); --name NEW makes a clone beside a still running original.
    """
    if latest and (cp_name is not None or import_path is not None or image is not None):
        raise InvalidArgument("--latest does not go with --checkpoint, --import or --image")
    if ignore_rootfs and import_path is None:
        raise click.UsageError("--ignore-rootfs needs --import FILE")
    if all_ or labels:
        if (
            not all_
            or name is not None
            or import_path is not None
            or image is not None
            or new_name
            or print_stats
        ):
            raise click.UsageError(
                "give the container NAME, or --all (with --label filters); --all does not go "
                "with --import, --image, --name or --print-stats"
            )
        options = RestoreOptions(
            checkpoint=cp_name,
            tcp_established=tcp_established,
            file_locks=file_locks,
            tcp_close=tcp_close,
        )
        results = batch.restore_all(state().backend(), options, labels=parse_labels(labels))
        _render_batch(results, action="restore")
        return
    if image is not None:
        if import_path is not None or name is not None or cp_name is not None or verify_keys:
            raise click.UsageError(
                "--image does not go with NAME, --checkpoint, --import or --verify; name the "
                "new container with --name NEW"
            )
        if tcp_close or ignore_volumes:
            raise click.UsageError(
                "--tcp-close and --ignore-volumes go with NAME or --import FILE, not --image"
            )
        _restore_image(
            image,
            ImportOptions(
                name=new_name,
                tcp_established=tcp_established,
                file_locks=file_locks,
                ignore_static_ip=ignore_static_ip,
                ports=_ports(publish),
                allow_mounts=allow_mounts,
                allow_host_network=allow_host_network,
            ),
            print_stats,
        )
        return
    if import_path is None:
        if name is None:
            raise click.UsageError("give the container NAME, --import FILE or --image IMAGE")
        if (
            new_name
            or ignore_static_ip
            or publish
            or verify_keys
            or allow_mounts
            or allow_host_network
            or ignore_volumes
        ):
            raise click.UsageError(
                "--name, --ignore-static-ip, --publish, --verify, --allow-mount, "
                "--ignore-volumes and --allow-host-network need --import FILE (or --image IMAGE)"
            )
        options = RestoreOptions(
            checkpoint=cp_name,
            tcp_established=tcp_established,
            file_locks=file_locks,
            tcp_close=tcp_close,
        )
        started = time.monotonic()
        info = operations.restore(state().backend(), name, options)
        phase = "restore"
    else:
        if name is not None or cp_name is not None:
            raise click.UsageError(
                "with --import, name the new container with --name NEW (the archive holds "
                "one checkpoint)"
            )
        ports = _ports(publish)
        imported = ImportOptions(
            name=new_name,
            tcp_established=tcp_established,
            file_locks=file_locks,
            ignore_static_ip=ignore_static_ip,
            ports=ports,
            verify_keys=verify_keys,
            allow_mounts=absolute_paths(allow_mounts),
            allow_host_network=allow_host_network,
            ignore_rootfs=ignore_rootfs,
            tcp_close=tcp_close,
            ignore_volumes=ignore_volumes,
        )
        # Refuse an unsigned or untrusted archive before any engine is contacted (the
        # reader checks the signature again while it extracts).
        trust = import_trust(verify_keys)
        if trust.required:
            check_head(import_path, trust)
        started = time.monotonic()
        with archive_progress():
            info = operations.import_checkpoint(state().backend(), import_path, imported)
        phase = "import"
    timings = {phase: round(time.monotonic() - started, 3)}
    criu = _criu_stats(state().backend(), info.id, "restore") if print_stats else {}
    _render(info.to_dict(), info.name, timings if print_stats else None, criu)


def _ports(publish: tuple[str, ...]) -> tuple[PortMapping, ...]:
    try:
        return tuple(PortMapping.parse(p) for p in publish)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--publish") from exc


def _restore_image(image: str, options: ImportOptions, print_stats: bool) -> None:
    from toolkit.checkpoint_images import restore_image

    started = time.monotonic()
    backend = state().backend()
    info = restore_image(backend, image, options)
    timings = {"restore": round(time.monotonic() - started, 3)}
    criu = _criu_stats(backend, info.id, "restore") if print_stats else {}
    _render(info.to_dict(), info.name, timings if print_stats else None, criu)
