"""Run a migration with rollback: the source either ends on the destination or runs again.

Phases: preflight (changes nothing), image (copy the image by ID when the destination lacks
it), dump (checkpoint to an archive, which freezes the source; cold: stop and capture the
rootfs changes), transfer (the archive to this machine), restore (on the destination), verify.
Podman -> Podman streams instead: the source's export flows into the destination's import as
it arrives (transfer is then the upload, restore what the destination does after it).
Every step is journaled (:mod:`toolkit.migration.journal`) before and after it happens, so a
killed ctk can be recovered with :func:`recover`.

The paths are :data:`STRATEGIES` (stream, archive, cold, cross-runtime), each a
:class:`Strategy` with its own way back, chosen in one place (:func:`_choose`); the journal
records which (``extra["strategy"]``), so a rollback, here or in :func:`recover`, takes the
same path back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from toolkit.backends.base import Backend, StreamingCheckpoints
from toolkit.config import engine_record, open_recorded
from toolkit.errors import (
    Conflict,
    ContainerNotFound,
    CtkError,
    EngineError,
    MigrationError,
    Unsupported,
)
from toolkit.locks import container_lock, migration_lock
from toolkit.migration import journal as journal_mod
from toolkit.migration import sealing, volumes
from toolkit.migration.journal import Journal, JournalTaken
from toolkit.migration.plan import Plan, engine_label, preflight, verify_is_url
from toolkit.models import (
    CheckpointOptions,
    ContainerInfo,
    ExportOptions,
    ImportOptions,
    MigrationReport,
    RestoreOptions,
)

if TYPE_CHECKING:
    from toolkit.migration import postcopy as postcopy_mod

log = logging.getLogger(__name__)

PAUSE_ENV = "CTK_MIGRATE_PAUSE_AFTER"
"""Test hook: ``CTK_MIGRATE_PAUSE_AFTER=STEP[:SECONDS]`` makes ctk print ``paused after STEP``
on stderr and sleep (an hour, or SECONDS) after that journaled step (``image``, ``dump``,
``restore``), so a test can SIGKILL it there (``--recover``) or cut the link meanwhile."""

VERIFY_TIMEOUT = 20.0

Progress = Callable[[int], None]


def _cross_runtime() -> Callable[..., ContainerInfo] | None:
    """The live Docker <-> Podman path, when this ctk has it."""
    try:
        from toolkit.migration.cross_runtime import (  # type: ignore[import-not-found,unused-ignore]
            live_cross_runtime,
        )
    except ImportError:
        return None
    result: Callable[..., ContainerInfo] = live_cross_runtime
    return result


def _pause_hook(step: str) -> None:
    wanted, _, seconds = os.environ.get(PAUSE_ENV, "").partition(":")
    if wanted == step:
        print(f"ctk: paused after {step} ({PAUSE_ENV})", file=sys.stderr, flush=True)
        time.sleep(float(seconds) if seconds else 3600)


def _counted(
    chunks: Iterable[bytes], total: list[int], progress: Progress | None
) -> Iterator[bytes]:
    for chunk in chunks:
        total[0] += len(chunk)
        if progress is not None:
            progress(len(chunk))
        yield chunk


def copy_image(
    source: Backend, dest: Backend, info: ContainerInfo, *, progress: Progress | None = None
) -> int:
    """Stream the container's image from ``source`` into ``dest`` (save -> load); bytes moved.

    Saved by reference when there is one (so the destination gets the tag too), by ID
    otherwise; the ID is checked on the destination afterwards.

    Raises:
        EngineError: the destination still lacks the image ID after loading.
    """
    total = [0]
    refs = [r for r in (info.image, info.image_id) if r and not r.startswith("sha256:")]
    refs.append(info.image_id)
    for ref in refs:
        dest.load_image(_counted(source.save_image(ref), total, progress))
        if dest.has_image(info.image_id):
            return total[0]
    raise EngineError(
        f"image {info.image_id} did not arrive on {engine_label(dest)}",
        hint=f"copy it by hand: docker save {info.image} | {dest.kind} load",
    )


def _verify(dest: Backend, target: str, verify: str | None) -> None:
    deadline = time.monotonic() + VERIFY_TIMEOUT
    while True:
        info = dest.inspect(target)
        if info.running:
            break
        if time.monotonic() > deadline:
            raise EngineError(f"{target} is not running on the destination ({info.status})")
        time.sleep(0.3)
    if verify is None:
        return
    last = ""
    if not verify_is_url(verify):
        # A command, run in the new container until it succeeds (the service may need a moment).
        while time.monotonic() < deadline:
            result = dest.exec(target, ["sh", "-c", verify])
            if result.exit_code == 0:
                return
            last = f"exit code {result.exit_code}: {(result.stderr or result.stdout).strip()}"
            time.sleep(0.5)
        raise EngineError(f"--verify {verify!r} failed in {target}: {last}")
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(verify, timeout=3) as response:
                if 200 <= response.status < 400:
                    return
                last = f"status {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise EngineError(f"--verify {verify} failed: {last}")


@dataclasses.dataclass
class _Run:
    """The mutable state of one migration while it runs; becomes a MigrationReport."""

    journal: Journal
    plan: Plan | None
    source: Backend
    dest: Backend
    reason: str = ""
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    image_bytes: int = 0
    archive_bytes: int = 0
    frozen_at: float | None = None
    downtime: float = 0.0
    rolled_back: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    criu_stats: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    progress: Progress | None = None

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.monotonic() - started, 3)

    def report(
        self,
        status: str,
        *,
        failed_phase: str = "",
        error: str = "",
        result: ContainerInfo | None = None,
        archive: str = "",
    ) -> MigrationReport:
        j = self.journal
        return MigrationReport(
            id=j.id,
            container=j.container,
            target=j.target,
            source=engine_label(self.source),
            destination=engine_label(self.dest),
            mode=j.mode,
            reason=self.reason,
            status=status,
            timings=dict(self.timings),
            image_bytes=self.image_bytes,
            archive_bytes=self.archive_bytes,
            downtime=round(self.downtime, 3),
            failed_phase=failed_phase,
            error=error,
            rolled_back=tuple(self.rolled_back),
            archive=archive,
            source_kept=j.keep_source,
            result=result,
            notes=tuple(self.notes),
            criu_stats=dict(self.criu_stats),
        )


def migrate(
    name: str,
    *,
    source: Backend,
    dest: Backend,
    mode: str = "auto",
    new_name: str | None = None,
    keep_source: bool = False,
    tcp_established: bool = False,
    ignore_static_ip: bool = False,
    compress: str = "zstd",
    verify: str | None = None,
    progress: Progress | None = None,
    allow_mounts: Sequence[str] = (),
) -> MigrationReport:
    """Move the running container ``name`` from ``source`` to ``dest``.

    ``live`` checkpoints it and restores it there with its memory; ``cold`` stops it and
    recreates it (spec and rootfs changes) there; ``auto`` picks live when both sides can
    checkpoint (Docker <-> Podman only when this ctk has the cross-runtime path) and says why
    in ``report.reason``. ``keep_source`` leaves the source running (it is dumped with
    leave-running, or its rootfs copied while it runs): the destination gets a copy.
    ``verify`` is an http(s) URL that must answer once the destination runs, or a command run
    with ``sh -c`` in the new container that must exit 0. ``progress``
    is called with the byte count of each image chunk copied. Named and anonymous volumes move
    with their data (live between engines of the same kind: in the archive; cold and
    post-copy: copied once the source is stopped or frozen, :mod:`toolkit.migration.volumes`;
    live Docker <-> Podman: copied while it is frozen, :mod:`toolkit.migration.volume_transfer`);
    a bind mount only when its host path is in ``allow_mounts`` (its content does not move).

    Returns:
        The report (``status == "done"``).

    Raises:
        CtkError: preflight refused (nothing was changed): Conflict, Unsupported, ...
        MigrationError: it failed after changing something; ``exc.report`` says which phase
            failed and what was rolled back; the source runs again and the archive is kept.
    """
    cross = _cross_runtime() if source.kind != dest.kind else None
    started = time.monotonic()
    plan = preflight(
        name,
        source=source,
        dest=dest,
        mode=mode,
        new_name=new_name,
        compress=compress,
        verify=verify,
        cross_runtime_available=cross is not None,
        allow_mounts=allow_mounts,
    )
    pc_source = None
    if plan.mode == "postcopy":
        from toolkit.migration import postcopy

        # exit 6 here, before anything is frozen, where post-copy cannot work
        pc_source = postcopy.check(source, dest, name, keep_source=keep_source)
    elif mode == "auto" and plan.mode == "live" and not plan.cross_runtime:
        plan, pc_source = _auto_postcopy(plan, source, dest, keep_source=keep_source)
    journal = Journal(
        id=journal_mod.new_id(),
        container=plan.source_info.name,
        target=plan.target,
        source=engine_record(source),
        destination=engine_record(dest),
        mode=plan.mode,
        keep_source=keep_source,
        checkpoint="",
    )
    strategy = _choose(plan, source, dest, keep_source=keep_source)
    journal.extra["strategy"] = strategy.name
    # the bind mounts the user allowed: a rollback's re-import of the source needs them too
    journal.extra["allow_mounts"] = list(allow_mounts)
    log.debug("migrate %s: %s (%s)", name, strategy.name, plan.reason)
    options = _Options(
        cross=cross,
        tcp_established=tcp_established,
        ignore_static_ip=ignore_static_ip,
        compress=compress,
        verify=verify,
        postcopy_source=pc_source,
    )
    run = _Run(
        journal=journal,
        plan=plan,
        source=source,
        dest=dest,
        reason=plan.reason,
        progress=progress,
    )
    run.timings["preflight"] = round(time.monotonic() - started, 3)
    journal.claim()
    with contextlib.ExitStack() as held:
        # One operation per container: the source, and the target's name on the destination;
        # the migration's own lock keeps --recover off it while this process runs it.
        held.enter_context(migration_lock(journal.id, operation="migrate"))
        held.enter_context(_source_lock(source, plan.source_info.id, journal.container))
        held.enter_context(
            container_lock(
                dest.kind,
                dest.url,
                f"name:{journal.target}",
                operation="migrate",
                name=journal.target,
            )
        )
        journal.step("preflight")
        return _execute(run, plan, strategy, options)


def _source_lock(
    source: Backend, container_id: str, name: str
) -> contextlib.AbstractContextManager[None]:
    return container_lock(source.kind, source.url, container_id, operation="migrate", name=name)


def _execute(run: _Run, plan: Plan, strategy: Strategy, options: _Options) -> MigrationReport:
    """The migration's body, under the locks :func:`migrate` holds: move, or roll back."""
    journal, source, dest, name = run.journal, run.source, run.dest, run.journal.container
    progress = run.progress
    try:
        if plan.needs_image:
            with run.phase("image"):
                run.image_bytes = copy_image(source, dest, plan.source_info, progress=progress)
            journal.step("image")
            _pause_hook("image")
        strategy.move(run, options)
    except BaseException as exc:
        if isinstance(exc, JournalTaken):
            raise  # another ctk recovered it: what is left is theirs, touch nothing more
        failed_phase = _failing_phase(run.journal, needs_image=plan.needs_image)
        _rollback(run)
        status = "rolled_back" if run.journal.state == "rolled_back" else "failed"
        archive = run.journal.archive if run.journal.archive else ""
        report = run.report(
            status,
            failed_phase=failed_phase,
            error=str(exc) or type(exc).__name__,
            archive=archive,
        )
        if not isinstance(exc, Exception):
            raise
        hint = (
            "the source runs again"
            if status == "rolled_back"
            else (f"finish or roll back with: ctk migrate --recover {journal.id}")
        )
        if archive:
            hint += f"; the archive is kept at {archive}"
        raise MigrationError(
            f"migration of {name} failed in phase {failed_phase}: {exc}", hint=hint, report=report
        ) from exc
    result_info = dest.inspect(plan.target)
    return run.report("done", result=result_info)


