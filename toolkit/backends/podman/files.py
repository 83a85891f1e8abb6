"""Files of the Podman host, read through the engine when ctk does not share its filesystem.

libpod keeps CRIU's logs and statistics in the container's StaticDir on the engine's host. When
that directory is visible here, ctk reads it; otherwise a helper container (created, never
started) bind-mounts it and libpod's archive route hands the file out, as the Docker backend
reaches daemon paths (:mod:`toolkit.backends.docker.files`).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from toolkit import archive
from toolkit.backends import shared
from toolkit.backends.podman.client import PodmanClient, podman, requests
from toolkit.errors import CtkError, Unsupported

log = logging.getLogger(__name__)

_MOUNT = "/ctk-helper"
_CHUNK = 1024 * 1024


def _visible_here(directory: Path) -> bool:
    """Whether ``directory`` (a path on the engine's host holding a container's ID) is here."""
    return directory.is_dir()


class FilesMixin(PodmanClient):
    """A file of a container's StaticDir, here or through a helper container."""

    def _helper(self, image: str, source: str) -> AbstractContextManager[str]:
        """A created, never started container bind-mounting ``source`` read-only at /ctk-helper."""
        mount = {"destination": _MOUNT, "source": source, "type": "bind", "options": ["ro"]}
        return self._helper_with(image, {"mounts": [mount]})

    @contextmanager
    def _helper_with(self, image: str, mounts: dict[str, Any]) -> Iterator[str]:
        """A created, never started container with ``mounts`` (libpod's create-body keys)."""
        body = {
            "image": image,
            "name": f"ctk-helper-{uuid.uuid4().hex[:12]}",
            "labels": {"ctk.helper": "1"},
            "command": ["/ctk-helper-never-started"],
            **mounts,
            "netns": {"nsmode": "none"},
        }
        with self._errors(image=image):
            response = self._api.post(
                "/containers/create",
                headers={"content-type": "application/json"},
                data=json.dumps(body),
            )
            response.raise_for_status()
            helper = str(response.json()["Id"])
        try:
            yield helper
        finally:
            try:
                self._api.delete(f"/containers/{helper}", params={"force": True}).raise_for_status()
            except (podman.errors.APIError, requests.exceptions.RequestException) as exc:
                log.warning("podman: could not remove helper container %s: %s", helper, exc)

    def _host_file(self, attrs: dict[str, Any], relative: str) -> bytes | None:
        """``StaticDir/relative`` of the container ``attrs``; None when the engine has none.

        StaticDir's path holds the container's ID, so a directory of that path seen here is
        that container's (the engine shares this filesystem): read it directly. Otherwise ask
        the engine.

        Raises:
            Unsupported: the engine could not hand the file out.
        """
        static = str(attrs.get("StaticDir") or "")
        if not static:
            return None
        here = Path(static)
        if _visible_here(here):
            try:
                return (here / relative).read_bytes()
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise Unsupported(f"{here / relative} is not readable: {exc}") from exc
        try:
            with self._helper(str(attrs.get("Image") or attrs.get("ImageName")), static) as helper:
                return self._archive_file(helper, str(PurePosixPath(_MOUNT, relative)))
        except CtkError as exc:
            raise Unsupported(
                f"{relative} of the container is not readable from here: {exc.message}",
                hint="the engine's host keeps it in the container's StaticDir",
            ) from exc

    def _host_tree(self, attrs: dict[str, Any], relative: str, out: Path) -> None:
        """``StaticDir/relative`` of the container ``attrs`` as libpod's archive tar, into ``out``.

        Always through a helper container (the caller reads a visible directory itself).

        Raises:
            Unsupported: the engine could not hand it out.
        """
        static = str(attrs.get("StaticDir") or "")
        image = str(attrs.get("Image") or attrs.get("ImageName"))
        try:
            with (
                self._helper(image, static) as helper,
                self._errors(container=helper),
            ):
                response = self._api.get(
                    f"/containers/{helper}/archive",
                    params={"path": str(PurePosixPath(_MOUNT, relative))},
                    stream=True,
                )
                try:
                    response.raise_for_status()
                    archive.write_stream(response.iter_content(_CHUNK), out)
                finally:
                    response.close()
        except CtkError as exc:
            raise Unsupported(
                f"{relative} of the container is not readable from here: {exc.message}",
                hint="export it and inspect the file: ctk checkpoint NAME --export FILE",
            ) from exc

    def _archive_file(self, container: str, path: str) -> bytes | None:
        """One regular file out of ``container`` by libpod's archive route; None if absent."""
        with self._errors(container=container):
            response = self._api.get(f"/containers/{container}/archive", params={"path": path})
            if response.status_code == 404:
                return None
            response.raise_for_status()
            return shared.file_from_tar(response.content, PurePosixPath(path).name)

    def shares_directory(self, directory: Path, *, image: str) -> bool:
        """True when the engine's host sees ``directory`` of this machine at the same path.

        ctk writes a file with a random token into it and reads it back through a helper
        container bind-mounting the same path on the engine's host; anything else (the path
        missing there, another file, the engine refusing) is "no".
        """
        token = uuid.uuid4().hex
        probe = directory / f".ctk-shared-{token[:12]}"
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_text(token)
        try:
            with self._helper(image, str(directory)) as helper:
                seen = self._archive_file(helper, f"{_MOUNT}/{probe.name}")
        except CtkError as exc:
            log.debug("podman %s does not see %s: %s", self.url, directory, exc.message)
            return False
        finally:
            probe.unlink(missing_ok=True)
        return seen == token.encode()
