"""Checkpoint images: a checkpoint as a one-layer container image, in Podman's format.

``podman container checkpoint --create-image IMAGE`` (libpod's ``createCheckpointImage``)
commits an image FROM scratch whose single layer holds exactly what ``--export`` writes:
libpod's export tar (``checkpoint/`` with CRIU's images, ``config.dump``, ``spec.dump``,
``rootfs-diff.tar``, ``deleted.files``, ``network.status``, ``ctr.log``, ...), and describes the
source in the manifest's annotations ``io.podman.annotations.checkpoint.*`` (the container's
name, its image's name and ID, the Podman, CRIU and runtime versions, the host).
``podman container restore IMAGE`` and checkpointctl read that layout; CRI-O and containerd
write the same one under their own annotation prefix.

Docker has neither libpod's metadata nor manifest annotations in its image store. A checkpoint
image ctk makes on Docker therefore holds the same names where they apply (``checkpoint/``,
``rootfs-diff.tar``, ``deleted.files``) plus ctk's own ``ctk-manifest.json`` (the container
spec, image ID and checkpoint name, as in a ctk archive, with no member list), and carries the
annotations as image labels with the same keys. ctk restores both kinds on both engines.

An image is input from anywhere (a registry, a ``load``): it is read exactly like an archive.
The saved image is streamed once with its size bounded by what the engine declared, only plain
files are staged, and the layer must be the only one; the layer's members are checked by
:func:`~toolkit.archive.reader.iter_nested_tar`, libpod's documents by
:mod:`toolkit.archive.payload`'s allow-list, before any container is created.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from toolkit.archive.manifest import MANIFEST_NAME, manifest_from_dict, manifest_to_json
from toolkit.archive.payload import (
    check_container_spec,
    check_deleted_paths,
    check_podman_docs,
    read_podman_payload,
)
from toolkit.archive.reader import (
    _Bounded,
    _check_space,
    _decode_errors,
    check_member_name,
    check_nested_tar,
    iter_nested_tar,
)
from toolkit.errors import ArchiveError
from toolkit.models import ArchiveManifest, ContainerSpec, ImportOptions, PortMapping

# libpod's annotation keys (libpod/define/annotations.go, CheckpointAnnotation*).
PREFIX = "io.podman.annotations.checkpoint."
NAME = PREFIX + "name"
RAW_IMAGE_NAME = PREFIX + "rawImageName"
ROOTFS_IMAGE_ID = PREFIX + "rootfsImageID"
ROOTFS_IMAGE_NAME = PREFIX + "rootfsImageName"
CRIU_VERSION = PREFIX + "criu.version"
RUNTIME_NAME = PREFIX + "runtime.name"
HOST_KERNEL = PREFIX + "host.kernel"
HOST_ARCH = PREFIX + "host.arch"
# ctk's own: which engine made the checkpoint, and the checkpoint's name there.
ENGINE_LABEL = "ctk.checkpoint.engine"
CHECKPOINT_LABEL = "ctk.checkpoint.name"

# The two layouts a checkpoint image's layer can have.
LIBPOD = "libpod"  # libpod's export tar (Podman, and ctk on Podman)
CTK = "ctk"  # ctk's manifest around CRIU's images (ctk on Docker)

_CHUNK = 1024 * 1024
# JSON a saved image holds (manifest.json, the image config, repositories): small documents.
_MAX_JSON = 4 * 1024 * 1024
# What docker-archive adds around the layer: its config, manifest, and tar headers.
_SAVE_OVERHEAD = 8 * 1024 * 1024
_IMAGE_FILES = ("stats-dump", "stats-restore", "descriptors.json")
_HINT = "ctk restores checkpoint images made by podman --create-image or ctk --create-image"
_HOSTILE = "ctk refuses images that ask the host for more than an ordinary container"


@dataclass(frozen=True)
class CheckpointLayer:
    """A checkpoint image's layer, staged and checked (valid while its directory exists)."""

    layout: str
    """:data:`LIBPOD` or :data:`CTK`."""
    path: Path
    """The layer tar (for :data:`LIBPOD`, libpod's export tar as ``--import`` takes it)."""
    spec: ContainerSpec
    """The container to create (name, image, command, env, ports, labels ...)."""
    image_id: str
    """The ID of the image the checkpointed container ran."""
    source_engine: str
    docs: Mapping[str, Any]
    """libpod's parsed documents (``config.dump``, ``spec.dump``); empty for :data:`CTK`."""


