"""A Podman container's read-write layer: its changes (``podman diff``), a commit of it as
one more image layer, and files copied in and out through the archive routes (``podman cp``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from toolkit.backends import building, inspection
from toolkit.backends.podman.client import PodmanClient, once_more_if_copier_lost, podman
from toolkit.models import FileChange


class LayersMixin(PodmanClient):
    """The container's own layer and its files."""

    def changes(self, name: str) -> list[FileChange]:
        """What the container added (A), changed (C) and deleted (D) over its image.

        Raises:
            ContainerNotFound: no such container.
        """
        self._attrs(name)
        with self._errors(container=name):
            response = self._api.get(f"/containers/{name}/changes")
            response.raise_for_status(not_found=podman.errors.NotFound)
            rows = response.json()
        return inspection.changes_from_api(rows)

    def commit(
        self,
        name: str,
        image: str,
        *,
        message: str = "",
        labels: Mapping[str, str] | None = None,
        pause: bool = True,
    ) -> str:
        """libpod's commit: the read-write layer as one more layer (see ContainerLayers)."""
        self._attrs(name)
        repo, tag = building.split_reference(image)
        params: dict[str, Any] = {"container": name, "repo": repo, "tag": tag, "pause": pause}
        if message:
            # Podman keeps a commit message only in the docker image format (OCI has no field).
            params["comment"] = message
            params["format"] = "docker"
        changes = [f"LABEL {json.dumps(k)}={json.dumps(v)}" for k, v in (labels or {}).items()]
        if changes:
            params["changes"] = changes
        with self._errors(container=name):
            response = self._api.post("/commit", params=params)
            response.raise_for_status(not_found=podman.errors.NotFound)
            result = response.json() or {}
        return inspection.normalize_image_id(str(result.get("Id", "")))

    def layer_size(self, name: str) -> int:
        """Bytes in the container's read-write layer (inspect's ``SizeRw``; the engine walks
        the layer, so only ``ctk inspect`` asks).

        Raises:
            ContainerNotFound: no such container.
        """
        self._attrs(name)
        with self._errors(container=name):
            response = self._api.get(f"/containers/{name}/json", params={"size": True})
            response.raise_for_status(not_found=podman.errors.NotFound)
            raw = response.json()
        return int(raw.get("SizeRw") or 0)

    def path_stat(self, name: str, path: str) -> Mapping[str, Any] | None:
        """The container path's stat (``name``, ``size``, ``mode``, ...), None when absent.

        Raises:
            ContainerNotFound: no such container.
        """
        self._attrs(name)  # ContainerNotFound before a 404 that could mean either
        with self._errors(container=name):
            response = self._api.head(
                f"/containers/{name}/archive", params={"path": path}, compatible=True
            )
        if response.status_code != 200:
            return None
        header = response.headers.get("X-Docker-Container-Path-Stat", "")
        return dict(json.loads(base64.b64decode(header))) if header else {}

    def get_archive(self, name: str, path: str) -> Iterator[bytes]:
        """``path`` in the container as a tar stream (its last component at the top).

        Raises:
            ContainerNotFound: no such container (or path: EngineError names it).
        """
        self._attrs(name)
        with self._errors(container=name):
            response = self._api.get(
                f"/containers/{name}/archive", params={"path": path}, stream=True
            )
            response.raise_for_status(not_found=podman.errors.NotFound)
            yield from response.iter_content(chunk_size=1024 * 1024)

    def put_archive(self, name: str, path: str, data: bytes | Iterable[bytes]) -> None:
        """Unpack a tar into the directory ``path`` of the container.

        Raises:
            ContainerNotFound: no such container.
            EngineError: ``path`` is not a directory there.
        """
        self._attrs(name)

        def put() -> None:
            with self._errors(container=name):
                response = self._api.put(
                    f"/containers/{name}/archive",
                    params={"path": path},
                    data=data,
                    headers={"Content-Type": "application/x-tar"},
                )
                response.raise_for_status(not_found=podman.errors.NotFound)

        if isinstance(data, bytes):
            once_more_if_copier_lost(put, f"putting a tar into {name}")
        else:
            put()  # a stream is read once
