"""A Docker container's read-write layer: its changes (``docker diff``), a commit of it as
one more image layer, and files copied in and out through the archive routes (``docker cp``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from toolkit.backends import building, inspection, validation
from toolkit.backends.docker.client import DockerClient
from toolkit.models import FileChange


class LayersMixin(DockerClient):
    """The container's own layer and its files."""

    def changes(self, name: str) -> list[FileChange]:
        """What the container added (A), changed (C) and deleted (D) over its image.

        Raises:
            ContainerNotFound: no such container.
        """
        validation.validate_ref(name, what="container")
        with self._errors(container=name):
            rows = self._api.diff(name)
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
        """``POST /commit``: the read-write layer as one more layer (see ContainerLayers)."""
        validation.validate_ref(name, what="container")
        repo, tag = building.split_reference(image)
        changes = [f"LABEL {json.dumps(k)}={json.dumps(v)}" for k, v in (labels or {}).items()]
        with self._errors(container=name):
            result = self._api.commit(
                name,
                repository=repo,
                tag=tag,
                message=message or None,
                changes=changes or None,
                pause=pause,
            )
        return inspection.normalize_image_id(str(result.get("Id", "")))

    def layer_size(self, name: str) -> int:
        """Bytes in the container's read-write layer (inspect's ``SizeRw``; the engine walks
        the layer, so only ``ctk inspect`` asks).

        Raises:
            ContainerNotFound: no such container.
        """
        validation.validate_ref(name, what="container")
        with self._errors(container=name):
            # docker-py's inspect_container takes no size flag: the same GET with ?size=1.
            response = self._api._get(
                self._api._url("/containers/{0}/json", name), params={"size": 1}
            )
            raw = self._api._result(response, True)
        return int(raw.get("SizeRw") or 0)

    def path_stat(self, name: str, path: str) -> Mapping[str, Any] | None:
        """The container path's stat (``name``, ``size``, ``mode``, ...), None when absent.

        Raises:
            ContainerNotFound: no such container.
        """
        self._attrs(name)  # ContainerNotFound before a 404 that could mean either
        with self._errors(container=name):
            # docker-py has no stat call: a HEAD through its session, with its URL builder.
            response = self._api.head(
                self._api._url("/containers/{0}/archive", name), params={"path": path}
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
        validation.validate_ref(name, what="container")
        with self._errors(container=name):
            stream, _stat = self._api.get_archive(name, path, chunk_size=1024 * 1024)
            for chunk in stream:
                yield bytes(chunk)

    def put_archive(self, name: str, path: str, data: bytes | Iterable[bytes]) -> None:
        """Unpack a tar into the directory ``path`` of the container.

        Raises:
            ContainerNotFound: no such container.
            EngineError: ``path`` is not a directory there.
        """
        validation.validate_ref(name, what="container")
        with self._errors(container=name):
            self._api.put_archive(name, path, data)
