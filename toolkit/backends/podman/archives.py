"""ctk archives on Podman (libpod's export tar as payload), and libpod export tars
restored as they are read (``/containers/import/restore``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from toolkit import archive, interrupts, records
from toolkit.backends import inspection, shared, validation
from toolkit.backends.options import publish_arg
from toolkit.backends.podman.checkpoints import CheckpointsMixin, _checkpoint_params, _given
from toolkit.backends.podman.client import (
    _explanation,
    podman,
)
from toolkit.criu import diagnosis
from toolkit.errors import (
    Conflict,
    CtkError,
    ImageNotFound,
)
from toolkit.models import (
    ArchiveInfo,
    CheckpointOptions,
    ContainerInfo,
    ExportOptions,
    ImportOptions,
)

log = logging.getLogger(__name__)

# The libpod export body travels in a ctk archive under this member name.
PODMAN_PAYLOAD = "podman-checkpoint.tar"


def _import_params(options: ImportOptions) -> dict[str, Any]:
    """Query of ``POST /libpod/containers/import/restore`` for ``options`` (without the name)."""
    params: dict[str, Any] = {
        "import": True,
        "keep": True,
        "tcpEstablished": options.tcp_established,
        "fileLocks": options.file_locks,
        "ignoreStaticIP": options.ignore_static_ip,
        "ignoreStaticMAC": options.ignore_static_ip,
    }
    if options.ports:
        params["publishPorts"] = [publish_arg(p) for p in options.ports]
    return params


class ArchivesMixin(CheckpointsMixin):
    """Checkpoints into ctk archives and back; libpod export tars in."""

    def export_checkpoint(
        self, name: str, dest: str | os.PathLike[str], options: ExportOptions
    ) -> ArchiveInfo:
        """Checkpoint ``name`` into a ctk archive at ``dest`` (the libpod export as payload).

        Raises:
            InvalidArgument: unknown compression or unusable ``dest`` (container untouched).
            CheckpointError: CRIU failed; the container keeps running.
        """
        archive.validate_compression(options.compression)
        signer = archive.export_signer(options.sign_key)
        path = archive.check_destination(dest)
        cp_options = options.checkpoint
        cp_name = cp_options.name or records.new_checkpoint_name()
        attrs = self._require_checkpointable(name, cp_name)
        engine = self.info()
        timings: dict[str, float] = {}
        with archive.staging_dir(path) as stage:
            payload = stage / PODMAN_PAYLOAD
            started = time.monotonic()
            # printStats: CRIU's stats-dump goes into the export, for inspect and --print-stats
            params = _checkpoint_params(cp_options, export=True, printStats=True)
            chunks = self._export_chunks(name, attrs, cp_name, params)
            try:
                # In the try: a full disk or a signal while staging leaves a stopped container
                # too, and the dump is kept in place, so it can be restored.
                with contextlib.closing(chunks):
                    archive.write_stream(chunks, payload)
                timings["checkpoint"] = round(time.monotonic() - started, 3)
                interrupts.pause_at("export-write")
                archive.check_nested_tar(payload, what="podman checkpoint")
                manifest = shared.archive_manifest(
                    engine=engine,
                    attrs=attrs,
                    info=inspection.info_from_inspect(attrs, self.kind),
                    checkpoint=cp_name,
                    engine_data={"payload": PODMAN_PAYLOAD},
                )
                result = archive.write_archive(
                    path,
                    manifest,
                    [(PODMAN_PAYLOAD, payload)],
                    compression=options.compression,
                    signing_key=signer,
                )
            except BaseException:  # signals too (toolkit.interrupts)
                if not cp_options.leave_running and validation.auto_removed(attrs):
                    # libpod removed the --rm container after its export: back from the export
                    self._reimport_after_failed_export(payload, cp_options, attrs["Id"])
                elif not cp_options.leave_running:
                    self._restore_after_failed_export(attrs["Id"])
                raise
            from toolkit.criu.images import stats_from_tar

            stats = stats_from_tar(payload)
        if not cp_options.leave_running and validation.auto_removed(attrs):
            # gone, as its stop would have left it, before ctk says so: an import of the
            # archive right after must not find the name still taken
            self._wait_removed(attrs["Id"])
        return dataclasses.replace(result, timings={**timings, **result.timings}, criu_stats=stats)

    def _wait_removed(self, container_id: str, *, patience: float = 15.0) -> None:
        """Until libpod has removed an --rm container after its dump: Podman 4.3 does it a
        moment after the checkpoint call returns (seconds, on a loaded machine)."""
        deadline = time.monotonic() + patience
        while self._exists(container_id):
            if time.monotonic() > deadline:
                log.warning("podman has not removed the --rm container %s yet", container_id)
                return
            time.sleep(0.1)

    def _reimport_after_failed_export(
        self, payload: Path, options: CheckpointOptions, container_id: str
    ) -> None:
        # Logged, not raised: the error being raised is the one that says what failed.
        params = _import_params(
            ImportOptions(tcp_established=options.tcp_established, file_locks=options.file_locks)
        )
        try:
            self._wait_removed(container_id)
            with payload.open("rb") as body:
                self._import_restore(body, params, None)
        except (CtkError, OSError) as exc:
            log.warning("could not restore the --rm container from %s: %s", payload, exc)

    def _restore_after_failed_export(self, container_id: str) -> None:
        # The dump stopped the container but no archive came of it: put it back as it was.
        # A dump that failed left it running (or _checkpoint_failed started it): nothing to do.
        try:
            if (self._attrs(container_id).get("State") or {}).get("Running"):
                return
            self._api.post(
                f"/containers/{container_id}/restore", params={"keep": True}
            ).raise_for_status()
        except Exception:  # the original error matters more; say what is left to do
            log.exception(
                "could not restore %s after the failed export: restore it with ctk restore",
                container_id[:12],
            )

    def import_checkpoint(
        self, archive_path: str | os.PathLike[str], options: ImportOptions
    ) -> ContainerInfo:
        """Create and restore a container from a ctk archive made on Podman.

        Every member is verified before anything is created; a failed restore removes the
        container the import made.

        Raises:
            ArchiveError: the archive is corrupt or hostile (nothing created).
            ImageNotFound: the checkpoint's image ID is not here.
            Conflict: a container with the target name exists.
            CheckpointError: CRIU failed to restore (nothing left behind).
        """
        if options.name is not None:
            validation.validate_ref(options.name, what="container")
        trust = archive.import_trust(options.verify_keys)
        with archive.open_archive(archive_path, trust=trust) as verified:
            manifest = verified.manifest
            validation.require_archive_engine(manifest, self.kind, str(archive_path))
            payload = verified.member(PODMAN_PAYLOAD)
            archive.check_podman_payload(
                payload,
                manifest,
                allow_mounts=options.allow_mounts,
                allow_host_network=options.allow_host_network,
            )
            with self._errors():
                found = self._api.get(f"/images/{manifest.image_id}/exists")
            if found.status_code != 204:
                raise ImageNotFound(
                    f"no image {manifest.image_id} ({manifest.image}) on podman",
                    hint=shared.image_missing_hint(manifest.image, manifest.image_id, self.kind),
                )
            target = options.name or manifest.container_name
            with self._errors():
                if target and self._exists(target):
                    raise Conflict(
                        f"a container named {target} exists already",
                        hint="import under another name: ctk restore --import FILE --name NEW",
                    )
            params = _import_params(options)
            if options.name:
                params["name"] = options.name
            with payload.open("rb") as body:
                new_id = self._import_restore(body, params, target, action="import")
        return self.inspect(new_id)

    def restore_stream(
        self,
        body: Iterable[bytes] | IO[bytes],
        options: ImportOptions,
        *,
        criu_log: Path | None = None,
    ) -> ContainerInfo:
        """Create and restore a container from libpod's export tar, sent as it is read.

        ``body`` is the tar (a file, or chunks such as :meth:`checkpoint_stream` yields);
        ``options.name`` names the container (it must be given). An exception raised by the
        chunks aborts the upload and is raised again, after the container is removed.

        Raises:
            Conflict: a container named ``options.name`` exists.
            CheckpointError: CRIU failed to restore (nothing left behind).
        """
        name = options.name or ""
        validation.validate_ref(name, what="container")
        with self._errors():
            if self._exists(name):
                raise Conflict(f"a container named {name} exists already on podman")
        params = _import_params(options)
        params["name"] = name
        return self.inspect(self._import_restore(body, params, name, criu_log=criu_log))

    def _import_restore(
        self,
        body: Iterable[bytes] | IO[bytes],
        params: dict[str, Any],
        target: str | None,
        *,
        criu_log: Path | None = None,
        action: str = "restore",
    ) -> str:
        """``POST /containers/import/restore``; the new container's ID.

        Nothing half-made: on any failure a container under ``target`` is the one this made,
        and is removed.
        """
        log.debug("podman %s: import and restore %s (%s)", self.url, target, params)
        try:
            response = self._api.post(
                "/containers/import/restore",
                params=params,
                data=body,
                headers={"Content-Type": "application/x-tar"},
            )
            response.raise_for_status()
            return str(response.json()["Id"])
        except BaseException as exc:
            try:
                if target and self._exists(target):
                    self._api.delete(
                        f"/containers/{target}", params={"force": True}
                    ).raise_for_status()
            except Exception as cleanup:
                log.warning("podman: could not remove the half-restored %s: %s", target, cleanup)
            if isinstance(exc, podman.errors.APIError):
                if getattr(exc, "status_code", None) is None:
                    raise shared.unavailable(self.kind, self.url) from exc
                log_text = ""
                if criu_log is not None:
                    with contextlib.suppress(OSError):
                        log_text = criu_log.read_text(errors="replace")
                raise diagnosis.criu_error(
                    action, target or "", _explanation(exc), log_text, given=_given(params)
                ) from exc
            raise
