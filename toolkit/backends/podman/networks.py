"""Podman networks: created through libpod, read through the Docker-compatible routes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from toolkit.backends import inspection, validation
from toolkit.backends.podman.client import _NETWORK_BUSY_CAUSES, PodmanClient, _cause, podman
from toolkit.errors import Conflict, ContainerNotFound, EngineError, NetworkNotFound, Unsupported
from toolkit.models import NetworkInfo, NetworkSpec


class NetworksMixin(PodmanClient):
    """Networks and their containers."""

    # Podman's Docker-compatible routes report networks in Docker's shape, containers with
    # their addresses included (libpod's own inspect leaves them out), so both backends share
    # one parser. Creation uses libpod's route, whose refusals carry a ``cause``.
    @contextmanager
    def _network_errors(self, network: str, *, container: str | None = None) -> Iterator[None]:
        """Like ``_errors``, but a 404 names the network; callers look the container up first."""
        try:
            with self._errors(container=container):
                yield
        except (ContainerNotFound, EngineError) as exc:
            if isinstance(exc.__cause__, podman.errors.NotFound):
                raise NetworkNotFound(f"no such network: {network}") from exc.__cause__
            if _cause(exc.__cause__) in _NETWORK_BUSY_CAUSES:
                raise Conflict(
                    exc.message, hint=f"see what uses it: ctk network inspect {network}"
                ) from exc.__cause__
            raise

    def create_network(self, spec: NetworkSpec) -> NetworkInfo:
        validation.validate_network_spec(spec)
        if spec.driver == "overlay":
            raise Unsupported(
                "Podman has no overlay networks (they are a Docker swarm feature)",
                hint="create a bridge network on each host (ctk network create NAME), "
                "or use --engine docker with swarm",
            )
        body: dict[str, Any] = {
            "name": spec.name,
            "driver": spec.driver,
            "internal": spec.internal,
            "labels": dict(spec.labels),
            # The CLI turns aardvark-dns on by default, the API does not: containers on a
            # user network resolve each other by name, as on Docker.
            "dns_enabled": True,
            # Docker's bridges cannot reach each other; netavark's can unless isolated.
            "options": {"isolate": "true"},
        }
        if spec.subnet:
            subnet = {"subnet": spec.subnet}
            if spec.gateway:
                subnet["gateway"] = spec.gateway
            body["subnets"] = [subnet]
        with self._network_errors(spec.name):
            response = self._api.post("/networks/create", data=json.dumps(body))
            response.raise_for_status()
        return self.inspect_network(spec.name)

    def inspect_network(self, name: str) -> NetworkInfo:
        validation.validate_ref(name, what="network")
        with self._network_errors(name):
            response = self._api.get(f"/networks/{name}", compatible=True)
            response.raise_for_status(not_found=podman.errors.NotFound)
            data = response.json()
        return inspection.network_from_inspect(data, self.kind)

    def remove_network(self, name: str) -> None:
        validation.validate_ref(name, what="network")
        if name in validation.NETWORK_MODES or name == "podman":
            raise Conflict(
                f"{name} is a pre-defined network and cannot be removed",
                hint="remove only networks you created (ctk network ls)",
            )
        with self._network_errors(name):
            response = self._api.delete(f"/networks/{name}")
            response.raise_for_status(not_found=podman.errors.NotFound)

    def connect_network(
        self, network: str, container: str, *, aliases: tuple[str, ...] = ()
    ) -> None:
        validation.validate_ref(network, what="network")
        attrs = self._attrs(container)
        body: dict[str, Any] = {"Container": attrs["Id"]}
        if aliases:
            body["EndpointConfig"] = {"Aliases": list(aliases)}
        # The compat route, because it knows "bridge" as the default network's name.
        with self._network_errors(network, container=container):
            response = self._api.post(
                f"/networks/{network}/connect", data=json.dumps(body), compatible=True
            )
            response.raise_for_status(not_found=podman.errors.NotFound)

    def disconnect_network(self, network: str, container: str, *, force: bool = False) -> None:
        validation.validate_ref(network, what="network")
        attrs = self._attrs(container)
        body = {"Container": attrs["Id"], "Force": force}
        with self._network_errors(network, container=container):
            response = self._api.post(
                f"/networks/{network}/disconnect", data=json.dumps(body), compatible=True
            )
            response.raise_for_status(not_found=podman.errors.NotFound)

    def prune_networks(self, *, labels: dict[str, str] | None = None) -> list[str]:
        params = {}
        if labels:
            params["filters"] = json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})
        with self._errors():
            response = self._api.post("/networks/prune", params=params)
            response.raise_for_status()
            rows = response.json() or []
        return sorted(str(r.get("Name", "")) for r in rows if not r.get("Error"))
