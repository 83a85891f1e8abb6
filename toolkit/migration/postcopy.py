"""Post-copy (lazy pages) migration, Podman -> Podman on runc: downtime flat in memory size.

The source is frozen and dumped *without* its memory: CRIU's ``--lazy-pages`` dump writes every
image but the pages and then serves those pages from a page server (``address``/``port``) while
the task stays frozen. The destination restores from those small images at once; CRIU's
``lazy-pages`` daemon there hands the restored process's memory to userfaultfd and fills it
from the source's page server, on first touch and in the background, until every page arrived.
Only then does the source's CRIU end its dump (the source container exits) and ctk removes it.

How the options reach CRIU, engine by engine:

- Podman on runc: runc reads CRIU options from the file named by the container's
  ``org.criu.config`` annotation, for dumps and restores alike. A source container made for
  post-copy carries that annotation from its creation (annotations cannot be added later);
  ctk writes ``lazy-pages``, ``address``, ``port`` into that file for the dump and empties it
  again after. The destination container is imported from libpod's export of a *template* (an
  equal container started there: libpod's config.dump/spec.dump, see
  :mod:`toolkit.migration.cross_runtime`) with the source's lazy images in its ``checkpoint/``;
  the template's own annotation names a second file holding ``lazy-pages`` + ``work-dir``,
  where ctk's ``criu lazy-pages --page-server`` daemon (started first) listens.
- Docker: 20.10's API has no annotations (``HostConfig.Annotations`` arrived in Docker 24), and
  dockerd's checkpoint API passes no CRIU options, so there is no way to ask its runc for a lazy
  dump: exit 6 before anything is frozen.
- CRIU: 4.1.1's page server fails every lazy-page request (``page-pipe: splice: -1: Bad file
  descriptor``) where the dumping CRIU lacks CAP_SYS_RESOURCE, as here (dropped from the
  bounding set): scripts/criu-patches/0003 fixes it; without the patch, ``sysctl
  fs.pipe-max-size=4194304`` works around it. And it counted a lazy-pages daemon that died
  mid-copy as a complete copy, ending the source: scripts/criu-patches/0004.

The risk post-copy has and pre-copy has not: between the destination's resume and the last page,
the process's memory lives in two places. If the link or the source's page server dies then,
the destination process cannot go on (it is killed), and the source's CRIU, whose dump failed,
thaws the source: it runs on where it was, nothing is lost but time. If the source *host* dies in
that window, the pages that had not arrived are lost with it.

While the dump serves pages, Podman holds the source container's lock: ``podman ps`` and inspect
of it wait until the copy ends (seconds per GiB on a fast link).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import re
import shutil
import socket
import stat
import subprocess
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.errors import CheckpointError, Conflict, EngineError, Unsupported
from toolkit.models import CheckpointOptions

if TYPE_CHECKING:
    from toolkit.backends.base import Backend, CheckpointTemplates
    from toolkit.migration.execute import _Run
    from toolkit.migration.journal import Journal
    from toolkit.models import ContainerSpec

log = logging.getLogger(__name__)

ANNOTATION = "org.criu.config"

ADDRESS_ENV = "CTK_PAGE_SERVER_ADDRESS"
"""The address of the source's page server as the destination's daemon (on this machine) reaches
it: the source engine's host address when that engine runs in another network namespace (a
testbed host); 127.0.0.1 by default."""

IMAGES_TIMEOUT = 60.0
"""Seconds from the checkpoint call until the lazy dump's images and page server are ready."""

PAGES_TIMEOUT = 1800.0
"""Seconds from the restore until every page must have arrived."""

RISK = (
    "post-copy: the destination resumes before its memory has arrived; if the link or the "
    "source dies before the last page, the destination copy is killed and the source runs on "
    "from where it was frozen (if its host still lives)"
)

