"""Migration commands: ``ctk migrate NAME --to ENGINE`` (and ``--recover``), ``ctk drain``."""

from __future__ import annotations

import click

from toolkit.cli._common import (
    absolute_paths,
    console,
    err,
    human_bytes,
    json_option,
    print_json,
    print_table,
    state,
    transfer_progress,
)
from toolkit.config import get_backend
from toolkit.errors import MigrationError
from toolkit.models import MIGRATION_MODES, MIGRATION_PHASES, MigrationReport

# toolkit.migration and rich.progress load inside the commands: every other ctk call would
# pay for them at start-up.


def render_report(report: MigrationReport) -> None:
    """The report as text: outcome, mode and why, phases, bytes, downtime, rollback."""
    out = console()
    arrow = (
        f"{report.container} -> {report.target}"
        if report.target != report.container
        else report.container
    )
    out.print(f"migration {report.id}: {arrow} {report.status}")
    out.print(f"  from {report.source}")
    out.print(f"  to   {report.destination}")
    out.print(f"  mode {report.mode}: {report.reason}")
    phases = "  ".join(
        f"{p} {report.timings[p]:.2f}s" for p in MIGRATION_PHASES if p in report.timings
    )
    out.print(f"  phases: {phases}")
    out.print(
        f"  moved {human_bytes(report.bytes_moved)} (image {human_bytes(report.image_bytes)}, "
        f"state {human_bytes(report.archive_bytes)}); downtime {report.downtime:.2f}s"
    )
    dump, restore = report.criu_stats.get("dump", {}), report.criu_stats.get("restore", {})
    if "frozen_time" in dump or "restore_time" in restore:
        out.print(
            f"  CRIU: frozen {dump.get('frozen_time', 0) / 1e6:.3f}s, "
            f"restore {restore.get('restore_time', 0) / 1e6:.3f}s"
        )
    if report.failed_phase:
        out.print(f"  failed in {report.failed_phase}: {report.error}")
    for action in report.rolled_back:
        out.print(f"  rolled back: {action}")
    if report.archive:
        out.print(f"  archive kept: {report.archive}")
    if report.status == "done" and report.source_kept:
        out.print("  source kept running on the source engine (the destination holds a copy)")
    for note in report.notes:
        out.print(f"  note: {note}")


