"""Podman named volumes through libpod: list, create, inspect, remove, prune."""

from __future__ import annotations

import json
import logging
import tarfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from toolkit import archive
from toolkit.archive.volumes import VOLUME_ROOT
from toolkit.backends import building, inspection
from toolkit.backends.base import VOLUME_PATH
from toolkit.backends.podman.client import once_more_if_copier_lost, podman
from toolkit.backends.podman.files import FilesMixin
from toolkit.errors import VolumeNotFound
from toolkit.models import Mount, VolumeInfo

_CHUNK = 1024 * 1024
log = logging.getLogger(__name__)


def _rebased(name: str) -> str:
    # Podman 4.3 names a mount point's entries "" and "/a", "/d/b" (Docker: "volume",
    # "volume/a"): the same tar on both engines, so that archives move between them.
    if name == "" or name.startswith("/"):
        rest = name.strip("/")
        return f"{VOLUME_ROOT}/{rest}" if rest else VOLUME_ROOT
    return name


def _relative(name: str) -> str:
    # "volume" -> ".", "volume/a" -> "./a": entries relative to the mount point
    return "." + name[len(VOLUME_ROOT) :] if name.split("/", 1)[0] == VOLUME_ROOT else name


def _rebase(source: Path, out: Path, rename: Callable[[str], str] = _rebased) -> None:
    """Copy the tar ``source`` to ``out`` with its entries renamed by ``rename``."""
    with (
        tarfile.open(source, mode="r|") as src,
        tarfile.open(out, mode="w|", format=tarfile.PAX_FORMAT) as dst,
    ):
        for info in src:
            info.name = rename(info.name)
            if info.islnk():
                info.linkname = rename(info.linkname)
            dst.addfile(info, src.extractfile(info) if info.isfile() else None)
            src.members = []  # type: ignore[attr-defined]  # streamed: forget what passed


class VolumesMixin(FilesMixin):
    """Named volumes, and their contents through helper containers."""

    def container_volumes(self, name: str) -> tuple[Mount, ...]:
        attrs = self._attrs(name)

        def named(volume: str) -> bool:
            # libpod marks anonymous volumes (-v /path) in the volume itself
            raw = self._volume("get", volume, f"/volumes/{volume}/json") or {}
            return not raw.get("Anonymous")

        return inspection.volume_mounts(attrs.get("Mounts"), named=named)

    @contextmanager
    def volume_access(self, volume: str, *, image: str) -> Iterator[str]:
        with self._helper_with(image, {"volumes": [{"Name": volume, "Dest": VOLUME_PATH}]}) as h:
            yield h

    def read_volume(self, helper: str, out: Path) -> None:
        """The volume's tar; Podman 4.3's archive route hands every file out as owned by the
        container's user, so archives take Podman's volume data from libpod's export instead
        (:func:`toolkit.archive.split_podman_volumes`)."""
        with self._errors(container=helper):
            response = self._api.get(
                f"/containers/{helper}/archive", params={"path": VOLUME_PATH}, stream=True
            )
            try:
                response.raise_for_status()
                raw = out.with_name(out.name + ".raw")
                archive.write_stream(response.iter_content(_CHUNK), raw)
            finally:
                response.close()
        try:
            _rebase(raw, out)
        finally:
            raw.unlink(missing_ok=True)

    def write_volume(self, helper: str, data: Path) -> None:
        # Podman 4.3 writes "volume/..." put at /ctk into the helper's own root, past the
        # volume mounted there; "./..." put at the mount point lands in the volume.
        # copyUIDGID=false keeps the tar's owners (libpod's default makes them the container's).
        relative = data.with_name(data.name + ".put")
        try:
            _rebase(data, relative, _relative)
            # the volume is new: the tar overwrites what a first try wrote
            once_more_if_copier_lost(
                lambda: self._put_volume(helper, relative), f"writing volume data via {helper}"
            )
        finally:
            relative.unlink(missing_ok=True)

    def _put_volume(self, helper: str, data: Path) -> None:
        with self._errors(container=helper), data.open("rb") as body:
            self._api.put(
                f"/containers/{helper}/archive",
                params={"path": VOLUME_PATH, "copyUIDGID": False},
                data=body,
                headers={"Content-Type": "application/x-tar"},
            ).raise_for_status()

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
