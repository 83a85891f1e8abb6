"""``ctk doctor``: report readiness, each failing line with its fix."""

from __future__ import annotations

import sys

import click

from toolkit.cli._common import console, json_option, print_json, state, wants_json
from toolkit.config import DEFAULT_URLS, EngineRef, resolve_engine
from toolkit.doctor import run_doctor
from toolkit.errors import ExitCode


@click.command()
@json_option
def doctor() -> None:
    """Check engines, CRIU and pycriu; exit 0 only when all is ready."""
    selected = state().engine
    engines = (
        [resolve_engine(selected, tls=state().tls)]
        if selected
        else [EngineRef(kind, url) for kind, url in DEFAULT_URLS.items()]
    )
    checks = run_doctor(engines)
    ready = all(c.ok for c in checks)
    if wants_json():
        print_json({"ready": ready, "checks": [c.to_dict() for c in checks]})
    else:
        out = console()
        for c in checks:
            mark = "[green]ok[/green]  " if c.ok else "[red]FAIL[/red]"
            out.print(f"{mark} {c.name}: {c.detail}")
            if not c.ok and c.fix:
                out.print(f"      fix: {c.fix}")
        out.print("ready" if ready else "[red]not ready[/red]")
    if not ready:
        sys.exit(ExitCode.NOT_READY)
