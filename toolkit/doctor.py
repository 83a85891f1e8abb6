"""``ctk doctor``: is this machine ready to checkpoint containers, and if not, what fixes it."""

from __future__ import annotations

import itertools
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from toolkit.backends.base import Backend, CriuLogs, SharedFilesystem
from toolkit.config import EngineRef, connect
from toolkit.criu.probe import (
    MIN_VERSION,
    CriuStatus,
    NonRootDump,
    probe_criu,
    probe_non_root_dump,
    pycriu_available,
)
from toolkit.errors import CheckpointError, ContainerNotFound, CtkError, ImageNotFound
from toolkit.models import (
    CheckpointOptions,
    ContainerSpec,
    EngineInfo,
    RestoreOptions,
    Ulimit,
    _Model,
)
from toolkit.readiness import wait_until

log = logging.getLogger(__name__)

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
        checks.append(podman_runtime_check(info))
    return checks


# The runtime ctk creates Podman's containers with (toolkit.backends.podman.CHECKPOINT_RUNTIME;
# not imported: doctor runs without the SDKs): bookworm's crun cannot checkpoint.
_CHECKPOINT_RUNTIME = "runc"


def podman_runtime_check(info: EngineInfo) -> Check:
    """The OCI runtime Podman's host has, as the engine reports it (not ctk's machine's runc).

    libpod's info names only the default runtime: when it is not runc, whether the host has
    runc too is left to the probe (ctk creates containers with runc whatever the default).
    """
    name = "podman checkpoint runtime"
    runtime = info.default_runtime
    found = " ".join(part for part in (runtime, info.runtime_version) if part)
    if info.runtime_path:
        found += f" at {info.runtime_path}"
    if runtime == _CHECKPOINT_RUNTIME:
        return Check(name, True, f"{found} on the engine's host (ctk creates containers with runc)")
    default = f"the engine's default is {found}" if runtime else "the engine names no runtime"
    return Check(
        name,
        True,
        f"{default}; ctk creates containers with runc, which the engine's info does not list "
        "(the probe shows whether its host has it)",
    )


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


# The probe's container: the demo busybox image (scripts/images loads it into every engine ctk
# tests, the testbed hosts' included), a shell counting in memory, one number a line.
PROBE_IMAGE = "ctk-demo/busybox"
PROBE_LABELS = {"ctk.doctor": "1"}
PROBE_CHECKPOINT = "ctk-doctor"
_PROBE_COMMAND = ("sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done")
# Below this machine's hard limits: Podman asks for more by default and the container fails to
# start where raising a limit is not permitted (ENVIRONMENT.md).
_PROBE_ULIMITS = (Ulimit("nofile", 1024, 1024), Ulimit("nproc", 4096, 4096))
# root, and the user "nobody": CRIU dumps another user's task differently (its rlimits).
PROBE_USERS = (("root", "0:0"), ("non-root", "65534:65534"))
_PROBE_TIMEOUT = 8.0
_NUMBER = re.compile(r"^(\d+)$", re.MULTILINE)
# The header line of every CRIU log: "(00.000023) Version: 4.1.1 (gitid 0)".
_CRIU_VERSION = re.compile(r"\) Version: (\S+)")


def runtime_check(info: EngineInfo, criu_seen: str = "", *, probed: bool = True) -> Check:
    """The engine's runtime and CRIU, as the engine's host reports them.

    ``criu_seen``: CRIU's version from a probe's log on the engine's host. Neither engine's
    info reports CRIU (Docker 20.10, Podman 4.3 here), so that log is the only source.
    """
    runtime = info.default_runtime or "unknown"
    if info.runtime_version:
        runtime += f" {info.runtime_version}"
    criu = (
        f"CRIU {criu_seen} (the engine's host)"
        if criu_seen
        else "CRIU's version not reported by the engine "
        + ("(the probe proves whether it works)" if probed else "(without --quick, a probe tells)")
    )
    return Check(f"{info.kind} runtime", True, f"{runtime}; {criu}")


