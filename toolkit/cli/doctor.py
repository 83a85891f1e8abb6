"""``ctk doctor [ENGINE]``: report readiness, each failing line with its fix."""

from __future__ import annotations

import sys

import click

from toolkit.cli._common import console, json_option, print_json, state, wants_json
from toolkit.config import DEFAULT_URLS, EngineRef, resolve_engine
from toolkit.doctor import run_doctor
from toolkit.errors import ExitCode


@click.command()
@click.argument("engine", required=False)
@click.option(
    "--quick",
    is_flag=True,
    help="Only the local checks and what the engine reports: no probe container.",
)
@json_option
def doctor(engine: str | None, quick: bool) -> None:
    """Check engines, CRIU and pycriu; exit 0 only when all is ready.

    ENGINE (a configured name, docker, podman or a URL; default: --engine, else both local
    engines) is probed for real unless --quick: a tiny container run as root and one as user
    65534, each checkpointed, restored and removed through the engine, so the engine's host
    and its CRIU are what is checked, not only this machine.
    """
    selected = engine or state().engine
    engines = (
        [resolve_engine(selected, tls=state().tls)]
        if selected
        else [EngineRef(kind, url) for kind, url in DEFAULT_URLS.items()]
    )
    checks = run_doctor(engines, quick=quick)
    ready = all(c.ok for c in checks)
    if wants_json():
        print_json({"ready": ready, "checks": [c.to_dict() for c in checks]})
    else:
        out = console()
        for c in checks:
            mark = "[green]ok[/green]  " if c.ok else "[red]FAIL[/red]"
            out.print(f"{mark} {c.name}: {c.detail}", markup=True, highlight=False)
            if not c.ok and c.fix:
                out.print(f"      fix: {c.fix}", highlight=False)
        out.print("ready" if ready else "[red]not ready[/red]")
    if not ready:
        sys.exit(ExitCode.NOT_READY)
