"""``ctk-manifest.json``: the archive's table of contents, as JSON and back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from toolkit.errors import ArchiveError
from toolkit.models import ArchiveManifest, ArchiveMember, ContainerSpec, Mount, PortMapping

# Version 2: the container's volumes, listed in the spec, their data in ``volumes/NAME.tar``
# members. Archives without volumes are still written as version 1, which every ctk reads;
# an older ctk refuses a version-2 archive instead of restoring it without its volume data.
FORMAT_VERSION = 2
MANIFEST_NAME = "ctk-manifest.json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


def manifest_to_json(manifest: ArchiveManifest) -> bytes:
    return json.dumps(manifest.to_dict(), indent=2, sort_keys=True).encode() + b"\n"


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise ArchiveError(f"manifest field {key!r} is not a string")
    return value


def manifest_from_dict(data: Any) -> ArchiveManifest:
    """Parse and check a manifest dict.

    Raises:
        ArchiveError: it is not a ctk manifest, or one from a newer format version.
    """
    if not isinstance(data, dict) or "format_version" not in data:
        raise ArchiveError("not a ctk archive: the manifest has no format_version")
    version = data["format_version"]
    if not isinstance(version, int) or version < 1:
        raise ArchiveError(f"not a ctk archive: bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ArchiveError(
            f"archive format version {version} is newer than this ctk understands "
            f"({FORMAT_VERSION})",
            hint="upgrade ctk to import this archive",
        )
    members: list[ArchiveMember] = []
    raw_members = data.get("members")
    if not isinstance(raw_members, list):
        raise ArchiveError("manifest has no member list")
    for item in raw_members:
        if not isinstance(item, dict):
            raise ArchiveError("manifest member entry is not an object")
        size, digest = item.get("size"), item.get("sha256")
        if not isinstance(size, int) or size < 0 or not isinstance(digest, str):
            raise ArchiveError(f"manifest member entry {item.get('name')!r} is malformed")
        members.append(ArchiveMember(name=_text(item, "name"), size=size, sha256=digest))
    spec = data.get("spec") or {}
    engine_data = data.get("engine_data") or {}
    if not isinstance(spec, dict) or not isinstance(engine_data, dict):
        raise ArchiveError("manifest spec or engine_data is not an object")
    return ArchiveManifest(
        format_version=version,
        engine=_text(data, "engine"),
        engine_version=_text(data, "engine_version"),
        criu_version=_text(data, "criu_version"),
        container_id=_text(data, "container_id"),
        container_name=_text(data, "container_name"),
        image=_text(data, "image"),
        image_id=_text(data, "image_id"),
        checkpoint=_text(data, "checkpoint"),
        created=_text(data, "created"),
        spec=spec,
        members=tuple(members),
        engine_data=engine_data,
        kernel=_text(data, "kernel"),
        volumes_ignored=data.get("volumes_ignored") is True,
    )


def spec_from_dict(data: Mapping[str, Any]) -> ContainerSpec:
    """The :class:`ContainerSpec` stored in a manifest."""
    try:
        return ContainerSpec(
            image=str(data["image"]),
            command=tuple(str(c) for c in data.get("command") or ()),
            name=data.get("name"),
            env={str(k): str(v) for k, v in (data.get("env") or {}).items()},
            ports=tuple(PortMapping(**p) for p in data.get("ports") or ()),
            labels={str(k): str(v) for k, v in (data.get("labels") or {}).items()},
            network=data.get("network"),
            hostname=data.get("hostname"),
            working_dir=data.get("working_dir"),
            user=data.get("user"),
            runtime=data.get("runtime"),
            volumes=tuple(Mount(**m) for m in data.get("volumes") or ()),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ArchiveError(f"manifest container spec is malformed: {exc}") from exc
