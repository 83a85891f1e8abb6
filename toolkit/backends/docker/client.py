"""The docker SDK's one importer: the connection, error translation, inspect.

The SDK has no checkpoint methods, so the Engine API's experimental routes are called through
the SDK's own HTTP client (see :mod:`toolkit.backends.docker.checkpoints`). Every other module
of this package takes the SDK from here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from toolkit.backends.docker.paramiko_deferral import _defer_paramiko

_defer_paramiko()

import docker
import docker.errors
import docker.tls
import docker.types
import docker.utils
import requests

from toolkit.backends import DEFAULT_URLS, shared, validation
from toolkit.backends.shared import BackendBase
from toolkit.errors import (
    Conflict,
    ContainerNotFound,
    EngineError,
    EngineUnavailable,
    ImageNotFound,
    InvalidArgument,
)
from toolkit.models import EngineInfo

if TYPE_CHECKING:
    from toolkit.config import TLSOptions


DEFAULT_URL = DEFAULT_URLS["docker"]


@contextmanager
def _ca_bundle_env_hidden() -> Iterator[None]:
    """Hide the CA bundle variables while the client fetches the API version on creation."""
    saved = {
        k: os.environ.pop(k) for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if k in os.environ
    }
    try:
        yield
    finally:
        os.environ.update(saved)


def _explanation(exc: docker.errors.APIError) -> str:
    text = exc.explanation or str(exc)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text).strip()


class DockerClient(BackendBase):
    """The connection to one Docker Engine, and what every concern of the backend needs."""

    kind = "docker"

    def __init__(
        self, url: str = DEFAULT_URL, *, timeout: int = 120, tls: TLSOptions | None = None
    ) -> None:
        self.url = url
        extra: dict[str, Any] = {}
        if url.startswith("ssh://") and shutil.which("ssh"):
            # The ssh command, as docker's CLI does: it reads the system's and the user's
            # ssh_config (keys, known hosts) and the agent; paramiko reads ~/.ssh/config only.
            extra["use_ssh_client"] = True
        try:
            if tls is not None and tls.enabled:
                client_cert = (tls.cert, tls.key) if tls.cert and tls.key else None
                extra["tls"] = docker.tls.TLSConfig(
                    client_cert=client_cert,
                    ca_cert=tls.ca_cert,
                    verify=tls.ca_cert if tls.verify and tls.ca_cert else tls.verify,
                )
            own_ca = tls is not None and bool(tls.ca_cert)
            with _ca_bundle_env_hidden() if own_ca else contextlib.nullcontext():
                self._client = docker.DockerClient(
                    base_url=url, version="auto", timeout=timeout, **extra
                )
            if own_ca:
                # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a session's CA, so
                # the engine's own CA would never be used where those are set.
                self._client.api.trust_env = False
        except docker.errors.TLSParameterError as exc:
            raise InvalidArgument(
                f"bad TLS options for {url}: {str(exc).split('.')[0]}",
                hint="--tlscacert, --tlscert and --tlskey must name readable PEM files; "
                "--tlscert and --tlskey go together",
            ) from exc
        except docker.errors.DockerException as exc:
            if url == DEFAULT_URL:
                raise EngineUnavailable(
                    f"Docker does not answer at {url}",
                    hint="start it with: scripts/engines start (or pass --engine podman)",
                ) from exc
            raise shared.unavailable(self.kind, url) from exc
        # Any: the checkpoint routes use the SDK client's private request helpers.
        self._api: Any = self._client.api

    @contextmanager
    def _errors(self, *, container: str | None = None, image: str | None = None) -> Iterator[None]:
        """Translate SDK and HTTP errors into ctk's tree, by class and status code."""
        try:
            yield
        except docker.errors.ImageNotFound as exc:
            raise ImageNotFound(f"no such image: {image}") from exc
        except docker.errors.NotFound as exc:
            raise shared.not_found(container, _explanation(exc)) from exc
        except docker.errors.APIError as exc:
            status = exc.status_code
            if status == 409 or status == 304:
                raise Conflict(_explanation(exc)) from exc
            if status == 400:
                raise InvalidArgument(_explanation(exc)) from exc
            raise EngineError(_explanation(exc)) from exc
        except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
            raise shared.unavailable(self.kind, self.url) from exc

    def info(self) -> EngineInfo:
        with self._errors():
            data = self._client.info()
            version = self._client.version()
        experimental = bool(version.get("Experimental") or data.get("ExperimentalBuild"))
        return EngineInfo(
            kind=self.kind,
            url=self.url,
            version=str(version.get("Version", "")),
            api_version=str(version.get("ApiVersion", "")),
            experimental=experimental,
            default_runtime=str(data.get("DefaultRuntime", "")),
            # Docker's checkpoint routes exist only with experimental mode on.
            checkpoint_capable=experimental,
            root_dir=str(data.get("DockerRootDir", "")),
            # Docker names runc's build (RuncCommit), not CRIU: only a checkpoint proves CRIU.
            runtime_version=str((data.get("RuncCommit") or {}).get("ID", "")),
            runtime_path=str(
                ((data.get("Runtimes") or {}).get(data.get("DefaultRuntime")) or {}).get("path")
                or ""
            ),
        )

    def _attrs(self, name: str) -> dict[str, Any]:
        validation.validate_ref(name, what="container")
        with self._errors(container=name):
            attrs: dict[str, Any] = self._api.inspect_container(name)
        return attrs

    def _container_ids(self, *, all: bool, filters: dict[str, list[str]]) -> list[str]:
        with self._errors():
            rows = self._api.containers(all=all, filters=filters or None)
        return [str(row["Id"]) for row in rows]

    def _network_refs(self) -> list[str]:
        with self._errors():
            rows = self._api.networks()
        return [str(row["Id"]) for row in sorted(rows, key=lambda r: str(r.get("Name", "")))]

    def _exists(self, name: str) -> bool:
        try:
            with self._errors(container=name):
                self._api.inspect_container(name)
        except ContainerNotFound:
            return False
        return True

    def close(self) -> None:
        self._client.close()


__all__ = ["DEFAULT_URL", "DockerClient", "docker", "requests"]
