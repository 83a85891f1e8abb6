"""Signed archives: keys, round trips, and every forged, unsigned or wrongly signed archive
refused (exit 8) before anything is extracted."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests import tamper
from toolkit import archive
from toolkit.archive import reader, signing
from toolkit.errors import ArchiveError, Conflict, InvalidArgument, NotFound
from toolkit.models import ArchiveManifest, ContainerSpec, ExportOptions, ImportOptions

PAYLOAD = b"criu pages " * 1000


def _manifest() -> ArchiveManifest:
    return ArchiveManifest(
        format_version=1,
        engine="podman",
        engine_version="4.3.1",
        criu_version="4.1.1",
        container_id="abc",
        container_name="web1",
        image="ctk-demo/counter",
        image_id="sha256:" + "0" * 64,
        checkpoint="cp1",
        created="2026-11-28T21:00:00+00:00",
        spec=ContainerSpec(image="ctk-demo/counter", name="web1", env={"A": "1"}).to_dict(),
    )


@pytest.fixture(autouse=True)
def _config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def _key(tmp_path: Path, name: str = "k") -> tuple[Path, Path, str]:
    return signing.generate_key(tmp_path / name)


def _signed(tmp_path: Path, key: Path | None, compression: str = "zstd") -> Path:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(PAYLOAD)
    dest = tmp_path / f"a-{compression}.ctk"
    signer = signing.load_signing_key(key) if key is not None else None
    archive.write_archive(
        dest, _manifest(), [("payload.bin", payload)], compression=compression, signing_key=signer
    )
    return dest


def _trust(*pubs: Path) -> signing.TrustPolicy:
    return signing.import_trust(tuple(str(p) for p in pubs))


def _refused(path: Path, trust: signing.TrustPolicy | None, match: str) -> None:
    with (
        pytest.raises(ArchiveError, match=match) as info,
        archive.open_archive(path, trust=trust),
    ):
        pytest.fail("a forged, unsigned or untrusted archive was opened")
    assert info.value.exit_code == 8
    assert info.value.hint
    assert "\n" not in info.value.message


def test_generate_writes_private_0600_and_public(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = os.umask(0)  # a lax umask must not make the private key readable
    try:
        private, public, key_id = _key(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public == tmp_path / "k.pub"
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert len(key_id) == 16 and int(key_id, 16) >= 0
    assert signing.load_public_key(public).key_id == key_id
    assert signing.load_signing_key(private).key_id == key_id
    with pytest.raises(Conflict):
        signing.generate_key(private)
    assert signing.load_signing_key(private).key_id == key_id  # not overwritten


def test_generate_default_path_under_config(_config_home: Path) -> None:
    private, public, _ = signing.generate_key()
    assert private == _config_home / "ctk" / "keys" / "signing.key"
    assert public.is_file()
    assert stat.S_IMODE(private.parent.stat().st_mode) == 0o700


def test_private_key_readable_by_others_refused(tmp_path: Path) -> None:
    private, public, _ = _key(tmp_path)
    private.chmod(0o644)
    with pytest.raises(InvalidArgument, match="readable by others") as info:
        signing.load_signing_key(private)
    assert "chmod 600" in info.value.hint
    with pytest.raises(InvalidArgument, match="not a private key"):
        public.chmod(0o600)
        signing.load_signing_key(public)
    with pytest.raises(InvalidArgument, match="not a public key"):
        private.chmod(0o600)
        signing.load_public_key(private)
    with pytest.raises(NotFound):
        signing.load_public_key(tmp_path / "missing.pub")


def test_openssh_keys_accepted(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = tmp_path / "id_ed25519"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    public = tmp_path / "id_ed25519.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b" me@host\n"
    )
    path = _signed(tmp_path, private)
    with archive.open_archive(path, trust=_trust(public)) as verified:
        assert verified.signed_by == signing.load_public_key(public).key_id


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_round_trip(tmp_path: Path, compression: str) -> None:
    private, public, key_id = _key(tmp_path)
    path = _signed(tmp_path, private, compression)
    names = [n for n, _ in tamper.members(path)]
    assert names[:2] == [archive.MANIFEST_NAME, archive.SIGNATURE_NAME]
    with archive.open_archive(path, trust=_trust(public)) as verified:
        assert verified.signed_by == key_id
        assert verified.member("payload.bin").read_bytes() == PAYLOAD
    # no policy: the signature is still checked against its own key
    with archive.open_archive(path) as verified:
        assert verified.signed_by == key_id
    assert archive.read_manifest(path).container_name == "web1"
    status = signing.signature_status(path)
    assert status.signed and status.valid and status.key_id == key_id


def test_unsigned_archive_still_opens_without_policy(tmp_path: Path) -> None:
    path = _signed(tmp_path, None)
    with archive.open_archive(path) as verified:
        assert verified.signed_by is None
    assert not signing.signature_status(path).signed


def _env(doc: dict[str, Any]) -> None:
    doc["spec"]["env"]["A"] = "evil"


def test_tampered_manifest_with_recomputed_checksums_refused(tmp_path: Path) -> None:
    private, public, _ = _key(tmp_path)
    path = _signed(tmp_path, private)
    forged = tmp_path / "forged.ctk"
    tamper.rewrite(path, forged, manifest=_env)
    _refused(forged, _trust(public), "does not match its manifest")
    _refused(forged, None, "does not match its manifest")  # even with no policy
    assert not signing.signature_status(forged).valid


def test_tampered_payload_with_recomputed_checksums_refused(tmp_path: Path) -> None:
    private, public, _ = _key(tmp_path)
    path = _signed(tmp_path, private)
    forged = tmp_path / "forged.ctk"
    tamper.rewrite(path, forged, member=lambda _name, data: data + b"evil")
    _refused(forged, _trust(public), "does not match its manifest")


def test_wrong_key_refused(tmp_path: Path) -> None:
    private, _public, _ = _key(tmp_path, "a")
    _other_private, other_public, other_id = _key(tmp_path, "b")
    path = _signed(tmp_path, private)
    _refused(path, _trust(other_public), f"not trusted \\(trusted: {other_id}\\)")


def test_resigned_by_attacker_refused(tmp_path: Path) -> None:
    """An attacker re-signs a forged manifest with their own key: only trust stops it."""
    _private, public, _ = _key(tmp_path, "a")
    attacker, _attacker_pub, attacker_id = _key(tmp_path, "evil")
    path = _signed(tmp_path, attacker)
    _refused(path, _trust(public), f"signed by key {attacker_id}, which is not trusted")


def test_missing_signature_refused(tmp_path: Path) -> None:
    private, public, _ = _key(tmp_path)
    unsigned = _signed(tmp_path, None)
    _refused(unsigned, _trust(public), "is not signed")
    stripped = tmp_path / "stripped.ctk"
    tamper.rewrite(_signed(tmp_path, private), stripped, drop_signature=True)
    _refused(stripped, _trust(public), "is not signed")


def test_nothing_extracted_before_the_signature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _private, public, _ = _key(tmp_path)
    extracted: list[str] = []
    real = reader._extract_member
    monkeypatch.setattr(
        reader,
        "_extract_member",
        lambda tar, info, *rest: (extracted.append(info.name), real(tar, info, *rest))[1],
    )
    _refused(_signed(tmp_path, None), _trust(public), "is not signed")
    assert extracted == []


def test_misplaced_or_malformed_signature_refused(tmp_path: Path) -> None:
    private, public, _ = _key(tmp_path)
    items = tamper.members(_signed(tmp_path, private))
    moved = tmp_path / "moved.tar"
    tamper.write_members(moved, [items[0], items[2], items[1]])
    _refused(moved, None, "not right after the manifest")
    garbage = tmp_path / "garbage.tar"
    tamper.write_members(garbage, [items[0], (archive.SIGNATURE_NAME, b"{nope"), items[2]])
    _refused(garbage, _trust(public), "malformed")
    twice = tmp_path / "twice.tar"
    tamper.write_members(twice, [items[0], items[1], items[1], items[2]])
    _refused(twice, _trust(public), "not right after the manifest")


def _config(home: Path, text: str) -> None:
    (home / "ctk").mkdir(parents=True, exist_ok=True)
    (home / "ctk" / "config.toml").write_text(text)


def test_config_require_signed(tmp_path: Path, _config_home: Path) -> None:
    private, public, key_id = _key(tmp_path, "trusted")
    other, _other_pub, _ = _key(tmp_path, "other")
    _config(_config_home, f'[trust]\nrequire_signed = true\ntrusted_keys = ["{public}"]\n')
    policy = signing.import_trust()
    assert policy.required and [k.key_id for k in policy.keys] == [key_id]
    _refused(_signed(tmp_path, None), policy, "is not signed")
    _refused(_signed(tmp_path, other), policy, "not trusted")
    with archive.open_archive(_signed(tmp_path, private), trust=policy) as verified:
        assert verified.signed_by == key_id
    assert signing.signature_status(_signed(tmp_path, private)).trusted_key == str(public)
    # --verify KEY replaces the configured keys
    assert signing.import_trust((str(_other_pub),)).keys[0].key_id != key_id


def test_config_require_signed_without_keys(_config_home: Path) -> None:
    _config(_config_home, "[trust]\nrequire_signed = true\n")
    with pytest.raises(InvalidArgument, match="lists no trusted_keys"):
        signing.import_trust()
    _config(_config_home, "[trust]\nrequire_signed = false\n")
    assert not signing.import_trust().required


def test_config_signing_key(tmp_path: Path, _config_home: Path) -> None:
    assert signing.configured_signing_key() is None
    _config(_config_home, '[trust]\nsigning_key = "~/k.key"\n')
    assert signing.configured_signing_key() == str(Path("~/k.key").expanduser())


def test_check_head(tmp_path: Path) -> None:
    private, public, _ = _key(tmp_path)
    signing.check_head(_signed(tmp_path, private), _trust(public))
    with pytest.raises(ArchiveError, match="is not signed"):
        signing.check_head(_signed(tmp_path, None), _trust(public))
    forged = tmp_path / "forged.ctk"
    tamper.rewrite(_signed(tmp_path, private), forged, manifest=_env)
    with pytest.raises(ArchiveError, match="does not match"):
        signing.check_head(forged, _trust(public))


def test_options_fields_are_keyword_only() -> None:
    assert ExportOptions(sign_key="k").sign_key == "k"
    assert ImportOptions(verify_keys=("k.pub",)).verify_keys == ("k.pub",)
    with pytest.raises(TypeError):
        ExportOptions(ExportOptions().checkpoint, "zstd", "k")  # type: ignore[misc]
    assert "sign_key" in ExportOptions().to_dict()
    assert ImportOptions().to_dict()["verify_keys"] == []


def test_export_signer_fails_early(tmp_path: Path) -> None:
    assert signing.export_signer(None) is None
    with pytest.raises(NotFound):
        signing.export_signer(str(tmp_path / "missing.key"))
