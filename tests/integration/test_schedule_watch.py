"""Scheduled checkpoints with retention, restore --latest, and watch --restore-on-exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Containers, counts, ctk, last_count, wait_count_at_least, wait_for
from toolkit.backends.base import Backend
from toolkit.errors import ExitCode
from toolkit.models import CheckpointOptions, ImportOptions
from toolkit.schedule import AUTO_PREFIX, ScheduleEvent, ScheduleOptions, run_schedule

pytestmark = [pytest.mark.integration, pytest.mark.criu]


@dataclass
class Foreground:
    """A long-running ``ctk`` command, its output in files so the test can read as it goes."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    @classmethod
    def start(cls, tmp_path: Path, *args: str, engine: str) -> Foreground:
        out, err = tmp_path / "out.txt", tmp_path / "err.txt"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "toolkit", "--engine", engine, *args],
                stdout=stdout,
                stderr=stderr,
                env=env,
            )
        return cls(proc, out, err)

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def expect(self, text: str, *, timeout: float = 60) -> None:
        """Wait for ``text`` on stdout; on timeout, fail showing what the command printed."""
        try:
            wait_for(lambda: text in self.stdout(), timeout=timeout, what=repr(text))
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nexit: {self.proc.poll()}\nstdout:\n{self.stdout()}\nstderr:\n{self.stderr()}"
            ) from None

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def foreground() -> list[Foreground]:
    started: list[Foreground] = []
    yield started
    for item in started:
        item.kill()


def _after_restore(engine: Backend, name: str) -> tuple[int, list[int]]:
    """(last count before the restore, counts since): the log keeps both, split at the drop."""
    values = counts(engine, name)
    for i in range(1, len(values)):
        if values[i] <= values[i - 1]:
            return values[i - 1], values[i:]
    return (values[-1] if values else 0), []


def _auto(engine: Backend, name: str) -> list[str]:
    return [c.name for c in engine.checkpoints(name) if c.name.startswith(AUTO_PREFIX)]


def test_schedule_keeps_the_newest(engine: Backend, containers: Containers, criu: None) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    # Docker holds named checkpoints side by side; Podman holds one in place.
    keep = 2 if engine.kind == "docker" else 1
    if engine.kind == "docker":
        engine.checkpoint(info.name, CheckpointOptions(name="manual", leave_running=True))
    seen: list[list[str]] = []

    def record(event: ScheduleEvent) -> None:
        seen.append(_auto(engine, info.name))

    events = run_schedule(
        engine, info.name, ScheduleOptions(every=1, keep=keep, max_runs=4), on_event=record
    )
    assert [e.run for e in events] == [1, 2, 3, 4]
    assert all(e.checkpoint and e.error is None for e in events), events
    made = [e.checkpoint for e in events]
    # After every run: at most `keep`, and always the newest one.
    for run, present in enumerate(seen, start=1):
        assert present == made[max(0, run - keep) : run], (run, present)
    assert _auto(engine, info.name) == made[-keep:]
    if engine.kind == "docker":
        assert "manual" in [c.name for c in engine.checkpoints(info.name)]  # not scheduled: kept
        assert events[-1].removed == (made[-keep - 1],)
    assert engine.inspect(info.name).running  # leave-running all along


def test_restore_latest_picks_the_newest(
    engine: Backend, containers: Containers, criu: None
) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    after: list[int] = []

    def advance(event: ScheduleEvent) -> None:
        # The count at each checkpoint differs by at least 2 from the next one's.
        after.append(last_count(engine, info.name))
        wait_count_at_least(engine, info.name, after[-1] + 2)

    keep = 2 if engine.kind == "docker" else 1
    run_schedule(
        engine, info.name, ScheduleOptions(every=0.5, keep=keep, max_runs=3), on_event=advance
    )
    ctk("stop", info.name, engine=engine.kind, check=True)
    result = ctk("restore", info.name, "--latest", engine=engine.kind, check=True)
    assert result.stdout.strip() == info.name
    wait_for(lambda: len(_after_restore(engine, info.name)[1]) >= 2, what="output after restore")
    stopped_at, restored = _after_restore(engine, info.name)
    # The previous checkpoint's counter was at most after[-2] + 1 when dumped: the newest's is
    # past that.
    assert restored[0] > after[-2] + 1, (after, restored)
    assert restored[0] <= stopped_at  # and it is a restore, not a counter that ran on


def test_schedule_with_archives(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 2)
    # --keep 2 on Podman too: the archives hold what the engine cannot keep in place.
    events = run_schedule(
        engine,
        info.name,
        ScheduleOptions(every=1, keep=2, max_runs=3, export_dir=tmp_path),
    )
    assert all(e.archive for e in events), events
    archives = sorted(p.name for p in tmp_path.glob("*.tar.zst"))
    assert archives == sorted(Path(e.archive).name for e in events[-2:])  # type: ignore[arg-type]
    assert events[-1].removed_archives == (events[0].archive,)
    at_export = last_count(engine, info.name)
    # The newest archive restores as a clone that goes on counting from where it was.
    clone = containers.name("clone")
    engine.import_checkpoint(events[-1].archive, ImportOptions(name=clone))  # type: ignore[arg-type]
    wait_for(lambda: bool(counts(engine, clone)), what="output of the clone")
    assert engine.inspect(clone).running
    # A cold start would print count=1 now; the clone holds the archived count.
    assert last_count(engine, clone) >= at_export - 1 >= 2


