"""What users type that the engines do not read as such: memory sizes, --since times."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from toolkit.errors import InvalidArgument


def parse_memory(text: str) -> int:
    """``512m``, ``1g``, ``1048576`` (bytes), as docker's ``--memory`` reads them."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmg]?)b?", text.strip().lower())
    if not match:
        raise InvalidArgument(f"bad memory size {text!r}", hint="e.g. 64m, 1g or a byte count")
    factor = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2)]
    return int(float(match.group(1)) * factor)


def parse_since(text: str, *, now: datetime | None = None) -> int:
    """``--since``: a UNIX time, an RFC 3339 time, or a duration back from now (``10m``)."""
    value = text.strip()
    current = now or datetime.now(UTC)
    if value.isdigit():
        return int(value)
    match = re.fullmatch(r"(\d+)([smhd])", value)
    if match:
        seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return int(current.timestamp()) - seconds
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidArgument(
            f"bad --since value {text!r}", hint="use a UNIX time, 2026-01-02T03:04:05Z or 10m"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())
