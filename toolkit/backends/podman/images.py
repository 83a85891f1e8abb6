"""Podman images: list, build, inspect, history, remove, prune; save and load (docker-archive:
IDs kept across engines)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from toolkit.backends import building, inspection, shared
from toolkit.backends.podman.client import PodmanClient, podman
from toolkit.errors import ImageNotFound, InvalidArgument
from toolkit.models import BuildResult, ImageInfo, ImageLayer, PushResult

# A pull or push answers only when a layer moves; a big one over a slow link may be slow.
_TRANSFER_TIMEOUT = 3600
# A build's timeout: the builder answers only when a step prints, and a RUN may be slow.
_BUILD_TIMEOUT = 3600

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

    def _image_json(self, path: str, image: str, **params: Any) -> Any:
        with self._errors(image=image):
            response = self._api.get(path, params=params or None)
            response.raise_for_status(not_found=podman.errors.ImageNotFound)
            return response.json()

    def images(self, *, labels: Mapping[str, str] | None = None) -> list[ImageInfo]:
        """Local images (tagged or not, no intermediate layers), newest first."""
        filters = building.label_filters(labels)
        params = {"filters": json.dumps(filters)} if filters else {}
        rows = self._image_json("/images/json", "", **params) or []
        items = [inspection.image_from_inspect(row, engine=self.kind) for row in rows]
        return sorted(items, key=lambda i: i.created, reverse=True)

    def inspect_image(self, image: str) -> ImageInfo:
        """One image with its layer stack (``RootFS.Layers``).

        Raises:
            ImageNotFound: no such image.
        """
        raw = self._image_json(f"/images/{image}/json", image)
        return inspection.image_from_inspect(raw, engine=self.kind)

    def image_history(self, image: str) -> list[ImageLayer]:
        """The steps that made ``image``, newest first (``podman history``).

        Raises:
            ImageNotFound: no such image.
        """
        return inspection.layers_from_history(
            self._image_json(f"/images/{image}/history", image) or []
        )

    def build_image(
        self,
        context: Path,
        *,
        dockerfile: Path | None = None,
        tags: tuple[str, ...] = (),
        labels: Mapping[str, str] | None = None,
        build_args: Mapping[str, str] | None = None,
    ) -> BuildResult:
        """libpod's ``POST /libpod/build``, the context as a tar (see Images.build_image)."""
        body, inside = building.context_tar(context, dockerfile)
        params: dict[str, Any] = {"dockerfile": inside, "rm": True, "forcerm": True}
        if tags:
            params["t"] = list(tags)
        if labels:
            params["labels"] = json.dumps(dict(labels))
        if build_args:
            params["buildargs"] = json.dumps(dict(build_args))
        with self._errors():
            response = self._api.post(
                "/build",
                params=params,
                data=body,
                headers={"Content-Type": "application/x-tar"},
                stream=True,
                timeout=_BUILD_TIMEOUT,
            )
            response.raise_for_status()
            return building.build_result(
                building.json_lines(response.iter_content(chunk_size=None)), tags
            )

    def tag_image(self, image: str, reference: str) -> None:
        """Give ``image`` one more name ``reference`` (``repo[:tag]``).

        Raises:
            ImageNotFound: no such image.
        """
        repo, tag = building.split_reference(reference)
        with self._errors(image=image):
            response = self._api.post(f"/images/{image}/tag", params={"repo": repo, "tag": tag})
            response.raise_for_status(not_found=podman.errors.ImageNotFound)

    def _registry_stream(
        self,
        action: str,
        reference: str,
        path: str,
        params: Mapping[str, Any],
        progress: Callable[[str], None] | None,
    ) -> dict[str, Any]:
        """POST a libpod pull or push and read its JSON lines to the end: ``stream`` lines to
        ``progress``, an ``error`` line into ctk's tree; every other key merged (pull:
        ``id``, ``images``; push: ``manifestdigest`` where podman reports it)."""
        result: dict[str, Any] = {}
        with self._errors(image=reference):
            response = self._api.post(
                path, params=dict(params), stream=True, timeout=_TRANSFER_TIMEOUT
            )
            if response.status_code >= 400:
                try:
                    message = str(response.json().get("message") or response.text)
                except ValueError:
                    message = response.text
                if response.status_code == 400:
                    raise InvalidArgument(f"podman {action} {reference}: {message.strip()}")
                raise shared.registry_error(self.kind, action, reference, message)
            for event in building.json_lines(response.iter_content(chunk_size=None)):
                if event.get("error"):
                    raise shared.registry_error(self.kind, action, reference, str(event["error"]))
                line = str(event.pop("stream", "") or "").strip()
                if progress is not None and line:
                    progress(line)
                result.update({k: v for k, v in event.items() if v})
        return result

    def pull_image(
        self,
        reference: str,
        *,
        tls_verify: bool | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> ImageInfo:
        """libpod's ``POST /images/pull`` (podman pull); the image pulled (see
        Images.pull_image)."""
        verify = _tls_verify(reference, tls_verify)
        result = self._registry_stream(
            "pull",
            reference,
            "/images/pull",
            {"reference": reference, "tlsVerify": verify, "quiet": False, "policy": "always"},
            progress,
        )
        image = str(result.get("id") or reference)
        raw = self._image_json(f"/images/{image}/json", reference)
        return inspection.image_from_inspect(raw, engine=self.kind)

    def push_image(
        self,
        reference: str,
        *,
        tls_verify: bool | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> PushResult:
        """libpod's ``POST /images/{name}/push`` (podman push); what was pushed (see
        Images.push_image)."""
        verify = _tls_verify(reference, tls_verify)
        raw = self._image_json(f"/images/{reference}/json", reference)
        result = self._registry_stream(
            "push",
            reference,
            f"/images/{reference}/push",
            {"destination": reference, "tlsVerify": verify, "quiet": False},
            progress,
        )
        return PushResult(
            reference=reference,
            id=inspection.normalize_image_id(str(raw.get("Id", ""))),
            digest=str(result.get("manifestdigest") or ""),
        )

    def remove_image(self, image: str, *, force: bool = False) -> list[str]:
        """Untag or delete ``image``; ``Untagged: ...`` and ``Deleted: ...`` lines.

        Raises:
            ImageNotFound: no such image.
            Conflict: a container uses it (without ``force``).
        """
        with self._errors(image=image):
            response = self._api.delete(f"/images/{image}", params={"force": force})
            response.raise_for_status(not_found=podman.errors.ImageNotFound)
            report = response.json() or {}
        lines = [f"Untagged: {t}" for t in report.get("Untagged") or ()]
        lines += [
            f"Deleted: {inspection.normalize_image_id(d)}" for d in report.get("Deleted") or ()
        ]
        return lines

    def prune_images(
        self, *, all: bool = False, labels: Mapping[str, str] | None = None
    ) -> list[str]:
        """Remove unused images: dangling ones, or every unused one with ``all``; only those
        carrying ``labels`` when given. The IDs removed."""
        params: dict[str, Any] = {"all": all}
        filters = building.label_filters(labels)
        if filters:
            params["filters"] = json.dumps(filters)
        with self._errors():
            response = self._api.post("/images/prune", params=params)
            response.raise_for_status()
            rows = response.json() or []
        return [inspection.normalize_image_id(str(r["Id"])) for r in rows if r.get("Id")]


def _tls_verify(reference: str, tls_verify: bool | None) -> bool:
    """Podman verifies every registry unless told not to; ctk's default follows Docker:
    verify, except for a registry on a loopback address (plain HTTP there is local)."""
    if tls_verify is not None:
        return tls_verify
    return not shared.is_loopback_registry(reference)
