"""Podman's event stream through libpod (``podman events``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from toolkit.backends import building, inspection
from toolkit.backends.podman.client import PodmanClient
from toolkit.models import EngineEvent


class EventsMixin(PodmanClient):
    """Engine events."""

    def events(
        self,
        *,
        since: int | None = None,
        until: int | None = None,
        filters: Mapping[str, Sequence[str]] | None = None,
    ) -> Iterator[EngineEvent]:
        """Events from ``since`` (epoch seconds; default now) until ``until`` (default: for
        ever, as they come), filtered like ``podman events --filter``."""
        # Podman 4.3 turns `until` into a timer of until - now: one in the past fires at once
        # and the answer is empty. Such a window is read to now (stream=false stops at the end
        # of the log) and cut here instead; an open one is streamed until the timer ends it.
        past = until is not None and until <= time.time()
        params: dict[str, Any] = {"stream": not past}
        if since is not None:
            params["since"] = str(since)
        if until is not None and not past:
            params["until"] = str(until)
        if filters:
            params["filters"] = json.dumps({k: list(v) for k, v in filters.items()})
        with self._errors():
            response = self._api.get("/events", params=params, stream=True, timeout=None)
            response.raise_for_status()
            try:
                for raw in building.json_lines(response.iter_content(chunk_size=None)):
                    if past and int(raw.get("timeNano") or 0) > int(until or 0) * 10**9:
                        continue
                    yield inspection.event_from_api(raw)
            finally:
                response.close()
