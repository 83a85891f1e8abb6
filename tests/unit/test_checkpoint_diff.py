"""``toolkit.criu.diff`` on CRIU images written with pycriu: pages changed, added and removed
by region, contents compared or not, processes matched by PID and command."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import pytest

from toolkit.criu.diff import diff_directories

pycriu = pytest.importorskip("pycriu")
PAGE = resource.getpagesize()
HEAP = 0x10000
_MM_FIELDS = [
    "mm_start_code",
    "mm_end_code",
    "mm_start_data",
    "mm_end_data",
    "mm_start_stack",
    "mm_start_brk",
    "mm_brk",
    "mm_arg_start",
    "mm_arg_end",
    "mm_env_start",
    "mm_env_end",
    "exe_file_id",
]


def _dump(directory: Path, name: str, magic: str, entries: list[dict[str, Any]]) -> None:
    with (directory / name).open("wb") as handle:
        pycriu.images.dump({"magic": magic, "entries": entries}, handle)


def _images(directory: Path, pages: dict[int, bytes], *, extra_pid: int = 0) -> Path:
    """One process (pid 1) whose heap holds ``pages`` (page index -> fill byte), plus a
    child ``extra_pid`` with no memory."""
    directory.mkdir()
    tree = [{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1, "threads": [1]}]
    if extra_pid:
        tree.append({"pid": extra_pid, "ppid": 1, "pgid": 1, "sid": 1, "threads": [extra_pid]})
    _dump(directory, "pstree.img", "PSTREE", tree)
    entries: list[dict[str, Any]] = [{"pages_id": 1}]
    contents = b""
    for index in sorted(pages):
        entries.append({"vaddr": HEAP + index * PAGE, "nr_pages": 1, "flags": 4})
        contents += pages[index] * PAGE
    _dump(directory, "pagemap-1.img", "PAGEMAP", entries)
    mm: dict[str, Any] = dict.fromkeys(_MM_FIELDS, 0)
    heap = {"start": HEAP, "end": HEAP + 16 * PAGE, "pgoff": 0, "shmid": 0, "prot": 3}
    mm["vmas"] = [{**heap, "flags": 34, "status": 545, "fd": -1}]
    _dump(directory, "mm-1.img", "MM", [mm])
    (directory / "pages-1.img").write_bytes(contents)
    return directory


def test_pages_changed_added_removed_by_region(tmp_path: Path) -> None:
    a = _images(tmp_path / "a", {0: b"a", 1: b"b", 2: b"c"}, extra_pid=7)
    b = _images(tmp_path / "b", {0: b"a", 1: b"X", 3: b"d"}, extra_pid=9)

    result = diff_directories(a, b, label_a="a", label_b="b")

    assert (result.pages_changed, result.pages_added, result.pages_removed) == (1, 1, 1)
    assert result.pages_unchanged == 1 and result.contents_compared
    assert result.bytes_changed == PAGE
    assert [(r.region, r.changed, r.added, r.removed) for r in result.regions] == [
        ("heap", 1, 1, 1)
    ]
    # the child is another process (new PID) but the tree has the same shape
    assert [p.pid for p in result.processes_added] == [9]
    assert [p.pid for p in result.processes_removed] == [7]
    assert result.same_tree


def test_without_pages_files_only_the_lists_compare(tmp_path: Path) -> None:
    a = _images(tmp_path / "a", {0: b"a", 1: b"b"})
    b = _images(tmp_path / "b", {0: b"a", 1: b"X", 2: b"c"})
    (b / "pages-1.img").unlink()

    result = diff_directories(a, b)

    assert not result.contents_compared
    assert (result.pages_changed, result.pages_added, result.pages_unchanged) == (0, 1, 2)
