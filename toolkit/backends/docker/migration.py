"""What toolkit.migration asks of Docker: cold moves (spec, rootfs changes) and the
cross-runtime path (a container shaped for CRIU images from Podman, started from them).
"""

from __future__ import annotations

import io
import logging
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolkit import records
from toolkit.backends import validation
from toolkit.backends.docker.checkpoints import CheckpointsMixin
from toolkit.backends.docker.client import DEFAULT_URL, _explanation, docker, requests
from toolkit.backends.docker.files import _checked_deletions, _whiteouts, engine_driver
from toolkit.backends.docker.images import ImagesMixin
from toolkit.backends.docker.restore_log import _watch_restore_log
from toolkit.criu import diagnosis
from toolkit.errors import EngineUnavailable, Unsupported
from toolkit.models import ContainerInfo, ContainerSpec

log = logging.getLogger(__name__)


class MigrationMixin(CheckpointsMixin, ImagesMixin):
    """Cold and cross-runtime migration."""

    def fetch_changes(self, name: str, out: Path, *, exclude: Sequence[str] = ()) -> list[str]:
        """The container's rootfs changes as a tar at ``out``; the deleted paths."""
        attrs = self._attrs(name)
        with tempfile.TemporaryDirectory() as stage:
            return self._fetch_changes(attrs["Id"], out, Path(stage), exclude=exclude)

    def create_with_changes(
        self, spec: ContainerSpec, *, image_id: str, changes: Path | None, deleted: list[str]
    ) -> ContainerInfo:
        """Create ``spec`` from image ``image_id``, apply rootfs changes, start it.

        Deletions become overlay2 whiteouts as in :meth:`import_checkpoint`. A failure removes
        the container again.
        """
        validation.validate_spec(spec)
        image = self._local_image(spec.image, image_id)
        checked = _checked_deletions(deleted)
        if checked and engine_driver(self) != "overlay2":
            raise Unsupported(f"cannot apply deletions on a {engine_driver(self)} daemon")
        new_id = self._create_stopped(spec, image)
        try:
            if changes is not None:
                with self._errors(container=new_id), changes.open("rb") as data:
                    self._api.put_archive(new_id, "/", data)
            if checked:
                upper = self._api.inspect_container(new_id)["GraphDriver"]["Data"]["UpperDir"]
                with (
                    self._helper(image, {str(upper): "/ctk/upper"}) as helper,
                    self._errors(container=helper),
                ):
                    self._api.put_archive(helper, "/ctk/upper", _whiteouts(checked))
            with self._errors(container=spec.name or new_id):
                self._api.start(new_id)
        except BaseException:
            self._remove_half_made(new_id)
            raise
        return self.inspect(new_id)

    def create_for_images(
        self,
        spec: ContainerSpec,
        *,
        image_id: str,
        shareable_ipc: bool = False,
        binds: dict[str, str] | None = None,
    ) -> str:
        """Create (never start) a container that CRIU images from elsewhere can restore into.

        ``shareable_ipc`` makes /dev/shm a bind mount (as Podman's is) instead of a tmpfs, and
        ``binds`` (``{host path: container path}``) adds the bind mounts the images expect, so
        that runc offers CRIU every external mount the images name. Returns the new ID.

        Raises:
            ImageNotFound: the image ID is not here.
            Conflict: the name is in use.
        """
        validation.validate_spec(spec)
        image = self._local_image(spec.image, image_id)
        return self._create_stopped(
            spec, image, ipc_mode="shareable" if shareable_ipc else None, binds=binds
        )

    def start_from_images(
        self,
        container_id: str,
        images: Path,
        *,
        checkpoint: str,
        rootfs: Path | None = None,
        deleted: list[str] | None = None,
        shm: Path | None = None,
    ) -> ContainerInfo:
        """Place CRIU images (a flat directory) as checkpoint ``checkpoint`` and start from it.

        ``rootfs`` (a tar of changed files, applied at ``/``) and ``deleted`` (paths, applied as
        overlay2 whiteouts) carry the source's filesystem changes; ``shm`` (a tar) is unpacked
        into the volume the container has at /dev/shm (Podman's /dev/shm files, which CRIU
        maps again by path). The container is left as it is on failure: the caller removes it.

        Raises:
            CheckpointError: CRIU failed to restore.
        """
        validation.validate_checkpoint_name(checkpoint)
        engine = self.info()
        gone = _checked_deletions(list(deleted or []))
        if gone and engine_driver(self) != "overlay2":
            raise Unsupported(
                "the source deleted files, which ctk applies as overlay2 whiteouts; this "
                f"daemon uses {engine_driver(self)}",
            )
        if rootfs is not None:
            with self._errors(container=container_id), rootfs.open("rb") as data:
                self._api.put_archive(container_id, "/", data)
        attrs = self._attrs(container_id)
        binds = {f"{engine.root_dir}/containers/{container_id}": "/ctk/container"}
        if shm is not None:
            binds[_volume_at(attrs, "/dev/shm")] = "/ctk/shm"
        if gone:
            binds[str(attrs["GraphDriver"]["Data"]["UpperDir"])] = "/ctk/upper"
        placed = io.BytesIO()
        with tarfile.open(fileobj=placed, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for directory in ("checkpoints", f"checkpoints/{checkpoint}"):
                info = tarfile.TarInfo(directory)
                info.type, info.mode = tarfile.DIRTYPE, 0o700
                tar.addfile(info)
            for item in sorted(images.iterdir()):
                if item.is_file() and not item.is_symlink():
                    tar.add(item, arcname=f"checkpoints/{checkpoint}/{item.name}")
        with self._helper(attrs["Image"], binds) as helper:
            if gone:
                with self._errors(container=helper):
                    self._api.put_archive(helper, "/ctk/upper", _whiteouts(gone))
            with self._errors(container=helper):
                self._api.put_archive(helper, "/ctk/container", placed.getvalue())
            if shm is not None:
                with self._errors(container=helper), shm.open("rb") as data:
                    self._api.put_archive(helper, "/ctk/shm", data)
                    # the archive API skips the tar's root entry: the volume's root (0755, root)
                    # gets /dev/shm's mode and owner from the tar's "./" here
                    self._api.put_archive(helper, "/ctk", _root_as(shm, "shm"))
        kept: list[str] = []
        try:
            with _watch_restore_log(container_id, kept, local=self.url == DEFAULT_URL):
                self._start_from_checkpoint(container_id, checkpoint)
        except docker.errors.APIError as exc:
            log_text = kept[0] if kept else ""
            raise diagnosis.criu_error(
                "restore", container_id, _explanation(exc), log_text
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise EngineUnavailable(f"Docker does not answer at {self.url}") from exc
        records.record_checkpoint(self.kind, self.url, container_id, checkpoint)
        return self.inspect(container_id)


def _volume_at(attrs: dict[str, Any], target: str) -> str:
    """The name of the volume the container (its inspect ``attrs``) has at ``target``."""
    for mount in attrs.get("Mounts") or ():
        if mount.get("Destination") == target and mount.get("Type") == "volume":
            return str(mount["Name"])
    raise Unsupported(f"the container has no volume at {target}")


def _root_as(tar: Path, name: str) -> bytes:
    """A tar of one directory ``name`` with the mode and owner of ``tar``'s root entry."""
    with tarfile.open(tar) as source:
        root = next(
            (m for m in source.getmembers() if m.isdir() and m.name.strip("./") == ""), None
        )
    entry = tarfile.TarInfo(name)
    entry.type = tarfile.DIRTYPE
    entry.mode = root.mode if root is not None else 0o1777
    if root is not None:
        entry.uid, entry.gid, entry.mtime = root.uid, root.gid, root.mtime
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as placed:
        placed.addfile(entry)
    return out.getvalue()
