"""Docker checkpoints: ``POST/GET/DELETE /containers/{id}/checkpoints`` and
``POST /containers/{id}/start?checkpoint=NAME`` (experimental routes, through the SDK's client).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolkit import interrupts, records
from toolkit.backends import shared, validation
from toolkit.backends.docker.client import _explanation, docker, requests
from toolkit.backends.docker.files import FilesMixin
from toolkit.criu import diagnosis
from toolkit.errors import CheckpointNotFound, Conflict, Unsupported
from toolkit.models import Checkpoint, CheckpointOptions, ContainerInfo, RestoreOptions

log = logging.getLogger(__name__)

# Waits between attempts on containerd's blob race: its default collector runs about
# once a second, so three retries over 2.75 s outlast it.
_BLOB_RACE_DELAYS = (0.25, 0.5, 2.0)


def refuse_tcp_close(tcp_close: bool) -> None:
    """Docker's restore is ``POST /containers/{id}/start?checkpoint=NAME``: it takes no CRIU
    options, and Docker 20.10 has no per-container annotations for runc's ``org.criu.config``.

    Raises:
        Unsupported: ``tcp_close`` was asked for.
    """
    if tcp_close:
        raise Unsupported(
            "Docker's API cannot pass --tcp-close to CRIU (its restore, start?checkpoint=, "
            "takes no CRIU options)",
            hint="checkpoint without open TCP connections, or close them before the checkpoint",
        )


class CheckpointsMixin(FilesMixin):
    """Checkpoint, list, remove and restore in place."""

    def _require_checkpoint_support(self) -> None:
        if not self.info().experimental:
            raise Unsupported(
                "Docker's checkpoint API needs experimental mode",
                hint='set {"experimental": true} in /etc/docker/daemon.json and restart dockerd '
                "(scripts/setup and scripts/engines start do this)",
            )

    def checkpoint(self, name: str, options: CheckpointOptions) -> Checkpoint:
        return self._checkpoint(name, options, in_place=True)

    def _checkpoint(
        self, name: str, options: CheckpointOptions, *, in_place: bool, paused: bool = False
    ) -> Checkpoint:
        """The dump; ``paused``: ctk paused the container for it (see export_checkpoint)."""
        attrs = self._attrs(name)
        cp_name = options.name or records.new_checkpoint_name()
        validation.validate_checkpoint_name(cp_name)
        if not attrs["State"]["Running"] or (attrs["State"].get("Paused") and not paused):
            raise Conflict(
                f"container {name} is not running; only a running container can be checkpointed",
                hint=f"start it first: ctk start {name}",
            )
        if in_place:
            validation.refuse_auto_remove_in_place(name, attrs)
        existing = {c["Name"] for c in self._list_checkpoints(attrs["Id"])}
        if cp_name in existing:
            raise Conflict(
                f"checkpoint {cp_name} already exists for {name}",
                hint=f"pick another --name or remove it: ctk checkpoint rm {name} {cp_name}",
            )
        self._require_checkpoint_support()
        if options.tcp_established or options.file_locks:
            # Docker's checkpoint API has no such switches; runc reads them from CRIU's
            # per-container config, which a later issue wires up.
            raise Unsupported(
                "Docker's checkpoint API cannot pass --tcp-established/--file-locks to CRIU",
                hint="use --engine podman for containers with open TCP connections or file locks",
            )
        body = {"CheckpointID": cp_name, "Exit": not options.leave_running}
        log.debug("docker %s: checkpoint %s of %s (%s)", self.url, cp_name, name, body)

        def post() -> None:
            response = self._api._post_json(
                self._api._url("/containers/{0}/checkpoints", attrs["Id"]), data=body
            )
            self._api._raise_for_status(response)

        # A signal waits for dockerd's answer: cut off, dockerd would go on dumping (and stop
        # the container) with nobody left to restore it.
        with interrupts.shielded():
            interrupts.pause_at("dump")
            try:
                # A dump that stopped the container cannot be taken again.
                self._retry_blob_race(post, lambda: self._is_running(attrs["Id"]))
            except docker.errors.APIError as exc:
                self._ensure_running_after_failure(attrs["Id"])
                message = _explanation(exc)
                log_text = self._criu_log_named_in(attrs, message)
                raise diagnosis.criu_error("checkpoint", name, message, log_text) from exc
            except requests.exceptions.ConnectionError as exc:
                raise shared.unavailable(self.kind, self.url) from exc
            record = records.record_checkpoint(self.kind, self.url, attrs["Id"], cp_name)
        return Checkpoint(name=cp_name, container=name, engine=self.kind, created=record.created)

    def _criu_log_named_in(self, attrs: dict[str, Any], message: str) -> str:
        """CRIU's log that dockerd's error names (``path= .../criu-dump.log``), read on the
        daemon's host (here, or through a helper container); "" when it is gone."""
        for path in diagnosis.log_paths(message):
            data = self._host_file(str(attrs["Image"]), path)
            if data:
                return data.decode(errors="replace")
        return ""

    def _is_running(self, container_id: str) -> bool:
        try:
            return bool(self._api.inspect_container(container_id)["State"]["Running"])
        except docker.errors.APIError:
            return False

    @staticmethod
    def _retry_blob_race(call: Callable[[], None], may_retry: Callable[[], bool]) -> None:
        """Runs ``call``, again while it fails on containerd's blob race and ``may_retry()``.

        dockerd uploads checkpoint data to containerd's content store and, on restore, the
        checkpoint as a tar; a blob of the same digest that was deleted but not yet garbage
        collected makes the upload fail with "commit failed: content ...: already exists"
        (moby#42900). A restore right after a checkpoint re-uploads the very tar that the
        checkpoint produced; a checkpoint re-uploads the container's unchanged spec. The
        collector frees the blob within about a second (scripts/engines configures it to
        do so at once), so waiting and retrying succeeds. Nothing changed on a failed
        upload, except that a dump with Exit may already have stopped the container,
        which ``may_retry`` reports.
        """
        for delay in (*_BLOB_RACE_DELAYS, None):
            try:
                call()
                return
            except docker.errors.APIError as exc:
                message = _explanation(exc)
                race = "content sha256:" in message and "already exists" in message
                if delay is None or not race or not may_retry():
                    raise
                time.sleep(delay)

    def _ensure_running_after_failure(self, container_id: str) -> None:
        # A failed dump must leave the container running: runc resumes it, but if the task
        # died we start it again rather than leave the user with a stopped service.
        try:
            attrs = self._api.inspect_container(container_id)
            if not attrs["State"]["Running"]:
                self._api.start(container_id)
        except docker.errors.APIError as exc:
            log.warning(
                "docker: %s may be left stopped after a failed checkpoint: %s", container_id, exc
            )

    def _list_checkpoints(self, container_id: str) -> list[dict[str, Any]]:
        with self._errors(container=container_id):
            response = self._api._get(self._api._url("/containers/{0}/checkpoints", container_id))
            rows = self._api._result(response, json=True)
        return list(rows or [])

    def checkpoints(self, name: str) -> list[Checkpoint]:
        attrs = self._attrs(name)
        present = [c["Name"] for c in self._list_checkpoints(attrs["Id"])]
        return records.ordered(self.kind, self.url, attrs["Id"], present, container=name)

    def remove_checkpoint(self, name: str, checkpoint: str) -> None:
        attrs = self._attrs(name)
        validation.validate_checkpoint_name(checkpoint)
        if checkpoint not in {c["Name"] for c in self._list_checkpoints(attrs["Id"])}:
            raise CheckpointNotFound(f"no checkpoint {checkpoint} for container {name}")
        with self._errors(container=name):
            response = self._api._delete(
                self._api._url("/containers/{0}/checkpoints/{1}", attrs["Id"], checkpoint)
            )
            self._api._raise_for_status(response)
        records.forget_checkpoint(self.kind, self.url, attrs["Id"], checkpoint)

    def restore(self, name: str, options: RestoreOptions) -> ContainerInfo:
        refuse_tcp_close(options.tcp_close)  # what the engine cannot do, before any lookup
        attrs = self._attrs(name)
        if attrs["State"]["Running"]:
            raise Conflict(
                f"container {name} is running; restore replaces its processes",
                hint=f"stop it first: ctk stop {name}",
            )
        available = self.checkpoints(name)
        chosen = validation.choose_checkpoint(name, available, options.checkpoint)
        try:
            self._start_from_checkpoint(attrs["Id"], chosen.name)
        except docker.errors.APIError as exc:
            raise diagnosis.criu_error("restore", name, _explanation(exc)) from exc
        except requests.exceptions.ConnectionError as exc:
            raise shared.unavailable(self.kind, self.url) from exc
        return self.inspect(attrs["Id"])

    def _start_from_checkpoint(self, container_id: str, checkpoint: str) -> None:
        """``POST /containers/{id}/start?checkpoint=NAME``, retried on containerd's blob race."""
        log.debug("docker %s: start %s from checkpoint %s", self.url, container_id, checkpoint)

        def start() -> None:
            response = self._api._post(
                self._api._url("/containers/{0}/start", container_id),
                params={"checkpoint": checkpoint},
            )
            self._api._raise_for_status(response)

        self._retry_blob_race(start, lambda: True)

    def fetch_checkpoint_images(self, name: str, checkpoint: str, dest: Path) -> None:
        """Copy a checkpoint's CRIU images into ``dest`` through a helper container."""
        from toolkit.criu.images import extract_images

        attrs = self._attrs(name)
        validation.validate_checkpoint_name(checkpoint)
        if checkpoint not in {c["Name"] for c in self._list_checkpoints(attrs["Id"])}:
            raise CheckpointNotFound(f"no checkpoint {checkpoint} for container {name}")
        source = f"{self.info().root_dir}/containers/{attrs['Id']}"
        with tempfile.TemporaryDirectory() as tmp:
            tar = Path(tmp) / "checkpoint.tar"
            with self._helper(attrs["Image"], {source: "/ctk/container"}) as helper:
                self._fetch(helper, f"/ctk/container/checkpoints/{checkpoint}", tar)
            extract_images(tar, dest)

    def criu_stats(self, name: str, *, phase: str) -> dict[str, int]:
        """Empty: Docker (containerd) removes CRIU's work directory with its stats files."""
        self._attrs(name)
        return {}
