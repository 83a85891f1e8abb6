"""Podman images: presence by ID, save and load (docker-archive: IDs kept across engines)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from toolkit.backends import inspection, shared
from toolkit.backends.podman.client import PodmanClient, podman
from toolkit.errors import ImageNotFound

log = logging.getLogger(__name__)


class ImagesMixin(PodmanClient):
    """Images by ID."""

    def has_image(self, image_id: str) -> bool:
        """True when the engine holds the image with this exact ID."""
        with self._errors():
            found = self._api.get(f"/images/{image_id}/exists")
        return bool(found.status_code == 204)

    def save_image(self, image: str) -> Iterator[bytes]:
        """The image as a docker-archive tar stream (keeps the image ID across engines)."""
        with self._errors(image=image):
            response = self._api.get(
                f"/images/{image}/get", params={"format": "docker-archive"}, stream=True
            )
            response.raise_for_status(not_found=podman.errors.ImageNotFound)
            yield from response.iter_content(chunk_size=1024 * 1024)

    def load_image(self, data: Iterable[bytes]) -> None:
        """Load a docker-archive (or OCI) tar stream; image IDs are kept."""
        with self._errors():
            response = self._api.post(
                "/images/load", data=data, headers={"Content-Type": "application/x-tar"}
            )
            response.raise_for_status()

    def local_image(self, reference: str, image_id: str) -> str:
        """``reference`` when it names the image ``image_id`` here, else the ID itself.

        Raises:
            ImageNotFound: no image with that ID.
        """
        if not self.has_image(image_id):
            raise ImageNotFound(
                f"no image {image_id} ({reference}) on podman",
                hint=shared.image_missing_hint(reference, image_id, self.kind),
            )
        try:
            response = self._api.get(f"/images/{reference}/json")
            if response.status_code == 200:
                found = inspection.normalize_image_id(str(response.json().get("Id", "")))
                if found == inspection.normalize_image_id(image_id):
                    return reference
        except Exception as exc:
            # Only a nicer name is lost: the ID names the same image.
            log.debug(
                "podman: looking up %s failed (%s); using the ID %s", reference, exc, image_id
            )
        return image_id