# The phase that was running when the journal's last step was this one.
_RUNNING_AFTER = {
    "image": "dump",
    "dump-started": "dump",
    "dump": "transfer",
    "transfer": "restore",
    # the cross-runtime path dumps, then restores: it says when the dump is done
    "cross-runtime-started": "dump",
    "cross-runtime-dumped": "restore",
    "restore": "verify",
    "source-removed": "verify",
    # post-copy: resumed on lazy pages, the rest of the memory on its way
    "restore-lazy": "pages",
}


def _failing_phase(journal: Journal, *, needs_image: bool) -> str:
    last = journal.steps[-1]["step"] if journal.steps else "preflight"
    if last == "preflight":
        return "image" if needs_image else "dump"
    return _RUNNING_AFTER.get(last, last)


@dataclasses.dataclass(frozen=True)
class _Options:
    """What the caller asked of the move, as every strategy reads it."""

    cross: Callable[..., ContainerInfo] | None
    tcp_established: bool
    ignore_static_ip: bool
    compress: str
    verify: str | None
    postcopy_source: postcopy_mod.Source | None = None


@dataclasses.dataclass(frozen=True)
class Strategy:
    """One migration path, with its own way back.

    ``move`` ends with the container running on the destination and the migration finished, or
    raises; ``restart_source`` brings the source back after a failure, once :func:`_rollback`
    has removed the destination's copy. ``undoes_itself``: a failure inside ``move`` has
    already undone its own changes (the cross-runtime path restores its source itself), so
    only a ctk killed meanwhile needs :func:`_rollback` to do it.
    """

    name: str
    move: Callable[[_Run, _Options], None]
    restart_source: Callable[[_Run], None]
    undoes_itself: bool = False


