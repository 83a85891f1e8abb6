"""Docker's event stream (``docker events``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from toolkit.backends import inspection
from toolkit.backends.docker.client import DockerClient
from toolkit.models import EngineEvent


class EventsMixin(DockerClient):
    """Engine events."""

    def events(
        self,
        *,
        since: int | None = None,
        until: int | None = None,
        filters: Mapping[str, Sequence[str]] | None = None,
    ) -> Iterator[EngineEvent]:
        """Events from ``since`` (epoch seconds; default now) until ``until`` (default: for
        ever, as they come), filtered like ``docker events --filter``."""
        with self._errors():
            stream = self._api.events(
                since=since,
                until=until,
                filters={k: list(v) for k, v in (filters or {}).items()} or None,
                decode=True,
            )
            try:
                for raw in stream:
                    yield inspection.event_from_api(raw)
            finally:
                stream.close()
