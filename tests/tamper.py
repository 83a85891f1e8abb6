"""Edit a ctk archive the way an attacker who knows the format would: change the manifest or
a member, then recompute every size and sha256 so that only a signature can tell."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolkit import archive
from toolkit.archive.compression import decompressing


def members(path: Path) -> list[tuple[str, bytes]]:
    """Every member of an archive (any compression), in order, with its bytes."""
    out: list[tuple[str, bytes]] = []
    with (
        path.open("rb") as raw,
        decompressing(raw) as (_compression, stream),
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        for info in tar:
            handle = tar.extractfile(info)
            out.append((info.name, handle.read() if handle else b""))
    return out


def write_members(path: Path, items: list[tuple[str, bytes]]) -> None:
    """An uncompressed tar of exactly these members, in this order."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in items:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def rewrite(
    path: Path,
    dest: Path,
    *,
    manifest: Callable[[dict[str, Any]], None] | None = None,
    member: Callable[[str, bytes], bytes] | None = None,
    drop_signature: bool = False,
) -> None:
    """Copy ``path`` to ``dest`` with the edits applied and the manifest's checksums redone.

    The signature member is kept as it was (or dropped): what an attacker without the key can do.
    """
    items = members(path)
    assert items[0][0] == archive.MANIFEST_NAME
    doc = json.loads(items[0][1])
    payload = [(n, d) for n, d in items[1:] if n != archive.SIGNATURE_NAME]
    if member is not None:
        payload = [(n, member(n, d)) for n, d in payload]
    if manifest is not None:
        manifest(doc)
    doc["members"] = [
        {"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in payload
    ]
    head = [(archive.MANIFEST_NAME, json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n")]
    signature = [(n, d) for n, d in items[1:] if n == archive.SIGNATURE_NAME]
    write_members(dest, head + ([] if drop_signature else signature) + payload)
