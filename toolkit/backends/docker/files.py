"""Daemon paths and container files reached through the Engine API's archive routes.

A helper container (created, never started) bind-mounts a daemon path so that ``get_archive``
and ``put_archive`` reach it: this works on a remote daemon too, with no ssh or shared disk.
"""

from __future__ import annotations

import io
import logging
import tarfile
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from toolkit import archive
from toolkit.archive.changes import write_changes
from toolkit.backends.docker.client import DockerClient, docker, requests
from toolkit.backends.options import sdk_ports
from toolkit.backends.shared import file_from_tar
from toolkit.errors import CtkError
from toolkit.models import ContainerSpec

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024


def engine_driver(backend: DockerClient) -> str:
    """The daemon's storage driver (overlay2 is the one whose whiteouts ctk writes)."""
    with backend._errors():
        return str(backend._client.info().get("Driver", ""))


def _checked_deletions(items: Any) -> list[str]:
    return archive.check_deleted_paths(items, what="manifest's deleted-path list")


def _whiteouts(deleted: list[str]) -> bytes:
    """A tar of overlay whiteouts (character devices 0:0): how overlay2 records a deletion.

    ``put_archive`` cannot delete; written into the container's upper directory before it
    starts, these hide the image's files exactly as ``rm`` in the container did.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in deleted:
            info = tarfile.TarInfo(path)
            info.type, info.devmajor, info.devminor, info.mode = tarfile.CHRTYPE, 0, 0, 0o600
            tar.addfile(info)
    return buffer.getvalue()


def _rename_checkpoint(source: Path, dest: Path, names: list[str], checkpoint: str) -> None:
    """Re-root ``get_archive``'s ``<name>/...`` as ``checkpoints/<checkpoint>/...``."""
    with (
        tarfile.open(source) as src,
        tarfile.open(dest, mode="w", format=tarfile.PAX_FORMAT) as out,
    ):
        top = tarfile.TarInfo("checkpoints")
        top.type, top.mode = tarfile.DIRTYPE, 0o700
        out.addfile(top)
        for member, name in zip(src.getmembers(), names, strict=True):
            parts = PurePosixPath(name).parts
            if member.isdir() and len(parts) == 1:
                member.name = f"checkpoints/{checkpoint}"
            else:
                member.name = "/".join(("checkpoints", checkpoint, *parts[1:]))
            data = src.extractfile(member) if member.isfile() else None
            out.addfile(member, data)


def _visible_here(directory: Path) -> bool:
    """Whether ``directory`` (a path on the daemon's host holding a container's ID) is here."""
    return directory.is_dir()


