"""Signed ctk archives: one ed25519 signature over the manifest authenticates the whole file.

The manifest lists the size and sha256 of every other member, and the reader compares each
member with it, so a signature over the manifest's exact bytes covers everything. A signed
archive carries ``ctk-signature.json`` as its second member, right after the manifest::

    {"format": 1, "algorithm": "ed25519", "key_id": "...", "public_key": "<base64>",
     "signature": "<base64>"}

The signed message is :data:`DOMAIN` followed by the manifest bytes; the prefix keeps a
signature made for anything else with the same key from passing as an archive signature.
``public_key`` is informational (``checkpoint inspect`` checks the signature against it):
trust comes only from the keys the importer names (``--verify``, ``[trust] trusted_keys``).

Keys are files: a private key (PKCS#8 PEM, or an OpenSSH ed25519 key), readable by its owner
only, and its public key (PEM, or an OpenSSH ``ssh-ed25519`` line). A key's id is the first 16
hex digits of the sha256 of its raw 32 public bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from toolkit.errors import ArchiveError, Conflict, InvalidArgument, NotFound

SIGNATURE_NAME = "ctk-signature.json"
SIGNATURE_FORMAT = 1
ALGORITHM = "ed25519"
DOMAIN = b"ctk-archive-manifest-signature-v1\x00"
MAX_SIGNATURE_BYTES = 64 * 1024
DEFAULT_KEY_NAME = "signing.key"
INLINE_PREFIX = "ed25519:"

_TAMPER_HINT = (
    "the archive was altered after it was signed, or is not the one you expect: do not use it"
)


def key_id(raw_public: bytes) -> str:
    """The short fingerprint ctk prints for a public key."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


@dataclass(frozen=True)
class PublicKey:
    """An ed25519 public key and where it came from."""

    key_id: str
    raw: bytes
    path: str = ""

    @property
    def spec(self) -> str:
        """The key inline, as :func:`load_public_key` accepts it instead of a file."""
        return INLINE_PREFIX + base64.b64encode(self.raw).decode()

    def verify(self, signature: bytes, manifest_bytes: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, DOMAIN + manifest_bytes)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """A loaded ed25519 private key (``key`` is cryptography's Ed25519PrivateKey)."""

    key_id: str
    path: str
    key: Any

    def public_key(self) -> PublicKey:
        raw = _raw_public(self.key.public_key())
        return PublicKey(key_id=self.key_id, raw=raw, path=self.path)

    def signature_member(self, manifest_bytes: bytes) -> bytes:
        """The content of ``ctk-signature.json`` for these manifest bytes."""
        from cryptography.hazmat.primitives import serialization

        raw = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        signature = self.key.sign(DOMAIN + manifest_bytes)
        data = {
            "format": SIGNATURE_FORMAT,
            "algorithm": ALGORITHM,
            "key_id": self.key_id,
            "public_key": base64.b64encode(raw).decode(),
            "signature": base64.b64encode(signature).decode(),
        }
        return json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"


@dataclass(frozen=True)
class Signature:
    """A parsed ``ctk-signature.json``."""

    key_id: str
    algorithm: str
    public_key: PublicKey
    signature: bytes


@dataclass(frozen=True)
class TrustPolicy:
    """Which signatures an import accepts.

    ``required``: an unsigned archive is refused, and a signed one must be signed by one of
    ``keys``. ``source`` says where the keys came from, for the error's hint.
    """

    keys: tuple[PublicKey, ...] = ()
    required: bool = False
    source: str = ""


# -- keys ---------------------------------------------------------------------------------


