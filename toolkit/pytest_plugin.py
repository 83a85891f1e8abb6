"""ctk's pytest plugin: real containers in tests, and per-test fresh state from a checkpoint.

Installed with the package (entry point ``pytest11``: ``ctk``), so a test file only asks for
the fixtures::

    import pytest
    from toolkit.readiness import ReadyCheck

    pytestmark = pytest.mark.ctk_snapshot(
        "ctk-demo/counter", ports=(8080,), ready=ReadyCheck.log(r"count=5\\b")
    )

    def test_something(ctk_snapshot):
        ...  # a container restored from the warmed-up checkpoint, for this test alone

Options: ``--ctk-engine docker|podman|URL`` (give it twice to run each test on both engines;
default: ``CTK_ENGINE``, the config file, then the first engine that answers) and
``--ctk-strict`` (a missing engine or CRIU fails the test instead of skipping it; also on with
``CI=true`` or ``CTK_STRICT=1``).

Fixtures:
    ``ctk_engine``: a connected :class:`~toolkit.backends.base.Backend`, one per chosen engine.
    ``ctk_container``: a factory ``(image | ContainerSpec, ...) -> ContainerInfo`` of running
        containers, labelled ``ctk.test=1`` and removed after the test.
    ``ctk_snapshot``: the container of the ``ctk_snapshot`` marker, with the state of its
        checkpoint: the first use in a session runs the container, waits until it is ready and
        checkpoints it into an archive; every test then gets its own clone restored from it.
    ``ctk_snapshot_factory``: the same as a factory, for tests that pick the image themselves.

Markers: ``requires_criu``, ``requires_engine(name, ...)``, ``ctk_snapshot(image, ...)``.

At the end of the session the summary shows, per snapshot, how long the cold start took to
reach the readiness condition and how long each restore took to reach the same condition.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from toolkit.backends.base import Backend
from toolkit.config import DEFAULT_URLS, KINDS, EngineRef, connect, lookup_engine, resolve_engine
from toolkit.errors import CtkError, NotFound
from toolkit.models import (
    CheckpointOptions,
    ContainerInfo,
    ContainerSpec,
    ExportOptions,
    ImportOptions,
    PortMapping,
)
from toolkit.readiness import ReadyCheck, http_url, published_port, wait_ready

logger = logging.getLogger(__name__)

TEST_LABEL = "ctk.test"
SNAPSHOT_CHECKPOINT = "ctk-snapshot"

_STATE = pytest.StashKey["_Session"]()

PortArg = int | PortMapping


# -- options and markers ------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ctk", "ctk: containers, checkpoints and snapshots in tests")
    group.addoption(
        "--ctk-engine",
        action="append",
        default=[],
        metavar="ENGINE",
        help="docker, podman or an engine URL; give it twice to run each test on both.",
    )
    group.addoption(
        "--ctk-strict",
        action="store_true",
        default=False,
        help="A missing engine or CRIU fails the test instead of skipping it (also CI=true).",
    )


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "requires_criu: the test needs a working CRIU (skipped, or failed when strict)",
        "requires_engine(name, ...): the test needs this engine (docker or podman)",
        "ctk_snapshot(image_or_spec, *, ready=None, ports=(), command=(), env=None): "
        "what the ctk_snapshot fixture runs and checkpoints",
    ):
        config.addinivalue_line("markers", line)
    config.stash[_STATE] = _Session()


def is_strict(config: pytest.Config) -> bool:
    """Whether missing prerequisites fail (``--ctk-strict``, ``CI=true``, ``CTK_STRICT=1``)."""
    return (
        bool(config.getoption("ctk_strict"))
        or os.environ.get("CI", "").lower() == "true"
        or os.environ.get("CTK_STRICT") == "1"
    )


def unavailable(config: pytest.Config, reason: str) -> None:
    """Skip the test for a missing prerequisite, or fail it when strict."""
    if is_strict(config):
        pytest.fail(f"{reason} (strict: missing prerequisites fail)", pytrace=False)
    pytest.skip(reason)


def criu_problem(config: pytest.Config) -> str:
    """Why CRIU cannot be used here, or "" when it can (probed once a session)."""
    return _state(config).criu_problem()


def selected_engines(config: pytest.Config) -> list[EngineRef]:
    """The engines from ``--ctk-engine``, else the one ctk would pick by precedence."""
    values: list[str] = config.getoption("ctk_engine") or []
    try:
        if values:
            return [lookup_engine(value) for value in values]
        return [resolve_engine(None)]
    except CtkError as exc:
        if values:
            raise pytest.UsageError(f"--ctk-engine: {exc.message}") from exc
        # Nothing answers: still parametrise, so the fixture reports it (skip, or fail if
        # strict) on each test rather than the whole run erroring out.
        return [EngineRef("docker", DEFAULT_URLS["docker"])]


def _required_kinds(node: pytest.Item | Any) -> list[str]:
    kinds: list[str] = []
    for marker in node.iter_markers("requires_engine"):
        for name in marker.args:
            if name not in KINDS:
                raise pytest.UsageError(f"requires_engine: unknown engine {name!r}")
            kinds.append(str(name))
    return kinds


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ctk_engine" not in metafunc.fixturenames:
        return
    refs = selected_engines(metafunc.config)
    kinds = _required_kinds(metafunc.definition)
    if kinds:
        # Run on the chosen engines of the required kinds, else on that kind's default socket.
        refs = [r for r in refs if r.kind in kinds] or [
            EngineRef(k, DEFAULT_URLS[k]) for k in dict.fromkeys(kinds)
        ]
    by_kind = len({r.kind for r in refs}) == len(refs)
    ids = [r.kind if by_kind else str(r) for r in refs]
    metafunc.parametrize("ctk_engine", refs, ids=ids, indirect=True)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    session = item.config.stash[_STATE]
    if item.get_closest_marker("requires_criu") is not None:
        reason = session.criu_problem()
        if reason:
            unavailable(item.config, reason)
    kinds = _required_kinds(item)
    if kinds and "ctk_engine" not in getattr(item, "fixturenames", ()):
        chosen = {r.kind: r for r in selected_engines(item.config)}
        for kind in dict.fromkeys(kinds):
            ref = chosen.get(kind, EngineRef(kind, DEFAULT_URLS[kind]))
            if not session.answers(ref):
                unavailable(item.config, f"{kind} does not answer at {ref.url}")


# -- session state ----------------------------------------------------------------------
@dataclass
class SnapshotSource:
    """One snapshot of the session: the container was run once and checkpointed once into
    the archive ``archive``; clones are restored from it.

    ``ports`` are the spec's port mappings (ephemeral host ports), given to every clone so
    that clones never clash. ``cold_seconds`` is run + readiness; ``restore_seconds`` one
    entry per test (import of a clone + readiness).
    """

    backend: Backend
    name: str
    image: str
    check: ReadyCheck | None
    archive: str
    ports: tuple[PortMapping, ...] = ()
    checkpoint: str = SNAPSHOT_CHECKPOINT
    cold_seconds: float = 0.0
    restore_seconds: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class SnapshotContainer:
    """A container holding the snapshot's state, for one test.

    Attributes:
        backend: the engine it runs on.
        info: the container as inspected after the restore (published ports included).
        log_offset: where this test's output starts in the container's log.
        checkpoint: the checkpoint it was restored from.
    """

    backend: Backend
    info: ContainerInfo
    log_offset: int
    checkpoint: str

    @property
    def name(self) -> str:
        return self.info.name

    def logs(self) -> str:
        """What the container printed since it was restored for this test."""
        return self.backend.logs(self.info.id)[self.log_offset :]

    def port(self, container_port: int) -> int:
        """The host port (on 127.0.0.1) published for ``container_port``."""
        return published_port(self.info, container_port)

    def url(self, container_port: int, path: str = "/") -> str:
        """``http://127.0.0.1:PORT/path`` for a published container port."""
        return http_url(self.info, container_port, path)


