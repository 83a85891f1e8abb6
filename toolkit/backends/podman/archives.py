"""ctk archives on Podman (libpod's export tar as payload), and libpod export tars
restored as they are read (``/containers/import/restore``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any

from toolkit import archive, interrupts, records
from toolkit.archive.changes import write_changes
from toolkit.backends import inspection, shared, validation, volume_data
from toolkit.backends.options import publish_arg
from toolkit.backends.podman import files as host_files
from toolkit.backends.podman.checkpoints import (
    _CHUNK,
    LIBPOD_CONFIG,
    CheckpointsMixin,
    _checkpoint_params,
    _given,
)
from toolkit.backends.podman.client import (
    _explanation,
    podman,
)
from toolkit.backends.podman.relocate import relocate_export
from toolkit.backends.podman.volumes import VolumesMixin
from toolkit.criu import diagnosis
from toolkit.errors import (
    CheckpointNotFound,
    Conflict,
    CtkError,
    ImageNotFound,
    Unsupported,
)
from toolkit.models import (
    ArchiveInfo,
    CheckpointOptions,
    ContainerInfo,
    EngineInfo,
    ExportOptions,
    ImportOptions,
    Mount,
)

log = logging.getLogger(__name__)

# The libpod export body travels in a ctk archive under this member name.
PODMAN_PAYLOAD = "podman-checkpoint.tar"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    tar.addfile(info, io.BytesIO(data))


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Only files and directories of a checkpoint directory go into the tar (CRIU writes no
    others); owned by root, as libpod's own export has them."""
    if not (info.isfile() or info.isdir()):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _annotate_spec(source: Path, dest: Path, annotations: dict[str, str]) -> None:
    """Copy libpod's export tar ``source`` to ``dest`` with ``annotations`` set in spec.dump."""
    with (
        tarfile.open(source) as src,
        tarfile.open(dest, mode="w", format=tarfile.PAX_FORMAT) as out,
    ):
        for member in src:
            data = src.extractfile(member) if member.isfile() else None
            if member.isfile() and PurePosixPath(member.name).as_posix() == "spec.dump":
                assert data is not None
                spec = json.loads(data.read())
                spec["annotations"] = {**(spec.get("annotations") or {}), **annotations}
                body = json.dumps(spec).encode()
                member.size = len(body)
                data = io.BytesIO(body)
            out.addfile(member, data)


def _import_params(options: ImportOptions) -> dict[str, Any]:
    """Query of ``POST /libpod/containers/import/restore`` for ``options`` (without the name)."""
    params: dict[str, Any] = {
        "import": True,
        "keep": True,
        "tcpEstablished": options.tcp_established,
        "fileLocks": options.file_locks,
        "ignoreStaticIP": options.ignore_static_ip,
        "ignoreStaticMAC": options.ignore_static_ip,
        "ignoreRootFS": options.ignore_rootfs,
        # ctk restores the volumes itself (toolkit.backends.volume_data), before libpod runs
        "ignoreVolumes": True,
    }
    if options.ports:
        params["publishPorts"] = [publish_arg(p) for p in options.ports]
    return params