def _counts(backend: Backend, name: str) -> list[int]:
    return [int(n) for n in _NUMBER.findall(backend.logs(name))]


def _wait_count_above(backend: Backend, name: str, value: int) -> int:
    wait_until(
        lambda: (_counts(backend, name) or [0])[-1] > value,
        timeout=_PROBE_TIMEOUT,
        what=f"the probe container to count past {value}",
    )
    return _counts(backend, name)[-1]


def _criu_version_seen(backend: Backend, name: str) -> str:
    """CRIU's version from the probe's dump log, where the engine keeps it (Podman); else ""."""
    if not isinstance(backend, CriuLogs):
        return ""
    try:
        found = _CRIU_VERSION.search(backend.criu_log(name, phase="dump"))
    except CtkError as exc:
        log.warning("doctor: CRIU's log of %s is not readable: %s", name, exc.message)
        return ""
    return found.group(1) if found else ""


def probe_once(backend: Backend, label: str, user: str) -> tuple[Check, str]:
    """Run, checkpoint, restore and remove one counting container as ``user``: a real C/R.

    The container carries ``ctk.doctor=1`` and a unique name, and is removed by that name
    whatever happens. Returns the check and CRIU's version as its log names it ("" unknown).
    """
    return _probe_once(backend, label, user, name=f"ctk-doctor-{uuid.uuid4().hex[:12]}")


def _probe_once(backend: Backend, label: str, user: str, *, name: str) -> tuple[Check, str]:
    check = f"{backend.kind} probe ({label})"
    spec = ContainerSpec(
        image=PROBE_IMAGE,
        command=_PROBE_COMMAND,
        name=name,
        labels=PROBE_LABELS,
        user=user,
        ulimits=_PROBE_ULIMITS,
    )
    try:
        backend.run(spec)
        before = _wait_count_above(backend, name, 0)
        try:
            backend.checkpoint(name, CheckpointOptions(name=PROBE_CHECKPOINT))
        except CheckpointError as exc:
            failed = Check(check, False, exc.message, exc.hint or "see CRIU's reason")
            return failed, _criu_version_seen(backend, name)
        version = _criu_version_seen(backend, name)
        return _restored_check(backend, check, name, before), version
    except ImageNotFound:
        missing = Check(
            check,
            False,
            f"image {PROBE_IMAGE} is not on the engine",
            f"scripts/images, or load it there: docker save {PROBE_IMAGE} | {backend.kind} load",
        )
        return missing, ""
    except CtkError as exc:
        return Check(check, False, exc.message, exc.hint), ""
    finally:
        _remove_probe(backend, name)


def _remove_probe(backend: Backend, name: str) -> None:
    """Remove the probe by its exact name; log (never raise) what goes wrong."""
    try:
        # The shell is PID 1 and ignores SIGTERM: a forced removal would wait out the engine's
        # stop timeout (10 s on Podman). Kill it at once.
        backend.stop(name, timeout=0)
    except ContainerNotFound:
        return  # never created (the image was missing)
    except CtkError as exc:
        log.debug("doctor: stopping the probe %s: %s", name, exc)  # e.g. not running
    try:
        backend.remove(name, force=True)
    except ContainerNotFound:
        pass
    except CtkError as exc:
        log.warning("doctor: could not remove the probe container %s: %s", name, exc)


def _restored_check(backend: Backend, check: str, name: str, before: int) -> Check:
    """Restore the checkpointed probe and check that it counts on from where it was frozen.

    Raises:
        CtkError: the restore failed (CheckpointError with CRIU's reason), or it never counted.
    """
    frozen = _counts(backend, name)[-1]
    backend.restore(name, RestoreOptions(checkpoint=PROBE_CHECKPOINT))
    after = _wait_count_above(backend, name, frozen)
    values = _counts(backend, name)
    if any(b <= a for a, b in itertools.pairwise(values)):
        return Check(
            check,
            False,
            f"the restored container counted again from the start (it had reached {frozen}): "
            "its memory was not restored",
            "run ctk --debug checkpoint and restore on a container to see what the engine did",
        )
    return Check(
        check, True, f"checkpointed at {frozen}, restored, counting on ({before}..{after})"
    )