def _read_key_file(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise NotFound(f"no such {what} file: {path}", hint="make one: ctk key generate") from exc
    except OSError as exc:
        raise InvalidArgument(f"cannot read {what} file {path}: {exc.strerror}") from exc


def _raw_public(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    raw: bytes = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """An ed25519 public key from a PEM or OpenSSH (``ssh-ed25519 ...``) file, or given
    inline as ``ed25519:<base64 of the 32 raw bytes>`` (:attr:`PublicKey.spec`).

    Raises:
        NotFound: no such file.
        InvalidArgument: not an ed25519 public key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = os.fspath(path)
    if text.startswith(INLINE_PREFIX):
        try:
            raw = base64.b64decode(text[len(INLINE_PREFIX) :], validate=True)
        except binascii.Error as exc:
            raise InvalidArgument(f"bad inline public key {text!r}") from exc
        if len(raw) != 32:
            raise InvalidArgument(f"bad inline public key {text!r}: not 32 bytes")
        return PublicKey(key_id=key_id(raw), raw=raw, path=text)
    data = _read_key_file(path, "public key")
    key: Any
    try:
        if data.lstrip().startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(data.strip())
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidArgument(
            f"{path} is not a public key file",
            hint="give the .pub file that ctk key generate wrote (PEM or ssh-ed25519)",
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidArgument(f"{path} is not an ed25519 key", hint="ctk signs with ed25519 keys")
    raw = _raw_public(key)
    return PublicKey(key_id=key_id(raw), raw=raw, path=str(path))


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    """An ed25519 private key from a PEM (PKCS#8) or OpenSSH file readable by its owner only.

    Raises:
        NotFound: no such file.
        InvalidArgument: group or others may read it, it is encrypted, or not an ed25519 key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read_key_file(path, "private key")
    mode = stat.S_IMODE(Path(path).stat().st_mode)
    if mode & 0o077:
        # As ssh does: a key others can read may have been copied, so its signatures prove
        # little; refusing it makes the mistake visible.
        raise InvalidArgument(
            f"private key {path} is readable by others (mode {mode:o})",
            hint=f"chmod 600 {path}",
        )
    key: Any
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise InvalidArgument(
            f"private key {path} is encrypted", hint="ctk reads unencrypted keys only"
        ) from exc
    except (ValueError, binascii.Error) as exc:
        raise InvalidArgument(
            f"{path} is not a private key file",
            hint="give the key file that ctk key generate wrote, not the .pub",
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidArgument(f"{path} is not an ed25519 key", hint="ctk signs with ed25519 keys")
    return SigningKey(key_id=key_id(_raw_public(key.public_key())), path=str(path), key=key)


def public_path(private: str | os.PathLike[str]) -> Path:
    """Where the public key of a private key file lives: the same name plus ``.pub``."""
    return Path(f"{os.fspath(private)}.pub")


def default_key_path() -> Path:
    """``$XDG_CONFIG_HOME/ctk/keys/signing.key``."""
    from toolkit.config import config_path

    return config_path().parent / "keys" / DEFAULT_KEY_NAME


def generate_key(path: str | os.PathLike[str] | None = None) -> tuple[Path, Path, str]:
    """Write a new ed25519 private key (mode 0600) at ``path`` and its public key beside it.

    Returns:
        The private key's path, the public key's path (``PATH.pub``) and the key id.

    Raises:
        Conflict: either file exists (keys are never overwritten).
        InvalidArgument: the directory cannot be written.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Path(path) if path is not None else default_key_path()
    public = public_path(private)
    for target in (private, public):
        if target.exists() or target.is_symlink():
            raise Conflict(
                f"{target} exists already; ctk never overwrites a key",
                hint="give another file with --out PATH, or remove the old key first",
            )
    if path is None:
        private.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private, pem, 0o600)
    try:
        _write_new(public, pub, 0o644)
    except BaseException:
        private.unlink(missing_ok=True)
        raise
    return private, public, key_id(_raw_public(key.public_key()))


def _write_new(path: Path, data: bytes, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError as exc:
        raise Conflict(f"{path} exists already; ctk never overwrites a key") from exc
    except OSError as exc:
        raise InvalidArgument(f"cannot write {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), mode)  # the umask must not loosen nor tighten it
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


# -- policy (config) ----------------------------------------------------------------------


def _trust_config() -> dict[str, Any]:
    from toolkit.config import config_path, load_config

    section = load_config().get("trust") or {}
    if not isinstance(section, dict):
        raise InvalidArgument(f"[trust] in {config_path()} is not a table")
    return section


def configured_signing_key() -> str | None:
    """``[trust] signing_key`` of the config file: the default key of ``--export``."""
    value = _trust_config().get("signing_key")
    return str(Path(str(value)).expanduser()) if value else None


def import_trust(verify_keys: Sequence[str] = ()) -> TrustPolicy:
    """The policy of an import: the keys given (``--verify``), else the config's ``[trust]``.

    With ``require_signed = true``, an import accepts only archives signed by one of
    ``trusted_keys``; without it and without ``verify_keys``, signatures are checked only for
    consistency.

    Raises:
        InvalidArgument: a key file is unusable, or ``require_signed`` without trusted keys.
        NotFound: a key file does not exist.
    """
    from toolkit.config import config_path

    if verify_keys:
        keys = tuple(load_public_key(os.path.expanduser(k)) for k in verify_keys)
        return TrustPolicy(keys=keys, required=True, source="--verify")
    section = _trust_config()
    if not section.get("require_signed"):
        return TrustPolicy()
    trusted = section.get("trusted_keys") or []
    if isinstance(trusted, str) or not isinstance(trusted, list) or not trusted:
        raise InvalidArgument(
            f"{config_path()} sets [trust] require_signed but lists no trusted_keys",
            hint='add trusted_keys = ["/path/to/key.pub"] to [trust]',
        )
    keys = tuple(load_public_key(os.path.expanduser(str(k))) for k in trusted)
    return TrustPolicy(keys=keys, required=True, source=f"[trust] trusted_keys in {config_path()}")


# -- reading ------------------------------------------------------------------------------


def parse_signature(data: bytes, where: str) -> Signature:
    """Parse the content of ``ctk-signature.json``.

    Raises:
        ArchiveError: malformed, another algorithm, or a key id that is not its key's.
    """
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != SIGNATURE_FORMAT:
            raise ValueError("unknown signature format")
        algorithm = doc.get("algorithm")
        if algorithm != ALGORITHM:
            raise ValueError(f"unknown algorithm {algorithm!r}")
        raw = base64.b64decode(str(doc["public_key"]), validate=True)
        signature = base64.b64decode(str(doc["signature"]), validate=True)
        claimed = str(doc["key_id"])
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise ArchiveError(
            f"{where}: malformed {SIGNATURE_NAME}: {exc}", hint=_TAMPER_HINT
        ) from exc
    if len(raw) != 32 or len(signature) != 64 or key_id(raw) != claimed:
        raise ArchiveError(f"{where}: malformed {SIGNATURE_NAME}", hint=_TAMPER_HINT)
    return Signature(
        key_id=claimed,
        algorithm=algorithm,
        public_key=PublicKey(key_id=claimed, raw=raw),
        signature=signature,
    )


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo, where: str) -> bytes:
    if not info.isfile() or info.size > MAX_SIGNATURE_BYTES:
        raise ArchiveError(
            f"{where}: {SIGNATURE_NAME} is not a small plain file", hint=_TAMPER_HINT
        )
    handle: IO[bytes] | None = tar.extractfile(info)
    data = handle.read() if handle else b""
    if len(data) != info.size:
        raise ArchiveError(f"{where}: {SIGNATURE_NAME} is truncated", hint=_TAMPER_HINT)
    return data


def check_signature(
    signature: Signature, manifest_bytes: bytes, trust: TrustPolicy, where: str
) -> PublicKey:
    """The key that made ``signature`` over ``manifest_bytes``, as ``trust`` demands.

    Raises:
        ArchiveError: the signer is not trusted, or the signature does not match.
    """
    key = signature.public_key
    if trust.keys:
        matches = [k for k in trust.keys if k.key_id == signature.key_id and k.raw == key.raw]
        if not matches:
            given = ", ".join(k.key_id for k in trust.keys)
            raise ArchiveError(
                f"{where} is signed by key {signature.key_id}, which is not trusted "
                f"(trusted: {given})",
                hint=f"check where the archive came from; trusted keys come from {trust.source}",
            )
        key = matches[0]
    if not key.verify(signature.signature, manifest_bytes):
        raise ArchiveError(
            f"the signature of {where} (key {signature.key_id}) does not match its manifest",
            hint=_TAMPER_HINT,
        )
    return key


class SignatureGate:
    """The reader's signature check, fed each member after the manifest in archive order.

    The signature may only be the member right after the manifest; when ``trust`` requires
    one, the first other member is refused unless a valid signature came first, so nothing
    is extracted from an archive before its signature is verified.
    """

    def __init__(self, trust: TrustPolicy | None, where: str) -> None:
        self.trust = trust or TrustPolicy()
        self.where = where
        self.manifest_bytes = b""
        self.signed_by: PublicKey | None = None
        self._position = 0

    def begin(self, manifest_bytes: bytes) -> None:
        self.manifest_bytes = manifest_bytes

    def take(self, tar: tarfile.TarFile, info: tarfile.TarInfo) -> bool:
        """True when ``info`` was the signature (now verified); else checks one is not owed.

        Raises:
            ArchiveError: a misplaced, invalid or untrusted signature, or a missing one.
        """
        position, self._position = self._position, self._position + 1
        if info.name == SIGNATURE_NAME:
            if position != 0:
                raise ArchiveError(
                    f"{self.where}: {SIGNATURE_NAME} is not right after the manifest",
                    hint=_TAMPER_HINT,
                )
            signature = parse_signature(_read_member(tar, info, self.where), self.where)
            self.signed_by = check_signature(signature, self.manifest_bytes, self.trust, self.where)
            return True
        self.finish()
        return False

    def finish(self) -> None:
        """Raise when the policy wants a signature and none was verified.

        Raises:
            ArchiveError: the archive is not signed.
        """
        if self.trust.required and self.signed_by is None:
            raise ArchiveError(
                f"{self.where} is not signed, and {self.trust.source} asks for a signature",
                hint="export it with: ctk checkpoint NAME --export FILE --sign KEY",
            )


@dataclass(frozen=True)
class SignatureStatus:
    """What ``checkpoint inspect`` says about an archive's signature."""

    signed: bool
    key_id: str = ""
    algorithm: str = ""
    valid: bool = False
    trusted_key: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "signed": self.signed,
            "key_id": self.key_id,
            "algorithm": self.algorithm,
            "valid": self.valid,
            "trusted_key": self.trusted_key,
        }


def _read_head(path: Path) -> tuple[bytes, Signature | None]:
    """The manifest's bytes and the parsed signature (None: unsigned); reads two members."""
    # Late import: the reader imports this module for SignatureGate.
    from toolkit.archive import reader
    from toolkit.archive.compression import decompressing

    with reader._open_file(path) as raw:
        try:
            with (
                decompressing(raw) as (_compression, stream),
                tarfile.open(fileobj=stream, mode="r|") as tar,
            ):
                _manifest, manifest_bytes = reader._read_manifest_head(tar, path)
                info = tar.next()
                if info is None or info.name != SIGNATURE_NAME:
                    return manifest_bytes, None
                data = _read_member(tar, info, str(path))
        except reader._decode_errors() as exc:
            raise ArchiveError(
                f"archive {path} is truncated or corrupt: {exc}",
                hint="the file is damaged, incomplete or altered: export the checkpoint again",
            ) from exc
    return manifest_bytes, parse_signature(data, str(path))


def check_head(path: str | os.PathLike[str], trust: TrustPolicy) -> None:
    """Check the signature of an archive against ``trust`` from its first two members only.

    A fast refusal before any engine is contacted; the reader checks it again, authoritatively,
    while it extracts.

    Raises:
        NotFound: no such file.
        ArchiveError: unsigned while a signature is required, untrusted signer, or a signature
            that does not match the manifest.
    """
    archive = Path(path)
    manifest_bytes, signature = _read_head(archive)
    gate = SignatureGate(trust, str(archive))
    if signature is not None:
        gate.signed_by = check_signature(signature, manifest_bytes, gate.trust, str(archive))
    gate.finish()


def signature_status(path: str | os.PathLike[str]) -> SignatureStatus:
    """Whether an archive is signed, by which key id, whether the signature matches its
    manifest, and which configured trusted key (if any) made it. Reads two members only.

    Raises:
        NotFound: no such file.
        ArchiveError: not a ctk archive, or a malformed signature member.
    """
    manifest_bytes, signature = _read_head(Path(path))
    if signature is None:
        return SignatureStatus(signed=False)
    valid = signature.public_key.verify(signature.signature, manifest_bytes)
    trusted = ""
    if valid:
        for entry in _trust_config().get("trusted_keys") or []:
            try:
                key = load_public_key(os.path.expanduser(str(entry)))
            except (NotFound, InvalidArgument):
                continue
            if key.raw == signature.public_key.raw:
                trusted = key.path
                break
    return SignatureStatus(
        signed=True,
        key_id=signature.key_id,
        algorithm=signature.algorithm,
        valid=valid,
        trusted_key=trusted,
    )


def export_signer(sign_key: str | None) -> SigningKey | None:
    """The loaded key of ``ExportOptions.sign_key`` (None: unsigned). Called before the
    container is touched, so a bad key never costs a checkpoint.

    Raises:
        NotFound, InvalidArgument: the key file is missing or unusable.
    """
    return load_signing_key(Path(sign_key).expanduser()) if sign_key else None