def _auto_postcopy(
    plan: Plan, source: Backend, dest: Backend, *, keep_source: bool
) -> tuple[Plan, postcopy_mod.Source | None]:
    """``--mode auto`` on a live-capable pair: post-copy for a large container when both ends
    can do it (:func:`toolkit.migration.postcopy.auto_choice`); the plan's reason says why not
    otherwise. Changes nothing on either engine."""
    from toolkit.migration import postcopy

    name = plan.source_info.name
    try:
        used = source.stats(name).memory_usage
    except CtkError as exc:
        log.debug("auto: no memory figure for %s (%s): live", name, exc.message)
        return plan, None
    threshold = postcopy.auto_threshold()
    found: postcopy_mod.Source | None = None
    problem: str | None = None
    if used >= threshold:
        try:
            found = postcopy.check(source, dest, name, keep_source=keep_source)
        except Unsupported as exc:
            problem = exc.message
    chosen, why = postcopy.auto_choice(used, threshold, problem)
    if not chosen:
        return dataclasses.replace(plan, reason=f"{plan.reason}; {why}"), None
    if plan.mounts:
        # volumes do not keep it from post-copy: their data moves while the source is frozen
        why += "; its volumes' data is copied while it is frozen (part of the downtime)"
    return dataclasses.replace(plan, mode="postcopy", reason=why), found


