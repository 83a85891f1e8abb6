"""Checkpoint archives on both engines: export, import, clone, rootfs changes, compression,
refusals that leave nothing behind, and an export that is killed halfway."""

from __future__ import annotations

import hashlib
import io
import json
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Containers, counts, ctk, last_count, wait_count_at_least, wait_for
from toolkit import archive
from toolkit.backends.base import Backend
from toolkit.errors import ExitCode
from toolkit.models import CheckpointOptions, ExportOptions, ImportOptions

pytestmark = [pytest.mark.integration, pytest.mark.criu]

ROOTFS_COMMAND = ("sh", "-c", "echo kept >/kept.txt; rm /bin/ed; exec /counter.sh")


def _assert_no_restart(engine: Backend, name: str, at: int) -> None:
    """The imported counter goes on from ``at``; it never starts again at 1."""
    wait_count_at_least(engine, name, at + 2)
    values = counts(engine, name)
    assert values == sorted(set(values)), values
    # Podman carries the container's log in its export; Docker's new container starts a new
    # log, whose first line must then be the continuation, not count=1.
    assert values[0] > 1 or engine.kind == "podman", values
    assert values.count(1) <= 1, values


def _names(engine: Backend) -> set[str]:
    return {c.name for c in engine.containers(all=True)}


def _exec(engine: Backend, name: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [engine.kind, "exec", name, *command], capture_output=True, text=True, timeout=60
    )


def test_export_rm_import_continues(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 3)
    path = tmp_path / "web.ctk"
    result = ctk("checkpoint", info.name, "--export", str(path), engine=engine.kind, check=True)
    assert result.stdout.strip() == str(path)
    assert archive.read_manifest(path).engine == engine.kind
    at = last_count(engine, info.name)
    engine.remove(info.name, force=True)
    result = ctk("restore", "--import", str(path), engine=engine.kind, check=True)
    assert result.stdout.strip() == info.name
    assert engine.inspect(info.name).running
    _assert_no_restart(engine, info.name, at)


