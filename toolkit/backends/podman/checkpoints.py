"""Podman checkpoints: libpod's ``/containers/{id}/checkpoint`` and ``/restore`` routes.

Podman keeps one checkpoint per container in place (the latest), so ctk's records
(:mod:`toolkit.records`) hold its name and time.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

from toolkit import interrupts, records
from toolkit.backends import shared, validation
from toolkit.backends.podman import files as host_files
from toolkit.backends.podman.client import _STATE_CAUSES, _explanation, podman, requests
from toolkit.backends.podman.files import FilesMixin
from toolkit.criu import diagnosis
from toolkit.errors import CheckpointNotFound, Conflict, CtkError, EngineUnavailable, Unsupported
from toolkit.models import Checkpoint, CheckpointOptions, ContainerInfo, RestoreOptions

log = logging.getLogger(__name__)

# Chunk size for streamed checkpoint exports.
_CHUNK = 1024 * 1024

# What libpod keeps in the container's StaticDir for its one checkpoint in place: the files its
# own restore without ``keep`` deletes (libpod/container_internal_linux.go, Podman 4.3), and the
# rootfs diff an export leaves there. ``checkpoint rm`` deletes them to free the disk.
CHECKPOINT_FILES = (
    "checkpoint",
    "dump.log",
    "restore.log",
    "stats-dump",
    "stats-restore",
    "devshm-checkpoint.tar",
    "network.status",
    "rootfs-diff.tar",
    "deleted.files",
)

# libpod's record of the container itself, which its import needs beside the checkpoint: it
# writes them into StaticDir only when it exports (and leaves them there). They describe the
# container, not one checkpoint, so one export's copy serves every later checkpoint.
LIBPOD_CONFIG = ("config.dump", "spec.dump")


def refuse_tcp_close(tcp_close: bool) -> None:
    """Refuse tcp-close on an in-place restore: libpod's API has no such switch (Podman 4.3's
    CLI neither), and the per-container CRIU config file ctk passes it in (runc's
    ``org.criu.config``) can only be named in a container's spec when it is created, as an
    import does (see ArchivesMixin._criu_options).

    Raises:
        Unsupported: ``tcp_close`` was asked for.
    """
    if tcp_close:
        raise Unsupported(
            "Podman's restore API cannot pass --tcp-close to CRIU for a restore in place "
            "(libpod has no such switch)",
            hint="restore it through an archive, where ctk can: ctk checkpoint export NAME "
            "CHECKPOINT FILE; ctk rm NAME; ctk restore --import FILE --tcp-close",
        )


def _checkpoint_params(options: CheckpointOptions, **extra: Any) -> dict[str, Any]:
    """Query of ``POST /libpod/containers/{id}/checkpoint`` for ``options``."""
    return {
        # keep: CRIU's log and stats stay beside the images, for error reports and
        # --print-stats, and a restore does not consume the checkpoint.
        "keep": True,
        "leaveRunning": options.leave_running,
        "tcpEstablished": options.tcp_established,
        "fileLocks": options.file_locks,
        **extra,
    }


def _given(params: Mapping[str, Any]) -> frozenset[str]:
    """The CRIU switches a libpod checkpoint/restore query passes, as the user typed them."""
    return diagnosis.criu_flags(
        tcp_established=bool(params.get("tcpEstablished")),
        file_locks=bool(params.get("fileLocks")),
    )


class CheckpointsMixin(FilesMixin):
    """Checkpoint (in place or streamed as libpod's export), list, restore."""

    def checkpoint(self, name: str, options: CheckpointOptions) -> Checkpoint:
        cp_name = options.name or records.new_checkpoint_name()
        attrs = self._require_checkpointable(name, cp_name)
        # libpod refuses it too, but as a failed checkpoint (500); say why, as on Docker
        validation.refuse_auto_remove_in_place(name, attrs)
        log.debug("podman %s: checkpoint %s of %s (%s)", self.url, cp_name, name, options)
        params = _checkpoint_params(options)
        if not self._libpod_config_kept(attrs):
            # Once per container: an export (its body unread, the rootfs and volumes left out)
            # makes libpod write config.dump/spec.dump, which `ctk checkpoint export` needs.
            params.update(export=True, ignoreRootFS=True, ignoreVolumes=True)
        with interrupts.shielded():  # a signal waits for the dump (see _export_chunks)
            interrupts.pause_at("dump")
            try:
                response = self._api.post(
                    f"/containers/{attrs['Id']}/checkpoint", params=params, stream=True
                )
                try:
                    response.raise_for_status()
                finally:
                    # libpod wrote the export to a file of its own before answering: closing
                    # the body unread changes nothing on its side
                    response.close()
            except (podman.errors.APIError, requests.exceptions.RequestException) as exc:
                raise self._checkpoint_failed(name, attrs, exc, _given(params)) from exc
            record = self._record_checkpoint(attrs, cp_name)
        return Checkpoint(name=cp_name, container=name, engine=self.kind, created=record.created)

    def _libpod_config_kept(self, attrs: dict[str, Any]) -> bool:
        """Whether StaticDir holds libpod's config.dump/spec.dump (see LIBPOD_CONFIG).

        Only looked at where StaticDir is visible here; elsewhere a helper container per
        checkpoint would cost more than it saves, and this says yes.
        """
        static = Path(str(attrs.get("StaticDir") or ""))
        if not static.parts or not host_files._visible_here(static):
            return True
        return all((static / item).is_file() for item in LIBPOD_CONFIG)

    def checkpoint_image(self, name: str, image: str, options: CheckpointOptions) -> Checkpoint:
        """Checkpoint ``name`` into checkpoint image ``image`` (libpod's ``createImage``).

        libpod commits the export as a one-layer image with its checkpoint annotations
        (``podman container checkpoint --create-image``); the checkpoint also stays in place.

        Raises:
            Conflict: the container is not running, or is an --rm container.
            CheckpointError: CRIU failed; the container keeps running.
        """
        cp_name = options.name or records.new_checkpoint_name()
        attrs = self._require_checkpointable(name, cp_name)
        # libpod refuses --rm without --export: the stop would remove the checkpoint with it
        validation.refuse_auto_remove_in_place(name, attrs)
        params = _checkpoint_params(options, createImage=image)
        log.debug("podman %s: checkpoint %s of %s into image %s", self.url, cp_name, name, image)
        with interrupts.shielded():  # a signal waits for the dump (see _export_chunks)
            interrupts.pause_at("dump")
            try:
                response = self._api.post(f"/containers/{attrs['Id']}/checkpoint", params=params)
                response.raise_for_status()
            except (podman.errors.APIError, requests.exceptions.RequestException) as exc:
                raise self._checkpoint_failed(name, attrs, exc, _given(params)) from exc
            record = self._record_checkpoint(attrs, cp_name)
        return Checkpoint(name=cp_name, container=name, engine=self.kind, created=record.created)

    def _require_checkpointable(self, name: str, cp_name: str) -> dict[str, Any]:
        attrs = self._attrs(name)
        validation.validate_checkpoint_name(cp_name)
        state = attrs.get("State") or {}
        if not state.get("Running") or state.get("Paused"):
            raise Conflict(
                f"container {name} is not running; only a running container can be checkpointed",
                hint=f"start it first: ctk start {name}",
            )
        return attrs

    def _record_checkpoint(self, attrs: dict[str, Any], cp_name: str) -> Checkpoint:
        record = records.record_checkpoint(self.kind, self.url, attrs["Id"], cp_name)
        # The new checkpoint replaced the one held in place: forget older names.
        records.forget_others(self.kind, self.url, attrs["Id"], keep=cp_name)
        return record

    def _checkpoint_failed(
        self, name: str, attrs: dict[str, Any], exc: Exception, given: frozenset[str]
    ) -> CtkError:
        """The error for a checkpoint (or its export) that failed; the container runs again.

        ``given``: the CRIU switches the user passed (no hint suggests them again).
        """
        if isinstance(exc, podman.errors.APIError) and getattr(exc, "status_code", None) is None:
            return shared.unavailable(self.kind, self.url)
        self._ensure_running_after_failure(attrs["Id"])
        if isinstance(exc, podman.errors.APIError):
            return diagnosis.criu_error(
                "checkpoint",
                name,
                _explanation(exc),
                self._criu_log(attrs, "dump.log"),
                given=given,
            )
        return EngineUnavailable(f"Podman broke off the export: {exc}")

    def checkpoint_stream(
        self, name: str, options: CheckpointOptions
    ) -> Generator[bytes, None, None]:
        """Checkpoint ``name`` and yield libpod's export tar as it arrives, staging nothing.

        The tar holds ``checkpoint/`` (the CRIU images, with CRIU's ``stats-dump``),
        ``rootfs-diff.tar``, ``deleted.files`` and libpod's metadata; :meth:`restore_stream`
        takes it. The checkpoint in place is kept, so :meth:`restore` can put the container
        back when what follows fails. Checks happen at once; the dump starts when the first
        chunk is asked for.

        Raises:
            Conflict: the container is not running.
            CheckpointError: CRIU failed (while iterating); the container keeps running.
        """
        cp_name = options.name or records.new_checkpoint_name()
        attrs = self._require_checkpointable(name, cp_name)
        # printStats: CRIU's stats-dump goes into the export, for inspect and --print-stats
        params = _checkpoint_params(options, export=True, printStats=True)
        return self._export_chunks(name, attrs, cp_name, params)

    def _export_chunks(
        self, name: str, attrs: dict[str, Any], cp_name: str, params: dict[str, Any]
    ) -> Generator[bytes, None, None]:
        response = None
        log.debug("podman %s: export checkpoint %s of %s (%s)", self.url, cp_name, name, params)
        try:
            # A signal waits for libpod's answer: cut off, libpod would go on dumping (and
            # stop the container) with nobody left to restore it.
            with interrupts.shielded():
                interrupts.pause_at("dump")
                response = self._api.post(
                    f"/containers/{attrs['Id']}/checkpoint", params=params, stream=True
                )
                response.raise_for_status()
                # libpod answers once the dump is written and kept in place: record it now, so
                # a consumer that gives up half-way can still restore it.
                self._record_checkpoint(attrs, cp_name)
            yield from response.iter_content(chunk_size=_CHUNK)
        except (podman.errors.APIError, requests.exceptions.RequestException) as exc:
            raise self._checkpoint_failed(name, attrs, exc, _given(params)) from exc
        finally:
            if response is not None:
                response.close()

    def _criu_log(self, attrs: dict[str, Any], filename: str) -> str:
        """CRIU's log on the engine's host (here, or through a helper container); "" if none."""
        try:
            data = self._host_file(attrs, filename)
        except CtkError as exc:
            log.warning("podman: CRIU's %s is not readable: %s", filename, exc.message)
            return ""
        return data.decode(errors="replace") if data is not None else ""

    def criu_log(self, name: str, *, phase: str) -> str:
        """CRIU's log of the container's last ``dump`` or ``restore``, as the engine's host kept it.

        Raises:
            ContainerNotFound: no such container.
            Unsupported: the engine could not hand it out.
        """
        data = self._host_file(self._attrs(name), f"{phase}.log")
        return data.decode(errors="replace") if data is not None else ""

    def _ensure_running_after_failure(self, container_id: str) -> None:
        # A failed dump must leave the container running; if runc did not resume it, start it.
        try:
            attrs = self._attrs(container_id)
            if not (attrs.get("State") or {}).get("Running"):
                self._api.post(f"/containers/{container_id}/start").raise_for_status()
        except Exception as exc:
            log.warning(
                "podman: %s may be left stopped after a failed checkpoint: %s", container_id, exc
            )

    def checkpoints(self, name: str) -> list[Checkpoint]:
        attrs = self._attrs(name)
        state = attrs.get("State") or {}
        has_image = bool(state.get("Checkpointed") or state.get("CheckpointedAt"))
        present = records.names(self.kind, self.url, attrs["Id"]) if has_image else []
        return records.ordered(self.kind, self.url, attrs["Id"], present, container=name)

    def remove_checkpoint(self, name: str, checkpoint: str) -> None:
        attrs = self._attrs(name)
        validation.validate_checkpoint_name(checkpoint)
        if checkpoint not in {c.name for c in self.checkpoints(name)}:
            raise CheckpointNotFound(f"no checkpoint {checkpoint} for container {name}")
        self._delete_checkpoint_files(attrs, name)
        records.forget_checkpoint(self.kind, self.url, attrs["Id"], checkpoint)

    def _delete_checkpoint_files(self, attrs: dict[str, Any], name: str) -> None:
        """Delete the checkpoint libpod holds in place (its CHECKPOINT_FILES in StaticDir).

        libpod has no route that deletes a checkpoint alone (its restore without ``keep``
        does, after restoring), so ctk deletes the files where it sees StaticDir; libpod then
        has none to restore from (``podman container restore`` says the checkpoint is missing)
        and starts the container afresh on ``start``.

        Raises:
            Unsupported: StaticDir is not visible here (an engine on another host).
        """
        static = Path(str(attrs.get("StaticDir") or ""))
        if not static.parts or not host_files._visible_here(static):
            raise Unsupported(
                f"Podman at {self.url} keeps the checkpoint of {name} in the container's "
                "directory on its own host, which ctk cannot delete from here",
                hint=f"run ctk on the engine's host, or remove the container: ctk rm {name}",
            )
        for item in CHECKPOINT_FILES:
            path = static / item
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            except OSError as exc:
                raise Unsupported(f"cannot delete {path}: {exc}") from exc
        log.debug("podman %s: deleted the checkpoint files of %s in %s", self.url, name, static)

    def restore(self, name: str, options: RestoreOptions) -> ContainerInfo:
        refuse_tcp_close(options.tcp_close)  # what the engine cannot do, before any lookup
        attrs = self._attrs(name)
        if (attrs.get("State") or {}).get("Running"):
            raise Conflict(
                f"container {name} is running; restore replaces its processes",
                hint=f"stop it first: ctk stop {name}",
            )
        available = self.checkpoints(name)
        if (
            options.checkpoint is not None
            and available
            and options.checkpoint not in {c.name for c in available}
        ):
            raise CheckpointNotFound(
                f"no checkpoint {options.checkpoint} for container {name} "
                f"(Podman keeps only the latest in place: {available[-1].name})",
                hint="export checkpoints to keep several: ctk checkpoint NAME --export FILE",
            )
        validation.choose_checkpoint(name, available, options.checkpoint)
        params = {
            "keep": True,
            "tcpEstablished": options.tcp_established,
            "fileLocks": options.file_locks,
        }
        log.debug("podman %s: restore %s in place (%s)", self.url, name, params)
        try:
            response = self._api.post(f"/containers/{attrs['Id']}/restore", params=params)
            response.raise_for_status()
        except podman.errors.APIError as exc:
            if getattr(exc, "status_code", None) is None:
                raise shared.unavailable(self.kind, self.url) from exc
            if exc.args and str(exc.args[0]) in _STATE_CAUSES:
                # Not CRIU: libpod refused for the container's state (e.g. a killed container
                # that libpod has not finished cleaning up yet).
                raise Conflict(_explanation(exc)) from exc
            raise diagnosis.criu_error(
                "restore",
                name,
                _explanation(exc),
                self._criu_log(attrs, "restore.log"),
                given=_given(params),
            ) from exc
        return self.inspect(attrs["Id"])

    def criu_stats(self, name: str, *, phase: str) -> dict[str, int]:
        """CRIU's statistics of the container's last ``dump`` or ``restore`` (kept by ``keep``).

        Read from the container's directory on the engine's host: here when this machine sees
        it, else through a helper container. Empty when the engine kept none.

        Raises:
            ContainerNotFound: no such container.
            Unsupported: the engine could not hand them out ("not readable from here").
        """
        from toolkit.criu.images import read_stats

        data = self._host_file(self._attrs(name), f"stats-{phase}")
        if data is None:
            return {}
        with tempfile.TemporaryDirectory(prefix="ctk-stats-") as tmp:
            (Path(tmp) / f"stats-{phase}").write_bytes(data)
            return read_stats(Path(tmp), phase=phase)

    def fetch_checkpoint_images(self, name: str, checkpoint: str, dest: Path) -> None:
        """Copy the in-place checkpoint's CRIU images (and CRIU's stats) into ``dest``.

        libpod has no route that hands them out: they are read from the container's directory
        on the engine's host, here when this machine sees it, else through a helper container.

        Raises:
            CheckpointNotFound: no such checkpoint.
            Unsupported: the engine could not hand them out.
            ArchiveError: what the engine handed out is not a checkpoint's images.
        """
        from toolkit.criu.images import extract_images

        attrs = self._attrs(name)
        validation.validate_checkpoint_name(checkpoint)
        held = [c.name for c in self.checkpoints(name)]
        if checkpoint not in held:
            raise CheckpointNotFound(
                f"no checkpoint {checkpoint} for container {name}"
                + (f" (Podman keeps only the latest in place: {held[-1]})" if held else ""),
                hint=f"export checkpoints to keep several: ctk checkpoint {name} -R --export "
                "FILE (inspect and diff take the files)",
            )
        userdata = Path(str(attrs.get("StaticDir") or ""))
        if userdata.parts and not host_files._visible_here(userdata):
            with tempfile.TemporaryDirectory(prefix="ctk-images-") as tmp:
                tar = Path(tmp) / "checkpoint.tar"
                self._host_tree(attrs, "checkpoint", tar)
                extract_images(tar, dest)
            for stats in ("stats-dump", "stats-restore"):
                if (data := self._host_file(attrs, stats)) is not None:
                    (dest / stats).write_bytes(data)
            return
        images = userdata / "checkpoint"
        if not userdata.parts or not (images / "pstree.img").is_file():
            raise Unsupported(
                f"podman's checkpoint images of {name} are not readable from here",
                hint=f"export it and inspect the file: ctk checkpoint {name} --export FILE",
            )
        for item in images.iterdir():
            if item.is_file() and not item.is_symlink():
                shutil.copyfile(item, dest / item.name)
        for stats in ("stats-dump", "stats-restore"):
            if (userdata / stats).is_file():
                shutil.copyfile(userdata / stats, dest / stats)