def test_cli_schedule_runs_until_sigterm(
    engine: Backend,
    containers: Containers,
    criu: None,
    tmp_path: Path,
    foreground: list[Foreground],
) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    job = Foreground.start(
        tmp_path, "checkpoint", info.name, "--every", "1s", "--keep", "1", engine=engine.kind
    )
    foreground.append(job)
    wait_for(lambda: job.stdout().count(AUTO_PREFIX) >= 3, timeout=60, what="3 checkpoints")
    assert job.terminate() == 0, job.stderr()
    assert "stopped after" in job.stderr() and "Traceback" not in job.stderr()
    assert len(_auto(engine, info.name)) == 1
    assert engine.inspect(info.name).running


def test_cli_schedule_count_and_json(engine: Backend, containers: Containers, criu: None) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    result = ctk(
        "--json", "checkpoint", info.name, "--every", "1s", "--count", "2", engine=engine.kind
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["run"] for line in lines] == [1, 2]
    assert all(line["checkpoint"].startswith(AUTO_PREFIX) for line in lines)


def test_schedule_unsupported(engine: Backend, containers: Containers, criu: None) -> None:
    info = containers.run()
    result = ctk(
        "checkpoint",
        info.name,
        "--every",
        "1s",
        "--export-dir",
        "/nonexistent/x",
        engine=engine.kind,
    )
    assert result.returncode == ExitCode.USAGE and "Hint:" in result.stderr
    result = ctk("checkpoint", "ctk-test-missing", "--every", "1s", engine=engine.kind)
    assert result.returncode == ExitCode.NOT_FOUND
    assert engine.checkpoints(info.name) == []  # refused before any checkpoint was taken
    result = ctk(
        "checkpoint", info.name, "--every", "1s", "--keep", "3", "--count", "1", engine=engine.kind
    )
    if engine.kind == "podman":
        # Podman holds one checkpoint in place: keeping three needs exported archives.
        assert result.returncode == ExitCode.UNSUPPORTED
        assert "--keep 1" in result.stderr
        assert engine.checkpoints(info.name) == []
    else:
        assert result.returncode == 0, result.stderr


def _watch(
    started: list[Foreground], tmp_path: Path, name: str, engine: str, *extra: str
) -> Foreground:
    job = Foreground.start(
        tmp_path, "watch", name, "--restore-on-exit", "--poll", "200ms", *extra, engine=engine
    )
    started.append(job)
    # Act only once it watches: it forgets stop markers from before it started.
    job.expect("watching")
    return job


def test_watch_restores_after_sigkill(
    engine: Backend,
    containers: Containers,
    criu: None,
    tmp_path: Path,
    foreground: list[Foreground],
) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 3)
    engine.checkpoint(info.name, CheckpointOptions(leave_running=True))
    at_checkpoint = last_count(engine, info.name)
    job = _watch(foreground, tmp_path, info.name, engine.kind)
    wait_count_at_least(engine, info.name, at_checkpoint + 3)
    engine.kill(info.name, signal="KILL")
    job.expect("restored")
    wait_for(lambda: len(_after_restore(engine, info.name)[1]) >= 2, what="output after restore")
    assert engine.inspect(info.name).running
    _, restored = _after_restore(engine, info.name)
    # The pre-crash state: the count goes on from the checkpoint, it does not start at 1.
    assert at_checkpoint <= restored[0] <= at_checkpoint + 2, (at_checkpoint, restored)
    assert counts(engine, info.name).count(1) == 1
    assert "died unexpectedly (exit code 137)" in job.stdout()
    assert job.terminate() == 0, job.stderr()


def test_watch_gives_up_after_max_restarts(
    engine: Backend,
    containers: Containers,
    criu: None,
    tmp_path: Path,
    foreground: list[Foreground],
) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    engine.checkpoint(info.name, CheckpointOptions(leave_running=True))
    job = _watch(
        foreground, tmp_path, info.name, engine.kind, "--max-restarts", "1", "--window", "10m"
    )
    engine.kill(info.name, signal="KILL")
    job.expect("restored")
    wait_for(lambda: engine.inspect(info.name).running, what="running again")
    engine.kill(info.name, signal="KILL")
    assert job.wait(timeout=60) == ExitCode.ERROR
    assert "died 2 times within 600s (limit 1)" in job.stderr()
    assert "Hint: " in job.stderr() and "Traceback" not in job.stderr()
    assert not engine.inspect(info.name).running


def test_watch_leaves_a_ctk_stop_alone(
    engine: Backend,
    containers: Containers,
    criu: None,
    tmp_path: Path,
    foreground: list[Foreground],
) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    engine.checkpoint(info.name, CheckpointOptions(leave_running=True))
    job = _watch(foreground, tmp_path, info.name, engine.kind)
    # `ctk checkpoint` without -R stops the container (Docker: exit code 137, like SIGKILL).
    ctk("checkpoint", info.name, engine=engine.kind, check=True)
    assert job.wait(timeout=60) == 0, job.stderr()
    assert "stopped on purpose" in job.stdout() and "restored" not in job.stdout()
    assert not engine.inspect(info.name).running
