"""Docker named volumes: list, create, inspect, remove, prune."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from toolkit.backends import building, inspection
from toolkit.backends.base import VOLUME_PATH
from toolkit.backends.docker.client import docker
from toolkit.backends.docker.files import FilesMixin
from toolkit.errors import VolumeNotFound
from toolkit.models import Mount, VolumeInfo


class VolumesMixin(FilesMixin):
    """Named volumes, and their contents through helper containers."""

    def container_volumes(self, name: str) -> tuple[Mount, ...]:
        attrs = self._attrs(name)
        host = attrs.get("HostConfig") or {}
        # Docker's inspect does not say which volume is anonymous: a named one is named in
        # the create request (-v NAME:/path in Binds, --mount source=NAME in Mounts).
        named = {
            str(b).split(":", 1)[0] for b in host.get("Binds") or () if not str(b).startswith("/")
        }
        named |= {
            str(m.get("Source"))
            for m in host.get("Mounts") or ()
            if m.get("Type", "volume") == "volume" and m.get("Source")
        }
        return inspection.volume_mounts(attrs.get("Mounts"), named=named.__contains__)

    @contextmanager
    def volume_access(self, volume: str, *, image: str) -> Iterator[str]:
        with self._helper(image, {volume: VOLUME_PATH}) as helper:
            yield helper

    def read_volume(self, helper: str, out: Path) -> None:
        self._fetch(helper, VOLUME_PATH, out)

    def write_volume(self, helper: str, data: Path) -> None:
        parent = VOLUME_PATH.rsplit("/", 1)[0]
        with self._errors(container=helper), data.open("rb") as body:
            self._api.put_archive(helper, parent, body)

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
