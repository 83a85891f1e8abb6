"""ctk archives on Docker: export (checkpoint + files fetched through a helper) and import."""

from __future__ import annotations

import dataclasses
import logging
import os
import tarfile
import time
from pathlib import Path
from typing import Any

from toolkit import archive, interrupts, records
from toolkit.archive.volumes import member_name
from toolkit.backends import inspection, shared, validation, volume_data
from toolkit.backends.docker.checkpoints import CheckpointsMixin, refuse_tcp_close
from toolkit.backends.docker.client import _explanation, docker, requests
from toolkit.backends.docker.files import (
    _checked_deletions,
    _rename_checkpoint,
    _whiteouts,
    engine_driver,
)
from toolkit.backends.docker.images import ImagesMixin
from toolkit.backends.docker.volumes import VolumesMixin
from toolkit.criu import diagnosis
from toolkit.errors import CheckpointNotFound, Conflict, Unsupported
from toolkit.models import (
    ArchiveInfo,
    ContainerInfo,
    EngineInfo,
    ExportOptions,
    ImportOptions,
    Mount,
    RestoreOptions,
)

log = logging.getLogger(__name__)

# Member names of a Docker payload inside a ctk archive.
DOCKER_CHECKPOINT = "docker-checkpoint.tar"


DOCKER_ROOTFS = "docker-rootfs.tar"