def _choose(plan: Plan, source: Backend, dest: Backend, *, keep_source: bool = False) -> Strategy:
    """The one place a path is chosen: the plan says live or cold, the engines say how."""
    if plan.mode == "postcopy":
        return STRATEGIES["postcopy"]
    if plan.mode == "cold":
        return STRATEGIES["cold"]
    if plan.cross_runtime:
        return STRATEGIES["cross-runtime"]
    # An --rm source is gone once its export is sent, and a stream keeps no copy to
    # bring it back from if the destination fails: it goes through an archive. Volumes do
    # too: their data travels as the archive's members.
    if _streams(source, dest) and not plan.source_info.auto_remove and not plan.mounts:
        from toolkit.migration import pagestream

        # the memory written once, into the destination's container (when both ends allow)
        if pagestream.usable(plan, source, dest, keep_source=keep_source):
            return STRATEGIES["pagestream"]
        return STRATEGIES["stream"]
    return STRATEGIES["archive"]


def _strategy_of(journal: Journal) -> Strategy:
    """The strategy a journal recorded (journals of an older ctk say it in other keys)."""
    name = journal.extra.get("strategy")
    if name not in STRATEGIES:
        cross = journal.extra.get("cross_runtime")
        name = "cross-runtime" if cross else "cold" if journal.mode == "cold" else "archive"
    return STRATEGIES[str(name)]


def _move_stream(run: _Run, options: _Options) -> None:
    _live_stream(
        run,
        tcp_established=options.tcp_established,
        ignore_static_ip=options.ignore_static_ip,
        verify=options.verify,
    )


def _move_pagestream(run: _Run, options: _Options) -> None:
    from toolkit.migration import pagestream

    pagestream.migrate(run, tcp_established=options.tcp_established, verify=options.verify)


def _restart_pagestream_source(run: _Run) -> None:
    from toolkit.migration import pagestream

    # the pages went to this machine's page server: the source's checkpoint needs them back
    pagestream.give_back_pages(run.journal)
    _restart_source(run)


def _move_archive(run: _Run, options: _Options) -> None:
    _live(
        run,
        tcp_established=options.tcp_established,
        ignore_static_ip=options.ignore_static_ip,
        compress=options.compress,
        verify=options.verify,
    )


def _move_postcopy(run: _Run, options: _Options) -> None:
    from toolkit.migration import postcopy

    assert options.postcopy_source is not None  # migrate() checked the ends for this mode
    postcopy.migrate(run, options.postcopy_source, verify=options.verify)


def _move_cold(run: _Run, options: _Options) -> None:
    _cold(run, verify=options.verify)


def _move_cross_runtime(run: _Run, options: _Options) -> None:
    assert options.cross is not None  # the plan is live across runtimes only when it exists
    if _live_cross(run, options.cross, tcp_established=options.tcp_established) is None:
        # cross-runtime said Unsupported before touching anything: a cold move instead
        run.journal.mode = "cold"
        run.journal.extra["strategy"] = "cold"
        _move_cold(run, options)
        return
    with run.phase("verify"):
        _verify(run.dest, run.journal.target, options.verify)
    run.journal.step("restore")
    _finish(run)


def _live_cross(
    run: _Run, cross: Callable[..., ContainerInfo], *, tcp_established: bool
) -> ContainerInfo | None:
    journal = run.journal
    started = time.monotonic()
    journal.extra["cross_runtime"] = True
    journal.step("cross-runtime-started")
    dumped: list[float] = []

    def on_frozen(seconds: float, size: int) -> None:
        # From here a failure is the restore's, not the dump's (the report names the phase).
        dumped.append(time.monotonic())
        # the rest before the freeze: the destination's template, made while the source ran
        run.timings["prepare"] = round(dumped[0] - seconds - started, 3)
        run.timings["dump"] = round(seconds, 3)
        run.archive_bytes = size
        journal.step("cross-runtime-dumped")
        _pause_hook("dump")

    try:
        result = cross(
            run.source,
            journal.container,
            run.dest,
            new_name=journal.target if journal.target != journal.container else None,
            keep_source=journal.keep_source,
            tcp_established=tcp_established,
            on_frozen=on_frozen,
            allow_mounts=_allowed_mounts(journal),
            # what a rollback (--recover) removes from the destination if this ctk dies
            on_volume=volumes.recorder(journal),
        )
    except Unsupported as exc:
        run.reason += f"; live cross-runtime refused ({exc}): cold move instead"
        journal.extra["cross_runtime"] = False
        return None
    finally:
        if dumped:
            run.timings["restore"] = round(time.monotonic() - dumped[0], 3)
    # frozen -> running there (the template was made before the freeze)
    run.downtime = time.monotonic() - (dumped[0] - run.timings["dump"] if dumped else started)
    if journal.extra.get(volumes.JOURNAL_KEY):
        # the destination runs on them and the source is gone: no rollback may remove them now
        journal.extra[volumes.JOURNAL_KEY] = []
        journal.write()
    if not journal.keep_source:
        # the cross path removed the source with its anonymous volumes: _finish need not
        journal.step("source-removed")
    return result


