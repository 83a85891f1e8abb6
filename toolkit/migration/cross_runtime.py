"""Live migration across runtimes: a running Docker container resumed in Podman, and back.

Docker and Podman both checkpoint through runc and CRIU, so their CRIU images describe the same
kind of process tree; what differs is the metadata each engine wraps around them and a few
details of the container each runtime builds. ctk translates those and nothing else: the
memory, file descriptors and sockets travel exactly as CRIU dumped them.

Docker -> Podman (``_restore_on_podman``):

1. A *template*: a Podman container with the same image (same ID), command, environment and
   labels, on runc, started and exported with libpod's checkpoint export. That gives libpod's
   own metadata (config.dump, spec.dump, network.status, ...) for an equal container, which
   ``restore --import`` needs and which ctk would otherwise have to forge.
2. The template's ``checkpoint/`` is replaced by Docker's CRIU images, its ``rootfs-diff.tar`` /
   ``deleted.files`` by the Docker container's filesystem changes.
3. Docker dumps with an *empty* network namespace (no ``netns-*.img``); libnetwork configures
   the new one in a prestart hook. Podman instead hands runc a ready namespace, and runc offers
   it to CRIU as the inherited fd ``extRootNetNS``; CRIU joins it only if the images say the
   namespace is external. ctk adds ``netns-<id>.img`` with ``ext_key: extRootNetNS``, else the
   processes come back in a namespace without eth0 and the published port never answers.
4. CRIU needs two restore-only options: ``mntns-compat-mode`` (mount-v2 fails: "Failed to copy
   sharing ... criu-root") and ``skip-file-rwx-check`` (Podman's rootfs root is 0555, Docker's
   0755: "File . has bad mode"). They go into a per-container CRIU config file named by the
   ``org.criu.config`` annotation (set on the template, so the imported container carries it),
   written just before the restore and emptied (or removed) right after: runc reads the same
   file on every later dump, and ``mntns-compat-mode`` makes dumps fail. Never
   /etc/criu/runc.conf, which every container on the host reads. The file is written where
   the destination's runc reads it: directly when Podman's host is proved to see ctk's
   directory, else through the engine (:mod:`toolkit.migration.criu_config`).

Podman -> Docker (``_restore_on_docker``), first failing in CRIU restore, each step found from
CRIU's restore log (containerd deletes it; it was copied out of the shim's work directory
while the restore ran):

1. ``mnt: No mapping for 241:(null) mountpoint``: mount 241 is Podman's /dev/shm, a bind mount
   (external, key /dev/shm), where Docker's default private IPC mode gives a tmpfs. ctk creates
   the Docker container with ``--ipc shareable``, whose /dev/shm is a bind mount too.
2. The same for ``/run/.containerenv``, a bind mount Docker does not make: ctk adds one
   (``/dev/null:/run/.containerenv``; the file is informative only).
3. ``File . has bad mode 040755 (expect 040555)`` / ``Can't open root``: the rootfs root mode
   differs, and Docker 20.10's API has no annotations, so no per-container CRIU config and no
   ``skip-file-rwx-check``. ctk rewrites the recorded mode of the root directory in
   ``files.img`` to Docker's 0755 instead.
4. Podman's images mark the network namespace external (``extRootNetNS``) but Docker's runc
   offers no such fd: ctk drops ``netns-<id>.img``, as Docker's own dumps have none, and
   libnetwork's prestart hook sets up eth0 in the new namespace as on any Docker restore.
5. ``Can't open file dev/shm/PostgreSQL.451778290 on restore: No such file or directory``
   (PostgreSQL's dynamic shared memory, a file it maps from /dev/shm): /dev/shm being an
   external mount, CRIU does not dump its files; Podman's export carries them beside the
   images (``devshm-checkpoint.tar``), but the tmpfs Docker mounts there at start comes up
   empty. When the source's /dev/shm holds files, ctk gives the Docker container an anonymous
   volume at /dev/shm (a bind mount to runc, like Podman's), fills it before the restore, and
   Docker then mounts no tmpfs of its own there. The container keeps that volume: its /dev/shm
   is on disk, not in memory, from then on.

Volumes move in both directions (:mod:`toolkit.migration.volume_transfer`): the destination's
container mounts a counterpart of each at the same target, so runc offers CRIU the same
external mount keys, and the data is copied while the source is frozen.

After either direction a plain checkpoint/restore of the migrated container on its new engine
works: no restore-only option is left behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import stat
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import archive, records
from toolkit.archive.volumes import harmless_bind
from toolkit.backends import shared, validation
from toolkit.backends.base import (
    ForeignImageRestore,
    RawCheckpointArchives,
    RuntimeInspection,
    TemplateRestore,
    VolumeData,
)
from toolkit.backends.volume_data import remove_volumes
from toolkit.criu import diagnosis
from toolkit.errors import (
    CheckpointError,
    Conflict,
    ContainerNotFound,
    ImageNotFound,
    Unsupported,
)
from toolkit.migration.criu_config import CriuConfig, EngineCriuConfig, criu_config
from toolkit.migration.volume_transfer import VolumeTransfer, carried_mounts, volume_transfer
from toolkit.models import (
    CheckpointImages,
    CheckpointOptions,
    ContainerInfo,
    ContainerSpec,
    Mount,
    PortMapping,
    RestoreOptions,
    RuntimeConfig,
)

if TYPE_CHECKING:
    from toolkit.backends.base import Backend

log = logging.getLogger(__name__)

KINDS = ("docker", "podman")

# runc marks bind mounts and cgroup mounts external, keyed by destination; CRIU restores them
# only if the new container has the same. These are the ones both engines provide (Docker the
# last two only as ctk creates its containers: --ipc shareable and a /run/.containerenv bind).
_PROVIDED = frozenset(
    {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/null", "/dev/shm"}
    | {"/run/.containerenv"}
)
CONTAINERENV = "/run/.containerenv"
SHM = "/dev/shm"

# The key runc gives the container's network namespace when the engine made it (Podman).
NETNS_KEY = "extRootNetNS"

# What Podman's restore (and only the restore) needs from CRIU for Docker's images.
PODMAN_RESTORE_OPTIONS = ("mntns-compat-mode", "skip-file-rwx-check")

# The rootfs root of a Docker container (its overlay upper directory) is 0755.
DOCKER_ROOT_MODE = 0o755

# Paths the runtime mounts over: never carried as filesystem changes.
_MOUNT_TARGETS = ("run/.containerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "dev")

# Label naming a migrated Podman container's per-container CRIU config (for cleanup).
CONFIG_LABEL = "ctk.criu-config"

# Label of the volumes a Podman template mounts in place of the real ones (removed with it).
TEMPLATE_VOLUME_LABEL = "ctk.template-volume"


def criu_config_dir() -> Path:
    """Where ctk writes per-container CRIU config files (on the Podman host: this machine)."""
    return records.criu_config_dir()


def _provided(key: str) -> bool:
    return key in _PROVIDED or key.startswith("/sys/fs/cgroup")


def can_restore_on(
    images: CheckpointImages,
    dest_kind: str,
    *,
    source_kind: str,
    carried: Collection[str] = (),
) -> tuple[bool, str]:
    """Whether a checkpoint made on ``source_kind`` can be restored on ``dest_kind``, and why.

    Looks at what the images need from the restoring runtime: external mounts other than the
    ones both engines provide and the targets in ``carried`` (the volumes and bind mounts a
    live move recreates there) have no counterpart there.
    """
    if dest_kind not in KINDS or source_kind not in KINDS:
        return False, f"ctk moves checkpoints between docker and podman, not {source_kind}"
    if dest_kind == source_kind:
        return True, f"same runtime ({dest_kind})"
    foreign = [key for key in images.external_mounts if not _provided(key) and key not in carried]
    if foreign:
        return False, (
            f"the checkpoint needs mounts that {dest_kind} would not provide: "
            + ", ".join(foreign)
            + " (a checkpoint's images do not carry volumes to the other runtime; "
            "ctk migrate moves a running container's volumes with it)"
        )
    return True, f"live: {source_kind} -> {dest_kind} (ctk translates the metadata)"


def container_portable_to(
    source: Backend, name: str, dest_kind: str, *, allow_mounts: Sequence[str] = ()
) -> tuple[bool, str]:
    """Whether running container ``name`` can be migrated live to ``dest_kind``, and why not.

    Its volumes move with it (:mod:`toolkit.migration.volume_transfer`); a bind mount only
    when ``allow_mounts`` names its host path.

    Raises:
        ContainerNotFound: no such container.
    """
    if source.kind not in KINDS or dest_kind not in KINDS or source.kind == dest_kind:
        return False, f"cross-runtime means docker <-> podman, not {source.kind} -> {dest_kind}"
    config = _runtime_config(source, name)
    runtime = config.runtime
    if runtime != "runc":
        return False, (
            f"{name} runs on the {runtime} runtime; only runc checkpoints here "
            "(bookworm's crun has no CRIU support)"
        )
    if any(not harmless_bind(m) for m in config.mounts):
        _mounts, why = carried_mounts(source, name, allow_mounts=allow_mounts)
        if why:
            return False, why
    if config.auto_remove:
        # Its engine removes an --rm container once the dump stops it (and libpod's export
        # does so at once): a failed restore on the other side would leave nothing to go
        # back to. The same-engine and cold paths keep it (archive, pause).
        return False, (
            f"{name} was started with --rm, which removes it with its checkpoint as soon as "
            "the dump stops it"
        )
    network = config.network_mode
    if network not in ("", "default", "bridge"):
        return False, f"{name} uses network {network}; only the default network is carried"
    return True, f"live: {source.kind} -> {dest_kind}"


def _runtime_config(backend: Backend, name: str) -> RuntimeConfig:
    if not isinstance(backend, RuntimeInspection):
        raise Unsupported(f"the {backend.kind} backend cannot migrate across runtimes")
    return backend.runtime_config(name)


def live_cross_runtime(
    source: Backend,
    name: str,
    dest: Backend,
    *,
    new_name: str | None = None,
    keep_source: bool = False,
    tcp_established: bool = False,
    on_frozen: Callable[[float, int], None] | None = None,
    allow_mounts: Sequence[str] = (),
    on_volume: Callable[[str], None] | None = None,
) -> ContainerInfo:
    """Checkpoint ``name`` on ``source`` and resume it, memory intact, on ``dest``.

    ``source`` and ``dest`` are one Docker and one Podman backend, either way round. With
    ``keep_source`` the source is checkpointed with leave-running and stays (a clone);
    otherwise it is removed (with its anonymous volumes) once the destination runs.
    ``on_frozen`` is called once the source's dump is done (what fails after it fails in the
    restore), with the seconds since the freeze began and the bytes that move (CRIU's images,
    rootfs changes, /dev/shm files, volume data). Named and anonymous volumes move with their
    data, copied while the source is frozen (:mod:`toolkit.migration.volume_transfer`); a bind
    mount only when ``allow_mounts`` names its host path (its content does not move).
    ``on_volume`` gets the name of each volume made on ``dest`` as soon as it exists (to
    journal it: a ctk killed from then on leaves it for ``--recover`` to remove).

    Raises:
        Unsupported: the container or engines cannot do it (the message says why).
        ImageNotFound: the destination lacks the image with the same ID.
        Conflict: the container is not running, or the new name or one of its named volumes
            is taken on ``dest``.
        CheckpointError: CRIU failed; when the destination's restore failed, the source was
            restored from its checkpoint and left running, and the volumes made on ``dest``
            were removed.
    """
    ok, reason = container_portable_to(source, name, dest.kind, allow_mounts=allow_mounts)
    if not ok:
        raise Unsupported(f"cannot move {name} live to {dest.kind}: {reason}")
    if tcp_established and "docker" in (source.kind, dest.kind):
        raise Unsupported(
            "Docker's checkpoint API cannot pass --tcp-established to CRIU",
            hint="close established connections first, or migrate cold",
        )
    info = source.inspect(name)
    if not info.running:
        raise Conflict(
            f"container {name} is not running; only a running container moves live",
            hint=f"start it first: ctk start {name}",
        )
    target = new_name or info.name
    validation.validate_ref(target, what="container")
    runtime = _runtime_config(source, name)
    restores = isinstance(dest, TemplateRestore | ForeignImageRestore)
    if not restores or not dest.has_image(info.image_id):
        raise ImageNotFound(
            f"no image {info.image_id} ({info.image}) on {dest.kind}",
            hint=shared.image_missing_hint(info.image, info.image_id, dest.kind),
        )
    try:
        dest.inspect(target)
    except ContainerNotFound:
        pass
    else:
        raise Conflict(
            f"a container named {target} exists already on {dest.kind}",
            hint="pick another name: --name NEW",
        )
    spec = source.container_spec(name)
    spec = ContainerSpec(
        # Podman names local images localhost/NAME; Docker knows them as NAME
        image=info.image.removeprefix("localhost/") if dest.kind == "docker" else info.image,
        command=spec.command,
        name=target,
        env=spec.env,
        # a clone beside its running source cannot have the source's host ports: any free one
        ports=tuple(_any_host_port(p) for p in spec.ports) if keep_source else spec.ports,
        # the source's CRIU config (if any) stays with the source
        labels={k: v for k, v in spec.labels.items() if k != CONFIG_LABEL},
        working_dir=spec.working_dir,
        user=spec.user,
        # CRIU brings the source's UTS namespace back; /etc/hostname should agree with it
        hostname=runtime.hostname or None,
    )
    mounts, _why = carried_mounts(source, name, allow_mounts=allow_mounts)
    checkpoint = f"ctk-xr-{uuid.uuid4().hex[:10]}"
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ctk-xr-")))
        # Before anything is frozen: a named volume taken there is a conflict; the volumes
        # made there go again however the move fails (entered first, left last: after the
        # failed restore removed its container, the volumes are free).
        transfer = (
            stack.enter_context(
                volume_transfer(source, dest, mounts, image=info.image_id, record=on_volume)
            )
            if mounts
            else None
        )
        if transfer is not None:
            spec = dataclasses.replace(spec, volumes=transfer.dest_mounts())
        template: Path | None = None
        config: CriuConfig | None = None
        if isinstance(dest, TemplateRestore):
            # Made before the source is frozen: the config and template cost no downtime. The
            # config goes (or is emptied) however what follows ends.
            config = stack.enter_context(criu_config(dest, target=target, image=info.image_id))
            with _template_volumes(dest, spec.volumes) as stand_ins:
                template = _podman_template(dest, spec, info, config, work, volumes=stand_ins)
            if transfer is not None and transfer.names:
                template = _with_volumes(template, transfer)
        # the template above is made while the source still runs: the freeze starts here
        freezing = time.monotonic()
        images, rootfs, deleted, shm = _freeze(
            source, name, checkpoint, work, keep_source, tcp_established
        )
        try:
            copied = 0
            if transfer is not None:
                # while the source is frozen: CRIU checks the size of every file the
                # restored processes hold open, in the volumes too
                export = work / "export.tar"
                copied = transfer.copy(work, export=export if export.exists() else None)
            if on_frozen is not None:
                moved = [*images.iterdir(), *(p for p in (rootfs, shm) if p is not None)]
                size = sum(p.stat().st_size for p in moved) + copied
                on_frozen(time.monotonic() - freezing, size)
            _prepare_images(images, source.kind, dest.kind)
            if isinstance(dest, TemplateRestore):
                assert template is not None and config is not None
                result = _restore_on_podman(
                    dest,
                    spec,
                    template,
                    images,
                    rootfs,
                    deleted,
                    config,
                    tcp_established,
                )
            elif isinstance(dest, ForeignImageRestore):
                result = _restore_on_docker(
                    dest, spec, info.image_id, images, rootfs, deleted, checkpoint, shm=shm
                )
            else:
                raise Unsupported(f"cannot restore on {dest.kind}")
        except BaseException as exc:
            if not keep_source:
                # Nothing lost: the source comes back from the checkpoint it just made.
                source.restore(name, RestoreOptions(checkpoint=checkpoint))
            if isinstance(exc, CheckpointError):
                raise CheckpointError(
                    f"{dest.kind} could not restore {name}: {_criu_reason(exc)}",
                    hint=f"{name} was restored from its checkpoint and runs on {source.kind}; "
                    "CRIU's errors are in the log tail (ctk --debug shows it)",
                    log_tail=exc.log_tail,
                ) from exc
            raise
    if keep_source:
        try:
            source.remove_checkpoint(name, checkpoint)
        except Exception as exc:
            # The copy runs; only the source's checkpoint stays behind.
            log.warning("could not remove checkpoint %s of %s: %s", checkpoint, name, exc)
    else:
        # its anonymous volumes too: their data lives on in the destination's copies
        source.remove(name, force=True, volumes=True)
        remove_criu_config(info)
    return result


def remove_criu_config(info: ContainerInfo) -> None:
    """Delete the per-container CRIU config of a removed container that ctk migrated.

    Only files in :func:`criu_config_dir` are touched, whatever the label says.
    """
    named = info.labels.get(CONFIG_LABEL)
    if not named:
        return
    path = Path(named)
    if path.parent == criu_config_dir() and path.suffix == ".conf":
        path.unlink(missing_ok=True)


def _criu_reason(exc: CheckpointError) -> str:
    return diagnosis.criu_first_error(exc.log_tail) or exc.message


def _any_host_port(port: PortMapping) -> PortMapping:
    return PortMapping(port.container_port, 0, port.host_ip, port.protocol)


def _podman_template(
    dest: TemplateRestore,
    spec: ContainerSpec,
    info: ContainerInfo,
    config: CriuConfig,
    work: Path,
    *,
    volumes: tuple[Mount, ...] = (),
) -> Path:
    """libpod's export of an equal container, for its metadata (see the module docstring).

    ``volumes``: the mounts the template has. Post-copy: the volumes made on the destination
    beforehand, so that libpod's config names them; cross-runtime: stand-ins at the same
    targets (:func:`_template_volumes`), renamed to the real ones afterwards
    (:func:`_with_volumes`), as the template runs the container's command, which must not
    write into them."""
    image = dest.local_image(info.image, info.image_id)
    template_spec = ContainerSpec(
        image=image,
        command=spec.command,
        name=f"ctk-xr-template-{uuid.uuid4().hex[:10]}",
        env=spec.env,
        # any free host port: the source still holds its own
        ports=tuple(_any_host_port(p) for p in spec.ports),
        labels={**spec.labels, **config.labels},
        working_dir=spec.working_dir,
        user=spec.user,
        hostname=spec.hostname,
        runtime="runc",
        volumes=volumes,
    )
    template_id = dest.start_template(template_spec, annotations={"org.criu.config": config.path})
    path = work / "template.tar"
    try:
        dest.export_raw(template_id, path, checkpoint="ctk-template")
    finally:
        try:
            dest.remove(template_id, force=True)
        except Exception as exc:
            log.warning("could not remove template container %s: %s", template_id, exc)
    return path


@contextlib.contextmanager
def _template_volumes(dest: Backend, mounts: tuple[Mount, ...]) -> Iterator[tuple[Mount, ...]]:
    """``mounts`` with each volume replaced by a new one, removed on exit."""
    if not any(m.type == "volume" for m in mounts):
        yield mounts
        return
    if not isinstance(dest, VolumeData):
        raise Unsupported(f"ctk cannot make volumes on {dest.kind}")
    made: list[str] = []
    try:
        result: list[Mount] = []
        for mount in mounts:
            if mount.type == "volume":
                made.append(dest.create_volume("", labels={TEMPLATE_VOLUME_LABEL: "1"}).name)
                mount = dataclasses.replace(mount, source=made[-1], name=made[-1])
            result.append(mount)
        yield tuple(result)
    finally:
        remove_volumes(dest, made, why="the podman template")


def _freeze(
    source: Backend,
    name: str,
    checkpoint: str,
    work: Path,
    keep_source: bool,
    tcp_established: bool,
) -> tuple[Path, Path | None, list[str], Path | None]:
    """Checkpoint the source: its CRIU images (flat directory), rootfs changes, deleted paths,
    and the files of its /dev/shm as a tar (Podman's export carries them; None if none)."""
    from toolkit.archive.checkpoint_image import unpack_layer

    if not isinstance(source, RawCheckpointArchives):
        # The checkpoint in place, its images and the rootfs changes fetched (Docker).
        source.checkpoint(name, CheckpointOptions(name=checkpoint, leave_running=keep_source))
        try:
            return (*fetch_in_place(source, name, checkpoint, work), None)
        except BaseException:
            if not keep_source:
                source.restore(name, RestoreOptions(checkpoint=checkpoint))
            raise
    # The engine's own export holds the images and the rootfs changes (Podman).
    export = work / "export.tar"
    source.export_raw(
        name,
        export,
        checkpoint=checkpoint,
        leave_running=keep_source,
        tcp_established=tcp_established,
    )
    try:
        images, raw, deleted = unpack_layer(export, work)
        shm = _devshm(export, work)
        rootfs = None
        if raw is not None:
            rootfs = work / "rootfs.tar"
            _filter_changes(raw, rootfs)
    except BaseException:
        if not keep_source:
            source.restore(name, RestoreOptions(checkpoint=checkpoint))
        raise
    return images, rootfs, deleted, shm


# libpod's export member with the files of the container's /dev/shm (metadata.DevShmCheckpointTar)
_DEVSHM_TAR = "devshm-checkpoint.tar"


def _devshm(export: Path, work: Path) -> Path | None:
    """The export's tar of /dev/shm's files at ``work/devshm.tar``, or None when it has none."""
    with tarfile.open(export) as outer:
        try:
            member = outer.getmember(_DEVSHM_TAR)
        except KeyError:
            return None
        source = outer.extractfile(member)
        if source is None:
            return None
        out = work / "devshm.tar"
        with out.open("wb") as sink:
            while chunk := source.read(1 << 20):
                sink.write(chunk)
    with tarfile.open(out) as shm:
        # only its root ("./") in it: nothing to carry
        if all(m.isdir() and m.name.strip("./") == "" for m in shm.getmembers()):
            return None
    return out


def fetch_in_place(
    source: Backend, name: str, checkpoint: str, work: Path
) -> tuple[Path, Path, list[str]]:
    """A checkpoint the engine holds in place, fetched into ``work``: CRIU's images (flat in
    ``work/images``), the container's rootfs changes as a tar and its deleted paths, without
    the paths the runtime mounts over."""
    images = work / "images"
    images.mkdir()
    source.fetch_checkpoint_images(name, checkpoint, images)
    raw = work / "changes.tar"
    deleted = source.fetch_changes(name, raw)
    rootfs = work / "rootfs.tar"
    _filter_changes(raw, rootfs)
    return images, rootfs, [d for d in deleted if not _mount_target(d)]


def _mount_target(path: str) -> bool:
    clean = path.strip("/")
    return any(clean == t or clean.startswith(t + "/") for t in _MOUNT_TARGETS)


def _filter_changes(raw: Path, out: Path) -> None:
    """Copy a rootfs-changes tar without the paths the runtime mounts over."""
    with tarfile.open(raw) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for member in src:
            if _mount_target(member.name) or member.ischr() or member.isblk():
                continue
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)