class ArchivesMixin(VolumesMixin, CheckpointsMixin, ImagesMixin):
    """Checkpoints into ctk archives and back."""

    def export_checkpoint(
        self, name: str, dest: str | os.PathLike[str], options: ExportOptions
    ) -> ArchiveInfo:
        """Checkpoint ``name`` into a ctk archive at ``dest``.

        Docker has no export: ctk checkpoints through the API, fetches the checkpoint files
        through a helper container that bind-mounts the container's directory, and adds the
        rootfs changes (``/containers/{id}/changes`` + ``get_archive``) and the create spec.

        Raises:
            InvalidArgument: unknown compression or unusable ``dest`` (container untouched).
            CheckpointError: CRIU failed; the container keeps running.
        """
        archive.validate_compression(options.compression)
        signer = archive.export_signer(options.sign_key)
        path = archive.check_destination(dest)
        attrs = self._attrs(name)
        # Before anything is frozen: a bind mount the user did not name is refused.
        mounts = volume_data.export_mounts(self, name, options)
        engine = self.info()
        timings: dict[str, float] = {}
        # dockerd removes an --rm container, and the checkpoint in it, as soon as a dump stops
        # it: freeze it with pause instead and dump it left running (CRIU keeps it frozen), so
        # it never runs past the dump; it is removed once the archive is written (as the
        # stop would have), or unpaused on failure. With -R nothing needs to differ.
        auto_remove = (
            validation.auto_removed(attrs)
            and attrs["State"]["Running"]
            and not options.checkpoint.leave_running
        )
        cp_options = options.checkpoint
        if auto_remove:
            cp_options = dataclasses.replace(cp_options, leave_running=True)
            with self._errors(container=attrs["Id"]):  # LifecycleMixin.pause, by ID
                self._api.pause(attrs["Id"])
        with (
            archive.staging_dir(path) as stage,
            volume_data.volume_readers(
                self, mounts, image=attrs["Image"], ignore=options.ignore_volumes
            ) as readers,
        ):
            started = time.monotonic()
            try:
                cp = self._checkpoint(name, cp_options, in_place=False, paused=auto_remove)
            except BaseException:
                if auto_remove:
                    self._unpause_after_failure(attrs["Id"])
                raise
            timings["checkpoint"] = round(time.monotonic() - started, 3)
            try:
                interrupts.pause_at("export-write")
                result = self._write_held(
                    engine, attrs, cp.name, path, stage, options, signer, timings,
                    mounts=mounts, readers=readers,
                )  # fmt: skip
            except BaseException:
                if auto_remove:
                    self._unpause_after_failure(attrs["Id"])
                elif not options.checkpoint.leave_running:
                    # The dump stopped the container but no archive came of it: put it back.
                    try:
                        self.restore(attrs["Id"], RestoreOptions(checkpoint=cp.name))
                    except Exception:  # the original error matters more; say what is left
                        log.exception(
                            "could not restore %s after the failed export: "
                            "restore it with ctk restore %s",
                            name,
                            name,
                        )
                raise
        if auto_remove:
            # as its stop would have: --rm takes its anonymous volumes too
            # (LifecycleMixin.remove, by ID)
            with self._errors(container=attrs["Id"]):
                self._api.remove_container(attrs["Id"], force=True, v=True)
            records.forget_container(self.kind, self.url, attrs["Id"])
        return dataclasses.replace(result, timings={**timings, **result.timings})

    def _write_held(
        self,
        engine: EngineInfo,
        attrs: dict[str, Any],
        checkpoint: str,
        path: Path,
        stage: Path,
        options: ExportOptions,
        signer: Any,
        timings: dict[str, float],
        *,
        mounts: tuple[Mount, ...] = (),
        readers: dict[str, str] | None = None,
    ) -> ArchiveInfo:
        """The ctk archive at ``path`` of checkpoint ``checkpoint`` that dockerd holds: its
        directory fetched through a helper container, the rootfs changes (none with
        ``ignore_rootfs``: an empty tar; never the ``mounts``), the create spec, and the data
        of the volumes ``readers`` hold (:func:`toolkit.backends.volume_data.volume_readers`)."""
        started = time.monotonic()
        cp_tar = stage / DOCKER_CHECKPOINT
        source = f"{engine.root_dir}/containers/{attrs['Id']}"
        with self._helper(attrs["Image"], {source: "/ctk/container"}) as helper:
            self._fetch(helper, f"/ctk/container/checkpoints/{checkpoint}", cp_tar)
        rootfs_tar = stage / DOCKER_ROOTFS
        deleted: list[str] = []
        if options.ignore_rootfs:
            with tarfile.open(rootfs_tar, mode="w", format=tarfile.PAX_FORMAT):
                pass
        else:
            deleted = self._fetch_changes(
                attrs["Id"], rootfs_tar, stage, exclude=[m.target for m in mounts]
            )
        volumes = volume_data.read_volumes(self, readers or {}, stage)
        timings["fetch"] = round(time.monotonic() - started, 3)
        manifest = shared.archive_manifest(
            engine=engine,
            attrs=attrs,
            info=inspection.info_from_inspect(attrs, self.kind),
            checkpoint=checkpoint,
            engine_data={
                "deleted": deleted,
                "storage_driver": engine_driver(self),
                "ignore_rootfs": options.ignore_rootfs,
            },
            mounts=mounts,
            volumes_ignored=options.ignore_volumes,
        )
        return archive.write_archive(
            path,
            manifest,
            [(DOCKER_CHECKPOINT, cp_tar), (DOCKER_ROOTFS, rootfs_tar), *volumes],
            compression=options.compression,
            signing_key=signer,
        )

    def export_held_checkpoint(
        self, name: str, checkpoint: str, dest: str | os.PathLike[str], options: ExportOptions
    ) -> ArchiveInfo:
        """Write checkpoint ``checkpoint`` that dockerd holds into a ctk archive, taking none.

        The rootfs changes are the container's as they are now (Docker keeps none with a
        checkpoint); ``options.checkpoint`` is not used.

        Raises:
            CheckpointNotFound: no such checkpoint.
            Unsupported: the container has volumes or bind mounts.
        """
        archive.validate_compression(options.compression)
        signer = archive.export_signer(options.sign_key)
        path = archive.check_destination(dest)
        attrs = self._attrs(name)
        validation.validate_checkpoint_name(checkpoint)
        if checkpoint not in {c["Name"] for c in self._list_checkpoints(attrs["Id"])}:
            raise CheckpointNotFound(
                f"no checkpoint {checkpoint} for container {name}",
                hint=f"list them: ctk checkpoint ls {name}",
            )
        validation.refuse_mounts_in_held_export(name, attrs)
        engine = self.info()
        timings: dict[str, float] = {}
        with archive.staging_dir(path) as stage:
            result = self._write_held(
                engine, attrs, checkpoint, path, stage, options, signer, timings
            )
        return dataclasses.replace(result, timings={**timings, **result.timings})

    def _anonymous_placed(
        self,
        container_id: str,
        verified: archive.VerifiedArchive,
        mounts: list[Mount],
        options: ImportOptions,
    ) -> list[volume_data.PlacedVolume]:
        """The anonymous volumes Docker made with the new container, each with its data."""
        restore = not (options.ignore_volumes or verified.manifest.volumes_ignored)
        made = {m.target: m for m in self.container_volumes(container_id)}
        placed = []
        for mount in mounts:
            if mount.type == "volume" and not mount.source and mount.target in made:
                data = verified.member(member_name(mount.name)) if restore else None
                # not "created": removing the container (v=True) removes it
                placed.append(
                    volume_data.PlacedVolume(mount, made[mount.target].name, "", False, data)
                )
        return placed

    def _unpause_after_failure(self, container_id: str) -> None:
        # Logged, not raised: the error being raised is the one that says what failed.
        try:
            if self._api.inspect_container(container_id)["State"].get("Paused"):
                self._api.unpause(container_id)
        except docker.errors.APIError as exc:
            log.warning("could not unpause %s after a failed export: %s", container_id, exc)

    def import_checkpoint(
        self, archive_path: str | os.PathLike[str], options: ImportOptions
    ) -> ContainerInfo:
        """Create a container from a ctk archive made on Docker and start it from the checkpoint.

        Every member is verified before anything is created. Then: create the container from
        the archived spec, apply the rootfs changes (``put_archive``; deletions as overlay
        whiteouts in the container's upper directory), place the checkpoint in
        ``<DockerRootDir>/containers/<id>/checkpoints/`` through a helper container, and start
        from it. A failure removes the container the import made.

        Raises:
            ArchiveError: the archive is corrupt or hostile (nothing created).
            ImageNotFound: the checkpoint's image ID is not here.
            Conflict: a container with the target name exists.
            Unsupported: CRIU options Docker cannot pass, or deletions on a non-overlay2 daemon.
            CheckpointError: CRIU failed to restore (nothing left behind).
        """
        if options.name is not None:
            validation.validate_ref(options.name, what="container")
        if options.tcp_established or options.file_locks:
            raise Unsupported(
                "Docker's API cannot pass --tcp-established/--file-locks to CRIU",
                hint="use --engine podman for containers with open TCP connections or file locks",
            )
        refuse_tcp_close(options.tcp_close)
        trust = archive.import_trust(options.verify_keys)
        with archive.open_archive(archive_path, trust=trust) as verified:
            manifest = verified.manifest
            validation.require_archive_engine(manifest, self.kind, str(archive_path))
            cp_tar = verified.member(DOCKER_CHECKPOINT)
            rootfs_tar = verified.member(DOCKER_ROOTFS)
            cp_names = archive.check_nested_tar(cp_tar, what="docker checkpoint")
            archive.check_nested_tar(rootfs_tar, what="rootfs changes", allow_symlinks=True)
            deleted = _checked_deletions(manifest.engine_data.get("deleted") or [])
            if options.ignore_rootfs:
                deleted = []
            archive.check_container_spec(
                manifest.spec, allow_host_network=options.allow_host_network
            )
            validation.validate_checkpoint_name(manifest.checkpoint)
            self._require_checkpoint_support()
            engine = self.info()
            image = self._local_image(manifest.image, manifest.image_id)
            spec = archive.spec_from_dict(manifest.spec)
            spec = dataclasses.replace(
                spec,
                name=options.name or manifest.container_name,
                ports=options.ports or spec.ports,
            )
            validation.validate_spec(spec)
            if deleted and engine_driver(self) != "overlay2":
                raise Unsupported(
                    "the archive deletes files, which ctk applies as overlay2 whiteouts; this "
                    f"daemon uses {engine_driver(self)}",
                )
            if spec.name and self._exists(spec.name):
                raise Conflict(
                    f"a container named {spec.name} exists already",
                    hint="import under another name: ctk restore --import FILE --name NEW",
                )
            mounts = volume_data.import_mounts(self, verified, options)
            placed = verified.directory / "placed.tar"
            _rename_checkpoint(cp_tar, placed, cp_names, manifest.checkpoint)
            # named volumes first (new, or kept with --ignore-volumes); Docker makes a new
            # anonymous volume for each anonymous mount as it creates the container
            volumes = volume_data.place_volumes(self, verified, mounts, options, anonymous=False)
            # an anonymous volume kept as it is (a rolled-back migration's source) by its name
            kept = {v.mount.target: v.volume for v in volumes}
            spec = dataclasses.replace(
                spec,
                volumes=tuple(
                    dataclasses.replace(m, source=kept[m.target]) if m.target in kept else m
                    for m in mounts
                ),
            )
            try:
                new_id = self._create_stopped(spec, image)
            except BaseException:
                volume_data.remove_created(self, volumes)
                raise
            try:
                volumes += self._anonymous_placed(
                    new_id, verified, [m for m in mounts if m.target not in kept], options
                )
                volume_data.fill_volumes(self, volumes, image=image)
                if not options.ignore_rootfs:
                    with self._errors(container=new_id), rootfs_tar.open("rb") as data:
                        self._api.put_archive(new_id, "/", data)
                binds = {f"{engine.root_dir}/containers/{new_id}": "/ctk/container"}
                if deleted:
                    upper = self._api.inspect_container(new_id)["GraphDriver"]["Data"]["UpperDir"]
                    binds[str(upper)] = "/ctk/upper"
                with self._helper(image, binds) as helper:
                    if deleted:
                        with self._errors(container=helper):
                            self._api.put_archive(helper, "/ctk/upper", _whiteouts(deleted))
                    with self._errors(container=helper), placed.open("rb") as data:
                        self._api.put_archive(helper, "/ctk/container", data)
                try:
                    self._start_from_checkpoint(new_id, manifest.checkpoint)
                except docker.errors.APIError as exc:
                    raise diagnosis.criu_error(
                        "import", spec.name or new_id, _explanation(exc)
                    ) from exc
                except requests.exceptions.ConnectionError as exc:
                    raise shared.unavailable(self.kind, self.url) from exc
            except BaseException:
                # Nothing half-made: the container this import created goes again, with the
                # volumes it created.
                self._remove_half_made(new_id)
                volume_data.remove_created(self, volumes)
                raise
        records.record_checkpoint(self.kind, self.url, new_id, manifest.checkpoint)
        return self.inspect(new_id)
