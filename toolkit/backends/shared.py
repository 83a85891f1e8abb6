"""What both backends share beyond validation and inspect parsing: errors, hints, records."""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from toolkit.backends import DEFAULT_URLS
from toolkit.backends.inspection import spec_from_inspect
from toolkit.errors import (
    EngineUnavailable,
)
from toolkit.models import (
    ArchiveManifest,
    ContainerInfo,
    EngineInfo,
)


def unavailable(kind: str, url: str) -> EngineUnavailable:
    """EngineUnavailable whose hint fits the address: ctk's own engines, or the user's."""
    name = kind.capitalize()
    if url == DEFAULT_URLS.get(kind):
        return EngineUnavailable(f"{name} does not answer at {url}")
    if url.startswith("unix://"):
        start = f"podman system service --time=0 {url}" if kind == "podman" else f"dockerd -H {url}"
        hint = (
            f"nothing serves {url[len('unix://') :]}: start {kind} there ({start}), "
            "or pick another engine (ctk engine ls)"
        )
    else:
        hint = f"check that {kind} is reachable at {url} and the URL is right (ctk engine ls)"
    return EngineUnavailable(f"{name} does not answer at {url}", hint=hint)


def with_checkpoints(info: ContainerInfo, url: str) -> ContainerInfo:
    """``info`` with the names of the checkpoints ctk recorded for it, oldest first."""
    from toolkit import records

    recorded = records.names(info.engine, url, info.id)
    if not recorded:
        return info
    ordered = records.ordered(info.engine, url, info.id, recorded, container=info.name)
    return dataclasses.replace(info, checkpoints=tuple(c.name for c in ordered))


def image_missing_hint(image: str, image_id: str, kind: str) -> str:
    return (
        f"{kind} needs the exact image the checkpoint was taken from ({image}, {image_id}): "
        f"copy it with: docker save {image} | {kind} load"
    )


def archive_manifest(
    *,
    engine: EngineInfo,
    attrs: Mapping[str, Any],
    info: ContainerInfo,
    checkpoint: str,
    engine_data: Mapping[str, Any],
) -> ArchiveManifest:
    """The manifest of an archive being written (members are filled in by the writer)."""
    from toolkit.criu.probe import probe_criu

    spec = spec_from_inspect(attrs, image=info.image)
    return ArchiveManifest(
        format_version=1,
        engine=engine.kind,
        engine_version=engine.version,
        criu_version=probe_criu(run_check=False).version_text,
        container_id=info.id,
        container_name=info.name,
        image=info.image,
        image_id=info.image_id,
        checkpoint=checkpoint,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        spec=spec.to_dict(),
        engine_data=dict(engine_data),
        kernel=platform.release(),
    )
