"""A container's rootfs changes spliced into one tar from the engine's per-path archives."""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any


def write_changes(
    changes: Sequence[Mapping[str, Any]],
    fetch: Callable[[str, Path], None],
    out: Path,
    stage: Path,
    *,
    exclude: Sequence[str] = (),
) -> list[str]:
    """A container's rootfs changes: changed and added files into the tar ``out``; deleted paths.

    ``changes`` is the engine's ``/containers/{id}/changes`` list (Kind 0 changed, 1 added,
    2 deleted); ``fetch(path, tar)`` writes the engine's archive of one path. Only leaves are
    fetched (a changed directory's listed children come on their own), so an added file in
    /etc does not drag the whole of /etc along. Paths at or below ``exclude`` (the container's
    volumes and bind mounts) are left out: the engine lists a mount point's directory as
    added, and its archive of it is the mount's content, which is not the rootfs's.
    """
    from toolkit.errors import ContainerNotFound, EngineError

    mounts = [PurePosixPath(m) for m in exclude]

    def mounted(path: str) -> bool:
        here = PurePosixPath(path)
        return any(here == m or m in here.parents for m in mounts)

    kinds = {str(c["Path"]): int(c["Kind"]) for c in changes if not mounted(str(c["Path"]))}
    deleted = sorted(p for p, k in kinds.items() if k == 2)
    present = [p for p, k in kinds.items() if k in (0, 1)]
    leaves = sorted(p for p in present if not any(q.startswith(p.rstrip("/") + "/") for q in kinds))
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as combined:
        for leaf in leaves:
            part = stage / "part.tar"
            try:
                fetch(leaf, part)
            except (ContainerNotFound, EngineError):
                continue  # gone between the diff and the fetch (a temp file)
            parent = str(PurePosixPath(leaf).parent).lstrip("/")
            with tarfile.open(part) as piece:
                for member in piece:
                    data = piece.extractfile(member) if member.isfile() else None
                    member.name = f"{parent}/{member.name}" if parent else member.name
                    if member.islnk():
                        member.linkname = (
                            f"{parent}/{member.linkname}" if parent else member.linkname
                        )
                    combined.addfile(member, data)
            part.unlink()
    return deleted