def _root_ids(images: Path) -> dict[str, Any]:
    from toolkit.criu.images import load_image

    root = load_image(images / "pstree.img")["entries"][0]
    ids: dict[str, Any] = load_image(images / f"ids-{int(root['pid'])}.img")["entries"][0]
    return ids


def _prepare_images(images: Path, source_kind: str, dest_kind: str) -> None:
    """Adjust the CRIU images for the destination runtime (see the module docstring)."""
    from toolkit.criu.images import dump_image, load_image

    netns = images / f"netns-{int(_root_ids(images)['net_ns_id'])}.img"
    if dest_kind == "podman" and not netns.exists():
        # Podman made the namespace and runc passes it as extRootNetNS: join it.
        dump_image({"magic": "NETNS", "entries": [{"ext_key": NETNS_KEY}]}, netns)
    if dest_kind == "docker":
        if netns.exists():
            entries = load_image(netns)["entries"]
            if entries and entries[0].get("ext_key") == NETNS_KEY:
                # Docker restores into an empty namespace that libnetwork sets up.
                netns.unlink()
        files = load_image(images / "files.img")
        changed = False
        for entry in files["entries"]:
            reg = entry.get("reg")
            if reg and reg.get("name") == "/" and stat.S_ISDIR(int(reg.get("mode", 0))):
                mode = stat.S_IFDIR | DOCKER_ROOT_MODE
                changed = changed or int(reg["mode"]) != mode
                reg["mode"] = mode
        if changed:
            dump_image(files, images / "files.img")


