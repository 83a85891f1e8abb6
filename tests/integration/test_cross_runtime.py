"""Live migration across runtimes: Docker -> Podman and Podman -> Docker, memory intact."""

from __future__ import annotations

import contextlib
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import (
    BUSYBOX_IMAGE,
    Containers,
    counts,
    last_count,
    unavailable,
    wait_count_at_least,
)
from toolkit import PortMapping
from toolkit.backends.base import Backend
from toolkit.config import DEFAULT_URLS, EngineRef, connect
from toolkit.errors import CheckpointError, ContainerNotFound, CtkError, Unsupported
from toolkit.migration import cross_runtime
from toolkit.models import CheckpointOptions, ContainerInfo, RestoreOptions

DIRECTIONS = [("docker", "podman"), ("podman", "docker")]
LOCAL_PORT = PortMapping(8080, host_ip="127.0.0.1")


@dataclass
class Pair:
    source: Backend
    dest: Backend
    on_source: Containers
    on_dest: Containers

    def run_counter(self, **fields: object) -> ContainerInfo:
        info = self.on_source.run(ports=(LOCAL_PORT,), **fields)
        wait_count_at_least(self.source, info.name, 3)
        return info


@pytest.fixture(params=DIRECTIONS, ids=lambda d: f"{d[0]}-to-{d[1]}")
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    """Both local engines, as source and destination in the parametrised direction."""
    from toolkit.criu.probe import probe_criu

    backends = []
    for kind in request.param:
        backend = connect(EngineRef(kind, DEFAULT_URLS[kind]))
        if not backend.ping():
            unavailable(f"{kind} does not answer")
        backends.append(backend)
    if not probe_criu().check_ok:
        unavailable("criu not ready")
    source, dest = backends
    made = Pair(source, dest, Containers(source, []), Containers(dest, []))
    yield made
    for group in (made.on_source, made.on_dest):
        for name in group.names:
            for backend in (source, dest):
                with contextlib.suppress(CtkError):
                    info = backend.inspect(name)
                    backend.remove(name, force=True)
                    cross_runtime.remove_criu_config(info)
    for backend in backends:
        backend.close()


def http_count(info: ContainerInfo) -> int:
    port = next(p.host_port for p in info.ports if p.container_port == 8080)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=10) as response:
        return int(response.read().decode().strip())


def config_files(name: str = "") -> set[Path]:
    """The CRIU config files of cross-runtime moves (of container ``name`` when given: other
    tests run beside this one and make and remove their own)."""
    directory = cross_runtime.criu_config_dir()
    return set(directory.glob(f"{name}*.conf")) if directory.is_dir() else set()


def test_live_move_continues_counter_and_serves_http(pair: Pair) -> None:
    source_info = pair.run_counter()
    name = source_info.name
    before = last_count(pair.source, name)

    moved = cross_runtime.live_cross_runtime(pair.source, name, pair.dest)
    pair.on_dest.names.append(name)

    assert moved.engine == pair.dest.kind and moved.running
    wait_count_at_least(pair.dest, name, before + 2)
    seen = counts(pair.dest, name)
    # the memory came along: the counter goes on from the source's value, never from 1
    assert min(seen) >= before and 1 not in seen
    assert http_count(moved) >= before
    with pytest.raises(ContainerNotFound):
        pair.source.inspect(name)

    # no restore-only CRIU option is left behind: a plain checkpoint/restore still works
    pair.dest.checkpoint(name, CheckpointOptions(name="after-move"))
    at_dump = last_count(pair.dest, name)
    pair.dest.restore(name, RestoreOptions(checkpoint="after-move"))
    wait_count_at_least(pair.dest, name, at_dump + 2)
    configs = config_files(name)
    assert all(c.read_text() == "" for c in configs)


