"""What both engines' builds, commits and copies share: the build context as a tar, the
builder's JSON lines, image references split for the commit APIs, the label filter."""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from toolkit.errors import EngineError, InvalidArgument
from toolkit.models import BuildResult

# The name a Dockerfile outside the context gets inside the context tar (as docker's CLI does).
OUTSIDE_DOCKERFILE = ".ctk-dockerfile"
_HEX_ID = re.compile(r"^(sha256:)?[0-9a-f]{64}$")


def context_tar(context: Path, dockerfile: Path | None = None) -> tuple[bytes, str]:
    """The build context as an uncompressed tar, and the Dockerfile's path inside it.

    Without ``dockerfile``, ``Dockerfile`` (else ``Containerfile``) in the context is used.
    A Dockerfile outside the context is added to the tar under a name of its own.

    Raises:
        InvalidArgument: the context is not a directory, or no Dockerfile is found.
    """
    if not context.is_dir():
        raise InvalidArgument(f"build context {context} is not a directory")
    if dockerfile is None:
        found = [context / n for n in ("Dockerfile", "Containerfile") if (context / n).is_file()]
        if not found:
            raise InvalidArgument(
                f"no Dockerfile or Containerfile in {context}", hint="name one with -f FILE"
            )
        dockerfile = found[0]
    if not dockerfile.is_file():
        raise InvalidArgument(f"no such Dockerfile: {dockerfile}")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(context), arcname=".")
        try:
            inside = dockerfile.resolve().relative_to(context.resolve()).as_posix()
        except ValueError:
            inside = OUTSIDE_DOCKERFILE
            tar.add(str(dockerfile), arcname=inside)
    return buffer.getvalue(), inside


def build_result(events: Iterable[Mapping[str, Any]], tags: tuple[str, ...]) -> BuildResult:
    """The image a build made, from the builder's JSON lines (the same on both engines:
    ``stream`` output, ``aux.ID`` the image, ``error`` a failed step).

    Raises:
        EngineError: the build failed (the message is the builder's last lines).
    """
    log: list[str] = []
    image_id = ""
    for event in events:
        if event.get("stream"):
            log.extend(line for line in str(event["stream"]).splitlines() if line.strip())
        aux = event.get("aux")
        if isinstance(aux, Mapping) and aux.get("ID"):
            image_id = str(aux["ID"])
        if event.get("error"):
            tail = "\n".join(log[-5:])
            raise EngineError(f"build failed: {str(event['error']).strip()}\n{tail}".strip())
    if not image_id and log and _HEX_ID.match(log[-1].strip()):
        # Podman 4.3's libpod build prints the ID as its last output line, with no aux.
        image_id = log[-1].strip()
    if not image_id:
        raise EngineError("build finished without an image ID", hint="\n".join(log[-5:]))
    if ":" not in image_id:
        image_id = f"sha256:{image_id}"
    return BuildResult(id=image_id, tags=tags, log=tuple(log))


def json_lines(chunks: Iterable[bytes]) -> Iterable[dict[str, Any]]:
    """The builder's stream of JSON objects (one a line; a line may span chunks)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
    if pending.strip():
        yield json.loads(pending)


def split_reference(reference: str) -> tuple[str, str]:
    """``repo[:tag]`` as (repo, tag); a registry's port is not a tag (``host:5000/x``)."""
    repo, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference, "latest"
    return repo, tag


def label_filters(labels: Mapping[str, str] | None) -> dict[str, list[str]]:
    """``{"label": ["k=v", ...]}``, the filter both engines' prune and list calls take."""
    return {"label": [f"{k}={v}" for k, v in labels.items()]} if labels else {}