def test_import_under_new_name_is_a_clone(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    original = containers.run()
    wait_count_at_least(engine, original.name, 2)
    path = tmp_path / "web.ctk.gz"
    ctk(
        "checkpoint", original.name, "--export", str(path), "--leave-running",
        "--compress", "gzip", engine=engine.kind, check=True,
    )  # fmt: skip
    assert engine.inspect(original.name).running
    at = last_count(engine, original.name)
    clone = containers.name("clone")
    result = ctk(
        "--json", "restore", "--import", str(path), "--name", clone, engine=engine.kind,
        check=True,
    )  # fmt: skip
    assert json.loads(result.stdout)["name"] == clone
    assert engine.inspect(original.name).running and engine.inspect(clone).running
    _assert_no_restart(engine, clone, at)
    # Two independent copies: the clone counts on while the original is stopped.
    engine.stop(original.name, timeout=5)
    frozen = last_count(engine, original.name)
    reached = last_count(engine, clone)
    wait_count_at_least(engine, clone, reached + 2)
    assert last_count(engine, original.name) == frozen


def test_rootfs_changes_survive(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    info = containers.run(command=ROOTFS_COMMAND)
    wait_count_at_least(engine, info.name, 2)
    assert _exec(engine, info.name, "cat", "/kept.txt").stdout.strip() == "kept"
    path = tmp_path / "web.tar"
    exported = engine.export_checkpoint(info.name, path, ExportOptions(compression="none"))
    assert exported.compression == "none"
    engine.remove(info.name, force=True)
    engine.import_checkpoint(path, ImportOptions())
    assert _exec(engine, info.name, "cat", "/kept.txt").stdout.strip() == "kept"
    deleted = _exec(engine, info.name, "ls", "/bin/ed")
    assert deleted.returncode != 0, deleted.stdout
    assert _exec(engine, info.name, "ls", "/bin/cat").returncode == 0


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_each_compression_round_trips(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path, compression: str
) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 2)
    path = tmp_path / f"web.{compression}"
    exported = engine.export_checkpoint(
        info.name,
        path,
        ExportOptions(checkpoint=CheckpointOptions(leave_running=True), compression=compression),
    )
    assert exported.compression == compression
    assert archive.detect_compression(path.read_bytes()[:4]) == compression
    assert exported.manifest.image_id == info.image_id
    assert exported.manifest.members and exported.timings["checkpoint"] >= 0
    at = last_count(engine, info.name)
    clone = engine.import_checkpoint(path, ImportOptions(name=containers.name("c")))
    assert clone.running
    _assert_no_restart(engine, clone.name, at)


def test_unknown_compression_keeps_container_running(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    path = tmp_path / "web.lz4"
    result = ctk(
        "checkpoint", info.name, "--export", str(path), "--compress", "lz4", engine=engine.kind
    )
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "lz4" in result.stderr and "Hint: use one of: zstd, gzip, none" in result.stderr
    assert "Traceback" not in result.stderr
    assert engine.inspect(info.name).running
    assert engine.checkpoints(info.name) == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_killed_export_leaves_no_file(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path, signum: int
) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    path = tmp_path / "web.ctk"
    proc = subprocess.Popen(
        [sys.executable, "-m", "toolkit", "--engine", engine.kind, "checkpoint", info.name,
         "--export", str(path), "--leave-running"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # The staging directory appears before the checkpoint starts: ctk is mid-export.
        wait_for(
            lambda: (
                any(p.name.startswith(".web.ctk.ctk-") for p in tmp_path.iterdir())
                or proc.poll() is not None
            ),
            timeout=60,
            what="export to start",
        )
        assert proc.poll() is None, "the export finished before it could be killed"
        proc.send_signal(signum)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not path.exists()
    if signum == signal.SIGTERM:
        assert list(tmp_path.iterdir()) == []  # its temporary files went too
    assert engine.inspect(info.name).running  # --leave-running: never stopped


def test_corrupt_archive_creates_nothing(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    path = tmp_path / "web.tar"
    engine.export_checkpoint(info.name, path, ExportOptions(compression="none"))
    engine.remove(info.name, force=True)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the payload
    path.write_bytes(bytes(data))
    result = ctk("restore", "--import", str(path), engine=engine.kind)
    assert result.returncode == ExitCode.ARCHIVE_INVALID, result.stderr
    assert "Hint:" in result.stderr and "Traceback" not in result.stderr
    assert info.name not in _names(engine)
    # truncated
    path.write_bytes(bytes(data[: len(data) // 3]))
    result = ctk(
        "restore", "--import", str(path), "--name", containers.name("t"), engine=engine.kind
    )
    assert result.returncode == ExitCode.ARCHIVE_INVALID
    assert info.name not in _names(engine)


def test_hostile_archive_creates_nothing(
    engine: Backend, containers: Containers, tmp_path: Path
) -> None:
    """A manifest naming this engine and a member that climbs out: refused, nothing made."""

    name = containers.name("hostile")
    evil = b"owned"
    manifest = {
        "format_version": 1,
        "engine": engine.kind,
        "container_name": name,
        "image": "ctk-demo/counter",
        "checkpoint": "cp1",
        "spec": {"image": "ctk-demo/counter", "name": name},
        "members": [
            {"name": "../escaped", "size": len(evil), "sha256": hashlib.sha256(evil).hexdigest()}
        ],
    }
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        for member, data in (
            ("ctk-manifest.json", json.dumps(manifest).encode()),
            ("../escaped", evil),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    result = ctk("restore", "--import", str(path), engine=engine.kind)
    assert result.returncode == ExitCode.ARCHIVE_INVALID, result.stderr
    assert "climbs out" in result.stderr
    assert name not in _names(engine)
    assert not (tmp_path.parent / "escaped").exists()


def test_import_name_conflict(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    path = tmp_path / "web.ctk"
    engine.export_checkpoint(
        info.name, path, ExportOptions(checkpoint=CheckpointOptions(leave_running=True))
    )
    result = ctk("restore", "--import", str(path), engine=engine.kind)
    assert result.returncode == ExitCode.CONFLICT, result.stderr
    assert "--name" in result.stderr
    same_name = [c for c in engine.containers(all=True) if c.name == info.name]
    assert [c.id for c in same_name] == [info.id]  # the original, untouched
    assert same_name[0].running
    other = "docker" if engine.kind == "podman" else "podman"
    result = ctk("restore", "--import", str(path), "--name", containers.name("x"), engine=other)
    assert result.returncode in (ExitCode.UNSUPPORTED, ExitCode.ENGINE_UNAVAILABLE)
    assert f"--engine {engine.kind}" in result.stderr or result.returncode == 3


@pytest.mark.pycriu
def test_inspect_archive_and_checkpoint(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    path = tmp_path / "web.ctk"
    engine.export_checkpoint(
        info.name, path, ExportOptions(checkpoint=CheckpointOptions(name="cp1", leave_running=True))
    )
    for args in ((str(path),), (info.name, "cp1")):
        result = ctk("checkpoint", "inspect", *args, "--json", engine=engine.kind, check=True)
        data = json.loads(result.stdout)
        comms = {p["comm"]: p for p in data["processes"]}
        assert {"counter.sh", "httpd"} <= set(comms), comms
        assert comms["counter.sh"]["memory_bytes"] > 0 and comms["counter.sh"]["pages"] > 0
        assert any(f.endswith("/counter.sh") for f in comms["counter.sh"]["files"])
        assert any(s["state"] == "LISTEN" and s["local"].endswith(":8080") for s in data["sockets"])
        assert {"pid", "net", "mnt"} <= set(data["namespaces"])
        assert data["criu_version"].startswith("4.")
    assert data["manifest"] is None
    text = ctk("checkpoint", "inspect", str(path), engine=engine.kind, check=True).stdout
    assert "counter.sh" in text and f"container:  {info.name}" in text
    assert (
        json.loads(ctk("checkpoint", "inspect", str(path), "--json", engine=engine.kind).stdout)[
            "manifest"
        ]["container_name"]
        == info.name
    )


@pytest.mark.pycriu
def test_print_stats(engine: Backend, containers: Containers, criu: None, tmp_path: Path) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    text = ctk("checkpoint", info.name, "-R", "--print-stats", engine=engine.kind, check=True)
    assert "CTK PHASE" in text.stdout and "checkpoint" in text.stdout
    path = tmp_path / "web.ctk"
    result = ctk(
        "--json", "checkpoint", info.name, "--export", str(path), "--print-stats",
        engine=engine.kind, check=True,
    )  # fmt: skip
    stats = json.loads(result.stdout)["stats"]
    assert {"checkpoint", "checksum", "write", "total"} <= set(stats["ctk_seconds"])
    engine.remove(info.name, force=True)
    restored = ctk(
        "--json", "restore", "--import", str(path), "--print-stats", engine=engine.kind,
        check=True,
    )  # fmt: skip
    restore_stats = json.loads(restored.stdout)["stats"]
    assert "import" in restore_stats["ctk_seconds"]
    if engine.kind == "podman":
        assert "frozen_time" in text.stdout and "memdump_time" in text.stdout
        assert stats["criu"]["pages_written"] > 0
        assert restore_stats["criu"]["restore_time"] > 0
    else:
        # containerd removes CRIU's work directory, stats files included
        assert "CRIU statistics: not kept by this engine" in text.stdout
        assert stats["criu"] == {} and restore_stats["criu"] == {}


def test_import_publishes_new_ports(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    import urllib.request

    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    path = tmp_path / "web.ctk"
    engine.export_checkpoint(
        info.name, path, ExportOptions(checkpoint=CheckpointOptions(leave_running=True))
    )
    clone = containers.name("pub")
    ctk(
        "restore", "--import", str(path), "--name", clone, "--publish", "127.0.0.1::8080",
        "--ignore-static-ip", engine=engine.kind, check=True,
    )  # fmt: skip
    ports = engine.inspect(clone).ports
    assert [(p.container_port, p.host_ip) for p in ports] == [(8080, "127.0.0.1")]
    url = f"http://127.0.0.1:{ports[0].host_port}/count"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().strip().isdigit()
        except OSError:
            return False

    wait_for(answers, what=f"the clone's httpd at {url}")


def _break_images(source: Path, dest: Path, tmp: Path) -> None:
    """A well-formed archive (valid checksums) whose CRIU pstree.img is garbage."""
    with archive.open_archive(source) as verified:
        payload: list[tuple[str, Path]] = []
        for member in verified.manifest.members:
            original = verified.member(member.name)
            copy = tmp / member.name
            if member.name.endswith("checkpoint.tar"):
                with tarfile.open(original) as src, tarfile.open(copy, "w") as out:
                    for info in src:
                        data = src.extractfile(info) if info.isfile() else None
                        if info.name.endswith("pstree.img"):
                            data = io.BytesIO(b"\xff" * info.size)
                        out.addfile(info, data)
            else:
                copy.write_bytes(original.read_bytes())
            payload.append((member.name, copy))
        archive.write_archive(dest, verified.manifest, payload, compression="none")


def test_failed_restore_leaves_no_container(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    good = tmp_path / "good.ctk"
    engine.export_checkpoint(
        info.name, good, ExportOptions(checkpoint=CheckpointOptions(leave_running=True))
    )
    broken = tmp_path / "broken.ctk"
    work = tmp_path / "work"
    work.mkdir()
    _break_images(good, broken, work)
    clone = containers.name("broken")
    result = ctk("restore", "--import", str(broken), "--name", clone, engine=engine.kind)
    assert result.returncode == ExitCode.CHECKPOINT_FAILED, result.stderr
    assert "Traceback" not in result.stderr and "Hint:" in result.stderr
    assert clone not in _names(engine)
    assert engine.inspect(info.name).running  # the original is untouched


def test_checkpoint_ls_all_containers(engine: Backend, containers: Containers, criu: None) -> None:
    info = containers.run()
    wait_count_at_least(engine, info.name, 1)
    engine.checkpoint(info.name, CheckpointOptions(name="listed", leave_running=True))
    rows = json.loads(ctk("checkpoint", "ls", "--json", engine=engine.kind, check=True).stdout)
    assert {"container": info.name, "name": "listed"}.items() <= next(
        r for r in rows if r["container"] == info.name
    ).items()
    text = ctk("checkpoint", "ls", engine=engine.kind, check=True).stdout
    assert "CONTAINER" in text and info.name in text
