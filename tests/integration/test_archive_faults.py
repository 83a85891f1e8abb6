"""Hostile archives on both engines, checksums recomputed after the edit as an attacker would:
each import ends in exit 8 with nothing run, nothing deleted and no container made.

Engine payloads differ (Podman: libpod's export tar with spec.dump, config.dump, deleted.files and
rootfs-diff.tar inside; Docker: CRIU images and a rootfs tar, the container made from the
manifest's spec), so each attack is placed where the engine would act on it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Containers, ctk, wait_count_at_least
from toolkit import archive
from toolkit.backends.base import Backend
from toolkit.errors import ExitCode
from toolkit.models import ArchiveManifest, CheckpointOptions, ExportOptions

pytestmark = [pytest.mark.integration, pytest.mark.criu]


def _names(engine: Backend) -> set[str]:
    return {c.name for c in engine.containers(all=True)}


def _export(
    engine: Backend, containers: Containers, tmp_path: Path, command: tuple[str, ...] = ()
) -> Path:
    fields: dict[str, Any] = {"command": command} if command else {}
    info = containers.run(**fields)
    wait_count_at_least(engine, info.name, 1)
    path = tmp_path / "good.ctk"
    engine.export_checkpoint(
        info.name, path, ExportOptions(checkpoint=CheckpointOptions(leave_running=True))
    )
    return path


def _rewrite_tar(
    source: Path,
    dest: Path,
    edit: Callable[[str, bytes], bytes],
    extra: list[tuple[tarfile.TarInfo, bytes | None]] = (),  # type: ignore[assignment]
) -> None:
    with tarfile.open(source) as src, tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as out:
        for info in src:
            if info.isfile():
                handle = src.extractfile(info)
                data = edit(info.name, handle.read() if handle else b"")
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
            else:
                out.addfile(info)
        for info, data in extra:
            if data is not None:
                info.size = len(data)
            out.addfile(info, io.BytesIO(data) if data is not None else None)


def _tamper(
    source: Path,
    dest: Path,
    work: Path,
    *,
    members: Callable[[str, Path, Path], None] | None = None,
    manifest: Callable[[ArchiveManifest], ArchiveManifest] | None = None,
) -> Path:
    """A copy of ``source`` with payload members rewritten by ``members(name, src, dst)`` and
    the manifest by ``manifest``; checksums recomputed, so only ctk's content checks remain."""
    work.mkdir(exist_ok=True)
    with archive.open_archive(source) as verified:
        payload: list[tuple[str, Path]] = []
        for member in verified.manifest.members:
            original = verified.member(member.name)
            copy = work / member.name
            if members is not None:
                members(member.name, original, copy)
            if not copy.exists():
                copy.write_bytes(original.read_bytes())
            payload.append((member.name, copy))
        new_manifest = manifest(verified.manifest) if manifest else verified.manifest
        archive.write_archive(dest, new_manifest, payload, compression="none")
    return dest


def _import_refused(engine: Backend, path: Path, name: str, *extra: str) -> str:
    result = ctk("restore", "--import", str(path), "--name", name, *extra, engine=engine.kind)
    assert result.returncode == ExitCode.ARCHIVE_INVALID, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Hint:" in result.stderr
    # no container made (other sessions share the engine: only this name is ours to count)
    assert name not in _names(engine)
    return result.stderr


def _hook(marker: Path) -> dict[str, Any]:
    return {"path": "/bin/sh", "args": ["sh", "-c", f"touch {marker}"]}