def _live(
    run: _Run, *, tcp_established: bool, ignore_static_ip: bool, compress: str, verify: str | None
) -> None:
    journal, source, dest = run.journal, run.source, run.dest
    journal.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    journal.checkpoint = f"migrate-{journal.id}"
    journal.archive = str(journal.workdir / f"{journal.container}.ctk")
    key = sealing.archive_key(journal)  # the archive is signed, and verified on import
    journal.step("dump-started")
    run.frozen_at = time.monotonic()
    started = time.monotonic()
    # the export is dump and transfer in one call: a failure in it is reported as the dump
    info = key.export(
        source,
        journal.container,
        journal.archive,
        ExportOptions(
            checkpoint=CheckpointOptions(
                name=journal.checkpoint,
                tcp_established=tcp_established,
                # a kept source is dumped and resumed: a copy moves, the source runs on
                leave_running=journal.keep_source,
            ),
            compression=compress,
            allow_mounts=_allowed_mounts(journal),
        ),
    )
    elapsed = time.monotonic() - started
    dump = info.timings.get("checkpoint", elapsed)
    run.timings["dump"] = round(dump, 3)
    run.timings["transfer"] = round(max(elapsed - dump, 0.0), 3)
    run.archive_bytes = info.size
    if info.criu_stats:
        run.criu_stats["dump"] = dict(info.criu_stats)
    journal.step("dump")
    journal.step("transfer")
    _pause_hook("dump")
    journal.check_unchanged()
    with run.phase("restore"):
        dest.import_checkpoint(
            journal.archive,
            ImportOptions(
                name=journal.target if journal.target != journal.container else None,
                tcp_established=tcp_established,
                ignore_static_ip=ignore_static_ip,
                verify_keys=key.verify_keys,
                # signed by this migration's key: the network is the source's own
                allow_host_network=True,
                allow_mounts=_allowed_mounts(journal),
            ),
        )
    run.downtime = time.monotonic() - run.frozen_at
    _restored(run, verify)


def _restored(run: _Run, verify: str | None) -> None:
    """The destination restored the container: record it, verify, finish."""
    run.journal.step("restore")
    with contextlib.suppress(CtkError):
        # kept where the engine runs on this machine (Podman); Docker's are deleted
        if restored := run.dest.criu_stats(run.journal.target, phase="restore"):
            run.criu_stats["restore"] = restored
    _pause_hook("restore")
    with run.phase("verify"):
        _verify(run.dest, run.journal.target, verify)
    _finish(run)


def _streams(source: Backend, dest: Backend) -> bool:
    """True when the source's export can flow straight into the destination's import."""
    return isinstance(source, StreamingCheckpoints) and isinstance(dest, StreamingCheckpoints)


def _live_stream(
    run: _Run, *, tcp_established: bool, ignore_static_ip: bool, verify: str | None
) -> None:
    """Podman -> Podman: libpod's export flows into the destination's import as it arrives.

    Not signed, unlike the archive of :func:`_live`: the stream never leaves this process
    (no file, no third party between the two engines' API connections), so there is nothing
    for a signature to protect that the connections do not already (README: Signatures).

    Nothing is written on this machine: a copy here costs a whole extra write of the memory
    on the critical path (a third longer downtime at 1 GiB, measured), and a rollback needs
    none, as the source keeps its checkpoint in place. The source sends its export once the
    dump is written, so the first chunk marks the end of the dump; from then on the
    destination holds the request.
    """
    journal, source, dest = run.journal, run.source, run.dest
    assert isinstance(source, StreamingCheckpoints) and isinstance(dest, StreamingCheckpoints)
    journal.checkpoint = f"migrate-{journal.id}"
    journal.step("dump-started")
    run.frozen_at = time.monotonic()
    chunks = source.checkpoint_stream(
        journal.container,
        CheckpointOptions(
            name=journal.checkpoint,
            tcp_established=tcp_established,
            leave_running=journal.keep_source,
        ),
    )
    sent = [0]
    ended: list[float] = []
    with contextlib.closing(chunks):
        first = next(chunks, b"")
        if not first:
            raise EngineError(f"podman sent an empty export of {journal.container}")
        dumped = time.monotonic()
        run.timings["dump"] = round(dumped - run.frozen_at, 3)
        journal.step("dump")
        journal.step("transfer")
        _pause_hook("dump")

        def body() -> Iterator[bytes]:
            yield first
            for chunk in chunks:
                sent[0] += len(chunk)
                yield chunk
            ended.append(time.monotonic())

        journal.check_unchanged()
        dest.restore_stream(
            body(),
            ImportOptions(
                name=journal.target,
                tcp_established=tcp_established,
                ignore_static_ip=ignore_static_ip,
            ),
        )
    restored = time.monotonic()
    run.downtime = restored - run.frozen_at
    upload_end = ended[0] if ended else restored
    run.timings["transfer"] = round(upload_end - dumped, 3)
    run.timings["restore"] = round(restored - upload_end, 3)
    run.archive_bytes = len(first) + sent[0]
    with contextlib.suppress(CtkError):
        # CRIU's stats-dump stays in the source's checkpoint directory (libpod's keep)
        if dump_stats := source.criu_stats(journal.container, phase="dump"):
            run.criu_stats["dump"] = dict(dump_stats)
    _restored(run, verify)


