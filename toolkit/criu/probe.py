"""Find the CRIU binary, its version, and whether ``criu check`` passes on this kernel."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

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
