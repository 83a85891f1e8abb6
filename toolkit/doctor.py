"""``ctk doctor``: is this machine ready to checkpoint containers, and if not, what fixes it."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from toolkit.config import EngineRef, connect
from toolkit.criu.probe import (
    MIN_VERSION,
    CriuStatus,
    NonRootDump,
    probe_criu,
    probe_non_root_dump,
    pycriu_available,
)
from toolkit.errors import CtkError
from toolkit.models import EngineInfo, _Model

FIX_ENGINES = "scripts/engines start"
FIX_SETUP = "scripts/setup"


@dataclass(frozen=True)
class Check(_Model):
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def engine_checks(ref: EngineRef, info: EngineInfo | None, error: str = "") -> list[Check]:
    """Checks for one engine, from what it answered (``info`` None: it did not answer)."""
    label = f"{ref.kind} engine"
    if info is None:
        return [
            Check(label, False, f"not answering at {ref.url}: {error}".strip(": "), FIX_ENGINES)
        ]
    checks = [Check(label, True, f"{info.version} at {ref.url}")]
    if ref.kind == "docker":
        checks.append(
            Check(
                "docker experimental",
                info.experimental,
                "on" if info.experimental else "off: docker checkpoint needs it",
                ""
                if info.experimental
                else 'add {"experimental": true} to /etc/docker/daemon.json, then '
                f"restart dockerd ({FIX_ENGINES})",
            )
        )
    else:
        runc = shutil.which("runc")
        checks.append(
            Check(
                "podman checkpoint runtime",
                runc is not None,
                f"runc at {runc} (ctk creates containers with runc)"
                if runc
                else "runc not installed: crun here cannot checkpoint",
                "" if runc else "apt-get install runc (or scripts/setup)",
            )
        )
    return checks


def criu_checks(status: CriuStatus) -> list[Check]:
    """Checks for CRIU itself, from a probe."""
    wanted = ".".join(map(str, MIN_VERSION))
    if status.path is None:
        return [Check("criu", False, "not installed", FIX_SETUP)]
    checks = [
        Check(
            "criu version",
            status.new_enough,
            f"{status.version_text} at {status.path}",
            ""
            if status.new_enough
            else f"CRIU >= {wanted} is needed on this kernel: {FIX_SETUP} builds 4.1.1",
        )
    ]
    last = status.check_output.strip().splitlines()[-1:] or [""]
    checks.append(
        Check(
            "criu check",
            status.check_ok,
            "Looks good" if status.check_ok else last[0],
            "" if status.check_ok else f"run as root; install CRIU >= {wanted}: {FIX_SETUP}",
        )
    )
    return checks


def non_root_check(probe: NonRootDump) -> Check:
    """Whether containers running as a non-root user can be checkpointed, from a real dump."""
    name = "criu non-root dump"
    if not probe.probed:
        return Check(name, False, f"not probed: {probe.reason}", "run ctk doctor as root")
    if probe.ok:
        return Check(name, True, "a task of another user (nobody) dumps")
    detail = f"CRIU cannot dump a task of another user: {probe.reason}"
    fix = "see CRIU's reason; run non-root containers' checkpoints as root"
    if "rlimit" in probe.reason or probe.sys_resource_bounded is False:
        detail += (
            "; the capability bounding set here lacks CAP_SYS_RESOURCE, which CRIU 4.1.1 needs "
            "to read another user's rlimits: no container running as a non-root user "
            "(postgres, redis, nobody) can be checkpointed"
        )
        fix = (
            f"install ctk's patched CRIU ({FIX_SETUP}: scripts/criu-patches reads them from "
            "/proc/PID/limits), or run such containers as root"
        )
    return Check(name, False, detail, fix)


def pycriu_check(available: bool) -> Check:
    return Check(
        "pycriu",
        available,
        "importable" if available else "not importable (checkpoint inspect needs it)",
        "" if available else f"{FIX_SETUP} (builds pycriu from CRIU's source tree into .venv)",
    )


def run_doctor(engines: Sequence[EngineRef]) -> list[Check]:
    """Every check, for the given engines and this machine's CRIU."""
    checks: list[Check] = []
    answered: dict[str, EngineInfo | None] = {}
    for ref in engines:
        try:
            backend = connect(ref)
            info: EngineInfo | None = backend.info()
            error = ""
        except CtkError as exc:
            info, error = None, exc.message
        checks.extend(engine_checks(ref, info, error))
        answered[ref.kind] = info
    status = probe_criu()
    checks.extend(criu_checks(status))
    if status.check_ok:
        checks.append(non_root_check(probe_non_root_dump(status.path)))
    checks.append(pycriu_check(pycriu_available()))
    if "docker" in answered and "podman" in answered:
        checks.append(cross_runtime_check(answered["docker"], answered["podman"]))
    return checks


def cross_runtime_check(docker: EngineInfo | None, podman: EngineInfo | None) -> Check:
    """Whether checkpoints can move live between Docker and Podman on this machine, and why not.

    Podman must be local (ctk writes a per-container CRIU config beside it) and Docker able to
    checkpoint; containers must run on runc, not crun, and have no volumes (per container:
    ``ctk checkpoint inspect`` says).
    """
    name = "cross-runtime"
    if docker is None or podman is None:
        return Check(name, False, "needs both Docker and Podman answering", FIX_ENGINES)
    if not docker.checkpoint_capable:
        return Check(name, False, "Docker cannot checkpoint (experimental mode off)", FIX_SETUP)
    if not podman.url.startswith("unix://"):
        return Check(name, False, f"Podman at {podman.url} is not on this machine")
    note = (
        f" (Podman's default runtime is {podman.default_runtime}: ctk creates containers on runc)"
        if podman.default_runtime and podman.default_runtime != "runc"
        else ""
    )
    return Check(name, True, f"live docker <-> podman for runc containers without volumes{note}")
