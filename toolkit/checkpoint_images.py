"""Checkpoint images on both engines: ``ctk checkpoint NAME --create-image IMAGE`` and
``ctk restore --image IMAGE``.

The format is Podman's (:mod:`toolkit.archive.checkpoint_image`). Making one:

- Podman: libpod commits it itself (``createImage``), exactly as ``podman container checkpoint
  --create-image`` does, so Podman, checkpointctl and CRI-O read ctk's images as their own.
- Docker: ctk checkpoints in place, fetches CRIU's images and the rootfs changes (as a
  cross-runtime move does), writes them under libpod's names with ctk's manifest beside them
  (Docker has no ``config.dump``/``spec.dump`` to give) and ``docker import``\\ s that as the
  one layer, the annotations as labels.

Restoring one, whoever made it: the image is saved out of the engine (bounded), its one layer
checked completely, then

- a libpod layer on Podman: imported from the very bytes that were checked (libpod's
  ``/containers/import/restore``, as ``podman container restore IMAGE`` does after mounting
  the image), so nothing can change between the check and the restore;
- a libpod layer on Docker: CRIU's images adjusted for Docker and started in a container shaped
  for them (the cross-runtime path, :mod:`toolkit.migration.cross_runtime`), the spec read from
  ``config.dump``/``spec.dump``;
- ctk's layer on Docker: the same start, the spec from ctk's manifest;
- ctk's layer on Podman: through a template container's libpod metadata (the cross-runtime
  path into Podman).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from toolkit import operations
from toolkit.archive import checkpoint_image as layout
from toolkit.backends.base import (
    Backend,
    ForeignImageRestore,
    Images,
    LayerImport,
    NativeCheckpointImages,
    StreamingCheckpoints,
    TemplateRestore,
)
from toolkit.backends.shared import new_manifest
from toolkit.backends.validation import validate_ref
from toolkit.errors import Conflict, ContainerNotFound, InvalidArgument, Unsupported
from toolkit.models import (
    Checkpoint,
    CheckpointOptions,
    ContainerInfo,
    ContainerSpec,
    ImageInfo,
    ImportOptions,
)

log = logging.getLogger(__name__)

# An image reference as both engines take it: [registry[:port]/]path[:tag].
_REFERENCE = re.compile(
    r"(?:[a-zA-Z0-9][a-zA-Z0-9.-]*(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
)


@dataclasses.dataclass(frozen=True)
class CheckpointImageInfo:
    """A checkpoint image just made."""

    image: str
    id: str
    container: str
    checkpoint: str
    engine: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def validate_reference(reference: str) -> None:
    """Refuse an image reference no engine would take, before anything is frozen.

    Raises:
        InvalidArgument: a malformed reference.
    """
    if not _REFERENCE.fullmatch(reference) or len(reference) > 255:
        raise InvalidArgument(
            f"invalid image name {reference!r}",
            hint="lower-case letters, digits, '.', '_', '-' and '/', then :TAG (e.g. app-cp:1)",
        )


def create_image(
    backend: Backend, name: str, image: str, options: CheckpointOptions
) -> CheckpointImageInfo:
    """Checkpoint running container ``name`` into checkpoint image ``image`` (lock held).

    The checkpoint also stays in place (``ctk restore NAME`` works as after any checkpoint);
    without ``leave_running`` the container stops, as with a checkpoint in place.

    Raises:
        InvalidArgument: a bad image name (nothing frozen).
        Conflict: the container is not running, is an --rm container, or is busy.
        Unsupported: the engine can make no image.
        CheckpointError: CRIU failed; the container keeps running.
    """
    validate_reference(image)
    if not isinstance(backend, Images):
        raise Unsupported(f"the {backend.kind} backend has no images")
    options = dataclasses.replace(options, name=options.name or _checkpoint_name())
    if isinstance(backend, NativeCheckpointImages):
        with operations.checkpointing(
            backend, name, options, operation="checkpoint --create-image"
        ):
            cp = backend.checkpoint_image(name, image, options)
        made = backend.inspect_image(image)
    elif isinstance(backend, LayerImport):
        cp, made = _create_by_import(backend, name, image, options)
    else:
        raise Unsupported(f"ctk cannot make checkpoint images on {backend.kind}")
    return CheckpointImageInfo(
        image=image, id=made.id, container=name, checkpoint=cp.name, engine=backend.kind
    )


def _checkpoint_name() -> str:
    from toolkit import records

    return records.new_checkpoint_name()


def _create_by_import(
    backend: Backend, name: str, image: str, options: CheckpointOptions
) -> tuple[Checkpoint, ImageInfo]:
    from toolkit.backends import validation
    from toolkit.migration import cross_runtime

    assert isinstance(backend, LayerImport) and isinstance(backend, Images)
    with operations.checkpointing(
        backend, name, options, operation="checkpoint --create-image"
    ) as info:
        if info.auto_remove:
            # as on Podman, which refuses it: the stop would remove the checkpoint with it
            validation.refuse_auto_remove_in_place(name, {"HostConfig": {"AutoRemove": True}})
        # the /run/.containerenv bind ctk adds to a container restored from Podman's images
        # (see toolkit.migration.cross_runtime) is made again on any restore of these images
        mounted = [m for m in backend.mounts(name) if m != cross_runtime.CONTAINERENV]
        if mounted:
            # as for a Docker archive: volume data and bind mounts are in neither CRIU's
            # images nor the rootfs changes; refused before anything is frozen
            raise Unsupported(
                f"container {name} has volumes or bind mounts ({', '.join(mounted)}), which "
                f"checkpoint images made on {backend.kind} do not carry",
                hint=f"checkpoint it in place (ctk checkpoint {name}), or run it on Podman, "
                "whose checkpoint images do",
            )
        cp = backend.checkpoint(name, options)
        with tempfile.TemporaryDirectory(prefix="ctk-cpimage-") as tmp:
            work = Path(tmp)
            images, rootfs, deleted = cross_runtime.fetch_in_place(backend, name, cp.name, work)
            spec = backend.container_spec(name)
            manifest = new_manifest(
                engine=backend.info(),
                info=info,
                checkpoint=cp.name,
                spec=dataclasses.replace(spec, name=info.name),
                engine_data={"layout": "checkpoint-image"},
            )
            layer = work / "layer.tar"
            layout.write_ctk_layer(
                layer,
                manifest=manifest,
                images=images,
                rootfs=rootfs,
                deleted=deleted,
            )
            backend.import_layer(layer, image, labels=layout.image_labels(manifest))
    return cp, backend.inspect_image(image)


def restore_image(backend: Backend, image: str, options: ImportOptions) -> ContainerInfo:
    """Create and restore a container from checkpoint image ``image`` (from Podman or ctk).

    The image is checked completely before anything is created; the new container is named
    ``options.name``, else as the checkpointed one was. A failure leaves no container.

    Raises:
        ImageNotFound: no such image, or not the checkpointed container's image here.
        ArchiveError: not a checkpoint image, or a hostile or malformed one (exit 8).
        Conflict: a container of the target name exists.
        Unsupported: options or a direction this engine cannot do.
        CheckpointError: CRIU failed to restore.
    """
    if not isinstance(backend, Images):
        raise Unsupported(f"the {backend.kind} backend has no images")
    if options.name is not None:
        validate_ref(options.name, what="container")
    if (options.tcp_established or options.file_locks) and not isinstance(
        backend, StreamingCheckpoints
    ):
        # Docker starts from the images through its API, which has no such switches
        raise Unsupported(
            f"{backend.kind}'s API cannot pass --tcp-established/--file-locks to CRIU",
            hint="restore the image on Podman instead (--engine podman)",
        )
    found = backend.inspect_image(image)
    with tempfile.TemporaryDirectory(prefix="ctk-cpimage-") as tmp:
        work = Path(tmp)
        # by ID: what is checked is what is restored, even if the name moves meanwhile
        staged = layout.stage_saved_image(backend.save_image(found.id), work, declared=found.size)
        checked = layout.read_layer(staged, options)
        target = options.name or checked.spec.name or ""
        validate_ref(target, what="container")
        spec = dataclasses.replace(
            checked.spec, name=target, ports=options.ports or checked.spec.ports
        )
        with operations.locked_name(backend, target, operation="restore --image"):
            _refuse_taken(backend, target)
            if not backend.has_image(checked.image_id):
                from toolkit.backends import shared
                from toolkit.errors import ImageNotFound

                raise ImageNotFound(
                    f"no image {checked.image_id} ({spec.image}) on {backend.kind}: the "
                    "checkpointed container's image must be here with the same ID",
                    hint=shared.image_missing_hint(spec.image, checked.image_id, backend.kind),
                )
            if checked.layout == layout.LIBPOD and isinstance(backend, StreamingCheckpoints):
                imported = dataclasses.replace(options, name=target)
                with checked.path.open("rb") as body:
                    return backend.restore_stream(body, imported)
            return _restore_images(backend, checked, spec, options, work)


@contextmanager
def unpacked(backend: Backend, image: str) -> Iterator[tuple[Path, str]]:
    """The CRIU images of checkpoint image ``image`` (flat, in a temporary directory) and the
    engine that made the checkpoint, for ``inspect`` and ``diff``: read with the same bounds
    and member checks as a restore, nothing created.

    Raises:
        ImageNotFound: no such image.
        ArchiveError: not a checkpoint image, or a malformed or hostile one.
    """
    if not isinstance(backend, Images):
        raise Unsupported(f"the {backend.kind} backend has no images")
    found = backend.inspect_image(image)
    with tempfile.TemporaryDirectory(prefix="ctk-cpimage-") as tmp:
        work = Path(tmp)
        staged = layout.stage_saved_image(backend.save_image(found.id), work, declared=found.size)
        source = layout.source_engine(staged)
        images, _rootfs, _deleted = layout.unpack_layer(staged, work)
        yield images, source


def _refuse_taken(backend: Backend, target: str) -> None:
    try:
        backend.inspect(target)
    except ContainerNotFound:
        return
    raise Conflict(
        f"a container named {target} exists already",
        hint="restore under another name: ctk restore --image IMAGE --name NEW",
    )


def _restore_images(
    backend: Backend,
    checked: layout.CheckpointLayer,
    spec: ContainerSpec,
    options: ImportOptions,
    work: Path,
) -> ContainerInfo:
    from toolkit.migration import cross_runtime

    images, raw_rootfs, deleted = layout.unpack_layer(checked.path, work)
    rootfs = None
    if raw_rootfs is not None:
        rootfs = work / "rootfs-filtered.tar"
        cross_runtime.filter_changes(raw_rootfs, rootfs)
    deleted = cross_runtime.without_mount_targets(deleted)
    source = checked.source_engine
    if isinstance(backend, ForeignImageRestore):
        _require_restorable(images, source, backend.kind)
        cross_runtime.prepare_images(images, source, backend.kind)
        return cross_runtime.restore_images_on_docker(
            backend,
            spec,
            image_id=checked.image_id,
            images=images,
            rootfs=rootfs,
            deleted=deleted,
            checkpoint=f"ctk-image-{uuid.uuid4().hex[:10]}",
        )
    if isinstance(backend, TemplateRestore):
        _require_restorable(images, source, backend.kind)
        cross_runtime.prepare_images(images, source, backend.kind)
        return cross_runtime.restore_images_on_podman(
            backend,
            dataclasses.replace(spec, runtime="runc"),
            image_id=checked.image_id,
            images=images,
            rootfs=rootfs,
            deleted=deleted,
            tcp_established=options.tcp_established,
        )
    raise Unsupported(f"ctk cannot restore checkpoint images on {backend.kind}")


def _require_restorable(images: Path, source: str, dest: str) -> None:
    from toolkit.criu.images import read_images
    from toolkit.migration.cross_runtime import can_restore_on

    ok, reason = can_restore_on(read_images(images), dest, source_kind=source)
    if not ok:
        raise Unsupported(f"cannot restore this checkpoint image on {dest}: {reason}")


__all__ = [
    "CheckpointImageInfo",
    "create_image",
    "restore_image",
    "unpacked",
    "validate_reference",
]