def _restore_on_podman(
    dest: TemplateRestore,
    spec: ContainerSpec,
    template: Path,
    images: Path,
    rootfs: Path | None,
    deleted: list[str],
    config: CriuConfig,
    tcp_established: bool,
) -> ContainerInfo:
    """The template's libpod metadata around the source's images, imported under its name."""
    tar_path = template.parent / "import.tar"
    # ctr.log is the template's output: the migrated container's log starts empty.
    replaced = {"rootfs-diff.tar", "deleted.files", "stats-dump", "dump.log", "ctr.log"}
    names = archive.check_nested_tar(template, what="podman template")
    with (
        tarfile.open(template) as src,
        tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as out,
    ):
        for member, clean in zip(src.getmembers(), names, strict=True):
            if clean == "checkpoint" or clean.startswith("checkpoint/") or clean in replaced:
                continue
            if clean == "volumes" or clean.startswith("volumes/"):
                continue  # the template's (empty) volumes: the import ignores them anyway
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
        top = tarfile.TarInfo("checkpoint")
        top.type, top.mode = tarfile.DIRTYPE, 0o700
        out.addfile(top)
        for item in sorted(images.iterdir()):
            out.add(item, arcname=f"checkpoint/{item.name}")
        if rootfs is not None:
            out.add(rootfs, arcname="rootfs-diff.tar")
        if deleted:
            archive.check_deleted_paths(deleted, what="source's deleted paths")  # libpod trusts it
            data = json.dumps(deleted).encode()
            info = tarfile.TarInfo("deleted.files")
            info.size, info.mode = len(data), 0o600
            out.addfile(info, _bytes_io(data))
    options = [*PODMAN_RESTORE_OPTIONS, f"log-file {config.log_path}"]
    through_engine = isinstance(config, EngineCriuConfig)
    try:
        with _restore_only(config, options):
            return dest.import_raw(
                tar_path,
                name=str(spec.name),
                ports=spec.ports,
                tcp_established=tcp_established,
                # a path of the engine's host is read here only when proved to be the same
                criu_log=None if through_engine else Path(config.log_path),
            )
    except CheckpointError as exc:
        if exc.log_tail or not through_engine:
            raise
        log_text = config.restore_log()
        if not log_text:
            raise
        raise diagnosis.criu_error("restore", str(spec.name), exc.message, log_text) from exc