@click.command()
@click.argument("name", required=False)
@click.option(
    "--to",
    "to",
    metavar="ENGINE",
    help="Destination engine: docker, podman, a configured name or a URL.",
)
@click.option(
    "--from", "from_", metavar="ENGINE", help="Source engine (default: the selected --engine)."
)
@click.option(
    "--mode",
    type=click.Choice(MIGRATION_MODES),
    default="auto",
    show_default=True,
    help=(
        "live keeps memory (CRIU); cold recreates; auto picks live when both sides can, "
        "postcopy for a container of 512 MiB or more (CTK_POSTCOPY_AUTO_MIB) that can. "
        "postcopy (Podman -> Podman, runc, a container created with an org.criu.config "
        "annotation) resumes the destination before the memory moves, then streams it: "
        "downtime flat in memory size, but if the link or the source dies before the last "
        "page the destination copy is killed and the source runs on where it was frozen. "
        "Volumes move with their data in every mode, Docker <-> Podman too: cold copies them "
        "once the source is stopped; postcopy and live across runtimes while the source is "
        "frozen, so their downtime grows with the volumes' data."
    ),
)
@click.option("--name", "new_name", help="Name on the destination (default: the same).")
@click.option(
    "--keep-source", is_flag=True, help="Leave the source running: the destination gets a copy."
)
@click.option("--tcp-established", is_flag=True, help="Move established TCP connections too.")
@click.option("--ignore-static-ip", is_flag=True, help="Let the destination pick a new IP/MAC.")
@click.option(
    "-c",
    "--compress",
    default="zstd",
    metavar="zstd|gzip|none",
    help="Archive compression (Podman -> Podman streams, with no archive).",
)
@click.option(
    "--verify",
    metavar="URL|CMD",
    help="An http(s) URL that must answer afterwards, or a command (sh -c) run in the container.",
)
@click.option(
    "--allow-mount",
    "allow_mounts",
    multiple=True,
    metavar="PATH",
    help="Let a bind mount of this host path move along (repeatable): the destination must "
    "have the path, its content does not move. Volumes move with their data without it.",
)
@click.option(
    "--recover",
    "recover_",
    is_flag=True,
    help="Finish or roll back interrupted migrations (NAME is then a migration ID, optional).",
)
@json_option
def migrate(
    name: str | None,
    to: str | None,
    from_: str | None,
    mode: str,
    new_name: str | None,
    keep_source: bool,
    tcp_established: bool,
    ignore_static_ip: bool,
    compress: str,
    verify: str | None,
    allow_mounts: tuple[str, ...],
    recover_: bool,
) -> None:
    """Move running container NAME to another engine or host, live or cold.

    Either it ends running on the destination, or the source runs again: the report says
    which phase failed and what was rolled back (exit code 10).
    """
    from toolkit.migration import migrate as migrate_container
    from toolkit.migration import recover

    if recover_:
        reports = recover(name)
        if state().json:
            print_json([r.to_dict() for r in reports])
        elif not reports:
            click.echo("no unfinished migrations")
        for report in reports if not state().json else ():
            render_report(report)
        return
    if not name or not to:
        raise click.UsageError("ctk migrate NAME --to ENGINE (or ctk migrate --recover [ID])")
    mounts = absolute_paths(allow_mounts)  # bad input before any engine is asked
    # --to and --from name engines as --engine does (a configured name keeps its TLS)
    source = get_backend(from_) if from_ else state().backend()
    dest = get_backend(to)
    bar = transfer_progress()
    task = bar.add_task("image", total=None)
    try:
        with bar:
            report = migrate_container(
                name,
                source=source,
                dest=dest,
                mode=mode,
                new_name=new_name,
                keep_source=keep_source,
                tcp_established=tcp_established,
                ignore_static_ip=ignore_static_ip,
                compress=compress,
                verify=verify,
                progress=lambda n: bar.advance(task, n),
                allow_mounts=mounts,
            )
    except MigrationError as exc:
        if isinstance(exc.report, MigrationReport):
            if state().json:
                print_json(exc.report.to_dict())
            else:
                render_report(exc.report)
        raise
    if state().json:
        print_json(report.to_dict())
    else:
        render_report(report)


@click.command()
@click.argument("engine")
@click.option("--to", "to", required=True, metavar="ENGINE", help="Destination engine.")
@click.option("--label", "labels", multiple=True, metavar="K=V", help="Only containers with it.")
@click.option("--parallel", default=1, show_default=True, type=int, help="Migrations at once.")
@click.option("--mode", type=click.Choice(MIGRATION_MODES), default="auto", show_default=True)
@json_option
def drain(engine: str, to: str, labels: tuple[str, ...], parallel: int, mode: str) -> None:
    """Migrate every running container of ENGINE (matching --label) to --to.

    Failures are reported and the others continue; exit code 10 when any failed.
    """
    from toolkit.migration import drain as drain_engine

    wanted: dict[str, str] = {}
    for item in labels:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{item!r} is not K=V", param_hint="--label")
        wanted[key] = value
    source = get_backend(engine)
    dest = get_backend(to)

    as_json = state().json  # read here: the callback runs in worker threads

    def progress(name: str, report: MigrationReport | None, error: str) -> None:
        if not as_json:
            err(f"{name}: {'failed: ' + error if error else 'moved'}")

    result = drain_engine(
        source, dest, labels=wanted, parallel=parallel, mode=mode, on_result=progress
    )
    if state().json:
        print_json(result.to_dict())
    else:
        rows = [
            (
                r.container,
                r.status,
                r.mode,
                f"{r.downtime:.2f}s",
                result.errors.get(r.container, ""),
            )
            for r in result.reports
        ]
        rows += [
            (n, "failed", "-", "-", e)
            for n, e in result.errors.items()
            if n not in {r.container for r in result.reports}
        ]
        print_table(("NAME", "STATUS", "MODE", "DOWNTIME", "ERROR"), sorted(rows))
    if not result.ok:
        tried = len(result.errors) + sum(r.status == "done" for r in result.reports)
        raise MigrationError(
            f"{len(result.errors)} of {tried} migrations failed",
            hint="see each error above; sources of failed migrations still run",
        )