def test_there_and_back_with_filesystem_changes(pair: Pair) -> None:
    name = pair.run_counter().name

    def sh(backend: Backend, script: str) -> str:
        done = subprocess.run(
            [backend.kind, "exec", name, "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.stdout

    sh(pair.source, "echo kept > /made.txt && rm /bin/vi")
    cross_runtime.live_cross_runtime(pair.source, name, pair.dest)
    pair.on_dest.names.append(name)
    assert sh(pair.dest, "cat /made.txt; test -e /bin/vi || echo gone") == "kept\ngone\n"
    middle = wait_count_at_least(pair.dest, name, last_count(pair.dest, name) + 1)

    back = cross_runtime.live_cross_runtime(pair.dest, name, pair.source)

    assert back.engine == pair.source.kind
    wait_count_at_least(pair.source, name, middle + 2)
    assert http_count(back) >= middle
    assert sh(pair.source, "cat /made.txt; test -e /bin/vi || echo gone") == "kept\ngone\n"
    with pytest.raises(ContainerNotFound):
        pair.dest.inspect(name)


def test_leave_running_checkpoint_restored_as_clone(pair: Pair) -> None:
    source_info = pair.run_counter()
    name = source_info.name
    clone = pair.on_dest.name("clone")
    before = last_count(pair.source, name)

    cloned = cross_runtime.live_cross_runtime(
        pair.source, name, pair.dest, new_name=clone, keep_source=True
    )

    assert cloned.name == clone and cloned.running
    wait_count_at_least(pair.dest, clone, before + 2)
    assert 1 not in counts(pair.dest, clone)
    assert http_count(cloned) >= before
    # both run: the source goes on counting too
    assert pair.source.inspect(name).running
    wait_count_at_least(pair.source, name, before + 2)


def test_failed_destination_restore_resumes_source(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_info = pair.run_counter()
    name = source_info.name
    configs_before = config_files(name)
    prepare = cross_runtime._prepare_images

    def broken(images: Path, source_kind: str, dest_kind: str) -> None:
        prepare(images, source_kind, dest_kind)
        # the memory pages of the root process: CRIU's restore fails for real
        (images / "pages-1.img").unlink()

    monkeypatch.setattr(cross_runtime, "_prepare_images", broken)
    before = last_count(pair.source, name)
    with pytest.raises(CheckpointError) as failed:
        cross_runtime.live_cross_runtime(pair.source, name, pair.dest)
    # CRIU's own reason, kept although the engine drops its restore log on failure
    assert "pr bytes" in failed.value.message or "pages" in failed.value.message
    assert pair.source.kind in failed.value.hint

    # nothing lost: the source runs on from its checkpoint, nothing is left on the dest
    assert pair.source.inspect(name).running
    wait_count_at_least(pair.source, name, before + 2)
    with pytest.raises(ContainerNotFound):
        pair.dest.inspect(name)
    assert config_files(name) == configs_before


def test_tcp_established_refused_before_anything_is_touched(pair: Pair) -> None:
    info = pair.run_counter()
    with pytest.raises(Unsupported, match="tcp-established"):
        cross_runtime.live_cross_runtime(pair.source, info.name, pair.dest, tcp_established=True)
    assert pair.source.inspect(info.name).running
    with pytest.raises(ContainerNotFound):
        pair.dest.inspect(info.name)


@pytest.mark.usefixtures("criu")
def test_checkpoint_inspect_says_whether_the_other_runtime_can_restore(
    engine: Backend, containers: Containers
) -> None:
    import json

    from tests.conftest import ctk

    info = containers.run(ports=(LOCAL_PORT,))
    wait_count_at_least(engine, info.name, 2)
    engine.checkpoint(info.name, CheckpointOptions(name="look", leave_running=True))
    other = "podman" if engine.kind == "docker" else "docker"

    shown = ctk("checkpoint", "inspect", info.name, "look", "--json", engine=engine.kind)
    assert shown.returncode == 0, shown.stderr
    verdict = json.loads(shown.stdout)["cross_runtime"]
    assert verdict["runtime"] == other and verdict["possible"] is True

    human = ctk("checkpoint", "inspect", info.name, "look", engine=engine.kind, check=True)
    assert f"restore on {other}: yes" in human.stdout


def test_ctk_migrate_cli_live_across_runtimes_and_back(pair: Pair) -> None:
    """The issue's acceptance: `ctk migrate NAME --from docker --to podman` live, and back."""
    import json

    from tests.conftest import ctk

    info = pair.run_counter()
    pair.on_dest.names.append(info.name)
    before = last_count(pair.source, info.name)
    there = ctk(
        "migrate", info.name, "--from", pair.source.kind, "--to", pair.dest.kind,
        "--mode", "live", "--json", timeout=300,
    )  # fmt: skip
    assert there.returncode == 0, there.stdout + there.stderr
    report = json.loads(there.stdout)
    assert report["status"] == "done" and report["mode"] == "live", report
    assert report["downtime"] > 0
    with pytest.raises(ContainerNotFound):
        pair.source.inspect(info.name)
    moved = pair.dest.inspect(info.name)
    assert moved.running
    wait_count_at_least(pair.dest, info.name, before + 1)
    assert 1 not in counts(pair.dest, info.name)  # continued, never restarted at 1
    assert http_count(moved) > before
    mid = last_count(pair.dest, info.name)
    back = ctk(
        "migrate", info.name, "--from", pair.dest.kind, "--to", pair.source.kind,
        "--mode", "live", timeout=300,
    )  # fmt: skip
    assert back.returncode == 0, back.stdout + back.stderr
    assert "live" in back.stdout
    wait_count_at_least(pair.source, info.name, mid + 1)
    assert 1 not in counts(pair.source, info.name)


# A TCP connection held inside the container, and a counter: no dump without
# --tcp-established (which Docker cannot pass), so the dump fails for real.
_TCP_HOLDER = (
    "sh",
    "-c",
    # each nc reads a pipe that never ends: with /dev/null it would close the connection
    "sleep 9999 | nc -l -p 9000 >/dev/null & sleep 1; sleep 9999 | nc 127.0.0.1 9000 >/dev/null & "
    "n=1; while :; do echo count=$n; n=$((n + 1)); sleep 1; done",
)


def test_migration_failing_in_the_dump_names_the_dump(pair: Pair) -> None:
    import toolkit
    from toolkit.errors import MigrationError

    info = pair.on_source.run(BUSYBOX_IMAGE, command=_TCP_HOLDER)
    pair.on_dest.names.append(info.name)
    wait_count_at_least(pair.source, info.name, 3)
    with pytest.raises(MigrationError) as caught:
        toolkit.migrate(info.name, source=pair.source, dest=pair.dest, mode="live")
    report = caught.value.report
    assert report.failed_phase == "dump", report
    assert "failed in phase dump" in caught.value.message
    assert "FAILED" not in caught.value.message  # CRIU's reason, not its last line
    # nothing lost: the source runs on, the destination holds nothing
    assert pair.source.inspect(info.name).running
    with pytest.raises(ContainerNotFound):
        pair.dest.inspect(info.name)


def test_rm_container_moves_cold_across_runtimes(pair: Pair) -> None:
    import toolkit

    info = pair.on_source.run(auto_remove=True)
    pair.on_dest.names.append(info.name)
    wait_count_at_least(pair.source, info.name, 2)
    ok, reason = cross_runtime.container_portable_to(pair.source, info.name, pair.dest.kind)
    assert not ok and "--rm" in reason
    report = toolkit.migrate(info.name, source=pair.source, dest=pair.dest)
    assert report.status == "done" and report.mode == "cold", report
    assert "--rm" in report.reason
    wait_count_at_least(pair.dest, info.name, 2)
    with pytest.raises(ContainerNotFound):
        pair.source.inspect(info.name)


def test_ctk_migrate_to_and_from_configured_engine_names(
    pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ctk migrate NAME --to NAME2` and `--from NAME1` with engines named in the config file
    (the one engine resolution every command shares), there and back."""
    import json

    from tests.conftest import ctk

    config = tmp_path / "ctk" / "config.toml"
    config.parent.mkdir()
    config.write_text(
        f'[engines.here]\nurl = "{pair.source.kind}+{pair.source.url}"\n'
        f'[engines.there]\nurl = "{pair.dest.kind}+{pair.dest.url}"\n'
    )
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("CTK_ENGINE", raising=False)
    info = pair.run_counter()
    pair.on_dest.names.append(info.name)
    there = ctk(
        "--engine", "here", "migrate", info.name, "--to", "there", "--mode", "cold", "--json",
        timeout=300,
    )  # fmt: skip
    assert there.returncode == 0, there.stdout + there.stderr
    report = json.loads(there.stdout)
    assert report["status"] == "done", report
    assert report["destination"] == f"{pair.dest.kind}+{pair.dest.url}"
    assert pair.dest.inspect(info.name).running
    with pytest.raises(ContainerNotFound):
        pair.source.inspect(info.name)
    back = ctk(
        "migrate", info.name, "--from", "there", "--to", "here", "--mode", "cold", "--json",
        timeout=300,
    )  # fmt: skip
    assert back.returncode == 0, back.stdout + back.stderr
    assert json.loads(back.stdout)["source"] == f"{pair.dest.kind}+{pair.dest.url}"
    assert pair.source.inspect(info.name).running