def _with_volumes(tar_path: Path, volumes: VolumeTransfer) -> Path:
    """The template's export with its volumes renamed to the move's, by target (done before
    the source is frozen: it costs no downtime)."""
    from toolkit.archive.payload import read_podman_payload

    config = read_podman_payload(tar_path)["config.dump"]
    renames: dict[str, tuple[str, str]] = {}
    for item in config.get("namedVolumes") or ():
        target = str(item.get("dest"))
        if target not in volumes.names:
            raise Unsupported(f"the podman template mounts a volume at {target}, unexpected")
        renames[str(item.get("volumeName"))] = (volumes.names[target], volumes.mountpoint(target))
    out = tar_path.with_name("template-volumes.tar")
    archive.rewrite_podman_volumes(tar_path, out, renames)
    return out


@contextlib.contextmanager
def _restore_only(config: CriuConfig, options: list[str]) -> Iterator[None]:
    """CRIU options in the per-container config for one restore; emptied whatever happens."""
    config.write(options)
    try:
        yield
    finally:
        config.write(())


def _bytes_io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def prepare_images(images: Path, source_kind: str, dest_kind: str) -> None:
    """Adjust CRIU images dumped on ``source_kind`` for a restore on ``dest_kind`` (see the
    module's docstring); nothing changes when the two are the same."""
    if source_kind != dest_kind:
        _prepare_images(images, source_kind, dest_kind)


