"""Signed archives on both engines: a signed export imports with --verify and the counter
continues; a forged archive (manifest edited, checksums recomputed), an unsigned one under
``[trust] require_signed`` and one signed by another key are refused with exit 8 and
nothing is created."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests import tamper
from tests.conftest import Containers, counts, ctk, last_count, wait_count_at_least
from toolkit.archive import signing
from toolkit.backends.base import Backend
from toolkit.errors import ExitCode

pytestmark = [pytest.mark.integration, pytest.mark.criu]


def _names(engine: Backend) -> set[str]:
    return {c.name for c in engine.containers(all=True)}


def _signed_export(
    engine: Backend, containers: Containers, tmp_path: Path, key: Path, *extra: str
) -> tuple[str, Path]:
    info = containers.run()
    wait_count_at_least(engine, info.name, 2)
    path = tmp_path / "web.ctk"
    ctk(
        "checkpoint", info.name, "--export", str(path), "--sign", str(key), *extra,
        engine=engine.kind, check=True,
    )  # fmt: skip
    return info.name, path


def test_signed_export_imports_with_verify_and_continues(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path, config_home: Path
) -> None:
    private, public, key_id = signing.generate_key(tmp_path / "k.key")
    name, path = _signed_export(engine, containers, tmp_path, private)
    assert signing.signature_status(path).key_id == key_id
    at = last_count(engine, name)
    engine.remove(name, force=True)
    result = ctk(
        "restore", "--import", str(path), "--verify", str(public), engine=engine.kind, check=True
    )
    assert result.stdout.strip() == name
    wait_count_at_least(engine, name, at + 2)
    values = counts(engine, name)
    assert values == sorted(set(values)) and values[-1] > at, values
    data = json.loads(
        ctk("--json", "checkpoint", "inspect", str(path), engine=engine.kind, check=True).stdout
    )
    assert data["signature"]["signed"] and data["signature"]["valid"]
    assert data["signature"]["key_id"] == key_id


def _evil_env(doc: dict[str, Any]) -> None:
    doc["spec"]["env"]["LD_PRELOAD"] = "/tmp/evil.so"


def test_forged_signed_archive_creates_nothing(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path, config_home: Path
) -> None:
    private, public, _ = signing.generate_key(tmp_path / "k.key")
    _, other_public, _ = signing.generate_key(tmp_path / "other.key")
    name, path = _signed_export(engine, containers, tmp_path, private, "--leave-running")
    engine.remove(name, force=True)
    forged = tmp_path / "forged.ctk"
    tamper.rewrite(path, forged, manifest=_evil_env)
    cases = (
        (forged, ("--verify", str(public)), "does not match its manifest"),
        (forged, (), "does not match its manifest"),  # a signature is checked even unasked
        (path, ("--verify", str(other_public)), "which is not trusted"),
    )
    for archive_path, args, message in cases:
        result = ctk("restore", "--import", str(archive_path), *args, engine=engine.kind)
        assert result.returncode == ExitCode.ARCHIVE_INVALID, result.stderr
        assert message in result.stderr and "Hint:" in result.stderr
        assert "Traceback" not in result.stderr
        assert name not in _names(engine)


def test_require_signed_refuses_unsigned_import(
    engine: Backend, containers: Containers, criu: None, tmp_path: Path, config_home: Path
) -> None:
    private, public, _ = signing.generate_key(tmp_path / "k.key")
    info = containers.run()
    wait_count_at_least(engine, info.name, 2)
    unsigned = tmp_path / "unsigned.ctk"
    ctk(
        "checkpoint", info.name, "--export", str(unsigned), "--leave-running",
        engine=engine.kind, check=True,
    )  # fmt: skip
    (config_home / "ctk").mkdir(parents=True)
    (config_home / "ctk" / "config.toml").write_text(
        f'[trust]\nrequire_signed = true\ntrusted_keys = ["{public}"]\nsigning_key = "{private}"\n'
    )
    clone = containers.name("clone")
    result = ctk("restore", "--import", str(unsigned), "--name", clone, engine=engine.kind)
    assert result.returncode == ExitCode.ARCHIVE_INVALID, result.stderr
    assert "is not signed" in result.stderr and "Hint:" in result.stderr
    assert clone not in _names(engine)
    # the configured signing_key signs --export by default, and that archive imports
    signed = tmp_path / "signed.ctk"
    ctk(
        "checkpoint", info.name, "--export", str(signed), "--leave-running",
        engine=engine.kind, check=True,
    )  # fmt: skip
    assert signing.signature_status(signed).trusted_key == str(public)
    ctk("restore", "--import", str(signed), "--name", clone, engine=engine.kind, check=True)
    assert engine.inspect(clone).running
