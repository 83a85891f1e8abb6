"""Docker named volumes: list, create, inspect, remove, prune."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from toolkit.backends import building, inspection
from toolkit.backends.docker.client import DockerClient, docker
from toolkit.errors import VolumeNotFound
from toolkit.models import VolumeInfo


class VolumesMixin(DockerClient):
    """Named volumes."""

    @contextmanager
    def _volume_errors(self, name: str) -> Iterator[None]:
        with self._errors():
            try:
                yield
            except docker.errors.NotFound as exc:
                raise VolumeNotFound(f"no such volume: {name}") from exc

    def volumes(self, *, labels: Mapping[str, str] | None = None) -> list[VolumeInfo]:
        """Named volumes, by name."""
        with self._errors():
            result = self._api.volumes(filters=building.label_filters(labels) or None)
        rows = result.get("Volumes") or []
        items = [inspection.volume_from_inspect(row, engine=self.kind) for row in rows]
        return sorted(items, key=lambda v: v.name)

    def create_volume(
        self, name: str = "", *, labels: Mapping[str, str] | None = None
    ) -> VolumeInfo:
        """Create a local volume (a generated name when ``name`` is empty).

        Raises:
            Conflict: the name is taken (Podman); Docker returns the existing volume.
        """
        with self._errors():
            raw = self._api.create_volume(name or None, labels=dict(labels or {}) or None)
        return inspection.volume_from_inspect(raw, engine=self.kind)

    def inspect_volume(self, name: str) -> VolumeInfo:
        """One volume.

        Raises:
            VolumeNotFound: no such volume.
        """
        with self._volume_errors(name):
            raw = self._api.inspect_volume(name)
        return inspection.volume_from_inspect(raw, engine=self.kind)

    def remove_volume(self, name: str, *, force: bool = False) -> None:
        """Remove a volume.

        Raises:
            VolumeNotFound: no such volume.
            Conflict: a container uses it.
        """
        with self._volume_errors(name):
            self._api.remove_volume(name, force=force)

    def prune_volumes(self, *, labels: Mapping[str, str] | None = None) -> list[str]:
        """Remove unused volumes (only those carrying ``labels`` when given); their names."""
        filters: dict[str, list[str]] = building.label_filters(labels)
        with self._errors():
            # API 1.42 (Docker 23) prunes only anonymous volumes unless all=true, a filter
            # that older daemons refuse.
            if docker.utils.version_gte(self._api.api_version, "1.42"):
                filters["all"] = ["true"]
            result = self._api.prune_volumes(filters=filters or None)
        return sorted(str(v) for v in result.get("VolumesDeleted") or [])
