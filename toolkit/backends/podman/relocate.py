"""libpod's export tar made ready for another host's Podman, rewritten as it streams.

libpod's ``config.dump`` names the source's run-root paths of two files libpod writes on
every start: ``conmonPidFile`` and ``pid_file``. Podman (4.3 and 5.4 alike) keeps them on
import, and then conmon and runc write into the *source* host's run root: it works only where
both hosts have the same run root (the default ``/run/containers/storage``), and fails
anywhere else ("conmon failed: exit status 1": "Failed to write conmon pidfile ... No such file
or directory"). Emptied, libpod computes both under its own run root, as for a new container.

The tar is passed through byte for byte but for ``config.dump``'s data, which is rewritten in
place to the same length (the JSON padded with spaces), so no tar header changes and nothing
but that small member is ever held in memory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import IO

log = logging.getLogger(__name__)

# config.dump fields naming files under the source's run root; libpod fills in its own.
RUN_ROOT_FIELDS = ("conmonPidFile", "pid_file")
_BLOCK = 512
_CONFIG = "config.dump"
_CHUNK = 1 << 20


def _chunks(body: Iterable[bytes] | IO[bytes]) -> Iterator[bytes]:
    if hasattr(body, "read"):
        reader: IO[bytes] = body  # type: ignore[assignment]
        while chunk := reader.read(_CHUNK):
            yield chunk
    else:
        yield from body


def _octal(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for big sizes
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _name(header: bytes) -> str:
    name = header[0:100].split(b"\0", 1)[0]
    prefix = header[345:500].split(b"\0", 1)[0] if header[257:262] == b"ustar" else b""
    full = (prefix + b"/" + name) if prefix else name
    return full.decode("utf-8", "replace").removeprefix("./")


def relocated_config(data: bytes) -> bytes:
    """``config.dump`` with the run-root fields emptied, padded to the same length.

    Returned unchanged when it is not a JSON object, names none of them, or (not expected)
    would grow.
    """
    try:
        config = json.loads(data)
    except ValueError:
        return data
    if not isinstance(config, dict) or not any(config.get(f) for f in RUN_ROOT_FIELDS):
        return data
    for field in RUN_ROOT_FIELDS:
        if config.get(field):
            config[field] = ""
    new = json.dumps(config, separators=(",", ":"), ensure_ascii=False).encode()
    if len(new) > len(data):
        log.warning("podman: config.dump would grow when relocated; sent as it is")
        return data
    return new + b" " * (len(data) - len(new))


def relocate_export(body: Iterable[bytes] | IO[bytes]) -> Iterator[bytes]:
    """libpod's export tar from ``body``, with :func:`relocated_config` applied to config.dump."""
    buf = bytearray()
    source = _chunks(body)

    def fill(n: int) -> bool:
        while len(buf) < n:
            chunk = next(source, None)
            if chunk is None:
                return False
            buf.extend(chunk)
        return True

    long_name: str | None = None
    while fill(_BLOCK):
        header = bytes(buf[:_BLOCK])
        if header == b"\0" * _BLOCK:  # the end: pass the rest as it is
            yield bytes(buf)
            buf.clear()
            yield from source
            return
        size = _octal(header[124:136])
        kind = header[156:157]
        padded = -(-size // _BLOCK) * _BLOCK
        name = long_name if long_name is not None else _name(header)
        long_name = None
        if kind in (b"0", b"\0") and name == _CONFIG and fill(_BLOCK + padded):
            data = bytes(buf[_BLOCK : _BLOCK + size])
            yield header + relocated_config(data) + bytes(buf[_BLOCK + size : _BLOCK + padded])
            del buf[: _BLOCK + padded]
            continue
        if kind == b"L" and fill(_BLOCK + padded):  # GNU long name of the next member
            long_name = (
                bytes(buf[_BLOCK : _BLOCK + size]).split(b"\0", 1)[0].decode("utf-8", "replace")
            ).removeprefix("./")
        # Any other member: header and data through as they come, nothing buffered.
        remaining = _BLOCK + padded
        while remaining:
            if not buf and not fill(1):
                return  # truncated: libpod will say so
            take = min(remaining, len(buf))
            yield bytes(buf[:take])
            del buf[:take]
            remaining -= take
    if buf:
        yield bytes(buf)
