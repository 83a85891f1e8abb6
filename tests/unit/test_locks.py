"""Locks, process identity, journal ownership, signals as exceptions, and output checks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from toolkit import interrupts
from toolkit.archive.writer import check_destination, sweep_leftovers
from toolkit.backends.validation import validate_checkpoint_name, validate_ref
from toolkit.errors import Conflict, InvalidArgument
from toolkit.locks import ProcessId, container_lock, process_start
from toolkit.migration.journal import Journal, JournalTaken


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CTK_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


_HOLDER = """
import sys
from toolkit.locks import container_lock
with container_lock("docker", "unix:///x.sock", "abc", operation="checkpoint", name="web"):
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def holder() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_a_second_process_is_refused_at_once_naming_the_holder(
    holder: subprocess.Popen[str],
) -> None:
    with (
        pytest.raises(Conflict, match=rf"ctk checkpoint \(pid {holder.pid},") as caught,
        container_lock("docker", "unix:///x.sock", "abc", operation="restore", name="web"),
    ):
        pass
    assert caught.value.exit_code == 5 and caught.value.hint
    # another container, or the same ID on another engine, is free
    with container_lock("docker", "unix:///x.sock", "other", operation="restore", name="o"):
        pass
    with container_lock("podman", "unix:///x.sock", "abc", operation="restore", name="web"):
        pass


def test_the_lock_goes_with_its_holder_even_on_sigkill(holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with container_lock("docker", "unix:///x.sock", "abc", operation="restore", name="web"):
        pass


def test_locks_are_reentrant_within_a_process() -> None:
    with (
        container_lock("docker", "u", "abc", operation="migrate", name="web"),
        container_lock("docker", "u", "abc", operation="checkpoint", name="web"),
    ):
        pass
    # and released afterwards: a child process gets it
    code = subprocess.run(
        [sys.executable, "-c", _HOLDER.replace('"unix:///x.sock"', '"u"')],
        input="\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert code.returncode == 0, code.stderr


def test_process_identity_defeats_pid_reuse() -> None:
    me = ProcessId.current()
    assert me.alive() and me.start == process_start(os.getpid())
    assert not ProcessId(me.pid, str(int(me.start) + 1)).alive()  # same pid, another process
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert process_start(proc.pid) == ""
    assert not ProcessId(proc.pid, "123").alive()
    assert not ProcessId(0, "").alive()


def _journal() -> Journal:
    journal = Journal(
        id="m20260101T000000-abcdef",
        container="web",
        target="web",
        source={"kind": "docker", "url": "u1"},
        destination={"kind": "docker", "url": "u2"},
        mode="live",
    )
    journal.claim()
    journal.step("preflight")
    return journal


def test_journal_records_its_live_owner() -> None:
    journal = _journal()
    assert journal.owner == ProcessId.current()
    assert not journal.owned_by_other_live_process()  # this process is the owner
    other = Journal(**{**journal.__dict__, "owner_pid": 1, "owner_start": process_start(1)})
    assert other.owned_by_other_live_process()
    dead = Journal(**{**journal.__dict__, "owner_pid": 1, "owner_start": "1"})
    assert not dead.owned_by_other_live_process()


def test_a_migration_notices_its_journal_was_taken_over() -> None:
    journal = _journal()
    journal.check_unchanged()
    # another ctk recovers it: rolls it back and writes the journal
    theirs = Journal(**{**journal.__dict__, "steps": list(journal.steps)})
    theirs.step("rolled-back", state="rolled_back")
    with pytest.raises(JournalTaken, match="changed by another ctk"):
        journal.check_unchanged()
    journal.path.unlink()
    with pytest.raises(JournalTaken, match="gone"):
        journal.check_unchanged()


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in interrupts.SIGNALS}
    interrupts.install()
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.usefixtures("handlers")
def test_signals_become_interrupted_with_the_shell_exit_code() -> None:
    with pytest.raises(interrupts.Interrupted) as caught:
        os.kill(os.getpid(), signal.SIGHUP)
        signal.sigtimedwait([], 0)  # let the handler run
    assert caught.value.signum == signal.SIGHUP and caught.value.exit_code == 129
    assert isinstance(caught.value, KeyboardInterrupt)  # Ctrl-C paths catch it too


@pytest.mark.usefixtures("handlers")
def test_a_shield_holds_the_signal_until_the_call_returned() -> None:
    done = []
    with pytest.raises(interrupts.Interrupted) as caught, interrupts.shielded():
        os.kill(os.getpid(), signal.SIGTERM)
        with interrupts.shielded():  # nested: raised at the outer end only
            pass
        done.append("the call finished")
    assert done == ["the call finished"] and caught.value.signum == signal.SIGTERM
    # a cleanup after the first signal is not broken off by a second one
    os.kill(os.getpid(), signal.SIGINT)


def test_outputs_must_be_regular_files(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to("/dev/null")
    for target in (Path("/dev/null"), fifo, link):
        with pytest.raises(InvalidArgument, match="not a regular file"):
            check_destination(target)
    (tmp_path / "old.ctk").write_text("x")
    assert check_destination(tmp_path / "old.ctk") == tmp_path / "old.ctk"
    assert check_destination(tmp_path / "new.ctk") == tmp_path / "new.ctk"


def test_names_are_matched_in_full() -> None:
    for bad in ("cp\n", "cp\nx", "\ncp"):
        with pytest.raises(InvalidArgument):
            validate_checkpoint_name(bad)
        with pytest.raises(InvalidArgument):
            validate_ref(bad, what="container")
    validate_checkpoint_name("cp-1.a_b")
    validate_ref("web1", what="container")


def test_leftovers_of_dead_writers_are_swept(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead, alive = proc.pid, os.getpid()
    dest = tmp_path / "a.ctk"
    stale_dir = tmp_path / f".a.ctk.ctk-stage-{dead}-x1"
    stale_dir.mkdir()
    (stale_dir / "payload").write_text("x")
    stale_tmp = tmp_path / f".a.ctk.ctk-{dead}-y2.tmp"
    stale_tmp.write_text("x")
    live_tmp = tmp_path / f".a.ctk.ctk-{alive}-z3.tmp"
    live_tmp.write_text("x")
    other = tmp_path / f".b.ctk.ctk-{dead}-w4.tmp"
    other.write_text("x")
    assert sorted(sweep_leftovers(dest)) == sorted([stale_dir, stale_tmp])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live_tmp.name, other.name])