def probe_engine(backend: Backend, info: EngineInfo) -> list[Check]:
    """The engine's runtime line and, when it can checkpoint at all, a probe per user."""
    if not info.checkpoint_capable:
        return [runtime_check(info)]
    probes = [probe_once(backend, label, user) for label, user in PROBE_USERS]
    seen = next((version for _, version in probes if version), "")
    return [runtime_check(info, seen), *(check for check, _ in probes)]


def run_doctor(engines: Sequence[EngineRef], *, quick: bool = False) -> list[Check]:
    """Every check, for the given engines and this machine's CRIU.

    Unless ``quick``, each engine that answers is probed with a real checkpoint and restore of
    a tiny container through the engine itself: this is what proves the engine's host (not
    ctk's) can checkpoint.
    """
    checks: list[Check] = []
    answered: dict[str, EngineInfo | None] = {}
    podman_shares: bool | None = None
    for ref in engines:
        backend: Backend | None = None
        try:
            backend = connect(ref)
            info: EngineInfo | None = backend.info()
            error = ""
        except CtkError as exc:
            info, error = None, exc.message
        checks.extend(engine_checks(ref, info, error))
        if backend is not None and info is not None:
            if quick:
                checks.append(runtime_check(info, probed=False))
            else:
                checks.extend(probe_engine(backend, info))
                if isinstance(backend, SharedFilesystem):
                    podman_shares = _shares_config_dir(backend)
        if backend is not None:
            backend.close()
        answered[ref.kind] = info
    status = probe_criu()
    checks.extend(criu_checks(status))
    if status.check_ok:
        checks.append(non_root_check(probe_non_root_dump(status.path)))
    checks.append(pycriu_check(pycriu_available()))
    if "docker" in answered and "podman" in answered:
        checks.append(cross_runtime_check(answered["docker"], answered["podman"], podman_shares))
    return checks


def _shares_config_dir(backend: Backend) -> bool:
    """Whether Podman's host sees ctk's per-container CRIU config directory (a real proof)."""
    from toolkit.migration.criu_config import shares_config_dir

    return shares_config_dir(backend, PROBE_IMAGE)


def cross_runtime_check(
    docker: EngineInfo | None, podman: EngineInfo | None, podman_shares: bool | None = None
) -> Check:
    """Whether checkpoints can move live between Docker and Podman on this machine, and why not.

    Docker must be able to checkpoint; containers must run on runc, not crun, and have no
    volumes (per container: ``ctk checkpoint inspect`` says). ``podman_shares`` says where the
    per-container CRIU config goes: True, ctk's directory (proved by reading a file back
    through the engine); False, through the engine (a volume on Podman's host); None, not
    probed (``--quick``).
    """
    name = "cross-runtime"
    if docker is None or podman is None:
        return Check(name, False, "needs both Docker and Podman answering", FIX_ENGINES)
    if not docker.checkpoint_capable:
        return Check(name, False, "Docker cannot checkpoint (experimental mode off)", FIX_SETUP)
    note = (
        f" (Podman's default runtime is {podman.default_runtime}: ctk creates containers on runc)"
        if podman.default_runtime and podman.default_runtime != "runc"
        else ""
    )
    where = {
        True: "",
        False: "; CRIU's config for Podman written through the engine (its host is not this one)",
        None: " (not proved: --quick)",
    }[podman_shares]
    return Check(
        name, True, f"live docker <-> podman for runc containers without volumes{note}{where}"
    )