class ArchivesMixin(VolumesMixin, CheckpointsMixin):
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
        # Before anything is frozen: a bind mount the user did not name is refused.
        mounts = volume_data.export_mounts(self, name, options)
        engine = self.info()
        timings: dict[str, float] = {}
        auto_removed = not cp_options.leave_running and validation.auto_removed(attrs)
        carried = [] if options.ignore_volumes else [m.name for m in mounts if m.type == "volume"]
        with archive.staging_dir(path) as stage:
            payload = stage / PODMAN_PAYLOAD
            started = time.monotonic()
            # printStats: CRIU's stats-dump goes into the export, for inspect and --print-stats;
            # the volumes' data too, taken out of it below (libpod's tars keep the owners)
            params = _checkpoint_params(
                cp_options,
                export=True,
                printStats=True,
                ignoreRootFS=options.ignore_rootfs,
                ignoreVolumes=not carried,
            )
            chunks = self._export_chunks(name, attrs, cp_name, params)
            try:
                # In the try: a full disk or a signal while staging leaves a stopped container
                # too, and the dump is kept in place, so it can be restored.
                with contextlib.closing(chunks):
                    archive.write_stream(chunks, payload)
                timings["checkpoint"] = round(time.monotonic() - started, 3)
                interrupts.pause_at("export-write")
                volumes: list[tuple[str, Path]] = []
                if carried:
                    whole = stage / "export-with-volumes.tar"
                    payload.rename(whole)
                    volumes = archive.split_podman_volumes(whole, payload, stage, carried)
                    whole.unlink()
                result = self._write_payload_archive(
                    engine, attrs, cp_name, payload, path, options, signer,
                    mounts=mounts, volumes=volumes,
                )  # fmt: skip
            except BaseException:  # signals too (toolkit.interrupts)
                if auto_removed:
                    # libpod removed the --rm container after its export: back from the export
                    self._reimport_after_failed_export(payload, cp_options, attrs["Id"])
                elif not cp_options.leave_running:
                    self._restore_after_failed_export(attrs["Id"])
                raise
            from toolkit.criu.images import stats_from_tar

            stats = stats_from_tar(payload)
        if auto_removed:
            # gone, as its stop would have left it, before ctk says so: an import of the
            # archive right after must not find the name still taken
            self._wait_removed(attrs["Id"])
        return dataclasses.replace(result, timings={**timings, **result.timings}, criu_stats=stats)

    def _write_payload_archive(
        self,
        engine: EngineInfo,
        attrs: dict[str, Any],
        cp_name: str,
        payload: Path,
        path: Path,
        options: ExportOptions,
        signer: Any,
        *,
        mounts: tuple[Mount, ...] = (),
        volumes: list[tuple[str, Path]] | None = None,
    ) -> ArchiveInfo:
        """The ctk archive at ``path`` around libpod's export tar ``payload``, with the
        container's ``mounts`` in its spec and the ``volumes``' data members."""
        archive.check_nested_tar(payload, what="podman checkpoint")
        manifest = shared.archive_manifest(
            engine=engine,
            attrs=attrs,
            info=inspection.info_from_inspect(attrs, self.kind),
            checkpoint=cp_name,
            engine_data={"payload": PODMAN_PAYLOAD, "ignore_rootfs": options.ignore_rootfs},
            mounts=mounts,
            volumes_ignored=options.ignore_volumes,
        )
        return archive.write_archive(
            path,
            manifest,
            [(PODMAN_PAYLOAD, payload), *(volumes or [])],
            compression=options.compression,
            signing_key=signer,
        )

    def export_held_checkpoint(
        self, name: str, checkpoint: str, dest: str | os.PathLike[str], options: ExportOptions
    ) -> ArchiveInfo:
        """Write checkpoint ``checkpoint`` that libpod holds in place into a ctk archive.

        libpod has no route for it: ctk puts libpod's export tar together from the files its
        checkpoint left in the container's StaticDir (read here when this machine sees it, else
        through a helper container) and the container's rootfs changes as they are now.

        Raises:
            CheckpointNotFound: no such checkpoint.
            Unsupported: the container has volumes or bind mounts (their content at checkpoint
                time is gone), or libpod never wrote its config for it (see LIBPOD_CONFIG).
        """
        archive.validate_compression(options.compression)
        signer = archive.export_signer(options.sign_key)
        path = archive.check_destination(dest)
        attrs = self._attrs(name)
        validation.validate_checkpoint_name(checkpoint)
        if checkpoint not in {c.name for c in self.checkpoints(name)}:
            raise CheckpointNotFound(
                f"no checkpoint {checkpoint} for container {name}",
                hint=f"Podman holds the latest one only: ctk checkpoint ls {name}",
            )
        validation.refuse_mounts_in_held_export(name, attrs)
        engine = self.info()
        with archive.staging_dir(path) as stage:
            started = time.monotonic()
            payload = stage / PODMAN_PAYLOAD
            self._held_payload(attrs, name, payload, stage, ignore_rootfs=options.ignore_rootfs)
            fetched = round(time.monotonic() - started, 3)
            result = self._write_payload_archive(
                engine, attrs, checkpoint, payload, path, options, signer
            )
            from toolkit.criu.images import stats_from_tar

            stats = stats_from_tar(payload)
        return dataclasses.replace(
            result, timings={"fetch": fetched, **result.timings}, criu_stats=stats
        )

    def _held_payload(
        self, attrs: dict[str, Any], name: str, out: Path, stage: Path, *, ignore_rootfs: bool
    ) -> None:
        """libpod's export tar, as its checkpoint ``export`` lays it out, from StaticDir."""
        static = Path(str(attrs.get("StaticDir") or ""))
        visible = bool(static.parts) and host_files._visible_here(static)
        with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            top = tarfile.TarInfo("artifacts")
            top.type, top.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(top)
            for item in (*LIBPOD_CONFIG, "devshm-checkpoint.tar", "network.status", "stats-dump"):
                data = self._static_file(attrs, static, item, visible)
                if data is None and item in LIBPOD_CONFIG:
                    raise Unsupported(
                        f"libpod never wrote its {item} for {name}, which an archive needs "
                        "(it does so only when it exports the container)",
                        hint=f"take the checkpoint again with ctk (it keeps them): ctk "
                        f"checkpoint {name} (or export a new one: ctk checkpoint {name} "
                        "--export FILE)",
                    )
                if data is not None:
                    _add_bytes(tar, item, data)
            if visible:
                images = static / "checkpoint"
                if not (images / "inventory.img").is_file():
                    raise Unsupported(f"the checkpoint of {name} is gone from {images}")
                tar.add(images, "checkpoint", filter=_plain)
            else:
                tree = stage / "checkpoint-tree.tar"
                self._host_tree(attrs, "checkpoint", tree)
                names = archive.check_nested_tar(tree, what="podman checkpoint images")
                with tarfile.open(tree) as source:
                    for member, clean in zip(source.getmembers(), names, strict=True):
                        if member.isfile() or member.isdir():
                            member.name = clean
                            body = source.extractfile(member) if member.isfile() else None
                            tar.addfile(member, body)
            if not ignore_rootfs:
                changes = stage / "rootfs-diff.tar"
                deleted = self._rootfs_changes(attrs["Id"], changes)
                tar.add(changes, "rootfs-diff.tar")
                if deleted:
                    _add_bytes(tar, "deleted.files", json.dumps(deleted).encode())

    def _static_file(
        self, attrs: dict[str, Any], static: Path, item: str, visible: bool
    ) -> bytes | None:
        if not visible:
            return self._host_file(attrs, item)
        try:
            return (static / item).read_bytes()
        except FileNotFoundError:
            return None

    def _rootfs_changes(
        self, container_id: str, out: Path, *, exclude: Sequence[str] = ()
    ) -> list[str]:
        """The container's rootfs changes as a tar at ``out`` (names relative to its root, as
        libpod's rootfs-diff.tar has them); the deleted paths."""
        with self._errors(container=container_id):
            response = self._api.get(f"/containers/{container_id}/changes")
            response.raise_for_status(not_found=podman.errors.NotFound)
            changes = response.json() or []

        def fetch(path: str, part: Path) -> None:
            with self._errors(container=container_id):
                got = self._api.get(
                    f"/containers/{container_id}/archive", params={"path": path}, stream=True
                )
                try:
                    got.raise_for_status(not_found=podman.errors.NotFound)
                    archive.write_stream(got.iter_content(chunk_size=_CHUNK), part)
                finally:
                    got.close()

        with tempfile.TemporaryDirectory() as stage:
            return write_changes(changes, fetch, out, Path(stage), exclude=exclude)

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
            mounts = volume_data.import_mounts(self, verified, options)
            # before anything is created; its volumes are then created new and the payload
            # pointed at them (_placed_payload)
            archive.check_podman_payload(
                payload,
                manifest,
                allow_mounts=options.allow_mounts,
                allow_host_network=options.allow_host_network,
                volumes={m.name: m.target for m in mounts if m.type == "volume"},
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
            criu_options = ["tcp-close"] if options.tcp_close else []
            placed: list[volume_data.PlacedVolume] = []
            try:
                if any(m.type == "volume" for m in mounts):
                    placed = volume_data.place_volumes(
                        self, verified, mounts, options, anonymous=True
                    )
                    payload = self._placed_payload(verified, payload, placed)
                    volume_data.fill_volumes(self, placed, image=manifest.image_id)
                with (
                    self._criu_options(
                        payload, verified.directory, target, manifest.image_id, criu_options
                    ) as sent,
                    sent.open("rb") as body,
                ):
                    new_id = self._import_restore(body, params, target, action="import")
            except BaseException:
                volume_data.remove_created(self, placed)
                raise
        # libpod keeps the imported checkpoint in place (keep): ctk lists, restores and frees
        # it like one it took, as on Docker
        records.record_checkpoint(self.kind, self.url, new_id, manifest.checkpoint)
        return self.inspect(new_id)

    def _placed_payload(
        self,
        verified: archive.VerifiedArchive,
        payload: Path,
        placed: list[volume_data.PlacedVolume],
    ) -> Path:
        """The checked payload with its volumes made this engine's: the names and mount
        points of the volumes ctk placed, nothing else changed."""
        out = verified.directory / "restore-payload.tar"
        archive.rewrite_podman_volumes(
            payload, out, {p.mount.name: (p.volume, p.mountpoint) for p in placed}
        )
        return out

    @contextlib.contextmanager
    def _criu_options(
        self, payload: Path, work: Path, target: str, image: str, options: list[str]
    ) -> Iterator[Path]:
        """The payload to send: as it is, or, for CRIU ``options`` libpod's API cannot pass
        (tcp-close), with its spec.dump naming a per-container CRIU config file that holds them.

        runc hands CRIU the file named by the container's ``org.criu.config`` annotation, and
        libpod builds the restored container's spec from spec.dump. The file lives only for
        this restore: runc reads it on every later dump too (where ``tcp-close`` would change
        what is dumped), and CRIU ignores a file that is gone.

        Raises:
            Unsupported: the engine's host does not see ctk's CRIU config directory.
        """
        if not options:
            yield payload
            return
        directory = records.criu_config_dir()
        if not self.shares_directory(directory, image=image):
            raise Unsupported(
                "Podman's restore API has no --tcp-close; ctk passes it to CRIU in a "
                f"per-container config file, which Podman at {self.url} does not see "
                f"({directory} of this machine)",
                hint="run ctk on the engine's host",
            )
        config = directory / f"{target}-{uuid.uuid4().hex[:8]}.conf"
        config.write_text("".join(f"{option}\n" for option in options))
        try:
            sent = work / "payload-criu-options.tar"
            _annotate_spec(payload, sent, {"org.criu.config": str(config)})
            yield sent
        finally:
            config.unlink(missing_ok=True)

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
                # The source's run-root paths out: this Podman's run root may be elsewhere.
                data=relocate_export(body),
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
