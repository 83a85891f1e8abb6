"""Migration logic with no engine: journal, preflight decisions, CLI parsing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ctk
from toolkit.criu.probe import CriuStatus
from toolkit.errors import (
    Conflict,
    ContainerNotFound,
    ExitCode,
    InvalidArgument,
    NotFound,
    Unsupported,
    VolumeNotFound,
)
from toolkit.migration import journal, plan
from toolkit.models import ContainerInfo, EngineInfo, Mount, PortMapping, VolumeInfo

NOWHERE = "docker+unix:///nonexistent/docker.sock"


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CTK_STATE_DIR", str(tmp_path))
    return tmp_path


def test_journal_roundtrip_and_unfinished() -> None:
    j = journal.Journal(
        id=journal.new_id(),
        container="web1",
        target="web1",
        source={"kind": "docker", "url": "unix:///a.sock"},
        destination={"kind": "podman", "url": "unix:///b.sock"},
        mode="live",
    )
    j.step("preflight")
    j.step("dump-started")
    loaded = journal.load(j.id)
    assert loaded.done("dump-started") and not loaded.done("restore")
    assert [u.id for u in journal.unfinished()] == [j.id]
    j.step("done", state="done")
    assert journal.unfinished() == []
    assert not list(j.path.parent.glob(".*.tmp"))  # no temp file left behind


def test_journal_unknown_id() -> None:
    with pytest.raises(NotFound):
        journal.load("m-nope")


@dataclass
class FakeEngine:
    kind: str
    url: str
    can_checkpoint: bool = True
    held: dict[str, ContainerInfo] = field(default_factory=dict)
    images: set[str] = field(default_factory=set)
    mounted: set[str] = field(default_factory=set)

    def info(self) -> EngineInfo:
        return EngineInfo(
            kind=self.kind, url=self.url, version="1", checkpoint_capable=self.can_checkpoint
        )

    def inspect(self, name: str) -> ContainerInfo:
        if name not in self.held:
            raise ContainerNotFound(f"no such container: {name}")
        return self.held[name]

    def containers(self, *, all: bool = False) -> list[ContainerInfo]:
        return list(self.held.values())

    def has_image(self, image_id: str) -> bool:
        return image_id in self.images

    def mounts(self, name: str) -> tuple[str, ...]:
        return ("/data",) if name in self.mounted else ()

    # toolkit.backends.base.VolumeData: the container's mounts, the engine's volumes
    bound: set[str] = field(default_factory=set)
    volume_names: set[str] = field(default_factory=set)

    def container_volumes(self, name: str) -> tuple[Mount, ...]:
        if name in self.bound:
            return (Mount(target="/data", source="/srv/data", type="bind"),)
        if name in self.mounted:
            return (Mount(target="/data", source="data", name="data"),)
        return ()

    def inspect_volume(self, name: str) -> VolumeInfo:
        if name not in self.volume_names:
            raise VolumeNotFound(f"no such volume: {name}")
        return VolumeInfo(name=name, engine=self.kind)

    def volumes(self, **_: object) -> list[VolumeInfo]:
        raise NotImplementedError

    create_volume = remove_volume = prune_volumes = volumes
    volume_access = read_volume = write_volume = volumes


def _container(name: str, *ports: PortMapping, running: bool = True) -> ContainerInfo:
    return ContainerInfo(
        id=name * 3,
        name=name,
        image="ctk-demo/counter",
        image_id="sha256:abc",
        status="running" if running else "exited",
        running=running,
        ports=ports,
    )


@pytest.fixture
def criu_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    status = CriuStatus(path="/usr/sbin/criu", version=(4, 1, 1), check_ok=True, check_output="")
    monkeypatch.setattr("toolkit.criu.probe.probe_criu", lambda **_: status)


def _preflight(src: FakeEngine, dst: FakeEngine, **kw: object) -> plan.Plan:
    args: dict[str, object] = {
        "mode": "auto",
        "new_name": None,
        "compress": "zstd",
        "verify": None,
        "cross_runtime_available": False,
    }
    args.update(kw)
    return plan.preflight("web1", source=src, dest=dst, **args)  # type: ignore[arg-type]


def test_auto_picks_live_when_both_can(criu_ok: None) -> None:
    src = FakeEngine("docker", "unix:///a", held={"web1": _container("web1")})
    dst = FakeEngine("docker", "unix:///b", images={"sha256:abc"})
    chosen = _preflight(src, dst)
    assert chosen.mode == "live" and "both sides" in chosen.reason
    assert not chosen.needs_image


def test_auto_goes_cold_and_says_why(criu_ok: None) -> None:
    src = FakeEngine("docker", "unix:///a", held={"web1": _container("web1")})
    dst = FakeEngine("docker", "unix:///b", can_checkpoint=False)
    chosen = _preflight(src, dst)
    assert chosen.mode == "cold" and "cannot checkpoint" in chosen.reason
    assert chosen.needs_image
    with pytest.raises(Unsupported):
        _preflight(src, dst, mode="live")


def test_cross_runtime_without_the_live_path_goes_cold(criu_ok: None) -> None:
    src = FakeEngine("docker", "unix:///a", held={"web1": _container("web1")})
    dst = FakeEngine("podman", "unix:///b")
    assert _preflight(src, dst).mode == "cold"
    assert _preflight(src, dst, cross_runtime_available=True).mode == "live"


def test_refusals(criu_ok: None) -> None:
    port = PortMapping(container_port=8080, host_port=18080)
    src = FakeEngine("docker", "unix:///a", held={"web1": _container("web1", port)})
    dst = FakeEngine("docker", "unix:///b", held={"web1": _container("web1")})
    with pytest.raises(Conflict, match="exists on the destination"):
        _preflight(src, dst)
    dst.held = {"other": _container("other", PortMapping(container_port=80, host_port=18080))}
    with pytest.raises(Conflict, match="host port 18080"):
        _preflight(src, dst)
    dst.held = {}
    with pytest.raises(InvalidArgument):
        _preflight(src, dst, mode="warp")
    with pytest.raises(InvalidArgument):
        _preflight(src, dst, compress="lz4")
    with pytest.raises(InvalidArgument):
        _preflight(src, dst, verify="   ")  # neither a URL nor a command
    with pytest.raises(InvalidArgument):
        _preflight(src, dst, verify="http://")  # a URL with no host
    with pytest.raises(Conflict, match="same engine"):
        _preflight(src, src)
    src.bound = {"web1"}
    with pytest.raises(Unsupported, match="bind-mounts the host's /srv/data") as refused:
        _preflight(src, dst)
    assert refused.value.hint and "--allow-mount /srv/data" in refused.value.hint
    _preflight(src, dst, allow_mounts=("/srv",))
    src.bound = set()
    src.mounted = {"web1"}
    # cold (and post-copy) moves carry the volumes too: they are in the plan
    assert [m.target for m in _preflight(src, dst, mode="cold").mounts] == ["/data"]
    dst.volume_names = {"data"}
    with pytest.raises(Conflict, match="volume named data exists on the destination"):
        _preflight(src, dst)
    dst.volume_names = set()
    src.mounted = set()
    src.held = {"web1": _container("web1", running=False)}
    with pytest.raises(Conflict, match="not running"):
        _preflight(src, dst)


def test_cli_migrate_needs_to() -> None:
    result = ctk("migrate", "web1", engine=NOWHERE)
    assert result.returncode == ExitCode.USAGE


def test_cli_migrate_unreachable_destination() -> None:
    result = ctk("migrate", "web1", "--to", NOWHERE, engine=NOWHERE)
    assert result.returncode == ExitCode.ENGINE_UNAVAILABLE
    assert "Traceback" not in result.stderr


def test_cli_recover_with_nothing_to_do(state: Path) -> None:
    result = ctk("migrate", "--recover", "--json")
    assert result.returncode == 0 and json.loads(result.stdout) == []
    missing = ctk("migrate", "--recover", "m-nope")
    assert missing.returncode == ExitCode.NOT_FOUND


def test_cli_drain_bad_label() -> None:
    result = ctk("drain", NOWHERE, "--to", NOWHERE, "--label", "novalue")
    assert result.returncode == ExitCode.USAGE


@pytest.mark.parametrize(
    ("steps", "needs_image", "phase"),
    [
        (["preflight"], True, "image"),
        (["preflight"], False, "dump"),
        (["preflight", "dump-started"], False, "dump"),
        (["preflight", "dump-started", "dump", "transfer"], False, "restore"),
        (["preflight", "dump-started", "dump", "transfer", "restore"], False, "verify"),
        # a cross-runtime migration that fails while dumping failed in the dump
        (["preflight", "cross-runtime-started"], False, "dump"),
        (["preflight", "cross-runtime-started", "cross-runtime-dumped"], False, "restore"),
    ],
)
def test_failing_phase(steps: list[str], needs_image: bool, phase: str) -> None:
    from toolkit.migration.execute import _failing_phase

    j = journal.Journal(id="m1", container="a", target="a", source={}, destination={}, mode="live")
    j.steps = [{"step": s, "at": ""} for s in steps]
    assert _failing_phase(j, needs_image=needs_image) == phase


@pytest.mark.parametrize(
    ("mode", "extra", "expected"),
    [
        ("live", {"strategy": "stream"}, "stream"),
        ("live", {"strategy": "pagestream"}, "pagestream"),
        ("live", {"strategy": "cross-runtime", "cross_runtime": True}, "cross-runtime"),
        # journals of a ctk from before strategies name the path in other keys
        ("live", {}, "archive"),
        ("live", {"cross_runtime": True}, "cross-runtime"),
        ("cold", {"cross_runtime": False}, "cold"),
    ],
)
def test_rollback_takes_the_strategy_the_journal_recorded(
    mode: str, extra: dict[str, object], expected: str
) -> None:
    from toolkit.migration.execute import STRATEGIES, _strategy_of

    record = journal.Journal(
        id="x", container="web", target="web", source={}, destination={}, mode=mode, extra=extra
    )
    assert _strategy_of(record) is STRATEGIES[expected]
    assert set(STRATEGIES) == {
        "stream", "pagestream", "archive", "cold", "cross-runtime", "postcopy"
    }  # fmt: skip
