"""What toolkit.migration asks of Podman: cold moves (spec, rootfs changes) and the
cross-runtime path (templates, raw libpod export and import).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from toolkit.backends.podman.archives import ArchivesMixin
from toolkit.backends.podman.images import ImagesMixin
from toolkit.backends.podman.lifecycle import LifecycleMixin
from toolkit.errors import Unsupported
from toolkit.models import (
    CheckpointOptions,
    ContainerInfo,
    ContainerSpec,
    ImportOptions,
    PortMapping,
)

log = logging.getLogger(__name__)


class MigrationMixin(ArchivesMixin, ImagesMixin, LifecycleMixin):
    """Cold and cross-runtime migration."""

    def fetch_changes(self, name: str, out: Path, *, exclude: Sequence[str] = ()) -> list[str]:
        """The container's rootfs changes as a tar at ``out``; the deleted paths."""
        return self._rootfs_changes(self._attrs(name)["Id"], out, exclude=exclude)

    def create_with_changes(
        self, spec: ContainerSpec, *, image_id: str, changes: Path | None, deleted: list[str]
    ) -> ContainerInfo:
        """Create ``spec`` from image ``image_id``, apply rootfs changes, start it.

        Podman's API cannot write overlay whiteouts, so deleted paths are refused here; a
        failure removes the container again.
        """
        if deleted:
            raise Unsupported(
                f"podman cannot reproduce {len(deleted)} deleted path(s) of the source's rootfs "
                "through its API",
                hint="recreate the deletions in the image, or move it to docker",
            )
        spec = dataclasses.replace(spec, image=self.local_image(spec.image, image_id))
        container_id = self._create(spec)
        try:
            with self._errors(container=spec.name or container_id):
                if changes is not None:
                    self._container(container_id).put_archive("/", changes.read_bytes())
                self._post(f"/containers/{container_id}/start")
        except BaseException:
            self._remove_half_made(container_id)
            raise
        return self.inspect(container_id)

    def export_raw(
        self,
        name: str,
        dest: Path,
        *,
        checkpoint: str,
        leave_running: bool = False,
        tcp_established: bool = False,
    ) -> None:
        """Checkpoint a running container into libpod's own export tar at ``dest``.

        See :meth:`checkpoint_stream` for what the tar holds and what is kept.
        """
        options = CheckpointOptions(
            name=checkpoint, leave_running=leave_running, tcp_established=tcp_established
        )
        chunks = self.checkpoint_stream(name, options)
        with dest.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)

    def with_timeout(self, seconds: int) -> Self:
        """A connection to the same engine whose requests wait up to ``seconds``.

        Through an ssh tunnel this one is returned: a second tunnel is not worth it.
        """
        if self.url.startswith("ssh://"):
            return self
        return type(self)(self.url, timeout=seconds)

    def start_template(self, spec: ContainerSpec, *, annotations: dict[str, str]) -> str:
        """Create and start a container with OCI ``annotations`` (runc runtime); its ID.

        The SDK's ``run`` path has no annotations; runc reads ``org.criu.config`` from them.
        """
        container_id = self._create(spec, annotations=annotations)
        try:
            with self._errors(container=spec.name or container_id):
                self._post(f"/containers/{container_id}/start")
        except Exception:
            self._remove_half_made(container_id)
            raise
        return container_id

    def _remove_half_made(self, container_id: str) -> None:
        """Remove a container this backend made when what followed failed; log a failure."""
        try:
            self._api.delete(f"/containers/{container_id}", params={"force": True})
        except Exception as exc:
            log.warning("podman: could not remove the half-made %s: %s", container_id, exc)

    def import_raw(
        self,
        tar: Path,
        *,
        name: str,
        ports: tuple[PortMapping, ...] = (),
        tcp_established: bool = False,
        criu_log: Path | None = None,
    ) -> ContainerInfo:
        """Create and restore container ``name`` from a libpod export tar.

        A failed restore removes the container; ``criu_log`` is where the per-container CRIU
        config sent CRIU's log (libpod drops the container, and its log, on failure).

        Raises:
            Conflict: a container named ``name`` exists.
            CheckpointError: CRIU failed to restore (nothing left behind).
        """
        with tar.open("rb") as body:
            return self.restore_stream(
                body,
                ImportOptions(
                    name=name,
                    ports=ports,
                    tcp_established=tcp_established,
                    ignore_static_ip=True,
                ),
                criu_log=criu_log,
            )
