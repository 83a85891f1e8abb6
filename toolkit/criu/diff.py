"""Compare two checkpoints' CRIU images (``ctk checkpoint diff``): processes, memory, files,
sockets.

Memory is compared page by page. CRIU's ``pagemap-PID.img`` lists the dumped ranges of a
process (after a ``{pages_id}`` head), in the order their contents follow each other in
``pages-<pages_id>.img``; only entries flagged PE_PRESENT have contents there (PE_PARENT ones
live in a pre-dump's images). Each page is hashed as it is read (8 bytes kept per page, never
the page), so a checkpoint of any size is compared in one pass of each file. Pages are grouped
by the memory region (``mm-PID.img``'s VMAs) that holds them in the second checkpoint (the
first for pages gone from it). Without the pages files, only the page lists are compared.
"""

from __future__ import annotations

import hashlib
import resource
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from toolkit.criu.images import _maybe, read_images
from toolkit.models import CheckpointDiff, CheckpointImages, ImageProcess, RegionDiff

# criu/images/pagemap.proto: pagemap_entry flags
_PE_PARENT = 1
_PE_PRESENT = 4
# criu/include/image.h: vma_entry status bits
_VMA_STACK = 1 << 1
_VMA_VDSO = 1 << 3
_VMA_HEAP = 1 << 5
_VMA_FILE_PRIVATE = 1 << 6
_VMA_FILE_SHARED = 1 << 7
_VMA_ANON_SHARED = 1 << 8
_VMA_VVAR = 1 << 12


def diff_directories(a: Path, b: Path, *, label_a: str = "A", label_b: str = "B") -> CheckpointDiff:
    """The difference from the CRIU images in directory ``a`` to those in ``b``.

    Raises:
        Unsupported: pycriu is not installed.
        ArchiveError: a directory holds no decodable CRIU images.
    """
    old, new = read_images(a), read_images(b)
    page_size = resource.getpagesize()
    by_pid_a = {p.pid: p for p in old.processes}
    by_pid_b = {p.pid: p for p in new.processes}
    kept = [p for pid, p in by_pid_b.items() if _same(by_pid_a.get(pid), p)]
    added = [p for pid, p in by_pid_b.items() if not _same(by_pid_a.get(pid), p)]
    removed = [p for pid, p in by_pid_a.items() if not _same(p, by_pid_b.get(pid))]
    regions: list[RegionDiff] = []
    compared = True
    for process in kept:
        rows, complete = _memory(a, b, process.pid, page_size)
        regions.extend(rows)
        compared = compared and complete
    totals = Counter[str]()
    for row in regions:
        totals.update(
            changed=row.changed, added=row.added, removed=row.removed, unchanged=row.unchanged
        )
    files_a, files_b = _files(old, kept), _files(new, kept)
    sockets_a, sockets_b = _sockets(old), _sockets(new)
    return CheckpointDiff(
        a=label_a,
        b=label_b,
        page_size=page_size,
        same_tree=_tree(old) == _tree(new),
        processes_kept=tuple(kept),
        processes_added=tuple(added),
        processes_removed=tuple(removed),
        regions=tuple(r for r in regions if r.changed or r.added or r.removed),
        pages_changed=totals["changed"],
        pages_added=totals["added"],
        pages_removed=totals["removed"],
        pages_unchanged=totals["unchanged"],
        contents_compared=compared,
        files_added=tuple(sorted(files_b - files_a)),
        files_removed=tuple(sorted(files_a - files_b)),
        sockets_added=tuple(sorted(sockets_b - sockets_a)),
        sockets_removed=tuple(sorted(sockets_a - sockets_b)),
        bytes_changed=totals["changed"] * page_size,
        bytes_added=totals["added"] * page_size,
        bytes_removed=totals["removed"] * page_size,
    )


def _same(a: ImageProcess | None, b: ImageProcess | None) -> bool:
    return a is not None and b is not None and a.comm == b.comm


def _tree(images: CheckpointImages) -> Counter[tuple[str, str]]:
    """Each process's command under its parent's: the tree's shape, PIDs left out (the
    counter's ``sleep`` is a new process every second)."""
    comm = {p.pid: p.comm for p in images.processes}
    return Counter((comm.get(p.ppid, ""), p.comm) for p in images.processes)


def _files(images: CheckpointImages, kept: list[ImageProcess]) -> set[str]:
    pids = {p.pid for p in kept}
    return {f"{p.pid} {f}" for p in images.processes if p.pid in pids for f in p.files}


def _sockets(images: CheckpointImages) -> set[str]:
    return {
        f"{s.family} {s.type} {s.state} {s.local}" + (f" -> {s.remote}" if s.remote else "")
        for s in images.sockets
    }


