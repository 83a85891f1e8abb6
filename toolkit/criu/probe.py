"""Find the CRIU binary, its version, and whether ``criu check`` passes on this kernel."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# runc looks CRIU up in PATH; scripts/setup installs a source build in /usr/local/sbin.
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"]
)
MIN_VERSION = (4, 0)


@dataclass(frozen=True)
class CriuStatus:
    """What this machine's CRIU is and whether it works."""

    path: str | None
    version: tuple[int, ...] | None
    check_ok: bool
    check_output: str

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version)) if self.version else "unknown"

    @property
    def new_enough(self) -> bool:
        return self.version is not None and self.version >= MIN_VERSION


def criu_binary() -> str | None:
    """Path of the ``criu`` binary (``$CTK_CRIU`` first), or None."""
    if explicit := os.environ.get("CTK_CRIU"):
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("criu", path=_SEARCH_PATH)


def parse_version(text: str) -> tuple[int, ...] | None:
    """``Version: 4.1.1`` -> (4, 1, 1)."""
    match = re.search(r"Version:\s*(\d+(?:\.\d+)*)", text)
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


def probe_criu(*, run_check: bool = True) -> CriuStatus:
    """Version and ``criu check`` of the installed CRIU (check needs root)."""
    path = criu_binary()
    if path is None:
        return CriuStatus(None, None, False, "criu not found")
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=20, check=False
        )
        version = parse_version(out.stdout + out.stderr)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CriuStatus(path, None, False, str(exc))
    if not run_check:
        return CriuStatus(path, version, False, "")
    try:
        check = subprocess.run([path, "check"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CriuStatus(path, version, False, str(exc))
    output = (check.stdout + check.stderr).strip()
    return CriuStatus(path, version, check.returncode == 0 and "Looks good" in output, output)


def pycriu_available() -> bool:
    """True when pycriu (built from CRIU's source tree) can be imported."""
    return importlib.util.find_spec("pycriu") is not None


# Linux's capability number of CAP_SYS_RESOURCE (include/uapi/linux/capability.h).
CAP_SYS_RESOURCE = 24
# The user the probe's task runs as: nobody, as in most images' non-root users.
_PROBE_UID = 65534


@dataclass(frozen=True)
class NonRootDump:
    """Whether this machine's CRIU dumps a task of another (non-root) user.

    ``probed`` False: the probe could not run (not root, no CRIU); ``reason`` says why.
    """

    probed: bool
    ok: bool
    reason: str = ""
    sys_resource_bounded: bool | None = None
    """CAP_SYS_RESOURCE in this process's capability bounding set (None: unknown)."""


def cap_in_bounding_set(cap: int, status_text: str | None = None) -> bool | None:
    """Whether capability ``cap`` is in ``CapBnd`` of /proc/self/status (None: unreadable)."""
    if status_text is None:
        try:
            status_text = Path("/proc/self/status").read_text()
        except OSError:
            return None
    match = re.search(r"^CapBnd:\s*([0-9a-fA-F]+)$", status_text, re.M)
    return bool(int(match.group(1), 16) >> cap & 1) if match else None


def probe_non_root_dump(path: str | None = None, *, timeout: float = 30) -> NonRootDump:
    """Dump a ``sleep`` running as nobody with CRIU, in a temporary directory.

    Containers that run as a non-root user (postgres, redis, nobody) are tasks of another
    user to CRIU. CRIU 4.1.1 reads their rlimits with prlimit(2), which needs
    CAP_SYS_RESOURCE; where the bounding set lacks it, every such checkpoint fails ("Can't
    get rlimit 0: Operation not permitted") although ``criu check`` says "Looks good". A real
    dump is the only test that also covers CRIUs patched around it (scripts/criu-patches).
    The dump kills the sleep; nothing is left behind.
    """
    bounded = cap_in_bounding_set(CAP_SYS_RESOURCE)
    path = path or criu_binary()
    if path is None:
        return NonRootDump(False, False, "criu not found", bounded)
    if os.geteuid() != 0:
        return NonRootDump(False, False, "needs root (CRIU dumps as root)", bounded)
    with tempfile.TemporaryDirectory(prefix="ctk-probe-") as tmp:
        # A session of its own, so CRIU needs no --shell-job; nobody's uid and gid, no groups.
        task = subprocess.Popen(
            ["sleep", "60"],
            user=_PROBE_UID,
            group=_PROBE_UID,
            extra_groups=[],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd="/",
        )
        try:
            dump = subprocess.run(
                [path, "dump", "-t", str(task.pid), "-D", tmp, "-o", "dump.log"],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            log = (Path(tmp) / "dump.log").read_text(errors="replace")
        except (OSError, subprocess.TimeoutExpired) as exc:
            return NonRootDump(True, False, str(exc), bounded)
        finally:
            if task.poll() is None:
                task.kill()
            task.wait()
    if dump.returncode == 0:
        return NonRootDump(True, True, "", bounded)
    from toolkit.criu.diagnosis import criu_first_error

    reason = criu_first_error(log) or (dump.stderr.strip().splitlines() or ["criu dump failed"])[-1]
    return NonRootDump(True, False, reason, bounded)