class _Chunks:
    """A read-only file over an iterator of byte chunks (an engine's image stream).

    Reads are served from the current chunk without copying what remains of it, so a large
    image costs one pass, whatever sizes the tar reader asks for.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._chunk = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = size
        while wanted != 0:
            if not self._chunk:
                try:
                    self._chunk = memoryview(next(self._chunks))
                except StopIteration:
                    break
                continue
            take = len(self._chunk) if wanted < 0 else min(wanted, len(self._chunk))
            parts.append(bytes(self._chunk[:take]))
            self._chunk = self._chunk[take:]
            if wanted > 0:
                wanted -= take
        return b"".join(parts)


def stage_saved_image(chunks: Iterable[bytes], work: Path, *, declared: int) -> Path:
    """The one layer of a saved image (a docker-archive stream), staged as ``work/layer.tar``.

    ``declared`` is the image's size as the engine reports it: the stream may not exceed it
    (plus docker-archive's own files), and the disk must hold it. Only plain files are staged
    (links are never followed); the image must have exactly one layer.

    Raises:
        ArchiveError: not a one-layer image, or a malformed or oversized stream.
        CtkError: no space for it in ``work`` (exit 1).
    """
    limit = max(declared, 0) + _SAVE_OVERHEAD
    _check_space(work, limit)
    staged: dict[str, Path] = {}
    manifest: Any = None
    try:
        bounded = _Bounded(_Chunks(chunks), limit=limit)  # type: ignore[arg-type]
        with tarfile.open(fileobj=bounded, mode="r|") as tar:  # type: ignore[call-overload]
            for relative, info in iter_nested_tar(
                tar, what="saved image", allow_symlinks=True, max_members=1024
            ):
                if not info.isfile():
                    continue
                source = tar.extractfile(info)
                if source is None:
                    continue
                if str(relative) == "manifest.json":
                    if info.size > _MAX_JSON:
                        raise ArchiveError("the saved image's manifest.json is implausibly large")
                    manifest = json.loads(source.read(info.size))
                elif relative.name.endswith(".tar"):
                    target = work / f"blob-{len(staged)}.tar"
                    with target.open("xb") as out:
                        shutil.copyfileobj(source, out, _CHUNK)
                    staged[str(relative)] = target
    except _decode_errors() as exc:
        raise ArchiveError(f"the saved image is truncated or corrupt: {exc}") from exc
    if not isinstance(manifest, list) or len(manifest) != 1 or not isinstance(manifest[0], dict):
        raise ArchiveError("the saved image has no manifest.json for one image", hint=_HINT)
    layers = manifest[0].get("Layers")
    if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], str):
        count = len(layers) if isinstance(layers, list) else 0
        raise ArchiveError(
            f"not a checkpoint image: it has {count} layers, a checkpoint image has one",
            hint=_HINT,
        )
    name = str(check_member_name(layers[0], where="saved image"))
    if name not in staged:
        raise ArchiveError(f"the saved image lacks its layer {layers[0]!r}", hint=_HINT)
    layer = work / "layer.tar"
    staged[name].rename(layer)
    for path in staged.values():
        path.unlink(missing_ok=True)
    return layer


def _layout(layer: Path) -> str:
    """Which layout the layer has, from its top-level names (checked as they stream)."""
    names: set[str] = set()
    try:
        with tarfile.open(layer, mode="r|*") as tar:
            # nothing is extracted here: links are refused by the passes that extract
            for relative, info in iter_nested_tar(
                tar, what="checkpoint image layer", allow_symlinks=True
            ):
                if info.isfile() and len(relative.parts) == 1:
                    names.add(relative.name)
    except _decode_errors() as exc:
        raise ArchiveError(f"the checkpoint image's layer is corrupt: {exc}") from exc
    if MANIFEST_NAME in names:
        return CTK
    if {"config.dump", "spec.dump"} <= names:
        return LIBPOD
    raise ArchiveError(
        "not a checkpoint image: its layer has neither libpod's config.dump and spec.dump "
        f"nor ctk's {MANIFEST_NAME}",
        hint=_HINT,
    )


def source_engine(layer: Path) -> str:
    """The engine that made the checkpoint in a staged layer (its layout tells; ctk's manifest
    names it).

    Raises:
        ArchiveError: not a checkpoint image.
    """
    if _layout(layer) == CTK:
        return _ctk_manifest(layer).engine
    return "podman"


def read_layer(layer: Path, options: ImportOptions) -> CheckpointLayer:
    """Check a staged layer completely and say what to create from it.

    The libpod layout goes through the same allow-list as a Podman archive's payload
    (:func:`~toolkit.archive.payload.check_podman_docs`), against a manifest made from what
    the image itself says (its network: the host's only with ``allow_host_network``); ctk's
    layout has its manifest's spec checked as a Docker archive's is.

    Raises:
        ArchiveError: not a checkpoint image, or one that is hostile or malformed.
    """
    layout = _layout(layer)
    if layout == CTK:
        manifest = _ctk_manifest(layer)
        check_container_spec(manifest.spec, allow_host_network=options.allow_host_network)
        from toolkit.archive.manifest import spec_from_dict

        return CheckpointLayer(
            layout=CTK,
            path=layer,
            spec=spec_from_dict(manifest.spec),
            image_id=manifest.image_id,
            source_engine=manifest.engine,
            docs={},
        )
    docs = read_podman_payload(layer)
    manifest = _libpod_manifest(docs)
    check_podman_docs(
        docs,
        manifest,
        allow_mounts=options.allow_mounts,
        allow_host_network=options.allow_host_network,
    )
    return CheckpointLayer(
        layout=LIBPOD,
        path=layer,
        spec=spec_from_libpod(docs),
        image_id=manifest.image_id,
        source_engine="podman",
        docs=docs,
    )


def _ctk_manifest(layer: Path) -> ArchiveManifest:
    with tarfile.open(layer, mode="r|*") as tar:
        for info in tar:
            if check_member_name(info.name) == PurePosixPath(MANIFEST_NAME) and info.isfile():
                source = tar.extractfile(info)
                if source is None or info.size > _MAX_JSON:
                    break
                try:
                    return manifest_from_dict(json.loads(source.read(info.size)))
                except ValueError as exc:
                    raise ArchiveError(f"the image's {MANIFEST_NAME} is not JSON: {exc}") from exc
    raise ArchiveError(f"the checkpoint image's {MANIFEST_NAME} is unreadable", hint=_HINT)


def _libpod_manifest(docs: Mapping[str, Any]) -> ArchiveManifest:
    """What a ctk manifest would say of libpod's documents: the image and the network."""
    config = docs["config.dump"]
    spec = spec_from_libpod(docs)
    return ArchiveManifest(
        format_version=1,
        engine="podman",
        engine_version="",
        criu_version="",
        container_id=str(config.get("id") or ""),
        container_name=str(config.get("name") or ""),
        image=spec.image,
        image_id=str(config.get("rootfsImageID") or ""),
        checkpoint="",
        created="",
        spec=spec.to_dict(),
    )


def spec_from_libpod(docs: Mapping[str, Any]) -> ContainerSpec:
    """The container libpod's ``config.dump`` and ``spec.dump`` describe, as a ctk spec.

    What the restored processes need is in CRIU's images; this is what the engine shows and
    uses on a later start: the image, command, environment, ports, labels, user, directory.

    Raises:
        ArchiveError: the documents are malformed.
    """
    config, oci = docs["config.dump"], docs["spec.dump"]
    if not isinstance(oci, dict):
        raise ArchiveError("the payload's spec.dump is not an object", hint=_HOSTILE)
    process = oci.get("process") if isinstance(oci.get("process"), dict) else {}
    assert isinstance(process, dict)
    env: dict[str, str] = {}
    for item in process.get("env") or ():
        key, sep, value = str(item).partition("=")
        # the engine's own variables; the processes keep theirs in memory anyway
        if sep and key not in ("HOSTNAME", "container"):
            env[key] = value
    ports = []
    for row in config.get("newPortMappings") or config.get("portMappings") or ():
        if not isinstance(row, dict):
            continue
        for offset in range(max(int(row.get("range") or 1), 1)):
            ports.append(
                PortMapping(
                    int(row.get("container_port") or 0) + offset,
                    int(row.get("host_port") or 0) + offset if row.get("host_port") else 0,
                    str(row.get("host_ip") or ""),
                    str(row.get("protocol") or "tcp"),
                )
            )
    network = str(config.get("networkMode") or "")
    labels = config.get("labels") if isinstance(config.get("labels"), dict) else {}
    assert isinstance(labels, dict)
    image = str(config.get("rootfsImageName") or config.get("RawImageName") or "")
    return ContainerSpec(
        image=image.removeprefix("localhost/") or str(config.get("rootfsImageID") or ""),
        command=tuple(str(c) for c in config.get("command") or process.get("args") or ()),
        name=str(config.get("name") or "") or None,
        env=env,
        ports=tuple(ports),
        labels={str(k): str(v) for k, v in labels.items()},
        network="host" if network == "host" else None,
        hostname=str(oci.get("hostname") or "") or None,
        working_dir=str(process.get("cwd") or "") or None,
        user=str(config.get("user") or "") or None,
    )


def unpack_layer(layer: Path, work: Path) -> tuple[Path, Path | None, list[str]]:
    """CRIU's images (flat in ``work/images``), the rootfs changes tar, the deleted paths.

    Both layouts use libpod's names: ``checkpoint/``, ``rootfs-diff.tar``, ``deleted.files``.
    Each is checked as it streams; nothing lands outside ``work``.

    Raises:
        ArchiveError: a hostile or malformed member, or no CRIU images.
    """
    images = work / "images"
    images.mkdir()
    rootfs: Path | None = None
    deleted: list[str] = []
    try:
        with tarfile.open(layer, mode="r|*") as tar:
            for relative, info in iter_nested_tar(tar, what="checkpoint image layer"):
                if not info.isfile():
                    continue
                source = tar.extractfile(info)
                if source is None:
                    continue
                if relative.parts[0] == "checkpoint" and len(relative.parts) == 2:
                    base = relative.name
                    if base.endswith(".img") or base in _IMAGE_FILES:
                        _copy_new(source, images / base)
                elif str(relative) == "rootfs-diff.tar":
                    rootfs = work / "rootfs-diff.tar"
                    _copy_new(source, rootfs)
                elif str(relative) == "deleted.files":
                    if info.size > _MAX_JSON:
                        raise ArchiveError("the image's deleted.files is implausibly large")
                    deleted = ["/" + p for p in check_deleted_paths(json.loads(source.read()))]
    except _decode_errors() as exc:
        raise ArchiveError(f"the checkpoint image's layer is corrupt: {exc}") from exc
    if not (images / "pstree.img").is_file():
        raise ArchiveError("the checkpoint image holds no CRIU images (checkpoint/pstree.img)")
    if rootfs is not None:
        check_nested_tar(rootfs, what="rootfs changes", allow_symlinks=True, keep_names=False)
    return images, rootfs, deleted


def _copy_new(source: IO[bytes], path: Path) -> None:
    try:
        with path.open("xb") as out:
            shutil.copyfileobj(source, out, _CHUNK)
    except FileExistsError as exc:
        raise ArchiveError(f"the checkpoint image holds {path.name} twice", hint=_HOSTILE) from exc


def write_ctk_layer(
    out: Path,
    *,
    manifest: ArchiveManifest,
    images: Path,
    rootfs: Path | None,
    deleted: list[str],
) -> None:
    """The layer of a checkpoint image ctk makes from a checkpoint without libpod's metadata.

    ``images`` is a flat directory of CRIU's images; ``deleted`` absolute paths.
    """
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, MANIFEST_NAME, manifest_to_json(manifest))
        top = tarfile.TarInfo("checkpoint")
        top.type, top.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(top)
        for item in sorted(images.iterdir()):
            if item.is_file() and not item.is_symlink():
                tar.add(item, arcname=f"checkpoint/{item.name}")
        if rootfs is not None:
            tar.add(rootfs, arcname="rootfs-diff.tar")
        _add_bytes(tar, "deleted.files", json.dumps(deleted).encode())


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    tar.addfile(info, io.BytesIO(data))


def image_labels(manifest: ArchiveManifest, *, runtime: str = "runc") -> dict[str, str]:
    """libpod's checkpoint annotations (as labels: Docker keeps no annotations) plus ctk's."""
    values = {
        NAME: manifest.container_name,
        RAW_IMAGE_NAME: manifest.image,
        ROOTFS_IMAGE_ID: manifest.image_id.removeprefix("sha256:"),
        ROOTFS_IMAGE_NAME: manifest.image,
        CRIU_VERSION: _criu_number(manifest.criu_version),
        RUNTIME_NAME: runtime,
        HOST_KERNEL: manifest.kernel,
        ENGINE_LABEL: manifest.engine,
        CHECKPOINT_LABEL: manifest.checkpoint,
    }
    return {k: " ".join(v.split()) for k, v in values.items() if v}


def _criu_number(text: str) -> str:
    """CRIU's version as libpod writes it (4.1.1 -> 40101), from ``criu --version`` text."""
    import re

    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if found is None:
        return ""
    major, minor, patch = (int(found.group(i) or 0) for i in (1, 2, 3))
    return str(major * 10000 + minor * 100 + patch)


__all__ = [
    "CTK",
    "LIBPOD",
    "NAME",
    "PREFIX",
    "CheckpointLayer",
    "image_labels",
    "read_layer",
    "source_engine",
    "spec_from_libpod",
    "stage_saved_image",
    "unpack_layer",
    "write_ctk_layer",
]
