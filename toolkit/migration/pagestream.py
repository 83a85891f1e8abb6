"""Live moves whose memory is written once: CRIU's page server into the destination's container.

libpod's own way (``--mode live`` between Podmans, :func:`toolkit.migration.execute._live_stream`)
writes the memory three times while the container is frozen: CRIU's images, libpod's export
tar of them, libpod's unpacked copy at the destination; the downtime is 3-4x CRIU's own dump
and restore time (docs/bench/p2). Here the destination container is made *before* the freeze:
an equal container under the target's name, started and checkpointed in place at once (libpod
then holds it as a checkpointed, exited container with its own metadata). At the freeze, CRIU's
dump sends the pages to a ``criu page-server`` on this machine (the ``page-server``, ``address``,
``port`` options of runc's per-container config, the ``org.criu.config`` annotation); the small
images and the rootfs changes (libpod's ``rootfs-diff.tar``, which its in-place restore applies)
are put into the destination container's directory, and libpod restores it in place: no export,
no import. CRIU's own dump+restore time plus libpod's restore around it (docs/postcopy.md,
section 7).

Chosen for ``--mode live`` when post-copy could move the container (Podman at both ends on
runc, the source created with the annotation, the destination's files on this machine), the
container has no volumes, is not ``--rm`` and the source is not kept; else libpod's stream.

The pages land in the journal's work directory and are hard-linked (copied across file
systems) into both the destination's checkpoint and the source's, so that the source's
checkpoint is whole again for a rollback, which restores it in place as after any live move.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.errors import CheckpointError, CtkError, Unsupported
from toolkit.migration import postcopy
from toolkit.models import CheckpointOptions, RestoreOptions

if TYPE_CHECKING:
    from toolkit.backends.base import Backend
    from toolkit.migration.execute import _Run
    from toolkit.migration.journal import Journal
    from toolkit.migration.plan import Plan

log = logging.getLogger(__name__)

_TEMPLATE_CHECKPOINT = "ctk-pagestream"
"""The name of the destination container's own checkpoint, whose images ctk replaces."""

_SERVER_TIMEOUT = 60.0
"""Seconds the page server (or the source's checkpoint call) may take to end after the dump."""

_DUMP_TIMEOUT = 600.0
"""Seconds the source's dump into the page server may take."""


def usable(plan: Plan, source: Backend, dest: Backend, *, keep_source: bool) -> bool:
    """Whether this path can move the planned container (nothing is changed to find out)."""
    if keep_source or plan.source_info.auto_remove or plan.mounts or plan.cross_runtime:
        return False
    try:
        src = postcopy.check(source, dest, plan.source_info.name, uffd=False)
    except (Unsupported, OSError) as exc:
        log.debug("page-server path not used for %s: %s", plan.source_info.name, exc)
        return False
    if postcopy.ADDRESS_ENV not in os.environ and not _engine_shares_our_network(src.pid):
        # The source's CRIU runs in its engine's network namespace: 127.0.0.1 there is not
        # this machine, and which address is cannot be known (a testbed host): say it.
        log.debug(
            "page-server path not used for %s: its engine runs in another network namespace "
            "and %s does not say where",
            plan.source_info.name,
            postcopy.ADDRESS_ENV,
        )
        return False
    return True


def _engine_shares_our_network(pid: int) -> bool:
    """Whether the engine of the container whose first process is ``pid`` runs in this
    process's network namespace (judged by the process's parent, Podman's conmon)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        ppid = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
        return os.readlink(f"/proc/{ppid}/ns/net") == os.readlink("/proc/self/ns/net")
    except (OSError, StopIteration, IndexError):
        return False


def _local_address(towards: str) -> str:
    """This machine's address on the route to ``towards`` (the source's CRIU connects to it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((towards, 9))  # UDP: no packet is sent, only the route is looked up
        return str(probe.getsockname()[0])