def _cold(run: _Run, *, verify: str | None) -> None:
    journal, source, dest = run.journal, run.source, run.dest
    assert run.plan is not None
    journal.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    journal.archive = str(journal.workdir / "rootfs-changes.tar")
    spec = dataclasses.replace(source.container_spec(journal.container), name=journal.target)
    if dest.kind == "docker" and spec.image.startswith("localhost/"):
        # Podman qualifies local images as localhost/NAME; Docker knows them as NAME.
        spec = dataclasses.replace(spec, image=spec.image.removeprefix("localhost/"))
    image_id = run.plan.source_info.image_id
    journal.step("dump-started")
    run.frozen_at = time.monotonic()
    with run.phase("dump"):
        if not journal.keep_source and run.plan.source_info.auto_remove:
            # Stopping an --rm container removes it, rootfs changes and all: freeze it
            # instead; it is removed once the destination runs, or unpaused on rollback.
            source.pause(journal.container)
        elif not journal.keep_source:
            source.stop(journal.container)
    with run.phase("transfer"):
        # the volumes' data moves on its own: the archive routes would read it as rootfs
        changes = source.fetch_changes(
            journal.container,
            _path(journal.archive),
            exclude=[m.target for m in run.plan.mounts],
        )
        # read once nothing writes to them (a kept source: a copy while it runs, as the rootfs)
        staged = volumes.read_through_engine(
            source, run.plan.mounts, image=image_id, work=journal.workdir
        )
    run.archive_bytes = _path(journal.archive).stat().st_size + sum(
        s.data.stat().st_size for s in staged
    )
    journal.extra["deleted"] = changes
    journal.step("dump")
    journal.step("transfer")
    _pause_hook("dump")
    journal.check_unchanged()
    with run.phase("restore"):
        names = volumes.create(dest, run.plan.mounts, journal)
        volumes.fill(dest, staged, names, image=image_id)
        if run.plan.mounts:
            spec = dataclasses.replace(spec, volumes=volumes.dest_mounts(run.plan.mounts, names))
        dest.create_with_changes(
            spec,
            image_id=image_id,
            changes=_path(journal.archive),
            deleted=changes,
        )
    run.downtime = time.monotonic() - run.frozen_at
    journal.step("restore")
    _pause_hook("restore")
    with run.phase("verify"):
        _verify(dest, journal.target, verify)
    _finish(run)


def _path(text: str) -> Any:
    from pathlib import Path

    return Path(text)


def _finish(run: _Run) -> None:
    """The destination runs: remove the source (unless kept) and the archive."""
    journal = run.journal
    if not journal.keep_source and not journal.done("source-removed"):
        journal.check_unchanged()
        try:
            run.source.remove(journal.container, force=True)
        except CtkError as exc:
            log.warning("could not remove the source %s: %s", journal.container, exc)
            run.notes.append(f"could not remove the source {journal.container}: {exc}")
        journal.step("source-removed")
    shutil.rmtree(journal.workdir, ignore_errors=True)
    journal.archive = ""
    journal.step("done", state="done")


def _remove_destination(run: _Run) -> None:
    """Remove the destination's copy of the container, if there is one."""
    journal, dest = run.journal, run.dest
    try:
        dest.inspect(journal.target)
    except ContainerNotFound:
        pass  # the destination holds no copy
    except CtkError as exc:
        run.rolled_back.append(
            f"could not check the destination for a partial {journal.target} ({exc}): "
            "remove it there if it exists"
        )
    else:
        try:
            dest.remove(journal.target, force=True)
            run.rolled_back.append(f"removed {journal.target} from the destination")
        except CtkError as exc:
            run.rolled_back.append(f"could not remove {journal.target} there: {exc}")