def filter_changes(raw: Path, out: Path) -> None:
    """Copy a rootfs-changes tar without the paths the runtime mounts over."""
    _filter_changes(raw, out)


def without_mount_targets(deleted: list[str]) -> list[str]:
    """Deleted paths without those the runtime mounts over."""
    return [d for d in deleted if not _mount_target(d)]


def restore_images_on_docker(
    dest: ForeignImageRestore,
    spec: ContainerSpec,
    *,
    image_id: str,
    images: Path,
    rootfs: Path | None,
    deleted: list[str],
    checkpoint: str,
) -> ContainerInfo:
    """Create a Docker container for CRIU ``images`` (prepared for Docker) and start it from
    them; a failure leaves no container behind.

    Raises:
        Unsupported: the images need mounts Docker would not provide.
        ImageNotFound: no image ``image_id`` here.
        CheckpointError: CRIU failed to restore.
    """
    return _restore_on_docker(dest, spec, image_id, images, rootfs, deleted, checkpoint)


def restore_images_on_podman(
    dest: TemplateRestore,
    spec: ContainerSpec,
    *,
    image_id: str,
    images: Path,
    rootfs: Path | None,
    deleted: list[str],
    tcp_established: bool = False,
) -> ContainerInfo:
    """Restore CRIU images from Docker (prepared for Podman) into a new Podman container,
    through a template's libpod metadata (see the module's docstring).

    Raises:
        Unsupported: Podman's host neither sees ctk's CRIU config directory nor lets ctk
            write one through the engine.
        ImageNotFound: no image ``image_id`` here.
        CheckpointError: CRIU failed to restore (nothing left behind).
    """
    image = dest.local_image(spec.image, image_id)
    info = ContainerInfo(
        id="", name=str(spec.name), image=image, image_id=image_id, status="", running=False
    )
    with (
        criu_config(dest, target=str(spec.name), image=image_id) as config,
        tempfile.TemporaryDirectory(prefix="ctk-xr-") as tmp,
    ):
        template = _podman_template(dest, spec, info, config, Path(tmp))
        return _restore_on_podman(
            dest, spec, template, images, rootfs, deleted, config, tcp_established
        )


