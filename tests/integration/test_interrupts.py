"""Interrupted and failing checkpoints leave nothing stopped and no partial file, on both engines.

Signals reach ``ctk checkpoint`` at chosen phases through the test hook ``CTK_TEST_PAUSE_AT``
(:mod:`toolkit.interrupts`): ctk prints ``paused at PHASE`` and waits for a file, so the signal
lands exactly there. Also: one ctk per container (exit 5), a full file system (exit 1, nothing
left behind, no hang), outputs that are not regular files and names with a newline (exit 2).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Containers, counts, ctk, last_count, wait_count_at_least, wait_for
from toolkit.backends.base import Backend
from toolkit.errors import ExitCode
from toolkit.interrupts import PAUSE_ENV

pytestmark = [pytest.mark.integration, pytest.mark.criu]


@dataclass
class Paused:
    """A ``ctk`` process stopped at a phase; ``release()`` lets it go on."""

    proc: subprocess.Popen[str]
    release_file: Path

    def release(self) -> None:
        self.release_file.touch()

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        _out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err


@pytest.fixture
def paused(tmp_path: Path, state: Path) -> Iterator[object]:
    started: list[Paused] = []

    def start(engine: Backend, phase: str, *args: str) -> Paused:
        release = tmp_path / f"release-{len(started)}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "toolkit", "--engine", engine.kind, *args],
            env={**os.environ, PAUSE_ENV: f"{phase}:{release}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        handle = Paused(proc, release)
        started.append(handle)
        assert proc.stderr is not None
        line = proc.stderr.readline()  # ctk prints it, then waits: no sleep needed
        assert f"paused at {phase}" in line, line + proc.stderr.read()
        return handle

    yield start
    for handle in started:
        handle.release()
        if handle.proc.poll() is None:
            handle.proc.kill()
            handle.proc.wait()


def _counter(engine: Backend, containers: Containers) -> tuple[str, int]:
    info = containers.run()
    return info.name, wait_count_at_least(engine, info.name, 2)


def _assert_running_on(engine: Backend, name: str, before: int) -> None:
    """Running again, and counting on from ``before`` (a restart would print count=1 again)."""
    assert engine.inspect(name).running
    wait_count_at_least(engine, name, before + 2)
    seen = counts(engine, name)
    assert seen.count(1) <= 1 and seen == sorted(seen), seen


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize(
    ("phase", "signum"),
    [
        ("dump", signal.SIGTERM),  # held back until the engine's dump returns, then undone
        ("dump", signal.SIGHUP),
        ("export-write", signal.SIGTERM),  # the dump is staged: the container stands stopped
        ("export-write", signal.SIGINT),
    ],
)
def test_signal_during_export_restores_the_container(
    engine: Backend,
    containers: Containers,
    criu: None,
    paused: object,
    tmp_path: Path,
    phase: str,
    signum: int,
) -> None:
    name, before = _counter(engine, containers)
    out = tmp_path / "out"
    out.mkdir()
    proc = paused(engine, phase, "checkpoint", name, "--export", str(out / "a.ctk"))  # type: ignore[operator]
    proc.proc.send_signal(signum)
    proc.release()  # a held-back signal takes effect once the dump is done
    code, err = proc.finish()
    assert code == 128 + signum, err
    assert f"Interrupted by {signal.Signals(signum).name}" in err and "Traceback" not in err
    _assert_running_on(engine, name, before)
    assert _files(out) == []  # neither the archive nor its staging files


def test_signal_during_plain_checkpoint_restores_the_container(
    engine: Backend, containers: Containers, criu: None, paused: object
) -> None:
    name, before = _counter(engine, containers)
    proc = paused(engine, "dump", "checkpoint", name)  # type: ignore[operator]
    proc.proc.send_signal(signal.SIGTERM)
    proc.release()
    code, err = proc.finish()
    assert code == 128 + signal.SIGTERM, err
    _assert_running_on(engine, name, before)


def test_sigkill_during_export_then_restore(
    engine: Backend, containers: Containers, criu: None, paused: object, tmp_path: Path
) -> None:
    """SIGKILL cannot be caught: the dump stands, ``ctk restore`` brings the container back,
    and the next export to the same file removes what the killed one left."""
    name, before = _counter(engine, containers)
    out = tmp_path / "out"
    out.mkdir()
    archive = out / "a.ctk"
    proc = paused(engine, "export-write", "checkpoint", name, "--export", str(archive))  # type: ignore[operator]
    proc.proc.send_signal(signal.SIGKILL)
    code, _err = proc.finish()
    assert code == -signal.SIGKILL
    assert not engine.inspect(name).running  # stopped by the dump; nobody left to restore it
    assert not archive.exists()
    result = ctk("restore", name, engine=engine.kind)
    assert result.returncode == 0, result.stderr
    _assert_running_on(engine, name, before)
    assert [p for p in _files(out) if ".ctk-stage-" in p]  # the killed ctk's staging files
    again = ctk("checkpoint", name, "--export", str(archive), "-R", engine=engine.kind)
    assert again.returncode == 0, again.stderr
    assert _files(out) == ["a.ctk"]  # swept: their writer is gone


def test_sigkill_before_the_dump_leaves_it_running(
    engine: Backend, containers: Containers, criu: None, paused: object, tmp_path: Path
) -> None:
    name, before = _counter(engine, containers)
    proc = paused(engine, "dump", "checkpoint", name, "--export", str(tmp_path / "a.ctk"))  # type: ignore[operator]
    proc.proc.send_signal(signal.SIGKILL)
    proc.finish()
    _assert_running_on(engine, name, before)


def test_second_ctk_on_the_same_container_is_refused(
    engine: Backend, containers: Containers, criu: None, paused: object, tmp_path: Path
) -> None:
    name, before = _counter(engine, containers)
    archive = tmp_path / "a.ctk"
    first = paused(engine, "export-write", "checkpoint", name, "--export", str(archive))  # type: ignore[operator]
    started = time.monotonic()
    for args in (("checkpoint", name, "-R"), ("restore", name)):
        second = ctk(*args, engine=engine.kind)
        assert second.returncode == ExitCode.CONFLICT, second.stderr
        assert f"pid {first.proc.pid}" in second.stderr and "Hint:" in second.stderr
    assert time.monotonic() - started < 30  # at once, not after waiting for the lock
    first.release()
    code, err = first.finish()
    assert code == 0, err
    assert archive.is_file()
    # the lock went with its holder: the next operation goes through
    result = ctk("restore", "--import", str(archive), "--name", f"{name}-clone", engine=engine.kind)
    containers.names.append(f"{name}-clone")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: last_count(engine, f"{name}-clone") > before, what="the clone counting")


@pytest.fixture
def full_dir(tmp_path: Path) -> Iterator[Path]:
    """A 128 KiB tmpfs: smaller than any checkpoint of the counter."""
    path = tmp_path / "full"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.mark.parametrize("leave_running", [True, False], ids=["leave-running", "stop"])
def test_full_disk_is_a_clean_error(
    engine: Backend,
    containers: Containers,
    criu: None,
    state: Path,
    full_dir: Path,
    leave_running: bool,
) -> None:
    name, before = _counter(engine, containers)
    args = ["checkpoint", name, "--export", str(full_dir / "a.ctk")]
    started = time.monotonic()
    result = ctk(*args, *(["-R"] if leave_running else []), engine=engine.kind, timeout=90)
    elapsed = time.monotonic() - started
    assert result.returncode == ExitCode.ERROR, result.stderr
    assert f"no space left on {full_dir}" in result.stderr, result.stderr
    assert "needs" in result.stderr and "KiB" in result.stderr
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
    assert elapsed < 60, f"took {elapsed:.1f}s"  # Docker's -R hung here: an unread stream
    assert _files(full_dir) == []
    _assert_running_on(engine, name, before)
    # nothing held up the engine: another ctk lists at once, no helper container is left
    listed = ctk("ps", "-a", engine=engine.kind, timeout=30)
    assert listed.returncode == 0, listed.stderr
    _no_helper_left(engine, listed.stdout)


def _no_helper_left(engine: Backend, listing: str) -> None:
    """No ctk helper container of ``listing`` (``ctk ps -a``) stays. Other xdist workers'
    checkpoints make helpers too, for a second or two each: one left behind would stay."""
    seen = {word for word in listing.split() if word.startswith("ctk-helper-")}

    def gone() -> bool:
        return not seen & {c.name for c in engine.containers(all=True)}

    wait_for(gone, timeout=30, what=f"helper containers {sorted(seen)} removed")


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_export_onto_a_device_or_fifo_is_refused(
    engine: Backend, containers: Containers, criu: None, state: Path, tmp_path: Path, kind: str
) -> None:
    name, _before = _counter(engine, containers)
    if kind == "device":
        target = Path("/dev/null")
    else:
        target = tmp_path / "fifo"
        os.mkfifo(target)
    seen = target.stat()
    result = ctk("checkpoint", name, "--export", str(target), engine=engine.kind)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "not a regular file" in result.stderr and "Hint:" in result.stderr
    now = target.stat()
    assert (now.st_ino, now.st_mode, now.st_rdev) == (seen.st_ino, seen.st_mode, seen.st_rdev)
    assert stat.S_ISCHR(now.st_mode) if kind == "device" else stat.S_ISFIFO(now.st_mode)
    assert engine.inspect(name).running
    assert engine.checkpoints(name) == []
    if kind == "fifo":
        assert _files(tmp_path) == ["fifo", "state"] or _files(tmp_path) == ["fifo"]


def test_checkpoint_name_with_a_newline_is_refused(
    engine: Backend, containers: Containers, criu: None, state: Path
) -> None:
    name, _before = _counter(engine, containers)
    result = ctk("checkpoint", name, "--name", "cp\n", "-R", engine=engine.kind)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "invalid checkpoint name" in result.stderr
    assert engine.checkpoints(name) == []
    assert engine.inspect(name).running
