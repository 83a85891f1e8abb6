"""Why CRIU failed: the reason from its log and, when a flag fixes it, the hint."""

from __future__ import annotations

import re
from pathlib import Path

from toolkit.errors import CheckpointError

# CRIU reasons that a flag fixes: (pattern in CRIU's log, hint).
KNOWN_CRIU_REASONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"established TCP|TCP connection|tcp-established|\bESTABLISHED\b", re.I),
        "the container holds an established TCP connection: retry with --tcp-established",
    ),
    (
        re.compile(r"file[- ]locks?|\bflock\b|posix lock", re.I),
        "the container holds file locks: retry with --file-locks",
    ),
    (
        re.compile(r"external (unix )?socket|unix socket.*external|sk unix.*peer", re.I),
        "the container is connected to a unix socket outside it; CRIU cannot dump that peer",
    ),
    (
        re.compile(r"unsupported.*device|character device|can't dump.*dev", re.I),
        "the container uses a device CRIU cannot checkpoint",
    ),
    (
        re.compile(r"Unexpected rt vDSO|vdso: .*(failed|unexpected|bounds)", re.I),
        "this CRIU is too old for the kernel: install CRIU >= 4.1 (scripts/setup)",
    ),
)


def criu_log_errors(text: str, *, limit: int = 8) -> str:
    """The lines of a CRIU log that say why it failed."""
    lines = [line.strip() for line in text.splitlines() if "Error" in line or "rror (" in line]
    return "\n".join(lines[-limit:])


def _log_paths(message: str) -> list[str]:
    return re.findall(r"(/[\w./@:+-]+?\.log)\b", message)


def criu_error(action: str, container: str, message: str, log_text: str = "") -> CheckpointError:
    """A CheckpointError carrying CRIU's reason and, when the reason is known, the fix."""
    if not log_text:
        for path in _log_paths(message):
            try:
                log_text = Path(path).read_text(errors="replace")
                break
            except OSError:
                continue
    tail = criu_log_errors(log_text) or criu_log_errors(message)
    haystack = f"{message}\n{log_text}"
    hint = ""
    for pattern, reason in KNOWN_CRIU_REASONS:
        if pattern.search(haystack):
            hint = reason
            break
    if not hint:
        hint = (
            f"the container was left as it was; see CRIU's reason above (ctk --debug {action} "
            "shows more)"
        )
    first = message.splitlines()[0] if message else "CRIU failed"
    reason = tail.splitlines()[-1] if tail else first
    return CheckpointError(f"{action} of {container} failed: {reason}", hint=hint, log_tail=tail)
