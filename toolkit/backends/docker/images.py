"""Docker images: list, build, inspect, history, remove, prune; save and load (IDs kept)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from toolkit.backends import building, inspection, shared
from toolkit.backends.docker.client import DockerClient, docker
from toolkit.errors import EngineError, ImageNotFound, InvalidArgument, Unsupported
from toolkit.models import BuildResult, ImageInfo, ImageLayer, PushResult

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

    def _registry_tls(self, reference: str, tls_verify: bool | None) -> None:
        # dockerd decides TLS per registry itself (insecure-registries, and 127.0.0.0/8
        # always insecure): no request can turn verification off.
        if tls_verify is False and not shared.is_loopback_registry(reference):
            raise Unsupported(
                f"docker cannot skip TLS verification per request ({reference})",
                hint=f"list {shared.registry_host(reference)} in dockerd's insecure-registries",
            )

    def _registry_stream(
        self,
        action: str,
        reference: str,
        start: Callable[[], Iterable[Any]],
        progress: Callable[[str], None] | None,
    ) -> dict[str, Any]:
        """Run a pull or push stream to its end: its status lines to ``progress``, its error
        line into ctk's tree; the last ``aux`` object (push: Tag, Digest, Size)."""
        aux: dict[str, Any] = {}
        # The outer guard maps a dockerd that does not answer; the inner one the registry's
        # failures dockerd reports (a 404 or 500 before the stream, an error line in it).
        with self._errors(image=reference):
            try:
                for event in start():
                    if not isinstance(event, dict):
                        continue
                    if event.get("error"):
                        raise shared.registry_error(
                            self.kind, action, reference, str(event["error"])
                        )
                    if isinstance(event.get("aux"), dict):
                        aux = event["aux"]
                    if progress is not None and event.get("status"):
                        layer = f"{event['id']}: " if event.get("id") else ""
                        progress(f"{layer}{event['status']} {event.get('progress') or ''}".rstrip())
            except docker.errors.APIError as exc:
                if exc.status_code == 400:
                    raise InvalidArgument(
                        f"docker {action} {reference}: {exc.explanation}"
                    ) from exc
                raise shared.registry_error(
                    self.kind, action, reference, str(exc.explanation or exc)
                ) from exc
        return aux

    def pull_image(
        self,
        reference: str,
        *,
        tls_verify: bool | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> ImageInfo:
        """``POST /images/create`` (docker pull); the image pulled (see Images.pull_image)."""
        self._registry_tls(reference, tls_verify)
        self._registry_stream(
            "pull",
            reference,
            lambda: self._api.pull(reference, stream=True, decode=True),
            progress,
        )
        with self._errors(image=reference):
            raw = self._api.inspect_image(_with_tag(reference))
        return inspection.image_from_inspect(raw, engine=self.kind)

    def push_image(
        self,
        reference: str,
        *,
        tls_verify: bool | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> PushResult:
        """``POST /images/{name}/push`` (docker push); what was pushed (see
        Images.push_image)."""
        self._registry_tls(reference, tls_verify)
        with self._errors(image=reference):
            raw = self._api.inspect_image(_with_tag(reference))
        aux = self._registry_stream(
            "push",
            reference,
            lambda: self._api.push(reference, stream=True, decode=True),
            progress,
        )
        return PushResult(
            reference=reference,
            id=inspection.normalize_image_id(str(raw["Id"])),
            digest=str(aux.get("Digest") or ""),
        )

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


def _with_tag(reference: str) -> str:
    """``reference`` with ``:latest`` when it names neither a tag nor a digest (what a
    pull or push of it means)."""
    last = reference.rpartition("/")[2]
    return reference if ":" in last or "@" in last else f"{reference}:latest"


def _removal_lines(rows: Iterable[Mapping[str, Any]] | None) -> list[str]:
    lines = []
    for row in rows or ():
        for key in ("Untagged", "Deleted"):
            if row.get(key):
                lines.append(f"{key}: {row[key]}")
    return lines
