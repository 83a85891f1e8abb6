"""Podman named volumes through libpod: list, create, inspect, remove, prune."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from toolkit.backends import building, inspection
from toolkit.backends.podman.client import PodmanClient, podman
from toolkit.errors import VolumeNotFound
from toolkit.models import VolumeInfo


class VolumesMixin(PodmanClient):
    """Named volumes."""

    def _volume(self, method: str, name: str, path: str, **params: Any) -> Any:
        with self._errors():
            try:
                response = getattr(self._api, method)(path, params=params or None)
                response.raise_for_status(not_found=podman.errors.NotFound)
            except podman.errors.NotFound as exc:
                raise VolumeNotFound(f"no such volume: {name}") from exc
            return response.json() if response.content else None

    def volumes(self, *, labels: Mapping[str, str] | None = None) -> list[VolumeInfo]:
        """Named volumes, by name."""
        filters = building.label_filters(labels)
        params = {"filters": json.dumps(filters)} if filters else {}
        rows = self._volume("get", "", "/volumes/json", **params) or []
        items = [inspection.volume_from_inspect(row, engine=self.kind) for row in rows]
        return sorted(items, key=lambda v: v.name)

    def create_volume(
        self, name: str = "", *, labels: Mapping[str, str] | None = None
    ) -> VolumeInfo:
        """Create a local volume (a generated name when ``name`` is empty).

        Raises:
            Conflict: the name is taken.
        """
        body: dict[str, Any] = {"Labels": dict(labels or {})}
        if name:
            body["Name"] = name
        with self._errors():
            response = self._api.post(
                "/volumes/create",
                data=json.dumps(body),
                headers={"Content-Type": "application/json"},
            )
            response.raise_for_status()
            raw = response.json()
        return inspection.volume_from_inspect(raw, engine=self.kind)

    def inspect_volume(self, name: str) -> VolumeInfo:
        """One volume.

        Raises:
            VolumeNotFound: no such volume.
        """
        raw = self._volume("get", name, f"/volumes/{name}/json")
        return inspection.volume_from_inspect(raw, engine=self.kind)

    def remove_volume(self, name: str, *, force: bool = False) -> None:
        """Remove a volume.

        Raises:
            VolumeNotFound: no such volume.
            Conflict: a container uses it.
        """
        self._volume("delete", name, f"/volumes/{name}", force=force)

    def prune_volumes(self, *, labels: Mapping[str, str] | None = None) -> list[str]:
        """Remove unused volumes (only those carrying ``labels`` when given); their names."""
        filters = building.label_filters(labels)
        params = {"filters": json.dumps(filters)} if filters else {}
        with self._errors():
            response = self._api.post("/volumes/prune", params=params or None)
            response.raise_for_status()
            rows = response.json() or []
        return sorted(str(r["Id"]) for r in rows if r.get("Id"))