class FilesMixin(DockerClient):
    """Helper containers, archive fetches, rootfs changes, stopped containers."""

    @contextmanager
    def _helper(
        self, image: str, binds: dict[str, str], *, existing: bool = False
    ) -> Iterator[str]:
        """A created, never started container that bind-mounts daemon paths for the archive API.

        This reaches ``<DockerRootDir>/containers/<id>`` through the engine itself, so it works
        on a remote daemon too; the command is never run. ``existing``: read-only mounts of
        paths that must exist already (a ``-v`` bind would create a missing one on the host).
        """
        if existing:
            host_config = self._api.create_host_config(
                mounts=[
                    docker.types.Mount(target, source, type="bind", read_only=True)
                    for source, target in binds.items()
                ],
                network_mode="none",
            )
        else:
            host_config = self._api.create_host_config(
                binds=[f"{source}:{target}" for source, target in binds.items()],
                network_mode="none",
            )
        with self._errors(image=image):
            created = self._api.create_container(
                image,
                command=["/ctk-helper-never-started"],
                name=f"ctk-helper-{uuid.uuid4().hex[:12]}",
                labels={"ctk.helper": "1"},
                host_config=host_config,
                network_disabled=True,
            )
        try:
            yield str(created["Id"])
        finally:
            try:
                self._api.remove_container(created["Id"], force=True, v=False)
            except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
                log.warning("docker: could not remove helper container %s: %s", created["Id"], exc)

    def _remove_half_made(self, container_id: str) -> None:
        """Remove a container this backend made when what followed failed; log a failure."""
        try:
            self._api.remove_container(container_id, force=True, v=True)
        except Exception as exc:
            log.warning("docker: could not remove the half-made %s: %s", container_id, exc)

    def _fetch(self, container: str, path: str, out: Path) -> None:
        with self._errors(container=container):
            response = self._api._get(
                self._api._url("/containers/{0}/archive", container),
                params={"path": path},
                stream=True,
            )
            try:
                self._api._raise_for_status(response)
                archive.write_stream(response.iter_content(_CHUNK), out)
            finally:
                # dockerd holds the container's lock until its archive is read to the end or
                # the connection closes (daemon/archive.go): a stream left open after a failed
                # write blocked the helper's removal and every other client's `ps`.
                response.close()

    def _host_file(self, image: str, path: str) -> bytes | None:
        """A regular file of the daemon's host: read here when its directory is here, else
        through a helper container made from ``image``; None when it is gone or unreadable.

        Only for paths that name a container's ID (CRIU's logs in containerd's task directory):
        a directory of that path seen here is that container's, the daemon shares this disk.
        """
        here = Path(path)
        if _visible_here(here.parent):
            try:
                return here.read_bytes()
            except OSError as exc:
                log.debug("docker: %s is not readable here: %s", path, exc)
                return None
        target = "/ctk/host"
        try:
            with (
                tempfile.TemporaryDirectory(prefix="ctk-hostfile-") as tmp,
                self._helper(image, {str(here.parent): target}, existing=True) as helper,
            ):
                out = Path(tmp) / "file.tar"
                self._fetch(helper, f"{target}/{here.name}", out)
                return file_from_tar(out.read_bytes(), here.name)
        except CtkError as exc:
            log.warning("docker: %s on %s is not readable: %s", path, self.url, exc.message)
            return None

    def _fetch_changes(
        self, container_id: str, out: Path, stage: Path, *, exclude: Sequence[str] = ()
    ) -> list[str]:
        """The container's rootfs changes: changed and added files into ``out``; deleted paths.

        Only leaves are fetched (a changed directory's listed children come on their own), so an
        added file in /etc does not drag the whole of /etc along.
        """
        with self._errors(container=container_id):
            changes = self._api.diff(container_id) or []
        return write_changes(
            changes,
            lambda path, part: self._fetch(container_id, path, part),
            out,
            stage,
            exclude=exclude,
        )

    def _create_stopped(
        self,
        spec: ContainerSpec,
        image: str,
        *,
        ipc_mode: str | None = None,
        binds: dict[str, str] | None = None,
    ) -> str:
        """Create (never start) ``spec`` from ``image``; the new ID.

        ``binds`` is ``{host path: container path}``; ``spec.volumes`` are mounted as well.
        """
        ports = sdk_ports(spec.ports)
        host_config = self._api.create_host_config(
            port_bindings=ports or None,
            network_mode=spec.network or None,
            runtime=spec.runtime or None,
            ipc_mode=ipc_mode,
            binds=[f"{src}:{dst}" for src, dst in (binds or {}).items()] or None,
            # an anonymous volume's empty source makes Docker create a new one
            mounts=[
                docker.types.Mount(
                    m.target,
                    m.source or None,
                    type="bind" if m.type == "bind" else "volume",
                    read_only=m.read_only,
                )
                for m in spec.volumes
            ]
            or None,
        )
        with self._errors(image=image):
            created = self._api.create_container(
                image,
                command=list(spec.command) or None,
                name=spec.name,
                environment=dict(spec.env),
                labels=dict(spec.labels),
                ports=[tuple(k.split("/")) for k in ports] or None,
                host_config=host_config,
                hostname=spec.hostname,
                working_dir=spec.working_dir,
                user=spec.user,
            )
        return str(created["Id"])