def _restore_on_docker(
    dest: ForeignImageRestore,
    spec: ContainerSpec,
    image_id: str,
    images: Path,
    rootfs: Path | None,
    deleted: list[str],
    checkpoint: str,
    *,
    shm: Path | None = None,
) -> ContainerInfo:
    """A Docker container shaped for the images, the images placed, started from them.

    ``shm``: a tar of the source's /dev/shm files (step 5 of the module's docstring).
    """
    from toolkit.criu.images import external_mounts

    needed = set(external_mounts(images))
    # the volumes (and allowed bind mounts) the move made: the container mounts them
    carried = {m.target for m in spec.volumes}
    unknown = sorted(k for k in needed if not _provided(k) and k not in carried)
    if unknown:
        raise Unsupported(f"the checkpoint needs mounts Docker would not provide: {unknown}")
    binds = {"/dev/null": CONTAINERENV} if CONTAINERENV in needed else {}
    if shm is not None:
        spec = dataclasses.replace(spec, volumes=(*spec.volumes, Mount(target=SHM)))
    container_id = dest.create_for_images(
        spec, image_id=image_id, shareable_ipc=SHM in needed, binds=binds
    )
    try:
        return dest.start_from_images(
            container_id, images, checkpoint=checkpoint, rootfs=rootfs, deleted=deleted, shm=shm
        )
    except BaseException:
        try:
            dest.remove(container_id, force=True)
        except Exception as exc:
            log.warning("could not remove the half-restored %s: %s", container_id, exc)
        raise


__all__ = [
    "CONFIG_LABEL",
    "can_restore_on",
    "container_portable_to",
    "criu_config_dir",
    "fetch_in_place",
    "filter_changes",
    "live_cross_runtime",
    "prepare_images",
    "remove_criu_config",
    "restore_images_on_docker",
    "restore_images_on_podman",
    "without_mount_targets",
]
