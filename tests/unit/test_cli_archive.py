"""CLI of checkpoint archives, with no engine: parsing, and refusals before any engine call."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from tests.conftest import ctk
from toolkit.errors import ExitCode

NOWHERE = "docker+unix:///nonexistent/docker.sock"


def test_restore_needs_name_or_import() -> None:
    result = ctk("restore", engine=NOWHERE)
    assert result.returncode == ExitCode.USAGE
    assert "--import" in result.stderr
    result = ctk("restore", "web1", "--name", "web2", engine=NOWHERE)
    assert result.returncode == ExitCode.USAGE
    result = ctk("restore", "web1", "--import", "f.ctk", engine=NOWHERE)
    assert result.returncode == ExitCode.USAGE


def test_compress_needs_export() -> None:
    result = ctk("checkpoint", "web1", "--compress", "gzip", engine=NOWHERE)
    assert result.returncode == ExitCode.USAGE
    assert "--export" in result.stderr


def test_unknown_compression_before_engine(tmp_path: Path) -> None:
    path = tmp_path / "x.ctk"
    result = ctk("checkpoint", "web1", "--export", str(path), "--compress", "lz4", engine=NOWHERE)
    assert result.returncode == ExitCode.USAGE
    assert "Hint: use one of: zstd, gzip, none" in result.stderr
    assert not path.exists()


def test_inspect_refuses_without_engine(tmp_path: Path) -> None:
    result = ctk("checkpoint", "inspect", str(tmp_path / "missing.ctk"))
    assert result.returncode == ExitCode.NOT_FOUND
    evil = tmp_path / "evil.tar"
    manifest = json.dumps({"format_version": 1, "members": []}).encode()
    with tarfile.open(evil, "w") as tar:
        for name, data in (("ctk-manifest.json", manifest), ("../x", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    result = ctk("checkpoint", "inspect", str(evil))
    assert result.returncode == ExitCode.ARCHIVE_INVALID
    assert "climbs out" in result.stderr and "Hint:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path.parent / "x").exists()


def test_allow_mount_needs_import() -> None:
    result = ctk("restore", "web1", "--allow-mount", "/srv", engine=NOWHERE)
    assert result.returncode == ExitCode.USAGE
    assert "--allow-host-network need --import" in result.stderr
    assert "--allow-mount" in result.stderr


def test_volume_options_need_export_or_import(tmp_path: Path) -> None:
    for args in (("--ignore-volumes",), ("--allow-mount", "/srv")):
        result = ctk("checkpoint", "web1", *args, engine=NOWHERE)
        assert result.returncode == ExitCode.USAGE, result.stderr
        assert "need --export FILE" in result.stderr
    result = ctk("restore", "web1", "--ignore-volumes", engine=NOWHERE)
    assert result.returncode == ExitCode.USAGE
    assert "--ignore-volumes" in result.stderr


def test_allow_mount_takes_an_absolute_host_path(tmp_path: Path) -> None:
    path = tmp_path / "x.ctk"
    for value in ("data", "srv/data", "/srv/../etc"):
        result = ctk(
            "checkpoint", "web1", "--export", str(path), "--allow-mount", value, engine=NOWHERE
        )
        assert result.returncode == ExitCode.USAGE, result.stderr
        assert "not an absolute host path" in result.stderr
        result = ctk("restore", "--import", str(path), "--allow-mount", value, engine=NOWHERE)
        assert result.returncode == ExitCode.USAGE, result.stderr
    result = ctk("migrate", "web1", "--to", NOWHERE, "--allow-mount", "data", engine=NOWHERE)
    assert result.returncode == ExitCode.USAGE, result.stderr
