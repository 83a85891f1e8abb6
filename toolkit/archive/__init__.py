"""The ctk checkpoint archive: one file format for Docker and Podman checkpoints.

A ctk archive is a tar (zstd, gzip or not compressed) whose first member is
``ctk-manifest.json`` (:class:`~toolkit.models.ArchiveManifest`: format version, engine, CRIU
version, container spec, image ID, and a sha256 for every other member), followed, in a signed
archive, by ``ctk-signature.json`` (:mod:`toolkit.archive.signing`), then by the engine's
payload files. Writers stage the payload, then write the archive to a temporary file
beside the destination, fsync it and rename it, so the destination only ever appears complete.
Readers verify everything (names, types, sizes, checksums, format version) while extracting
into a private temporary directory, before any container is touched.
"""

from toolkit.archive.compression import detect_compression, validate_compression
from toolkit.archive.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    manifest_from_dict,
    manifest_to_json,
    spec_from_dict,
)
from toolkit.archive.payload import (
    PayloadPolicy,
    check_container_spec,
    check_deleted_paths,
    check_podman_payload,
    rewrite_podman_volumes,
    split_podman_volumes,
)
from toolkit.archive.reader import (
    VerifiedArchive,
    check_member_name,
    check_nested_tar,
    iter_nested_tar,
    open_archive,
    read_manifest,
)
from toolkit.archive.signing import (
    SIGNATURE_NAME,
    TrustPolicy,
    export_signer,
    generate_key,
    import_trust,
    load_public_key,
    load_signing_key,
    signature_status,
)
from toolkit.archive.writer import (
    check_destination,
    no_space,
    staging_dir,
    write_archive,
    write_stream,
)

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SIGNATURE_NAME",
    "PayloadPolicy",
    "TrustPolicy",
    "VerifiedArchive",
    "check_container_spec",
    "check_deleted_paths",
    "check_destination",
    "check_member_name",
    "check_nested_tar",
    "check_podman_payload",
    "detect_compression",
    "export_signer",
    "generate_key",
    "import_trust",
    "iter_nested_tar",
    "load_public_key",
    "load_signing_key",
    "manifest_from_dict",
    "manifest_to_json",
    "no_space",
    "open_archive",
    "read_manifest",
    "rewrite_podman_volumes",
    "signature_status",
    "spec_from_dict",
    "split_podman_volumes",
    "staging_dir",
    "validate_compression",
    "write_archive",
    "write_stream",
]