def _memory(a: Path, b: Path, pid: int, page_size: int) -> tuple[list[RegionDiff], bool]:
    """Per region of process ``pid``: pages changed, added, removed, unchanged."""
    pages_a, complete_a = _page_digests(a, pid, page_size)
    pages_b, complete_b = _page_digests(b, pid, page_size)
    complete = complete_a and complete_b
    vmas_b, vmas_a = _regions(b, pid), _regions(a, pid)
    rows: dict[tuple[str, int, int], dict[str, int]] = {}

    def count(vmas: list[tuple[int, int, str]], address: int, what: str) -> None:
        start, end, name = _find(vmas, address)
        row = rows.setdefault((name, start, end), Counter())
        row[what] += 1

    for address, digest in pages_b.items():
        before = pages_a.get(address)
        if before is None:
            count(vmas_b, address, "added")
        elif complete and before != digest:
            count(vmas_b, address, "changed")
        else:
            count(vmas_b, address, "unchanged")
    for address in pages_a.keys() - pages_b.keys():
        count(vmas_a, address, "removed")
    result = [
        RegionDiff(
            pid=pid,
            region=name,
            start=start,
            end=end,
            changed=row["changed"],
            added=row["added"],
            removed=row["removed"],
            unchanged=row["unchanged"],
            compared=complete,
        )
        for (name, start, end), row in sorted(rows.items(), key=lambda item: item[0][1])
    ]
    return result, complete


def _page_digests(directory: Path, pid: int, page_size: int) -> tuple[dict[int, bytes], bool]:
    """Each dumped page's address -> an 8-byte digest of its contents (b"" when the contents
    are not in this directory); whether every page's contents were read."""
    entries = _maybe(directory / f"pagemap-{pid}.img")
    if not entries:
        return {}, True
    pages_id = entries[0].get("pages_id")
    digests: dict[int, bytes] = {}
    complete = True
    with _open_pages(directory / f"pages-{pages_id}.img") as handle:
        for entry in entries[1:]:
            flags = int(entry.get("flags", _PE_PARENT if entry.get("in_parent") else _PE_PRESENT))
            vaddr, count = int(entry.get("vaddr", 0)), int(entry.get("nr_pages", 0))
            present = bool(flags & _PE_PRESENT) and not flags & _PE_PARENT
            for index in range(count):
                digest = b""
                if present and handle is not None:
                    data = handle.read(page_size)
                    if len(data) == page_size:
                        digest = hashlib.blake2b(data, digest_size=8).digest()
                if not digest:
                    complete = False
                digests[vaddr + index * page_size] = digest
    return digests, complete


@contextmanager
def _open_pages(path: Path) -> Iterator[Any]:
    if not path.is_file():
        yield None
        return
    with path.open("rb") as handle:
        yield handle


def _regions(directory: Path, pid: int) -> list[tuple[int, int, str]]:
    """The process's VMAs as (start, end, name), by address."""
    mm = _maybe(directory / f"mm-{pid}.img")
    if not mm:
        return []
    names = {int(e["id"]): e for e in _maybe(directory / "files.img") if "id" in e}
    stack = int(mm[0].get("mm_start_stack", 0))
    result = []
    for vma in mm[0].get("vmas") or ():
        start, end = int(vma.get("start", 0)), int(vma.get("end", 0))
        # the kernel marks no stack VMA; the one holding the stack's start is it
        name = "stack" if start <= stack < end else _region_name(vma, names)
        result.append((start, end, name))
    return sorted(result)


def _region_name(vma: Mapping[str, Any], files: Mapping[int, Mapping[str, Any]]) -> str:
    status = int(vma.get("status", 0))
    if status & _VMA_STACK:
        return "stack"
    if status & _VMA_HEAP:
        return "heap"
    if status & _VMA_VDSO:
        return "vdso"
    if status & _VMA_VVAR:
        return "vvar"
    if status & (_VMA_FILE_PRIVATE | _VMA_FILE_SHARED):
        entry = files.get(int(vma.get("shmid", -1)))
        name = str((entry or {}).get("reg", {}).get("name", "")) if entry else ""
        return name or "file"
    if status & _VMA_ANON_SHARED:
        return "anon shared"
    return "anon"


def _find(vmas: list[tuple[int, int, str]], address: int) -> tuple[int, int, str]:
    for start, end, name in vmas:
        if start <= address < end:
            return start, end, name
    return address, address, "unmapped"


@contextmanager
def fetched(backend: Any, name: str, checkpoint: str) -> Iterator[Path]:
    """The CRIU images of a checkpoint the engine holds, in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="ctk-diff-") as tmp:
        backend.fetch_checkpoint_images(name, checkpoint, Path(tmp))
        yield Path(tmp)


@contextmanager
def extracted(path: str | Path) -> Iterator[Path]:
    """The CRIU images of a ctk archive (verified like any import), in a temporary directory.

    Raises:
        NotFound, ArchiveError: no such file, or a corrupt or hostile archive.
    """
    from toolkit import archive
    from toolkit.criu.images import _PAYLOADS, extract_images
    from toolkit.errors import ArchiveError

    with archive.open_archive(path) as verified, tempfile.TemporaryDirectory() as tmp:
        member = _PAYLOADS.get(verified.manifest.engine)
        if member is None:
            raise ArchiveError(f"archive {path} is from an unknown engine")
        extract_images(verified.member(member), Path(tmp))
        yield Path(tmp)


__all__ = ["diff_directories", "extracted", "fetched"]
