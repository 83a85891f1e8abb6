"""The podman SDK's one importer: the connection, error translation, inspect.

The SDK has no checkpoint methods; the libpod routes are called through the SDK's own HTTP
client. Every other module of this package takes the SDK from here.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import podman
import podman.api
import podman.errors
import requests

from toolkit.backends import DEFAULT_URLS, shared, validation
from toolkit.backends.podman_service import SSHTunnel, TemporaryPodmanService
from toolkit.backends.shared import BackendBase
from toolkit.errors import Conflict, ContainerNotFound, EngineError, ImageNotFound, InvalidArgument
from toolkit.models import EngineInfo

DEFAULT_URL = DEFAULT_URLS["podman"]

log = logging.getLogger(__name__)


# bookworm's crun has no CRIU support; runc has. Containers ctk creates use runc unless the
# spec names another runtime, so that every one of them can be checkpointed.
CHECKPOINT_RUNTIME = "runc"


# libpod answers some refusals with status 500; its JSON ``cause`` is the name of the libpod
# sentinel error (define.ErrCtrStateInvalid, storage.ErrImageUnknown), stable across versions.
_STATE_CAUSES = frozenset({"container state improper", "container already exists"})


_IMAGE_CAUSES = frozenset({"image not known"})


# define.ErrNoSuchCtr: a container removed while libpod was inspecting it comes back as 500.
_MISSING_CAUSES = frozenset({"no such container"})


_NETWORK_BUSY_CAUSES = frozenset({"network is being used"})


# Podman 4.3 inspects a container that exits under it by reading /proc/PID/cgroup after the
# process is gone, and answers 500 with ESRCH (fixed in later Podman, which says "stopped").
_GONE_PID = re.compile(r"read /proc/\d+/cgroup: no such process")


# How many times, and how long apart, ctk asks again after that answer.
_INSPECT_RETRIES = (0.05, 0.1, 0.25, 0.5)


# The libpod API version ctk speaks: Podman 4.3 (Debian 12) and 5.x (Debian 13) both serve it.
API_VERSION = "4.0.0"


def _cause(exc: BaseException | None) -> str:
    """libpod's sentinel ``cause`` of a refusal, or ''."""
    if isinstance(exc, podman.errors.APIError) and exc.args:
        return str(exc.args[0])
    return ""


def _explanation(exc: podman.errors.APIError) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip()


COPIER_LOST = "passing bulk input to subprocess"
"""Podman 4.3's copier now and then loses its helper process under load ("passing bulk input to
subprocess: write |1: broken pipe", seen in the testbed's podman logs with and without ctk):
putting the same tar once more is safe, as it overwrites what a first try wrote."""


def once_more_if_copier_lost(put: Callable[[], None], what: str) -> None:
    """``put()`` (a tar put into a container), and once more if Podman's copier lost it."""
    try:
        put()
    except EngineError as exc:
        if COPIER_LOST not in str(exc):
            raise
        log.warning("podman: %s failed (%s); once more", what, exc)
        put()


