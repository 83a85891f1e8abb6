"""Docker images: presence by ID, save and load (IDs kept across engines)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from toolkit.backends import shared
from toolkit.errors import (
    EngineError,
    ImageNotFound,
)

if TYPE_CHECKING:
    pass
from toolkit.backends.docker.client import DockerClient, docker


class ImagesMixin(DockerClient):
    """Images by ID."""

    def _local_image(self, reference: str, image_id: str) -> str:
        """The reference when it names the archived image ID here, else the ID itself."""
        try:
            found = self._api.inspect_image(image_id)
        except docker.errors.NotFound as exc:
            raise ImageNotFound(
                f"no image {image_id} ({reference}) on docker",
                hint=shared.image_missing_hint(reference, image_id, self.kind),
            ) from exc
        with contextlib.suppress(docker.errors.APIError):
            if reference and self._api.inspect_image(reference)["Id"] == found["Id"]:
                return reference
        return str(found["Id"])

    def has_image(self, image_id: str) -> bool:
        """True when the engine holds the image with this exact ID."""
        try:
            with self._errors(image=image_id):
                self._api.inspect_image(image_id)
        except ImageNotFound:
            return False
        return True

    def save_image(self, image: str) -> Iterator[bytes]:
        """The image as a docker-archive tar stream (``docker save``)."""
        with self._errors(image=image):
            stream = self._api.get_image(image, chunk_size=1024 * 1024)
            for chunk in stream:
                yield bytes(chunk)

    def load_image(self, data: Iterable[bytes]) -> None:
        """Load a docker-archive tar stream (``docker load``); image IDs are kept."""
        with self._errors():
            for line in self._api.load_image(data):
                if isinstance(line, dict) and line.get("error"):
                    raise EngineError(f"docker load failed: {line['error']}")
