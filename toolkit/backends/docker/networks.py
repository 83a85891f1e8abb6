"""Docker networks: bridge and (on a swarm manager) overlay."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from toolkit.backends import inspection, validation
from toolkit.backends.docker.client import DockerClient, _explanation, docker
from toolkit.errors import Conflict, NetworkNotFound, Unsupported
from toolkit.models import NetworkInfo, NetworkSpec


class NetworksMixin(DockerClient):
    """Networks and their containers."""

    @contextmanager
    def _network_errors(self, network: str, *, container: str | None = None) -> Iterator[None]:
        """Like ``_errors``, but a 404 names the network and a 403 (a built-in network, or one
        with containers) is a Conflict. Callers look the container up first, so a 404 here
        is the network's."""
        try:
            yield
        except docker.errors.NotFound as exc:
            raise NetworkNotFound(f"no such network: {network}") from exc
        except docker.errors.APIError as exc:
            if exc.status_code == 403:
                raise Conflict(
                    _explanation(exc),
                    hint=f"see what uses it: ctk network inspect {network}",
                ) from exc
            with self._errors(container=container):
                raise

    def create_network(self, spec: NetworkSpec) -> NetworkInfo:
        validation.validate_network_spec(spec)
        if spec.driver == "overlay":
            self._require_swarm_manager()
        ipam = None
        if spec.subnet:
            pool = docker.types.IPAMPool(subnet=spec.subnet, gateway=spec.gateway)
            ipam = docker.types.IPAMConfig(pool_configs=[pool])
        with self._network_errors(spec.name):
            existing = self._api.networks(names=[spec.name])
            if any(row.get("Name") == spec.name for row in existing):
                raise Conflict(
                    f"network {spec.name} already exists",
                    hint=f"pick another name or remove it: ctk network rm {spec.name}",
                )
            created = self._api.create_network(
                spec.name,
                driver=spec.driver,
                ipam=ipam,
                internal=spec.internal,
                labels=dict(spec.labels) or None,
                attachable=spec.attachable or None,
                check_duplicate=True,
            )
        return self.inspect_network(str(created["Id"]))

    def _require_swarm_manager(self) -> None:
        # Overlay networks live in swarm's store: without a manager Docker refuses them.
        with self._errors():
            swarm = self._client.info().get("Swarm") or {}
        if not swarm.get("ControlAvailable"):
            raise Unsupported(
                "overlay networks need this Docker to be a swarm manager",
                hint="docker swarm init --advertise-addr 127.0.0.1 (undo: docker swarm leave "
                "--force), or use a bridge network per host",
            )

    def inspect_network(self, name: str) -> NetworkInfo:
        validation.validate_ref(name, what="network")
        with self._network_errors(name):
            data = self._api.inspect_network(name)
        return inspection.network_from_inspect(data, self.kind)

    def remove_network(self, name: str) -> None:
        validation.validate_ref(name, what="network")
        with self._network_errors(name):
            self._api.remove_network(name)

    def connect_network(
        self, network: str, container: str, *, aliases: tuple[str, ...] = ()
    ) -> None:
        validation.validate_ref(network, what="network")
        attrs = self._attrs(container)
        with self._network_errors(network, container=container):
            self._api.connect_container_to_network(
                attrs["Id"], network, aliases=list(aliases) or None
            )

    def disconnect_network(self, network: str, container: str, *, force: bool = False) -> None:
        validation.validate_ref(network, what="network")
        attrs = self._attrs(container)
        with self._network_errors(network, container=container):
            self._api.disconnect_container_from_network(attrs["Id"], network, force=force)

    def prune_networks(self, *, labels: dict[str, str] | None = None) -> list[str]:
        filters = {"label": [f"{k}={v}" for k, v in (labels or {}).items()]} if labels else None
        with self._errors():
            result = self._api.prune_networks(filters=filters)
        return sorted(result.get("NetworksDeleted") or [])
