"""CLI of signed archives, with no engine: ``ctk key generate``, ``--sign``, ``--verify`` and
the config's ``[trust]``, each refusal made before any engine is contacted."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests import tamper
from tests.conftest import ctk
from toolkit import archive
from toolkit.archive import signing
from toolkit.errors import ExitCode
from toolkit.models import ArchiveManifest

NOWHERE = "docker+unix:///nonexistent/docker.sock"


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def _archive(tmp_path: Path, key: Path | None, name: str) -> Path:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"x" * 100)
    manifest = ArchiveManifest(
        format_version=1, engine="docker", engine_version="26", criu_version="4.1.1",
        container_id="abc", container_name="web1", image="ctk-demo/counter",
        image_id="sha256:" + "0" * 64, checkpoint="cp1", created="2026-12-01T00:00:00+00:00",
    )  # fmt: skip
    dest = tmp_path / name
    signer = signing.load_signing_key(key) if key is not None else None
    archive.write_archive(dest, manifest, [("p", payload)], signing_key=signer)
    return dest


def _config(home: Path, text: str) -> None:
    (home / "ctk").mkdir(parents=True, exist_ok=True)
    (home / "ctk" / "config.toml").write_text(text)


def _one_line_error(stderr: str) -> None:
    lines = stderr.strip().splitlines()
    assert lines[0].startswith("Error: ") and lines[1].startswith("Hint: "), stderr
    assert "Traceback" not in stderr


def test_key_generate(tmp_path: Path) -> None:
    out = tmp_path / "k.key"
    result = ctk("key", "generate", "--out", str(out), check=True)
    key_id = result.stdout.strip()
    assert key_id == signing.load_public_key(tmp_path / "k.key.pub").key_id
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    again = ctk("key", "generate", "--out", str(out))
    assert again.returncode == ExitCode.CONFLICT
    _one_line_error(again.stderr)
    data = json.loads(
        ctk("--json", "key", "generate", "--out", str(tmp_path / "j"), check=True).stdout
    )
    assert data["public_key"] == str(tmp_path / "j.pub") and len(data["key_id"]) == 16


def test_key_generate_default_path(config_home: Path) -> None:
    ctk("key", "generate", check=True)
    assert (config_home / "ctk" / "keys" / "signing.key").is_file()
    assert (config_home / "ctk" / "keys" / "signing.key.pub").is_file()


def test_sign_and_verify_need_their_files(tmp_path: Path) -> None:
    result = ctk("checkpoint", "web1", "--sign", "k.key", engine=NOWHERE)
    assert result.returncode == ExitCode.USAGE and "--export" in result.stderr
    result = ctk("restore", "web1", "--verify", "k.pub", engine=NOWHERE)
    assert result.returncode == ExitCode.USAGE and "--import" in result.stderr
    result = ctk("checkpoint", "web1", "--every", "1m", "--sign", "k.key", engine=NOWHERE)
    assert result.returncode == ExitCode.USAGE


def test_bad_signing_key_before_engine(tmp_path: Path, config_home: Path) -> None:
    dest = tmp_path / "x.ctk"
    result = ctk(
        "checkpoint", "web1", "--export", str(dest), "--sign", str(tmp_path / "no.key"),
        engine=NOWHERE,
    )  # fmt: skip
    assert result.returncode == ExitCode.NOT_FOUND, result.stderr
    _one_line_error(result.stderr)
    loose, _, _ = signing.generate_key(tmp_path / "loose.key")
    loose.chmod(0o640)
    result = ctk("checkpoint", "web1", "--export", str(dest), "--sign", str(loose), engine=NOWHERE)
    assert result.returncode == ExitCode.USAGE and "chmod 600" in result.stderr
    # the config's default signing key is used, and checked before the engine too
    _config(config_home, f'[trust]\nsigning_key = "{tmp_path / "gone.key"}"\n')
    result = ctk("checkpoint", "web1", "--export", str(dest), engine=NOWHERE)
    assert result.returncode == ExitCode.NOT_FOUND, result.stderr
    assert "gone.key" in result.stderr
    assert not dest.exists()


def test_verify_refuses_before_engine(tmp_path: Path) -> None:
    private, public, _ = signing.generate_key(tmp_path / "a")
    _, other_public, _ = signing.generate_key(tmp_path / "b")
    unsigned = _archive(tmp_path, None, "unsigned.ctk")
    signed = _archive(tmp_path, private, "signed.ctk")
    forged = tmp_path / "forged.ctk"
    tamper.rewrite(signed, forged, manifest=lambda doc: doc.update(container_name="evil"))
    for path, pub, message in (
        (unsigned, public, "is not signed"),
        (signed, other_public, "which is not trusted"),
        (forged, public, "does not match its manifest"),
    ):
        result = ctk("restore", "--import", str(path), "--verify", str(pub), engine=NOWHERE)
        assert result.returncode == ExitCode.ARCHIVE_INVALID, result.stderr
        assert message in result.stderr
        _one_line_error(result.stderr)
    # the right key passes the signature check and goes on to the (missing) engine
    result = ctk("restore", "--import", str(signed), "--verify", str(public), engine=NOWHERE)
    assert result.returncode == ExitCode.ENGINE_UNAVAILABLE, result.stderr


def test_config_refuses_unsigned_imports(tmp_path: Path, config_home: Path) -> None:
    private, public, _ = signing.generate_key(tmp_path / "trusted")
    other, _, _ = signing.generate_key(tmp_path / "other")
    _config(config_home, f'[trust]\nrequire_signed = true\ntrusted_keys = ["{public}"]\n')
    for path, message in (
        (_archive(tmp_path, None, "unsigned.ctk"), "is not signed"),
        (_archive(tmp_path, other, "other.ctk"), "which is not trusted"),
    ):
        result = ctk("restore", "--import", str(path), engine=NOWHERE)
        assert result.returncode == ExitCode.ARCHIVE_INVALID, result.stderr
        assert message in result.stderr and "[trust]" in result.stderr
        _one_line_error(result.stderr)
    trusted = _archive(tmp_path, private, "trusted.ctk")
    result = ctk("restore", "--import", str(trusted), engine=NOWHERE)
    assert result.returncode == ExitCode.ENGINE_UNAVAILABLE, result.stderr
    _config(config_home, "[trust]\nrequire_signed = true\n")
    result = ctk("restore", "--import", str(trusted), engine=NOWHERE)
    assert result.returncode == ExitCode.USAGE and "trusted_keys" in result.stderr


def test_inspect_signature_line() -> None:
    from toolkit.archive.signing import SignatureStatus
    from toolkit.cli.checkpoints import _signature_line

    assert _signature_line(SignatureStatus(signed=False)).startswith("none")
    bad = SignatureStatus(signed=True, key_id="ab" * 8, algorithm="ed25519", valid=False)
    assert _signature_line(bad).startswith("INVALID")
    good = SignatureStatus(
        signed=True, key_id="ab" * 8, algorithm="ed25519", valid=True, trusted_key="/k.pub"
    )
    assert _signature_line(good) == f"ed25519 by key {'ab' * 8} (trusted key /k.pub)"