def test_payload_that_runs_a_host_command_is_refused(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    """Podman: an OCI hook in spec.dump/config.dump (it ran on the host as root). Docker: a
    manifest joining another container's namespaces (the container is made from the manifest)."""
    good = _export(engine, containers, tmp_path)
    marker = tmp_path / "hook-ran"
    victim = containers.run()

    def podman_members(name: str, src: Path, dst: Path) -> None:
        def edit(member: str, data: bytes) -> bytes:
            if member == "spec.dump":
                spec = json.loads(data)
                spec["hooks"] = {"createRuntime": [_hook(marker)], "prestart": [_hook(marker)]}
                return json.dumps(spec).encode()
            if member == "config.dump":
                config = json.loads(data)
                config["spec"]["hooks"] = {"prestart": [_hook(marker)]}
                return json.dumps(config).encode()
            return data

        _rewrite_tar(src, dst, edit)

    def docker_manifest(manifest: ArchiveManifest) -> ArchiveManifest:
        spec = {**manifest.spec, "network": f"container:{victim.name}"}
        return dataclasses.replace(manifest, spec=spec)

    hostile = _tamper(
        good,
        tmp_path / "hostile.ctk",
        tmp_path / "work",
        members=podman_members if engine.kind == "podman" else None,
        manifest=docker_manifest if engine.kind == "docker" else None,
    )
    stderr = _import_refused(engine, hostile, containers.name("hook"))
    assert ("hooks" if engine.kind == "podman" else "joins another namespace") in stderr
    assert not marker.exists()


def test_deleted_path_escaping_the_root_is_refused(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    """deleted.files (Podman) / the manifest's deleted list (Docker) climbing to a host dir."""
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep").write_text("here")
    escape = "/" + "../" * 12 + str(sentinel).lstrip("/")
    good = _export(engine, containers, tmp_path, ("sh", "-c", "rm /bin/ed; exec /counter.sh"))

    def podman_members(name: str, src: Path, dst: Path) -> None:
        def edit(member: str, data: bytes) -> bytes:
            return json.dumps([escape]).encode() if member == "deleted.files" else data

        _rewrite_tar(src, dst, edit)

    def docker_manifest(manifest: ArchiveManifest) -> ArchiveManifest:
        engine_data = {**manifest.engine_data, "deleted": [escape]}
        return dataclasses.replace(manifest, engine_data=engine_data)

    hostile = _tamper(
        good,
        tmp_path / "hostile.ctk",
        tmp_path / "work",
        members=podman_members if engine.kind == "podman" else None,
        manifest=docker_manifest if engine.kind == "docker" else None,
    )
    stderr = _import_refused(engine, hostile, containers.name("del"))
    assert "'..'" in stderr
    assert (sentinel / "keep").read_text() == "here"


def test_hardlink_through_symlink_in_rootfs_diff_is_refused(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    good = _export(
        engine, containers, tmp_path, ("sh", "-c", "echo kept >/kept.txt; exec /counter.sh")
    )
    link = tarfile.TarInfo("ctk-up")
    link.type, link.linkname = tarfile.SYMTYPE, "/"
    hard = tarfile.TarInfo("ctk-hostname")
    hard.type, hard.linkname = tarfile.LNKTYPE, "ctk-up/etc/hostname"
    extra: list[tuple[tarfile.TarInfo, bytes | None]] = [(link, None), (hard, None)]

    def members(name: str, src: Path, dst: Path) -> None:
        if name == "docker-rootfs.tar":
            _rewrite_tar(src, dst, lambda _m, data: data, extra)
        elif name == "podman-checkpoint.tar":
            diff = dst.parent / "rootfs-diff.tar"

            def edit(member: str, data: bytes) -> bytes:
                if member != "rootfs-diff.tar":
                    return data
                inner = dst.parent / "inner.tar"
                inner.write_bytes(data)
                _rewrite_tar(inner, diff, lambda _m, d: d, extra)
                return diff.read_bytes()

            _rewrite_tar(src, dst, edit)

    hostile = _tamper(good, tmp_path / "hostile.ctk", tmp_path / "work", members=members)
    stderr = _import_refused(engine, hostile, containers.name("link"))
    assert "below a symlink" in stderr


def test_manifest_network_host_is_refused(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    """A manifest edited to say network=host: refused on both engines (exit 8), nothing made.

    On Podman the payload also has a network namespace of its own, so inspect would lie; on
    Docker, whose container is made from the manifest, it would share the host's network.
    Either way an archive gets the host's network only with --allow-host-network.
    """
    good = _export(engine, containers, tmp_path)

    def manifest(m: ArchiveManifest) -> ArchiveManifest:
        return dataclasses.replace(m, spec={**m.spec, "network": "host"})

    hostile = _tamper(good, tmp_path / "hostile.ctk", tmp_path / "work", manifest=manifest)
    stderr = _import_refused(engine, hostile, containers.name("net"))
    assert "network=host" in stderr
    assert "--allow-host-network" in stderr


def test_host_network_archive_needs_allow_host_network(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    """A genuine archive of a host-network container: refused without the flag, restored with."""
    from tests.integration.conftest import counter_command, free_port
    from tests.integration.test_network_checkpoint import _answers_on_loopback

    port = free_port()
    info = containers.run(network="host", command=counter_command(port, "127.0.0.1"))
    assert _answers_on_loopback(port) >= 1
    path = tmp_path / "host.ctk"
    engine.export_checkpoint(info.name, path, ExportOptions(checkpoint=CheckpointOptions()))
    clone = containers.name("hostnet")
    stderr = _import_refused(engine, path, clone)
    assert "--allow-host-network" in stderr
    result = ctk(
        "restore", "--import", str(path), "--name", clone, "--allow-host-network",
        engine=engine.kind,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert engine.inspect(clone).running
    assert _answers_on_loopback(port) >= 1


def test_clashing_member_names_are_exit_8(
    engine: Backend, containers: Containers, tmp_path: Path
) -> None:
    """'a' and 'a/b' both listed (was: unexpected FileExistsError/NotADirectoryError, exit 1)."""
    import hashlib

    name = containers.name("names")
    manifest = {
        "format_version": 1,
        "engine": engine.kind,
        "container_name": name,
        "image": "ctk-demo/counter",
        "checkpoint": "cp1",
        "spec": {"image": "ctk-demo/counter", "name": name},
        "members": [
            {"name": n, "size": 1, "sha256": hashlib.sha256(b"x").hexdigest()} for n in ("a", "a/b")
        ],
    }
    path = tmp_path / "names.tar"
    with tarfile.open(path, "w") as tar:
        for member, data in (
            ("ctk-manifest.json", json.dumps(manifest).encode()),
            ("a", b"x"),
            ("a/b", b"x"),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    _import_refused(engine, path, name)


def test_bind_mount_needs_allow_mount(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path
) -> None:
    """A bind mount is the host's directory: exported and imported only when the user names it.

    Without --allow-mount the export is refused before anything is frozen (exit 6), the
    container left running; with it the archive names the path (its content is not carried)
    and the import asks for the same choice.
    """
    from toolkit.models import Mount

    data = tmp_path / "data"
    data.mkdir()
    (data / "kept").write_text("host file\n")
    info = containers.run(volumes=(Mount(target="/data", source=str(data), type="bind"),))
    wait_count_at_least(engine, info.name, 1)
    path = tmp_path / "bind.ctk"
    result = ctk("checkpoint", info.name, "--export", str(path), engine=engine.kind)
    assert result.returncode == ExitCode.UNSUPPORTED, result.stderr
    assert f"bind-mounts the host's {data} at /data" in result.stderr
    assert f"--allow-mount {data}" in result.stderr
    assert engine.inspect(info.name).running
    assert not path.exists()
    ctk(
        "checkpoint", info.name, "--export", str(path), "--leave-running",
        "--allow-mount", str(data), engine=engine.kind, check=True,
    )  # fmt: skip
    clone = containers.name("bind")
    stderr = _import_refused(engine, path, clone)
    assert f"--allow-mount {data}" in stderr
    result = ctk(
        "restore", "--import", str(path), "--name", clone, "--allow-mount", str(data),
        engine=engine.kind,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert engine.inspect(clone).running
    shown = subprocess.run(
        [engine.kind, "exec", clone, "cat", "/data/kept"], capture_output=True, text=True
    )
    assert shown.stdout == "host file\n"