_PAGE = 4096
# CRIU locks a dumped or restored network namespace with iptables rules: on this machine four
# forks of iptables-restore/ip6tables-restore, 50-100 ms of the downtime (docs/postcopy.md,
# section 6). A post-copy never keeps established TCP connections (the only ones the lock
# protects from a reset) and the destination's namespace is a new one anyway, so the dump
# skips it; the restore follows the dump's choice (CRIU keeps it in inventory.img).
_SKIP_LOCK = "network-lock skip\n"
# Whether this process's CRIU took that option from runc's config file: CRIU 4.1.1 without
# scripts/criu-patches/0007 crashes parsing it, before it freezes anything.
_skip_lock_ok = {"criu": True}
_TRANSFERRED = re.compile(r"UFFD transferred pages: \((\d+)/(\d+)\)")
# Paths the runtime mounts over: never carried as filesystem changes.
_MOUNT_TARGETS = ("run/.containerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "dev")


AUTO_MIB_ENV = "CTK_POSTCOPY_AUTO_MIB"
"""``--mode auto`` picks post-copy for a container using at least this many MiB (default
:data:`AUTO_MIB`) when both ends can do it."""

AUTO_MIB = 512
"""Below this, a live move's downtime is short already (docs/bench/p2: 1.5 s at 64 MiB, 4.6 s
at 512 MiB on Podman), and post-copy's risk (the destination depends on the source until the
last page) buys little."""


def auto_threshold() -> int:
    """Bytes from which ``--mode auto`` prefers post-copy (:data:`AUTO_MIB_ENV`)."""
    raw = os.environ.get(AUTO_MIB_ENV, "")
    mib = int(raw) if raw.isdigit() else AUTO_MIB
    return mib * 1024 * 1024


def auto_choice(used: int, threshold: int, problem: str | None) -> tuple[bool, str]:
    """Whether ``--mode auto`` moves a live-capable container post-copy, and why (or why not).

    ``used`` is the container's memory in bytes, ``problem`` what :func:`check` refused
    (``None``: both ends can).
    """
    mib, limit = used // (1024 * 1024), threshold // (1024 * 1024)
    if used < threshold:
        return False, f"post-copy not chosen: it uses {mib} MiB, under {limit} MiB"
    if problem:
        return False, f"post-copy not chosen: {problem}"
    return True, (
        f"auto: post-copy (lazy pages): it uses {mib} MiB (from {limit} MiB on, downtime that "
        "does not grow with memory is worth the source staying needed until the last page)"
    )


@dataclass(frozen=True)
class Source:
    """What preflight learnt about the source container; all read before anything is frozen."""

    container_id: str
    config: Path
    checkpoint_dir: Path
    upper_dir: Path | None
    address: str
    port: int
    pid: int = 0
    """The source's first process on this machine (0: unknown), watched for the freeze."""
    freezer: Path | None = None
    """The file that shows when the source's cgroup freezer stops it (see :class:`_FreezeWatch`)."""


def check(
    source: Backend, dest: Backend, name: str, *, keep_source: bool = False, uffd: bool = True
) -> Source:
    """Whether ``name`` can move post-copy from ``source`` to ``dest``; changes nothing.

    ``uffd=False``: userfaultfd is not needed (the page-server path of
    :mod:`toolkit.migration.pagestream` reads the rest of what this checks).

    Raises:
        Unsupported: an engine, the container, this kernel or the link cannot do it (exit 6).
    """
    from toolkit.backends.base import LazyCheckpoints

    if keep_source:
        raise Unsupported(
            "post-copy moves the container: the source's lazy dump ends it",
            hint="use --mode live --keep-source for a copy",
        )

    for side, backend in (("source", source), ("destination", dest)):
        if not isinstance(backend, LazyCheckpoints):
            raise Unsupported(
                f"post-copy needs Podman at both ends; the {side} is {backend.kind}",
                hint=(
                    "Docker's API has no per-container annotations before Docker 24 (this "
                    "machine runs 20.10) and its checkpoint call passes no CRIU options, so "
                    "ctk cannot ask its runc for a lazy dump: use --mode live"
                ),
            )
    assert isinstance(source, LazyCheckpoints)
    found = source.runtime_config(name)
    runtime = found.runtime
    if runtime != "runc":
        raise Unsupported(
            f"container {name} runs on {runtime or 'an unknown runtime'}, not runc",
            hint="post-copy passes CRIU options through runc's org.criu.config annotation",
        )
    config = found.annotations.get(ANNOTATION)
    if not config:
        raise Unsupported(
            f"container {name} has no {ANNOTATION} annotation, which post-copy needs",
            hint=(
                "annotations are fixed when a container is created: create it with "
                f"--runtime runc --annotation {ANNOTATION}=FILE (an empty file ctk may write), "
                "e.g. toolkit.migration.postcopy.create_ready(); or use --mode live"
            ),
        )
    config_path = Path(config)
    checkpoint_dir = Path(found.state_dir) / "checkpoint"
    if not found.state_dir or not config_path.parent.is_dir() or not checkpoint_dir.parent.is_dir():
        raise Unsupported(
            f"container {name}'s CRIU config and storage are not on this machine",
            hint="post-copy runs ctk on the source engine's machine (local or testbed socket)",
        )
    _require_dest_here(dest, source.inspect(name).image_id)
    if uffd:
        _require_uffd()
    upper = found.upper_dir
    address = os.environ.get(ADDRESS_ENV, "127.0.0.1")
    port = _free_port(address)
    return Source(
        container_id=source.inspect(name).id,
        config=config_path,
        checkpoint_dir=checkpoint_dir,
        upper_dir=Path(upper) if upper else None,
        address=address,
        port=port,
        pid=found.pid,
        freezer=freezer_file(found.pid),
    )


def create_ready(
    backend: CheckpointTemplates, spec: ContainerSpec, *, config_dir: Path | None = None
) -> str:
    """Create and start ``spec`` on runc with a post-copy-ready annotation.

    Its ``org.criu.config`` names an empty file of its own under ctk's CRIU config directory.

    Returns:
        The new container's ID.

    Raises:
        EngineError: Podman refused to create or start it (nothing is left behind).
    """
    from toolkit.migration.cross_runtime import CONFIG_LABEL, criu_config_dir

    directory = config_dir or criu_config_dir()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / f"{spec.name or 'container'}-{uuid.uuid4().hex[:8]}.conf"
    config.write_text("")
    ready = dataclasses.replace(
        spec, runtime="runc", labels={**spec.labels, CONFIG_LABEL: str(config)}
    )
    return backend.start_template(ready, annotations={ANNOTATION: str(config)})


def _require_dest_here(dest: Backend, image_id: str) -> None:
    """Refuse unless the destination's host is proved to see ctk's CRIU config directory.

    Its restore reads a per-container CRIU config ctk writes here and talks to a lazy-pages
    daemon ctk runs here: a volume written through the engine (as live moves do) would not do.
    A destination without the image is left to the image check that follows.
    """
    from toolkit.migration.criu_config import shares_config_dir

    if dest.has_image(image_id) and not shares_config_dir(dest, image_id):
        raise Unsupported(
            f"post-copy restores on {dest.kind} at {dest.url} with CRIU files of this machine, "
            "which that engine's host does not see (a file ctk wrote did not read back through it)",
            hint="run ctk on the destination engine's machine, or use --mode live",
        )


def _require_uffd() -> None:
    criu = shutil.which("criu")
    if criu is None:
        raise Unsupported("post-copy needs CRIU on this machine", hint="run scripts/setup")
    probe = subprocess.run(
        [criu, "check", "--feature", "uffd-noncoop"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        raise Unsupported(
            "this kernel has no usable userfaultfd (criu check --feature uffd-noncoop: "
            f"{(probe.stdout + probe.stderr).strip()})",
            hint="post-copy needs userfaultfd on the destination: use --mode live",
        )


def _free_port(address: str) -> int:
    """A port nothing listens on at ``address``, reached from here: the link is checked too.

    Raises:
        Unsupported: ``address`` cannot be reached (no route, timeout).
    """
    for _ in range(20):
        port = 27000 + int.from_bytes(os.urandom(2), "big") % 2000
        try:
            with socket.create_connection((address, port), timeout=3.0):
                continue  # taken: try another
        except ConnectionRefusedError:
            return port  # the host answered, nothing listens there
        except OSError as exc:
            raise Unsupported(
                f"the source's page-server address {address} cannot be reached from here: {exc}",
                hint=f"check the link, or set {ADDRESS_ENV} to the source host's address",
            ) from exc
    raise Unsupported(f"no free port for the page server at {address}")


def _listening(port: int) -> bool:
    """True when a CRIU process (in any network namespace) listens on TCP ``port``."""
    want = f":{port:04X} "
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "criu":
                continue
            for table in ("tcp", "tcp6"):
                for line in (proc / "net" / table).read_text().splitlines()[1:]:
                    fields = line.split()
                    if len(fields) > 3 and (fields[1] + " ").endswith(want) and fields[3] == "0A":
                        return True
        except OSError:
            continue  # gone meanwhile
    return False


def _upper_changes(upper: Path, out: Path) -> list[str]:
    """libpod's rootfs-diff.tar from the overlay upper directory; the deleted paths.

    Read while the container is frozen (nothing writes), straight from the storage: the engine's
    API would wait on the container's lock, which the blocked checkpoint call holds.
    """
    deleted: list[str] = []
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(upper.rglob("*")):
            rel = path.relative_to(upper).as_posix()
            if any(rel == t or rel.startswith(t + "/") for t in _MOUNT_TARGETS):
                continue
            st = path.lstat()
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                deleted.append("/" + rel)  # overlay whiteout
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                continue
            tar.add(path, arcname=rel, recursive=False)
    return deleted


_Member = tuple[tarfile.TarInfo, bytes | None]


def _template_members(template: Path) -> list[_Member]:
    """libpod's metadata from the template's export, read before the freeze (not while it)."""
    from toolkit import archive

    replaced = {"rootfs-diff.tar", "deleted.files", "stats-dump", "dump.log", "ctr.log"}
    names = archive.check_nested_tar(template, what="podman template")
    kept: list[_Member] = []
    with tarfile.open(template) as src:
        for member, clean in zip(src.getmembers(), names, strict=True):
            if clean == "checkpoint" or clean.startswith("checkpoint/") or clean in replaced:
                continue
            data = src.extractfile(member) if member.isfile() else None
            kept.append((member, data.read() if data is not None else None))
    return kept


def _import_tar(
    template: list[_Member], images: Path, rootfs: Path, deleted: list[str], out: Path
) -> None:
    """The template's libpod metadata around the source's lazy images and rootfs changes."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for member, data in template:
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
        top = tarfile.TarInfo("checkpoint")
        top.type, top.mode = tarfile.DIRTYPE, 0o700
        dst.addfile(top)
        for item in sorted(images.iterdir()):
            dst.add(item, arcname=f"checkpoint/{item.name}")
        dst.add(rootfs, arcname="rootfs-diff.tar")
        if deleted:
            data = json.dumps(deleted).encode()
            info = tarfile.TarInfo("deleted.files")
            info.size, info.mode = len(data), 0o600
            dst.addfile(info, io.BytesIO(data))


class _Dump(threading.Thread):
    """The source's blocking checkpoint call (a lazy one returns once every page was served)."""

    def __init__(
        self, source: Backend, name: str, checkpoint: str, *, tcp_established: bool = False
    ) -> None:
        super().__init__(name="ctk-dump", daemon=True)
        self.source, self.container = source, name
        self.options = CheckpointOptions(name=checkpoint, tcp_established=tcp_established)
        self.error: BaseException | None = None
        self.ended: float | None = None

    def run(self) -> None:
        try:
            self.source.checkpoint(self.container, self.options)
        except BaseException as exc:  # handed to the migrating thread
            self.error = exc
        finally:
            self.ended = time.monotonic()


def freezer_file(pid: int) -> Path | None:
    """The freezer file of process ``pid``'s cgroup, as this machine sees it; None if unknown.

    cgroup v1: ``freezer.state`` (THAWED, FREEZING, FROZEN); v2: ``cgroup.freeze`` (0, 1),
    the file CRIU writes to freeze the container's tasks.
    """
    if pid <= 0:
        return None
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "freezer" in controllers.split(","):
            candidate = Path("/sys/fs/cgroup/freezer") / path.lstrip("/") / "freezer.state"
            return candidate if candidate.is_file() else None
    for line in lines:
        if line.startswith("0::"):
            candidate = Path("/sys/fs/cgroup") / line[3:].lstrip("/") / "cgroup.freeze"
            return candidate if candidate.is_file() else None
    return None


class _FreezeWatch(threading.Thread):
    """When CRIU stopped the source: the downtime starts there, not at the checkpoint call.

    Between the call and the freeze, libpod, runc and CRIU's start-up take 50-100 ms while the
    container still runs and serves. CRIU freezes the cgroup, seizes every task with ptrace
    (they stay stopped until the dump ends) and thaws the cgroup again within milliseconds, so
    both are read every millisecond: the cgroup's freezer file and the container's first
    process's state (``t``, tracing stop). The freeze is dated at the *last* read that still
    saw the container running, so the downtime this gives is never shorter than the real one.
    """

    def __init__(self, pid: int, freezer: Path | None, since: float) -> None:
        super().__init__(name="ctk-freeze-watch", daemon=True)
        self.pid, self.freezer, self.running_at = pid, freezer, since
        self.frozen: float | None = None
        self._halt = threading.Event()

    def _running(self) -> bool:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("t", "T"):
            return False
        if self.freezer is not None:
            return self.freezer.read_text().strip() in ("THAWED", "0")
        return True

    def run(self) -> None:
        while not self._halt.is_set():
            before = time.monotonic()
            try:
                running = self._running()
            except (OSError, IndexError):
                return  # gone or unreadable: the caller keeps the call's time
            if not running:
                self.frozen = self.running_at
                return
            self.running_at = before
            self._halt.wait(0.001)

    def stop(self) -> float | None:
        """Stop watching; the monotonic time of the freeze, or None if not seen."""
        self._halt.set()
        self.join(timeout=1)
        return self.frozen


class _DumpEnded(CheckpointError):
    """The lazy dump's call ended before its page server listened (nothing served yet)."""


def _dump_config(src: Source, *, skip_lock: bool) -> str:
    """The source's CRIU options for the lazy dump (see :data:`_SKIP_LOCK`)."""
    return f"lazy-pages\naddress {src.address}\nport {src.port}\n" + (
        _SKIP_LOCK if skip_lock else ""
    )


def date_freeze(run: _Run, watch: _FreezeWatch | None, what: str) -> None:
    """Count ``run``'s downtime from the freeze ``watch`` saw, not from the checkpoint call
    (libpod, runc and CRIU start up before it while the container still runs), and say so."""
    frozen = watch.stop() if watch is not None else None
    if frozen is not None and run.frozen_at is not None:
        run.notes.append(
            f"{what}: CRIU froze the source {frozen - run.frozen_at:.3f}s after the "
            "checkpoint call; the downtime counts from the freeze"
        )
        run.frozen_at = frozen


def _watch_freeze(src: Source, since: float) -> _FreezeWatch | None:
    if src.pid <= 0:
        return None
    watch = _FreezeWatch(src.pid, src.freezer, since)
    watch.start()
    return watch


def _wait_images(dump: _Dump, src: Source) -> None:
    deadline = time.monotonic() + IMAGES_TIMEOUT
    inventory = src.checkpoint_dir / "inventory.img"
    while time.monotonic() < deadline:
        if dump.ended is not None:
            raise _DumpEnded(
                f"the lazy dump ended before serving pages: {dump.error or 'no error given'}"
            )
        if inventory.exists() and _listening(src.port):
            return
        time.sleep(0.002)
    raise CheckpointError(f"the lazy dump was not ready after {IMAGES_TIMEOUT:.0f}s")


def _copy_images(checkpoint_dir: Path, images: Path) -> None:
    images.mkdir()
    for item in checkpoint_dir.iterdir():
        # the images and runc's descriptors.json; not CRIU's log of the dump still running
        if item.is_file() and item.name != "dump.log":
            try:
                os.link(item, images / item.name)  # CRIU wrote them all before serving pages
            except OSError:
                shutil.copy2(item, images / item.name)


def _page_stats(lazy_log: Path) -> dict[str, int]:
    """Pages moved in all, and of them on first touch (page faults) vs in the background."""
    total = on_demand = 0
    with contextlib.suppress(OSError), lazy_log.open(errors="replace") as handle:
        for line in handle:
            if "#PF at" in line:
                on_demand += 1
            elif match := _TRANSFERRED.search(line):
                total += int(match.group(2))
    on_demand = min(on_demand, total)
    return {
        "pages": total,
        "pages_on_demand": on_demand,
        "pages_background": total - on_demand,
        "bytes": total * _PAGE,
    }


def _abort_page_server(address: str, port: int) -> None:
    """Make the source's waiting page server fail its dump, so that CRIU thaws the source.

    A page server whose client never came waits forever (and Podman's checkpoint call with it);
    one whose client merely closes the connection counts the copy as complete and *kills* the
    source. A request it does not know ends its session with an error instead: "Lazy pages
    transfer FAILED", and the source runs on. Once the destination's daemon is connected the
    page server takes no second client, and this does nothing.
    """
    try:
        with socket.create_connection((address, port), timeout=2.0) as sk:
            sk.settimeout(5.0)
            sk.sendall(b"\xff" * 24)  # struct page_server_iov with an unknown command
            with contextlib.suppress(OSError):
                sk.recv(1)
    except OSError as exc:
        log.info("page server at %s:%d not aborted: %s", address, port, exc)


def _stop(daemon: subprocess.Popen[bytes] | None) -> None:
    if daemon is None or daemon.poll() is not None:
        return
    log.info("stopping the lazy-pages daemon (pid %d)", daemon.pid)
    daemon.kill()
    daemon.wait(timeout=10)


def migrate(run: _Run, src: Source, *, verify: str | None) -> None:
    """Freeze, dump without memory, restore at the destination, stream the pages, finish.

    Raises:
        CheckpointError: the lazy dump or the restore failed; the destination copy is removed
            by the caller's rollback and the source runs again (CRIU thaws it).
        EngineError: the pages did not all arrive in time.
    """
    from toolkit.backends.base import LazyCheckpoints
    from toolkit.migration import volumes
    from toolkit.migration.criu_config import LocalCriuConfig
    from toolkit.migration.cross_runtime import _podman_template
    from toolkit.migration.execute import _pause_hook, _restored

    journal, source, dest = run.journal, run.source, run.dest
    assert isinstance(dest, LazyCheckpoints) and run.plan is not None
    assert isinstance(source, LazyCheckpoints)  # check() refused any other engine
    criu = shutil.which("criu") or "criu"
    work = journal.workdir
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    run.notes.append(RISK)
    # Before the freeze: the destination's template export (libpod's metadata).
    spec = source.container_spec(journal.container)
    spec = dataclasses.replace(spec, name=journal.target)
    # Post-copy runs CRIU's lazy-pages daemon here, so the destination is this machine's.
    dest_criu = LocalCriuConfig(journal.target)
    dest_config = Path(dest_criu.path)
    mounts = run.plan.mounts
    with run.phase("prepare"):
        # The volumes: where the source keeps them, and empty ones on the destination, which
        # the template mounts so that libpod's config names them (filled while frozen).
        where = volumes.mountpoints(source, mounts)
        names = volumes.create(dest, mounts, journal)
        template = _template_members(
            _podman_template(
                dest,
                spec,
                run.plan.source_info,
                dest_criu,
                work,
                volumes=volumes.dest_mounts(mounts, names),
            )
        )
        # The template ran the source's command on those volumes: what it wrote there must
        # not survive beside the source's data (ctk made these volumes for this move alone).
        volumes.empty_local(volumes.mountpoints(dest, volumes.dest_mounts(mounts, names)))
    lazy_dir = work / "lazy"
    lazy_dir.mkdir()
    daemon: subprocess.Popen[bytes] | None = None
    dump: _Dump | None = None
    watch: _FreezeWatch | None = None
    journal.checkpoint = f"migrate-{journal.id}"
    # The checkpoint call returns only after the last page: a client of its own, whose HTTP
    # timeout (120 s by default) does not cut a long copy short.
    dumper = source.with_timeout(int(PAGES_TIMEOUT))
    skip_lock = _skip_lock_ok["criu"]
    src.config.write_text(_dump_config(src, skip_lock=skip_lock))
    # What `ctk migrate --recover` needs if this process dies: where the source's page server
    # waits, and the CRIU configs to empty again (see recover_postcopy()).
    journal.extra["page_server"] = [src.address, src.port]
    journal.extra["criu_configs"] = [str(src.config), str(dest_config)]
    try:
        journal.step("dump-started")
        run.frozen_at = time.monotonic()
        watch = _watch_freeze(src, run.frozen_at)
        dump = _Dump(dumper, journal.container, journal.checkpoint)
        dump.start()
        with run.phase("dump"):
            try:
                _wait_images(dump, src)
            except _DumpEnded as exc:
                if not skip_lock:
                    raise
                # An unpatched CRIU died parsing network-lock, before freezing: dump again.
                log.warning("lazy dump failed with network-lock skip, once more without: %s", exc)
                _skip_lock_ok["criu"] = False
                src.config.write_text(_dump_config(src, skip_lock=False))
                if watch is not None:
                    watch.stop()
                run.frozen_at = time.monotonic()
                watch = _watch_freeze(src, run.frozen_at)
                dump = _Dump(dumper, journal.container, journal.checkpoint)
                dump.start()
                _wait_images(dump, src)
        date_freeze(run, watch, "post-copy")
        images = work / "images"
        with run.phase("transfer"):
            _copy_images(src.checkpoint_dir, images)
            rootfs = work / "rootfs-diff.tar"
            deleted = _upper_changes(src.upper_dir, rootfs) if src.upper_dir else []
            tar = work / "import.tar"
            _import_tar(template, images, rootfs, deleted, tar)
            # The volumes' data, while nothing writes to it: the downtime grows with it alone
            # (the memory follows after the resume). Before the restore: CRIU reopens the
            # files the process holds open in them.
            staged = volumes.read_local(mounts, where, work=work)
            volume_bytes = volumes.fill(dest, staged, names, image=run.plan.source_info.image_id)
            run.archive_bytes = tar.stat().st_size + volume_bytes
        journal.step("dump")
        journal.step("transfer")
        _pause_hook("dump")  # the source frozen, waiting for a client (tests kill ctk here)
        dest_config.write_text(f"lazy-pages\nwork-dir {lazy_dir}\n")
        with run.phase("restore"):
            daemon = subprocess.Popen(
                [criu, "lazy-pages", "--page-server", "--address", src.address,
                 "--port", str(src.port), "--images-dir", str(images),
                 "--work-dir", str(lazy_dir), "-v4", "--log-file", "lazy-pages.log"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
            socket_path = lazy_dir / "lazy-pages.socket"
            deadline = time.monotonic() + 10
            while not socket_path.exists():
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise CheckpointError(
                        "CRIU's lazy-pages daemon did not start: "
                        + _tail(lazy_dir / "lazy-pages.log")
                    )
                time.sleep(0.005)
            # From here the daemon (its own session) serves the restore and copies the rest even
            # if this process dies; --recover waits for it (settle()).
            journal.extra["lazy_pages_pid"] = daemon.pid
            journal.write()
            dest.import_raw(tar, name=journal.target, ports=spec.ports)
        journal.step(RESUMED_STEP)
        restored_at = time.monotonic()
        run.downtime = restored_at - run.frozen_at
        with run.phase("pages"):
            _wait_pages(daemon, dump, lazy_dir / "lazy-pages.log")
        stats = _page_stats(lazy_dir / "lazy-pages.log")
        stats["all_pages_ms"] = round((time.monotonic() - run.frozen_at) * 1000)
        run.criu_stats["postcopy"] = stats
        run.notes.append(
            f"post-copy: {stats['pages']} pages ({stats['bytes']} bytes) moved after the "
            f"resume, {stats['pages_on_demand']} on first touch and "
            f"{stats['pages_background']} in the background; all arrived "
            f"{stats['all_pages_ms'] / 1000:.3f}s after the freeze"
        )
    except BaseException:
        if dump is not None and dump.is_alive():
            _abort_page_server(src.address, src.port)
        _stop(daemon)
        if dump is not None:
            dump.join(timeout=60)
            if dump.is_alive():
                log.error("the source's lazy dump of %s did not end", journal.container)
        raise
    finally:
        if watch is not None:
            watch.stop()  # a dump that failed before freezing leaves it polling
        _empty(src.config)
        _empty(dest_config)
        if dumper is not source and (dump is None or not dump.is_alive()):
            dumper.close()
    _restored(run, verify)


RESUMED_STEP = "restore-lazy"
"""The journal step of a post-copy whose destination resumed on lazy pages."""


def settle(journal: Journal, *, patience: float = PAGES_TIMEOUT) -> str:
    """Let a post-copy whose ctk died come to rest before ``--recover`` decides; what happened.

    The lazy-pages daemon runs in a session of its own: if it still lives, it is copying (or
    about to): wait for it to end. Then make the source's page server fail if it still waits
    for a client that will never come (ctk died before starting the daemon): CRIU thaws the
    source. Once both have ended, the source's state says how: it exited if every page arrived
    at the destination, else CRIU thawed it and it runs. The CRIU configs are emptied again.
    """
    extra = journal.extra
    pid = int(extra.get("lazy_pages_pid") or 0)
    deadline = time.monotonic() + patience
    waited = False
    while pid and _is_lazy_daemon(pid):
        if time.monotonic() > deadline:
            raise Conflict(
                f"post-copy {journal.id}: CRIU's lazy-pages daemon (pid {pid}) still copies "
                f"after {patience:.0f}s",
                hint="run ctk migrate --recover again once it has ended",
            )
        waited = True
        time.sleep(0.1)
    address, port = extra.get("page_server") or ("", 0)
    if address:
        # a page server that served its client no longer listens: this then does nothing
        _abort_page_server(str(address), int(port))
    for path in extra.get("criu_configs") or ():
        _empty(Path(str(path)))
    if waited:
        return f"waited for CRIU's lazy-pages daemon (pid {pid}) to end its copy"
    if pid:
        return "CRIU's lazy-pages daemon had ended"
    return "the source's lazy dump, which no daemon had reached, was made to fail (CRIU thaws it)"


def _is_lazy_daemon(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"lazy-pages" in cmdline


def _wait_pages(daemon: subprocess.Popen[bytes], dump: _Dump, lazy_log: Path) -> None:
    deadline = time.monotonic() + PAGES_TIMEOUT
    while daemon.poll() is None:
        if dump.ended is not None and dump.error is not None:
            raise CheckpointError(f"the source's page server failed mid-copy: {dump.error}")
        if time.monotonic() > deadline:
            raise EngineError(f"not every page arrived within {PAGES_TIMEOUT:.0f}s")
        time.sleep(0.01)
    if daemon.returncode != 0:
        # Whatever it had copied, the source's CRIU (with scripts/criu-patches/0004) fails its
        # dump and thaws the source: the destination copy must go.
        raise CheckpointError(
            f"CRIU's lazy-pages daemon failed (exit {daemon.returncode}): {_tail(lazy_log)}"
        )
    dump.join(timeout=120)
    if dump.is_alive():
        raise CheckpointError("the source's lazy dump did not end after the last page")
    if dump.error is not None:
        raise CheckpointError(f"the source's lazy dump failed: {dump.error}")


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    errors = [line for line in lines if "Error" in line]
    return " | ".join((errors or lines)[-3:])


def _empty(config: Path) -> None:
    """Later dumps and restores of the container must not be lazy: empty its CRIU config."""
    try:
        config.write_text("")
    except OSError as exc:
        log.warning("could not empty the CRIU config %s: %s", config, exc)


__all__ = ["ANNOTATION", "RISK", "Source", "check", "create_ready", "migrate", "settle"]