@dataclass
class _Session:
    backends: dict[EngineRef, Backend] = field(default_factory=dict)
    pings: dict[EngineRef, bool] = field(default_factory=dict)
    sources: dict[tuple[Any, ...], SnapshotSource] = field(default_factory=dict)
    failures: dict[tuple[Any, ...], BaseException] = field(default_factory=dict)
    _criu: list[str] = field(default_factory=list)
    _archive_dir: list[Path] = field(default_factory=list)

    def archive_dir(self) -> Path:
        """A private directory for the session's snapshot archives (removed at the end)."""
        if not self._archive_dir:
            self._archive_dir.append(Path(tempfile.mkdtemp(prefix="ctk-snapshots-")))
        return self._archive_dir[0]

    def backend(self, ref: EngineRef) -> Backend:
        if ref not in self.backends:
            self.backends[ref] = connect(ref)
        return self.backends[ref]

    def answers(self, ref: EngineRef) -> bool:
        if ref not in self.pings:
            try:
                self.pings[ref] = self.backend(ref).ping()
            except CtkError:
                self.pings[ref] = False
        return self.pings[ref]

    def criu_problem(self) -> str:
        """Why CRIU cannot be used here, or "" when it can (probed once a session)."""
        if not self._criu:
            from toolkit.criu.probe import probe_criu

            status = probe_criu()
            if status.path is None:
                where = os.environ.get("CTK_CRIU") or "PATH"
                self._criu.append(f"CRIU is not installed (looked in {where})")
            elif not status.check_ok:
                self._criu.append(f"criu check fails: {status.check_output[-200:]}")
            else:
                self._criu.append("")
        return self._criu[0]

    def cleanup(self) -> None:
        for directory in self._archive_dir:
            shutil.rmtree(directory, ignore_errors=True)
        self._archive_dir.clear()

    def close(self) -> None:
        for ref, backend in self.backends.items():
            try:
                backend.close()
            except Exception as exc:  # the session is over: report it, end the others too
                logger.warning("could not close the connection to %s: %s", ref, exc)
        self.backends.clear()


