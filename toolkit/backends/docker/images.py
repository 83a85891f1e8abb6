"""Docker images: list, build, inspect, history, remove, prune; save and load (IDs kept)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from toolkit.backends import building, inspection, shared
from toolkit.backends.docker.client import DockerClient, docker
from toolkit.errors import EngineError, ImageNotFound
from toolkit.models import BuildResult, ImageInfo, ImageLayer

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

    def import_layer(self, layer: Path, reference: str, *, labels: Mapping[str, str]) -> str:
        """A one-layer image FROM scratch holding the tar ``layer``, tagged ``reference``, with
        ``labels`` (``docker import``); its ID.

        Raises:
            InvalidArgument: a bad reference.
        """
        repo, tag = building.split_reference(reference)
        # docker import's --change: Dockerfile instructions; JSON strings quote safely there
        changes = [f"LABEL {json.dumps(k)}={json.dumps(v)}" for k, v in sorted(labels.items())]
        with self._errors():
            self._api.import_image_from_file(str(layer), repository=repo, tag=tag, changes=changes)
            found = self._api.inspect_image(reference)
        return inspection.normalize_image_id(str(found["Id"]))

    def images(self, *, labels: Mapping[str, str] | None = None) -> list[ImageInfo]:
        """Local images (tagged or not, no intermediate layers), newest first."""
        with self._errors():
            rows = self._api.images(filters=building.label_filters(labels) or None)
        items = [inspection.image_from_inspect(row, engine=self.kind) for row in rows]
        return sorted(items, key=lambda i: i.created, reverse=True)

    def inspect_image(self, image: str) -> ImageInfo:
        """One image with its layer stack (``RootFS.Layers``).

        Raises:
            ImageNotFound: no such image.
        """
        with self._errors(image=image):
            raw = self._api.inspect_image(image)
        return inspection.image_from_inspect(raw, engine=self.kind)

    def image_history(self, image: str) -> list[ImageLayer]:
        """The steps that made ``image``, newest first (``docker history``).

        Raises:
            ImageNotFound: no such image.
        """
        with self._errors(image=image):
            rows = self._api.history(image)
        return inspection.layers_from_history(rows)

    def build_image(
        self,
        context: Path,
        *,
        dockerfile: Path | None = None,
        tags: tuple[str, ...] = (),
        labels: Mapping[str, str] | None = None,
        build_args: Mapping[str, str] | None = None,
    ) -> BuildResult:
        """``POST /build`` with the context as a tar, never pulling (see Images.build_image)."""
        body, inside = building.context_tar(context, dockerfile)
        with self._errors():
            events = self._api.build(
                fileobj=body,
                custom_context=True,
                dockerfile=inside,
                tag=tags[0] if tags else None,
                labels=dict(labels or {}),
                buildargs=dict(build_args or {}),
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            result = building.build_result(events, tags)
            for tag in tags[1:]:
                repo, version = building.split_reference(tag)
                self._api.tag(result.id, repo, version)
        return result

    def tag_image(self, image: str, reference: str) -> None:
        """Give ``image`` one more name ``reference`` (``repo[:tag]``).

        Raises:
            ImageNotFound: no such image.
        """
        repo, tag = building.split_reference(reference)
        with self._errors(image=image):
            self._api.tag(image, repo, tag)

    def remove_image(self, image: str, *, force: bool = False) -> list[str]:
        """Untag or delete ``image``; the lines docker prints (``Untagged: ...``, ``Deleted: ...``).

        Raises:
            ImageNotFound: no such image.
            Conflict: a container uses it (without ``force``).
        """
        with self._errors(image=image):
            rows = self._api.remove_image(image, force=force)
        return _removal_lines(rows)

    def prune_images(
        self, *, all: bool = False, labels: Mapping[str, str] | None = None
    ) -> list[str]:
        """Remove unused images: dangling ones, or every unused one with ``all``; only those
        carrying ``labels`` when given. The IDs removed."""
        filters: dict[str, Any] = building.label_filters(labels)
        # Docker prunes only dangling images unless told dangling=false (docker image prune -a).
        filters["dangling"] = ["false" if all else "true"]
        with self._errors():
            result = self._api.prune_images(filters=filters)
        rows = result.get("ImagesDeleted") or []
        return [str(r["Deleted"]) for r in rows if r.get("Deleted")]


def _removal_lines(rows: Iterable[Mapping[str, Any]] | None) -> list[str]:
    lines = []
    for row in rows or ():
        for key in ("Untagged", "Deleted"):
            if row.get(key):
                lines.append(f"{key}: {row[key]}")
    return lines
