"""Docker images: presence by ID, save and load (IDs kept across engines)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from toolkit.backends import shared
from toolkit.backends.docker.client import DockerClient, docker
from toolkit.errors import EngineError, ImageNotFound

log = logging.getLogger(__name__)


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
        try:
            if reference and self._api.inspect_image(reference)["Id"] == found["Id"]:
                return reference
        except docker.errors.APIError as exc:
            # Only a nicer name is lost: the ID names the same image.
            log.debug("docker: looking up %s failed (%s); using the ID", reference, exc)
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