def _state(config: pytest.Config) -> _Session:
    return config.stash[_STATE]


# -- building containers ----------------------------------------------------------------
def remove_test_container(backend: Backend, name: str) -> None:
    """Remove a test's container (and its anonymous volumes); report, not raise, a failure:
    the test's own outcome is what counts, and the other cleanups still run."""
    try:
        backend.remove(name, force=True, volumes=True)
    except NotFound:
        pass  # the test removed it, or it never came to be
    except CtkError as exc:
        logger.warning("could not remove test container %s: %s", name, exc)


def _unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _port(value: PortArg) -> PortMapping:
    # A bare number publishes on loopback with an ephemeral host port: tests never clash.
    return value if isinstance(value, PortMapping) else PortMapping(int(value), 0, "127.0.0.1")


def build_spec(
    image: str | ContainerSpec,
    *,
    name: str | None = None,
    command: Sequence[str] = (),
    env: dict[str, str] | None = None,
    ports: Sequence[PortArg] = (),
    labels: dict[str, str] | None = None,
    prefix: str = "ctk-test",
) -> ContainerSpec:
    """A ContainerSpec for a test container: a unique name and the ``ctk.test=1`` label.

    ``image`` may be a whole ContainerSpec, whose fields the other arguments extend.
    """
    spec = image if isinstance(image, ContainerSpec) else ContainerSpec(image=image)
    return dataclasses.replace(
        spec,
        name=name or spec.name or _unique_name(prefix),
        command=tuple(command) or spec.command,
        env={**spec.env, **(env or {})},
        ports=spec.ports + tuple(_port(p) for p in ports),
        labels={**spec.labels, **(labels or {}), TEST_LABEL: "1"},
    )


def start_source(
    backend: Backend, spec: ContainerSpec, check: ReadyCheck | None, *, archive_dir: Path
) -> SnapshotSource:
    """Run the snapshot's container, wait until it is ready, checkpoint it into an archive.

    The container itself is removed afterwards (and when any step fails): tests get clones.
    """
    started = time.monotonic()
    info = backend.run(spec)
    try:
        if check is not None:
            wait_ready(backend, info, check)
        cold = time.monotonic() - started
        exported = backend.export_checkpoint(
            info.id,
            archive_dir / f"{info.name}.tar.zst",
            ExportOptions(
                checkpoint=CheckpointOptions(name=SNAPSHOT_CHECKPOINT, leave_running=True)
            ),
        )
    finally:
        remove_test_container(backend, info.id)
    return SnapshotSource(
        backend=backend,
        name=info.name,
        image=spec.image,
        check=check,
        archive=exported.path,
        ports=spec.ports,
        cold_seconds=cold,
    )


