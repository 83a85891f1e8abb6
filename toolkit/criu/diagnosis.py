"""Why CRIU failed: the reason from its log and, when a flag fixes it, the hint."""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from toolkit.errors import CheckpointError

# CRIU reasons ctk can explain: (pattern in CRIU's log, hint, the switch the hint suggests).
# The switch is named so that a user who gave it already is not told to add it.
KNOWN_CRIU_REASONS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (
        re.compile(r"established TCP|TCP connection|tcp-established|\bESTABLISHED\b", re.I),
        "the container holds an established TCP connection: retry with --tcp-established",
        "--tcp-established",
    ),
    (
        re.compile(r"file[- ]locks?|\bflock\b|posix lock", re.I),
        "the container holds file locks: retry with --file-locks",
        "--file-locks",
    ),
    (
        re.compile(r"external (unix )?socket|unix socket.*external|sk unix.*peer", re.I),
        "the container is connected to a unix socket outside it; CRIU cannot dump that peer",
        "",
    ),
    (
        re.compile(r"unsupported.*device|character device|can't dump.*dev", re.I),
        "the container uses a device CRIU cannot checkpoint",
        "",
    ),
    (
        re.compile(r"Unexpected rt vDSO|vdso: .*(failed|unexpected|bounds)", re.I),
        "this CRIU is too old for the kernel: install CRIU >= 4.1 (scripts/setup)",
        "",
    ),
    (
        # CRIU 4.1.1 unpatched, where CAP_SYS_RESOURCE is not in the bounding set.
        re.compile(r"Can't get rlimit \d+: Operation not permitted"),
        "CRIU cannot read the rlimits of a non-root container here (no CAP_SYS_RESOURCE): "
        "install ctk's patched CRIU (scripts/setup), or run the container as root",
        "",
    ),
)

# CRIU error lines that say that it failed, or that are printed on every run here, and never
# why it failed: the first other error line is the reason.
CRIU_NOISE = (
    # CRIU raises its own RLIMIT_NOFILE and carries on when it cannot (no CAP_SYS_RESOURCE)
    "Can't setup RLIMIT_NOFILE for self",
    "Dumping FAILED",
    "Restoring FAILED",
    "Pre-dumping FAILED",
    "cgroupd",
    "exited, status=",
)
_CRIU_ERROR_LINE = re.compile(r"\bError \([^)]*\): ?(.*)$")


def criu_flags(*, tcp_established: bool = False, file_locks: bool = False) -> frozenset[str]:
    """The CRIU switches the user gave, spelt as on ctk's command line (for :func:`criu_error`)."""
    given = {"--tcp-established": tcp_established, "--file-locks": file_locks}
    return frozenset(flag for flag, on in given.items() if on)


def criu_first_error(text: str) -> str:
    """CRIU's first error line in ``text`` that says why, without its prefix; "" if none.

    ``(00.012) Error (criu/cr-dump.c:371): Can't get rlimit 0: ...`` gives
    ``Can't get rlimit 0: ...``.
    """
    for line in text.splitlines():
        match = _CRIU_ERROR_LINE.search(line)
        if match and match.group(1).strip() and not any(n in line for n in CRIU_NOISE):
            return match.group(1).strip()
    return ""


def criu_log_errors(text: str, *, limit: int = 8) -> str:
    """The lines of a CRIU log that say why it failed."""
    lines = [line.strip() for line in text.splitlines() if "Error" in line or "rror (" in line]
    return "\n".join(lines[-limit:])


def log_paths(message: str) -> list[str]:
    """The CRIU log files an engine's error message names (on the engine's host)."""
    return re.findall(r"(/[\w./@:+-]+?\.log)\b", message)


def criu_error(
    action: str,
    container: str,
    message: str,
    log_text: str = "",
    *,
    given: Collection[str] = (),
) -> CheckpointError:
    """A CheckpointError carrying CRIU's reason and, when the reason is known, the fix.

    The message carries CRIU's first error line that says why (not its closing "Dumping
    FAILED"); the log tail has the rest. ``given`` are the switches the user already passed
    (:func:`criu_flags`): a hint never suggests one of them again.
    """
    if not log_text:
        for path in log_paths(message):
            try:
                log_text = Path(path).read_text(errors="replace")
                break
            except OSError:
                continue
    tail = criu_log_errors(log_text) or criu_log_errors(message)
    haystack = f"{message}\n{log_text}"
    hint = ""
    for pattern, reason, flag in KNOWN_CRIU_REASONS:
        if not pattern.search(haystack):
            continue
        if flag and flag in given:
            hint = (
                f"CRIU failed although {flag} was given; see CRIU's reason above "
                f"(ctk --debug {action} shows more)"
            )
        else:
            hint = reason
        break
    if not hint:
        hint = (
            f"the container was left as it was; see CRIU's reason above (ctk --debug {action} "
            "shows more)"
        )
    first = message.splitlines()[0] if message else "CRIU failed"
    reason = criu_first_error(log_text) or criu_first_error(message) or first
    return CheckpointError(f"{action} of {container} failed: {reason}", hint=hint, log_tail=tail)