def _free_local_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def _link(src: Path, dst: Path) -> None:
    """``dst`` as a hard link of ``src`` (a copy across file systems)."""
    with contextlib.suppress(FileNotFoundError):
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _stop_page_server(pid: int) -> None:
    """End a page server a killed ctk left waiting for a dump that never came (by its PID,
    once its command line proves it is one)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if pid > 0 else b""
    except OSError:
        return
    if b"page-server" in cmdline and b"criu" in cmdline:
        log.info("stopping the page server a migration left (pid %d)", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


DEST_PREPARED = "dest_prepared"
"""``journal.extra`` key: the destination container was made before the freeze (this path)."""


def give_back_pages(journal: Journal) -> None:
    """Put the dumped memory back into the source's checkpoint, so it can be restored in place.

    Called on rollback (here or by ``--recover``): the pages went to this machine's page server,
    not to the source's checkpoint directory. The source's CRIU config is emptied too: a ctk
    killed mid-way left the dump's ``page-server`` options there, which a restore would follow.
    """
    for config in journal.extra.get("criu_configs") or ():
        postcopy._empty(Path(str(config)))
    _stop_page_server(int(journal.extra.get("page_server_pid") or 0))
    pages = Path(str(journal.extra.get("pages_dir") or ""))
    images = Path(str(journal.extra.get("source_images") or ""))
    if not pages.parts or not pages.is_dir() or not images.is_dir():
        return
    for item in pages.iterdir():  # pages-*.img and the pagemaps that index them
        _link(item, images / item.name)


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (gone, or a zombie its parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_dumped(server: subprocess.Popen[bytes], dump: postcopy._Dump, pid: int) -> None:
    """Until the page server holds every page and CRIU has ended the source.

    CRIU closes the page-server connection once every page is sent, then ends the dumped
    tasks, and only after a successful dump (a failed one resumes them). Both seen, the images
    are complete, and the destination can restore while libpod, runc and netavark tidy the
    source up (0.2-0.3 s that would otherwise count as downtime). Without the source's PID, the
    checkpoint call's own end is waited for.

    Raises:
        CheckpointError: the checkpoint call or the page server failed.
    """
    deadline = time.monotonic() + _DUMP_TIMEOUT
    while time.monotonic() < deadline:
        if dump.ended is not None:
            if dump.error is not None:
                raise CheckpointError(f"the dump into the page server failed: {dump.error}")
            if server.poll() is not None:
                break
        elif pid > 0 and server.poll() is not None and _gone(pid):
            break
        time.sleep(0.005)
    else:
        raise CheckpointError(f"the dump did not end within {_DUMP_TIMEOUT:.0f}s")
    if server.wait(timeout=_SERVER_TIMEOUT) != 0:
        raise CheckpointError(f"CRIU's page server failed (exit {server.returncode})")


def migrate(run: _Run, *, tcp_established: bool, verify: str | None) -> None:
    """Prepare the destination container, dump into its page server, restore it in place.

    Raises:
        CheckpointError: the page server, the dump or the restore failed; the caller's rollback
            removes the destination container and restores the source from its checkpoint.
        CtkError: preparing the destination failed (it is removed; the source never froze).
    """
    from toolkit.backends.base import LazyCheckpoints
    from toolkit.migration.criu_config import LocalCriuConfig
    from toolkit.migration.execute import _pause_hook, _restored

    journal, source, dest = run.journal, run.source, run.dest
    assert isinstance(source, LazyCheckpoints) and isinstance(dest, LazyCheckpoints)
    src = postcopy.check(source, dest, journal.container, uffd=False)
    criu = shutil.which("criu") or "criu"
    work = journal.workdir
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    pages = work / "pages"
    pages.mkdir()
    spec = source.container_spec(journal.container)
    target_config = LocalCriuConfig(journal.target)
    with run.phase("prepare"):
        ready = dataclasses.replace(
            spec,
            name=journal.target,
            runtime="runc",
            labels={**spec.labels, **target_config.labels},
        )
        # Recorded first: a ctk killed from here on leaves a container --recover must remove
        # (preflight proved the name free on the destination, so it can only be this move's).
        journal.extra[DEST_PREPARED] = True
        journal.write()
        try:
            dest.start_template(ready, annotations={postcopy.ANNOTATION: target_config.path})
            # libpod's checkpointed state and metadata for this very container; its images
            # are replaced by the source's below
            dest.checkpoint(journal.target, CheckpointOptions(name=_TEMPLATE_CHECKPOINT))
            found = dest.runtime_config(journal.target)
            bundle = Path(found.state_dir)
            images = bundle / "checkpoint"
            for item in images.iterdir():
                item.unlink()
            if found.upper_dir:
                # what the equal container wrote while it ran is not the source's
                for item in Path(found.upper_dir).iterdir():
                    if item.is_dir() and not item.is_symlink():
                        shutil.rmtree(item)
                    else:
                        item.unlink()
        except BaseException:
            with contextlib.suppress(CtkError):
                dest.remove(journal.target, force=True)
            raise
    _pause_hook("prepare")  # the destination's container made, the source untouched
    # Pages of an earlier checkpoint of the source (ext4 frees them slowly, 0.1 s per 512 MiB
    # here): gone before the freeze, not while the container is frozen.
    with contextlib.suppress(FileNotFoundError):
        for item in src.checkpoint_dir.glob("pages-*.img"):
            item.unlink()
    listen = _local_address(src.address)
    port = _free_local_port(listen)
    server = subprocess.Popen(
        [criu, "page-server", "--images-dir", str(pages), "--address", listen,
         "--port", str(port), "-v2", "--log-file", str(work / "page-server.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    journal.checkpoint = f"migrate-{journal.id}"
    journal.extra["pages_dir"] = str(pages)
    journal.extra["source_images"] = str(src.checkpoint_dir)
    journal.extra["criu_configs"] = [str(src.config)]
    journal.extra["page_server_pid"] = server.pid
    watch: postcopy._FreezeWatch | None = None
    dump: postcopy._Dump | None = None
    try:
        deadline = time.monotonic() + 10
        while not postcopy._listening(port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise CheckpointError(
                    "CRIU's page server did not start: " + postcopy._tail(work / "page-server.log")
                )
            time.sleep(0.005)
        options = [f"page-server\naddress {listen}\nport {port}\n"]
        if not tcp_established:
            options.append(postcopy._SKIP_LOCK)  # as post-copy's dump; kept for live TCP
        src.config.write_text("".join(options))
        journal.step("dump-started")
        run.frozen_at = time.monotonic()
        watch = postcopy._watch_freeze(src, run.frozen_at)
        dump = postcopy._Dump(
            source, journal.container, journal.checkpoint, tcp_established=tcp_established
        )
        dump.start()
        with run.phase("dump"):
            _wait_dumped(server, dump, src.pid)
        postcopy.date_freeze(run, watch, "page server")
        journal.step("dump")
        _pause_hook("dump")
        with run.phase("transfer"):
            give_back_pages(journal)  # the source's checkpoint is whole again (rollback)
            log.debug("pagestream: pages linked back into the source's checkpoint")
            served = {item.name for item in pages.iterdir()}
            for name in served:
                _link(pages / name, images / name)
            for item in src.checkpoint_dir.iterdir():
                # the rest of the images and runc's descriptors.json, not CRIU's logs
                if (
                    item.is_file()
                    and item.name not in served
                    and (item.suffix == ".img" or item.name == "descriptors.json")
                ):
                    shutil.copy2(item, images / item.name)
            log.debug("pagestream: images in place")
            rootfs = bundle / "rootfs-diff.tar"
            deleted = postcopy._upper_changes(src.upper_dir, rootfs) if src.upper_dir else []
            if deleted:
                (bundle / "deleted.files").write_text(json.dumps(deleted))
        journal.step("transfer")
        log.debug("pagestream: rootfs changes written")
        with run.phase("restore"):
            dest.restore(
                journal.target,
                RestoreOptions(checkpoint=_TEMPLATE_CHECKPOINT, tcp_established=tcp_established),
            )
        run.downtime = time.monotonic() - run.frozen_at
        with run.phase("source-cleanup"):
            dump.join(timeout=_SERVER_TIMEOUT)
        if dump.error is not None or dump.is_alive():
            # CRIU had ended the source (it does so only after a complete dump): the move
            # stands; what failed is libpod's bookkeeping after it
            run.notes.append(f"the source's checkpoint call did not end cleanly: {dump.error}")
    finally:
        if dump is not None and dump.is_alive():
            dump.join(timeout=_SERVER_TIMEOUT)  # a rollback restores the source's checkpoint
        if watch is not None:
            watch.stop()
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
        postcopy._empty(src.config)
    with contextlib.suppress(CtkError):
        if dump_stats := source.criu_stats(journal.container, phase="dump"):
            run.criu_stats["dump"] = dict(dump_stats)
    _restored(run, verify)


__all__ = ["give_back_pages", "migrate", "usable"]