def clone_from_archive(source: SnapshotSource) -> SnapshotContainer:
    """Fresh state for one test: a clone under a unique name, restored from the archive.

    This is the one place that decides how a test gets its copy. Each clone has its own
    memory, processes and files (the archive holds the container's file changes too), its
    own ephemeral host ports, and can run beside the others. The caller removes it.
    """
    backend = source.backend
    started = time.monotonic()
    info = backend.import_checkpoint(
        source.archive,
        # the plugin made this archive itself in this session: a host network is the source's
        ImportOptions(name=_unique_name("ctk-test"), ports=source.ports, allow_host_network=True),
    )
    # The clone's log may start with the original's output (Podman keeps it): this test's
    # output begins here.
    offset = len(backend.logs(info.id))
    try:
        if source.check is not None:
            wait_ready(backend, info, source.check, log_offset=offset)
        info = backend.inspect(info.id)
    except BaseException:
        remove_test_container(backend, info.id)
        raise
    source.restore_seconds.append(time.monotonic() - started)
    return SnapshotContainer(
        backend=backend, info=info, log_offset=offset, checkpoint=source.checkpoint
    )


fresh_state: Callable[[SnapshotSource], SnapshotContainer] = clone_from_archive


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def _ctk_session(pytestconfig: pytest.Config) -> Iterator[_Session]:
    session = _state(pytestconfig)
    yield session
    session.cleanup()
    session.close()


@pytest.fixture
def ctk_engine(request: pytest.FixtureRequest, _ctk_session: _Session) -> Backend:
    """A connected backend; parametrised over ``--ctk-engine`` (skips if it does not answer)."""
    ref: EngineRef = getattr(request, "param", None) or selected_engines(request.config)[0]
    if not _ctk_session.answers(ref):
        unavailable(request.config, f"{ref.kind} does not answer at {ref.url}")
    return _ctk_session.backend(ref)


class ContainerFactory:
    """``ctk_container(image_or_spec, ...)``: run a test container, removed after the test.

    ``name(prefix)`` hands out a unique name that is removed afterwards too (for containers a
    test makes some other way, e.g. through the CLI); ``start(spec)`` runs a whole spec.
    """

    def __init__(self, backend: Backend, made: list[str] | None = None) -> None:
        self.backend = backend
        self.made: list[str] = made if made is not None else []

    def name(self, prefix: str = "t") -> str:
        """A unique ``ctk-test-PREFIX-...`` name, removed after the test if it exists then."""
        name = _unique_name(f"ctk-test-{prefix}")
        self.made.append(name)
        return name

    def start(self, spec: ContainerSpec) -> ContainerInfo:
        """Run ``spec`` as it is but for the ``ctk.test=1`` label (and a unique name when it
        has none); the engine's answer, not inspected again (an ``auto_remove`` container may
        be gone by then)."""
        spec = build_spec(spec)
        assert spec.name is not None
        if spec.name not in self.made:
            self.made.append(spec.name)
        return self.backend.run(spec)

    def __call__(
        self,
        image: str | ContainerSpec,
        *,
        name: str | None = None,
        command: Sequence[str] = (),
        env: dict[str, str] | None = None,
        ports: Sequence[PortArg] = (),
        labels: dict[str, str] | None = None,
        ready: ReadyCheck | None = None,
    ) -> ContainerInfo:
        """Run a container and (with ``ready``) wait until it is ready.

        Args:
            image: an image name, or a whole ContainerSpec.
            name: the container name (default: a unique ``ctk-test-...``).
            command: the command, replacing the image's.
            env: extra environment variables.
            ports: container ports to publish; a bare number is published on 127.0.0.1 with
                an ephemeral host port (read it from the result's ``ports``).
            labels: extra labels (``ctk.test=1`` is always added).
            ready: a readiness condition to wait for.

        Returns:
            The running container, inspected after it became ready.
        """
        spec = build_spec(image, name=name, command=command, env=env, ports=ports, labels=labels)
        info = self.start(spec)
        if ready is not None:
            wait_ready(self.backend, info, ready)
        return self.backend.inspect(info.id)

    def cleanup(self) -> None:
        """Remove every container made, with its anonymous volumes."""
        for name in self.made:
            remove_test_container(self.backend, name)


@pytest.fixture
def ctk_container(ctk_engine: Backend) -> Iterator[ContainerFactory]:
    """Factory of running test containers on ``ctk_engine``; removes them after the test."""
    factory = ContainerFactory(ctk_engine)
    yield factory
    factory.cleanup()