def _rollback(run: _Run, *, interrupted: bool = False) -> None:
    """Undo a migration that did not finish: destination copy gone, source running again.

    ``interrupted``: called by :func:`recover` for a ctk that died, rather than after an
    exception in this process.
    """
    journal, dest = run.journal, run.dest
    if journal.done("done"):
        return
    strategy = _strategy_of(journal)
    cross = (
        strategy.undoes_itself
        and journal.done("cross-runtime-started")
        and not journal.done("restore")
    )
    if cross and not interrupted:
        journal.step("rolled-back", state="rolled_back")
        run.rolled_back.append("the cross-runtime path undid its own changes")
        return
    if not cross and not journal.done("dump-started"):
        # the page-server path makes the destination's container before it freezes the source
        from toolkit.migration.pagestream import DEST_PREPARED

        if journal.extra.get(DEST_PREPARED):
            _remove_destination(run)
        # post-copy makes the destination's volumes before it freezes the source
        run.rolled_back.extend(volumes.remove_created(dest, journal))
        journal.step("aborted", state="aborted")
        run.rolled_back.append("nothing to roll back: the source was not touched")
        return
    _remove_destination(run)
    # the volumes the move made there (cold, post-copy; a killed cross-runtime one), once no
    # container uses them
    run.rolled_back.extend(volumes.remove_created(dest, journal))
    try:
        if cross:
            strategy.restart_source(run)
        else:
            # a cross-runtime move that restored and then failed comes back as a live one
            STRATEGIES["archive" if strategy.undoes_itself else strategy.name].restart_source(run)
    except CtkError as exc:
        run.rolled_back.append(f"could not restart the source: {exc}")
        journal.step("rollback-failed", state="failed")
        return
    journal.step("rolled-back", state="rolled_back")


def _running(backend: Backend, name: str) -> bool:
    try:
        return backend.inspect(name).running
    except CtkError:
        return False


def _restart_cross_source(run: _Run) -> None:
    """A ctk killed inside the cross-runtime path: the source from its latest checkpoint."""
    journal, source = run.journal, run.source
    if source.inspect(journal.container).running:
        run.rolled_back.append(f"source {journal.container} was still running")
        return
    source.restore(journal.container, RestoreOptions())
    run.rolled_back.append(f"restored the source {journal.container} from its latest checkpoint")


def _reimport_removed(run: _Run, *, patience: float = 15.0) -> None:
    """Import the source again from the migration's archive, once its engine has let go of the
    name: an --rm container that inspect no longer finds may still hold its name for a moment
    while the engine removes it (seen on a loaded Podman 4.3), which the import answers with
    Conflict."""
    journal, source = run.journal, run.source
    deadline = time.monotonic() + patience
    while True:
        try:
            source.import_checkpoint(journal.archive, _source_import(journal))
            return
        except Conflict:
            if time.monotonic() > deadline:
                raise
            log.debug("%s: the name is still taken, importing again", journal.container)
            time.sleep(0.25)


def _allowed_mounts(journal: Journal) -> tuple[str, ...]:
    return tuple(str(p) for p in journal.extra.get("allow_mounts") or ())


def _source_import(journal: Journal) -> ImportOptions:
    """How a rollback imports the source again from the migration's own archive."""
    return ImportOptions(
        # verified with the key recorded for it: its network and bind mounts are its own
        verify_keys=sealing.recorded_keys(journal),
        allow_host_network=True,
        allow_mounts=_allowed_mounts(journal),
        # beside its own volumes, which still hold its data; missing ones from the archive
        reuse_volumes=True,
    )


def _restart_source(run: _Run) -> None:
    journal, source = run.journal, run.source
    try:
        info = source.inspect(journal.container)
    except ContainerNotFound:
        # An --rm source goes with its dump: the archive is all that holds it now.
        if journal.mode == "cold" or not (journal.archive and os.path.isfile(journal.archive)):
            raise
        _reimport_removed(run)
        run.rolled_back.append(f"re-imported the --rm source {journal.container} from the archive")
        return
    if info.paused:
        # a cold move freezes an --rm source rather than stop it (which would remove it)
        source.unpause(journal.container)
        run.rolled_back.append(f"unpaused the source {journal.container}")
        return
    if info.running:
        run.rolled_back.append(f"source {journal.container} was still running")
        return
    try:
        source.restore(journal.container, RestoreOptions(checkpoint=journal.checkpoint))
        run.rolled_back.append(
            f"restored the source {journal.container} from its checkpoint {journal.checkpoint}"
        )
        return
    except CtkError as exc:
        if not (journal.archive and os.path.isfile(journal.archive)):
            raise
        first = str(exc)
    # The checkpoint in place is gone or unusable: make the source again from the archive.
    # (an --rm source may be removed by its engine meanwhile: that is no failure)
    with contextlib.suppress(ContainerNotFound):
        source.remove(journal.container, force=True)
    source.import_checkpoint(journal.archive, _source_import(journal))
    run.rolled_back.append(f"re-imported the source {journal.container} from the archive ({first})")


