"""The ctk checkpoint archive: one file format for Docker and Podman checkpoints.

A ctk archive is a tar (zstd, gzip or not compressed) whose first member is
``ctk-manifest.json`` (:class:`~toolkit.models.ArchiveManifest`: format version, engine, CRIU
version, container spec, image ID, and a sha256 for every other member), followed by the
engine's payload files. Writers stage the payload, then write the archive to a temporary file
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
from toolkit.archive.reader import (
    VerifiedArchive,
    check_member_name,
    check_nested_tar,
    open_archive,
    read_manifest,
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
    "VerifiedArchive",
    "check_destination",
    "check_member_name",
    "check_nested_tar",
    "detect_compression",
    "manifest_from_dict",
    "manifest_to_json",
    "no_space",
    "open_archive",
    "read_manifest",
    "spec_from_dict",
    "staging_dir",
    "validate_compression",
    "write_archive",
    "write_stream",
]