class PodmanClient(BackendBase):
    """The connection to one Podman service, and what every concern of the backend needs."""

    kind = "podman"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: int = 120,
        service: TemporaryPodmanService | SSHTunnel | None = None,
    ) -> None:
        # With a temporary service or an ssh tunnel, ``url`` stays the engine's identity
        # (ctk's checkpoint records are keyed by it) while requests go to a private socket.
        self.url = url
        if service is None and url.startswith("ssh://"):
            service = SSHTunnel.open(url)
        self._service = service
        base_url = service.url if service is not None else url
        self._client: Any = podman.PodmanClient(
            base_url=base_url, version=API_VERSION, timeout=timeout
        )
        # Any: the checkpoint routes use the SDK client's private request helpers.
        self._api: Any = self._client.api

    def info(self) -> EngineInfo:
        with self._errors():
            data = self._client.info()
        host = data.get("host") or {}
        store = data.get("store") or {}
        runtime = host.get("ociRuntime") or {}
        runtimes = runtime.get("name", "")
        # "runc version 1.1.5+ds1\ncommit: ..." -> "1.1.5+ds1"
        runtime_version = str(runtime.get("version") or "").splitlines()[:1] or [""]
        return EngineInfo(
            kind=self.kind,
            url=self.url,
            version=str((data.get("version") or {}).get("Version", "")),
            api_version=str((data.get("version") or {}).get("APIVersion", "")),
            experimental=False,
            default_runtime=str(runtimes),
            # ctk creates its containers with runc, which supports CRIU whatever the default.
            checkpoint_capable=True,
            root_dir=str(store.get("graphRoot", "")),
            runtime_version=runtime_version[0].removeprefix(f"{runtimes} version ").strip(),
            runtime_path=str(runtime.get("path") or ""),
        )

    @contextmanager
    def _errors(self, *, container: str | None = None, image: str | None = None) -> Iterator[None]:
        """Translate SDK and HTTP errors into ctk's tree, by class and status code."""
        try:
            yield
        except podman.errors.ImageNotFound as exc:
            raise ImageNotFound(f"no such image: {image}") from exc
        except podman.errors.NotFound as exc:
            raise shared.not_found(container, _explanation(exc)) from exc
        except podman.errors.APIError as exc:
            status = getattr(exc, "status_code", None)
            if status is None:
                # The SDK wraps a failed connection into an APIError with no status.
                raise shared.unavailable(self.kind, self.url) from exc
            cause = str(exc.args[0]) if exc.args else ""
            if cause in _STATE_CAUSES or status in (304, 409):
                raise Conflict(_explanation(exc)) from exc
            if cause in _MISSING_CAUSES and container is not None:
                raise ContainerNotFound(f"no such container: {container}") from exc
            if cause in _IMAGE_CAUSES:
                raise ImageNotFound(f"no such image: {image}") from exc
            if status == 400:
                raise InvalidArgument(_explanation(exc)) from exc
            raise EngineError(_explanation(exc)) from exc
        except (requests.exceptions.ConnectionError, podman.errors.PodmanError) as exc:
            raise shared.unavailable(self.kind, self.url) from exc

    def _post(self, path: str, **params: Any) -> Any:
        response = self._api.post(path, params=params or None)
        response.raise_for_status(not_found=podman.errors.NotFound)
        return response

    def _attrs(self, name: str) -> dict[str, Any]:
        validation.validate_ref(name, what="container")
        with self._errors(container=name):
            for delay in (*_INSPECT_RETRIES, None):
                response = self._api.get(f"/containers/{name}/json")
                if delay is not None and _GONE_PID.search(response.text or ""):
                    time.sleep(delay)
                    continue
                response.raise_for_status(not_found=podman.errors.NotFound)
                break
            attrs: dict[str, Any] = response.json()
        return attrs

    def _container(self, name: str) -> Any:
        """The SDK's model of ``name``, from ``_attrs`` (which copes with Podman 4.3's race)."""
        return self._client.containers.prepare_model(self._attrs(name))

    def _container_ids(self, *, all: bool, filters: dict[str, list[str]]) -> list[str]:
        params: dict[str, Any] = {"all": all}
        if filters:
            params["filters"] = json.dumps(filters)
        with self._errors():
            response = self._api.get("/containers/json", params=params)
            response.raise_for_status()
            rows = response.json() or []
        return [str(row["Id"]) for row in rows]

    def _network_refs(self) -> list[str]:
        with self._errors():
            response = self._api.get("/networks", compatible=True)
            response.raise_for_status()
            rows = response.json() or []
        return [str(row["Name"]) for row in sorted(rows, key=lambda r: str(r.get("Name", "")))]

    def _exists(self, name: str) -> bool:
        response = self._api.get(f"/containers/{name}/exists")
        return bool(response.status_code == 204)

    def close(self) -> None:
        self._client.close()
        if self._service is not None:
            self._service.stop()


__all__ = ["API_VERSION", "CHECKPOINT_RUNTIME", "DEFAULT_URL", "PodmanClient", "podman", "requests"]