def _restart_cold_source(run: _Run) -> None:
    journal, source = run.journal, run.source
    info = source.inspect(journal.container)
    if info.paused:
        # a cold move freezes an --rm source rather than stop it (which would remove it)
        source.unpause(journal.container)
        run.rolled_back.append(f"unpaused the source {journal.container}")
        return
    if info.running:
        run.rolled_back.append(f"source {journal.container} was still running")
        return
    source.start(journal.container)
    run.rolled_back.append(f"started the source {journal.container} again (cold: fresh)")


# Every migration path, by the name the journal records (``journal.extra["strategy"]``).
STRATEGIES: dict[str, Strategy] = {
    # Podman -> Podman: libpod's export flows into the destination's import
    "stream": Strategy("stream", _move_stream, _restart_source),
    # Podman -> Podman: CRIU's page server writes the memory into the destination's container
    "pagestream": Strategy("pagestream", _move_pagestream, _restart_pagestream_source),
    # checkpoint into a ctk archive here, import it there
    "archive": Strategy("archive", _move_archive, _restart_source),
    # stop, copy the rootfs changes, create again: memory is not kept
    "cold": Strategy("cold", _move_cold, _restart_cold_source),
    # Podman -> Podman post-copy: resumed there first, memory served from here by CRIU
    "postcopy": Strategy("postcopy", _move_postcopy, _restart_source),
    # Docker <-> Podman: toolkit.migration.cross_runtime translates the CRIU images
    "cross-runtime": Strategy(
        "cross-runtime", _move_cross_runtime, _restart_cross_source, undoes_itself=True
    ),
}


def recover(migration_id: str | None = None) -> list[MigrationReport]:
    """Finish or roll back migrations whose ctk process died (all unfinished ones by default).

    A migration whose destination container was restored and runs is finished (the source is
    removed unless it was to be kept); any other is rolled back (the destination's copy
    removed, the source restored from its checkpoint or archive and left running).
    """
    journals = [journal_mod.load(migration_id)] if migration_id else journal_mod.unfinished()
    reports = []
    for journal in journals:
        source = open_recorded(journal.source)
        dest = open_recorded(journal.destination)
        run = _Run(journal=journal, plan=None, source=source, dest=dest, reason="recovered")
        if journal.state in journal_mod.FINAL_STATES:
            reports.append(run.report(journal.state))
            continue
        try:
            with migration_lock(journal.id, operation="migrate --recover"):
                _refuse_if_running(journal)
                # read again under the lock: the migration may have ended meanwhile
                journal = run.journal = journal_mod.load(journal.id)
                reports.append(_recover_one(run))
        except Conflict as exc:
            if migration_id:
                raise
            run.notes.append(f"left alone: {exc.message}")
            reports.append(run.report("running"))
    return reports


def _refuse_if_running(journal: Journal) -> None:
    """Raises Conflict while the process that runs the migration lives."""
    if journal.owned_by_other_live_process():
        raise Conflict(
            f"migration {journal.id} is still running (ctk pid {journal.owner_pid})",
            hint="wait for it to end, or stop it (kill "
            f"{journal.owner_pid}: it rolls back); recover only a migration whose ctk died",
        )


def _recover_one(run: _Run) -> MigrationReport:
    journal, source, dest = run.journal, run.source, run.dest
    if journal.state in journal_mod.FINAL_STATES:
        return run.report(journal.state)
    postcopy_settled = _strategy_of(journal).name == "postcopy" and journal.done("dump-started")
    if postcopy_settled:
        from toolkit.migration import postcopy

        # first: while its lazy dump lasts, Podman holds the source's lock (inspect waits)
        run.notes.append(f"post-copy: {postcopy.settle(journal)}")
    with contextlib.ExitStack() as held:
        info = _inspect_or_none(source, journal.container)
        if info is not None:
            held.enter_context(_source_lock(source, info.id, journal.container))
        held.enter_context(
            container_lock(
                dest.kind,
                dest.url,
                f"name:{journal.target}",
                operation="migrate --recover",
                name=journal.target,
            )
        )
        restored = journal.done("restore")
        if postcopy_settled:
            # The source's lazy dump has ended. The source gone (CRIU ends a dumped task once
            # every page arrived): the destination holds it all, if it runs. The source running
            # again means its dump failed: a destination copy is partial.
            restored = not _running(source, journal.container)
        if restored and _running(dest, journal.target):
            _finish(run)
            run.notes.append("destination was running: migration finished")
            return run.report("done", result=dest.inspect(journal.target))
        _rollback(run, interrupted=True)
        return run.report(
            journal.state,
            failed_phase="interrupted",
            archive=journal.archive if journal.state != "aborted" else "",
        )


def _inspect_or_none(backend: Backend, name: str) -> ContainerInfo | None:
    try:
        return backend.inspect(name)
    except CtkError:
        return None