class SnapshotFactory:
    """``ctk_snapshot_factory(image_or_spec, ready=..., ports=...)`` -> SnapshotContainer."""

    def __init__(self, backend: Backend, session: _Session, config: pytest.Config) -> None:
        self.backend = backend
        self.session = session
        self.config = config
        self.made: list[str] = []

    def __call__(
        self,
        image: str | ContainerSpec,
        *,
        ready: ReadyCheck | None = None,
        ports: Sequence[PortArg] = (),
        command: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> SnapshotContainer:
        """The snapshot of this container and readiness condition, restored for this test.

        The first call in the session (per engine, image, options and condition) runs the
        container, waits for ``ready`` and checkpoints it into an archive; every call restores
        a clone from that archive, removed after the test.
        """
        problem = self.session.criu_problem()
        if problem:
            unavailable(self.config, f"ctk_snapshot needs CRIU: {problem}")
        if not self.backend.info().checkpoint_capable:
            unavailable(self.config, f"{self.backend.kind} cannot checkpoint here")
        spec = build_spec(
            image, command=command, env=env, ports=ports, prefix="ctk-snapshot", name=None
        )
        # One source per engine, spec (but its unique name) and condition.
        spec_key = json.dumps({**spec.to_dict(), "name": None}, sort_keys=True)
        key = (self.backend.kind, self.backend.url, spec_key, ready)
        if key in self.session.failures:
            raise self.session.failures[key]
        source = self.session.sources.get(key)
        if source is None:
            try:
                source = start_source(
                    self.backend, spec, ready, archive_dir=self.session.archive_dir()
                )
            except CtkError as exc:
                self.session.failures[key] = exc
                raise
            self.session.sources[key] = source
        container = fresh_state(source)
        self.made.append(container.info.id)
        return container

    def cleanup(self) -> None:
        for name in self.made:
            remove_test_container(self.backend, name)


@pytest.fixture
def ctk_snapshot_factory(
    ctk_engine: Backend, _ctk_session: _Session, pytestconfig: pytest.Config
) -> Iterator[SnapshotFactory]:
    """Factory: clones of once-per-session checkpoints, removed after the test."""
    factory = SnapshotFactory(ctk_engine, _ctk_session, pytestconfig)
    yield factory
    factory.cleanup()


@pytest.fixture
def ctk_snapshot(
    request: pytest.FixtureRequest, ctk_snapshot_factory: SnapshotFactory
) -> SnapshotContainer:
    """The ``ctk_snapshot`` marker's container: a clone restored from its checkpoint."""
    marker = request.node.get_closest_marker("ctk_snapshot")
    if marker is None or not marker.args:
        raise pytest.UsageError(
            "the ctk_snapshot fixture needs a marker: "
            '@pytest.mark.ctk_snapshot("IMAGE", ready=ReadyCheck.log("..."), ports=(8080,)) '
            "on the test, its class or module (or use ctk_snapshot_factory)"
        )
    options = dict(marker.kwargs)
    unknown = set(options) - {"ready", "ports", "command", "env"}
    if unknown:
        raise pytest.UsageError(f"ctk_snapshot marker: unknown options {sorted(unknown)}")
    return ctk_snapshot_factory(
        marker.args[0],
        ready=options.get("ready"),
        ports=tuple(options.get("ports", ())),
        command=tuple(options.get("command", ())),
        env=options.get("env"),
    )


# -- report -----------------------------------------------------------------------------
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    sources = [s for s in _state(config).sources.values() if s.restore_seconds]
    if not sources:
        return
    terminalreporter.write_sep("-", "ctk snapshot timings")
    for line in timing_lines(sources):
        terminalreporter.write_line(line)


def timing_lines(sources: Sequence[SnapshotSource]) -> list[str]:
    """One line per snapshot: cold start vs restore to the same readiness condition."""
    lines = []
    for source in sources:
        restores = source.restore_seconds
        average = sum(restores) / len(restores)
        speedup = source.cold_seconds / average if average > 0 else 0.0
        ready = str(source.check) if source.check else "running"
        lines.append(
            f"{source.image} on {source.backend.kind} (ready: {ready}): "
            f"cold start {source.cold_seconds:.2f}s, restore from checkpoint "
            f"{average:.2f}s avg over {len(restores)} test(s) ({speedup:.1f}x)"
        )
    return lines
