"""Decode a checkpoint's CRIU images with pycriu: processes, memory, files, sockets, stats.

pycriu is built from CRIU's source tree and imported lazily here (and only here), so the rest
of ctk works without it. Works on the images of Docker and Podman checkpoints alike: both are
plain CRIU image directories.
"""

from __future__ import annotations

import resource
import shutil
import socket
import struct
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from toolkit import archive
from toolkit.backends.base import Backend
from toolkit.errors import ArchiveError, Unsupported
from toolkit.models import CheckpointImages, ImageProcess, ImageSocket

# TCP states as the kernel numbers them (include/net/tcp_states.h).
_TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
}
_FAMILIES = {1: "unix", 2: "inet", 10: "inet6"}
_SOCK_TYPES = {1: "stream", 2: "dgram", 5: "seqpacket"}
_STAT_FILES = ("stats-dump", "stats-restore")
_PAYLOADS = {"podman": "podman-checkpoint.tar", "docker": "docker-checkpoint.tar"}


def _pycriu() -> Any:
    try:
        import pycriu
    except ImportError as exc:
        raise Unsupported(
            "pycriu is not installed, so ctk cannot decode CRIU images",
            hint="install it from CRIU's source tree: make lib && pip install ./lib "
            "(scripts/setup does this)",
        ) from exc
    return pycriu


def _load(path: Path) -> list[dict[str, Any]]:
    pycriu = _pycriu()
    try:
        with path.open("rb") as handle:
            entries: list[dict[str, Any]] = pycriu.images.load(handle)["entries"]
    except (OSError, pycriu.images.MagicException, KeyError, ValueError) as exc:
        raise ArchiveError(f"cannot decode CRIU image {path.name}: {exc}") from exc
    return entries


def _maybe(path: Path) -> list[dict[str, Any]]:
    return _load(path) if path.is_file() else []


def _address(addrs: Any, port: Any) -> str:
    """CRIU keeps addresses as u32 words in network byte order: 1 for IPv4, 4 for IPv6."""
    if not addrs:
        return ""
    host = str(addrs[0])
    if isinstance(addrs, list) and all(isinstance(a, int) for a in addrs):
        raw = struct.pack(f"={len(addrs)}I", *addrs)
        if len(raw) in (4, 16):
            family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
            host = socket.inet_ntop(family, raw)
            host = f"[{host}]" if family == socket.AF_INET6 else host
    return f"{host}:{port}" if port is not None else host


def _socket(entry: dict[str, Any]) -> ImageSocket | None:
    if entry.get("type") == "INETSK" and "isk" in entry:
        isk = entry["isk"]
        return ImageSocket(
            family=_FAMILIES.get(isk.get("family"), str(isk.get("family"))),
            type=_SOCK_TYPES.get(isk.get("type"), str(isk.get("type"))),
            state=_TCP_STATES.get(isk.get("state"), str(isk.get("state"))),
            local=_address(isk.get("src_addr"), isk.get("src_port")),
            remote=_address(isk.get("dst_addr"), isk.get("dst_port")),
        )
    if entry.get("type") == "UNIXSK" and "usk" in entry:
        usk = entry["usk"]
        name = usk.get("name") or ""
        if isinstance(name, bytes):
            name = name.decode(errors="replace")
        return ImageSocket(
            family="unix",
            type=_SOCK_TYPES.get(usk.get("type"), str(usk.get("type"))),
            state=_TCP_STATES.get(usk.get("state"), str(usk.get("state"))),
            local=str(name),
        )
    return None


def _file_name(entry: dict[str, Any]) -> str:
    kind = str(entry.get("type", ""))
    if kind == "REG":
        return str(entry.get("reg", {}).get("name", ""))
    if kind == "PIPE":
        return f"pipe:[{entry.get('pipe', {}).get('pipe_id', '?')}]"
    return kind.lower() + ":"


def read_stats(directory: Path, *, phase: str = "dump") -> dict[str, int]:
    """CRIU's statistics of one ``phase`` (``dump`` or ``restore``) in ``directory``.

    From ``stats-dump`` / ``stats-restore``; times are in microseconds.
    """
    stats: dict[str, int] = {}
    for entry in _maybe(directory / f"stats-{phase}"):
        section = entry.get(phase)
        if isinstance(section, dict):
            stats.update({k: int(v) for k, v in section.items() if isinstance(v, int)})
    return stats


def stats_from_tar(payload: Path) -> dict[str, int]:
    """CRIU's statistics inside an engine's checkpoint tar; empty without them or pycriu."""
    try:
        _pycriu()
    except Unsupported:
        return {}
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(payload) as tar:
        for member in tar:
            base = PurePosixPath(member.name).name
            if member.isfile() and base in _STAT_FILES:
                source = tar.extractfile(member)
                if source is not None:
                    with (Path(tmp) / base).open("wb") as out:
                        shutil.copyfileobj(source, out)
        return read_stats(Path(tmp))


def read_images(directory: Path) -> CheckpointImages:
    """Decode the CRIU images in ``directory``.

    Raises:
        Unsupported: pycriu is not installed.
        ArchiveError: the directory holds no (decodable) CRIU images.
    """
    if not (directory / "pstree.img").is_file():
        raise ArchiveError(f"no CRIU images in {directory} (pstree.img is missing)")
    page_size = resource.getpagesize()
    files = {int(e["id"]): e for e in _maybe(directory / "files.img") if "id" in e}
    processes: list[ImageProcess] = []
    namespaces: dict[str, int] = {}
    for item in _load(directory / "pstree.img"):
        pid = int(item["pid"])
        core = _maybe(directory / f"core-{pid}.img")
        comm = str(core[0].get("tc", {}).get("comm", "")) if core else ""
        pagemap = _maybe(directory / f"pagemap-{pid}.img")
        pages = sum(int(e.get("nr_pages", 0)) for e in pagemap[1:])
        ids = _maybe(directory / f"ids-{pid}.img")
        open_files: list[str] = []
        if ids:
            if not namespaces:
                namespaces = {
                    k.removesuffix("_ns_id"): int(v)
                    for k, v in ids[0].items()
                    if k.endswith("_ns_id")
                }
            for fd in _maybe(directory / f"fdinfo-{ids[0].get('files_id')}.img"):
                target = files.get(int(fd.get("id", -1)))
                name = _file_name(target) if target else str(fd.get("type", "")).lower()
                open_files.append(f"{fd.get('fd')}:{name}")
        processes.append(
            ImageProcess(
                pid=pid,
                ppid=int(item.get("ppid", 0)),
                comm=comm,
                threads=len(item.get("threads") or [pid]),
                pages=pages,
                memory_bytes=pages * page_size,
                files=tuple(open_files),
            )
        )
    sockets = tuple(s for e in files.values() if (s := _socket(e)) is not None)
    hostname = ""
    for uts in sorted(directory.glob("utsns-*.img")):
        entries = _load(uts)
        hostname = str(entries[0].get("nodename", "")) if entries else ""
    stats = read_stats(directory)
    return CheckpointImages(
        processes=tuple(processes),
        sockets=sockets,
        namespaces=namespaces,
        hostname=hostname,
        stats=stats,
        external_mounts=tuple(external_mounts(directory)),
    )


def external_mounts(directory: Path) -> list[str]:
    """The keys of the external mounts in the images: what the restoring runtime must provide.

    runc marks every bind mount of the container's spec (and the cgroup mounts) as external,
    keyed by its destination path; CRIU restores them only if the new spec has the same keys.
    """
    keys: set[str] = set()
    for image in directory.glob("mountpoints-*.img"):
        for entry in _load(image):
            if entry.get("ext_key"):
                keys.add(str(entry["ext_key"]))
    return sorted(keys)


def load_image(path: Path) -> dict[str, Any]:
    """A whole CRIU image (magic and entries) as pycriu decodes it, for rewriting."""
    pycriu = _pycriu()
    try:
        with path.open("rb") as handle:
            image: dict[str, Any] = pycriu.images.load(handle)
    except (OSError, pycriu.images.MagicException, KeyError, ValueError) as exc:
        raise ArchiveError(f"cannot decode CRIU image {path.name}: {exc}") from exc
    return image


def dump_image(image: dict[str, Any], path: Path) -> None:
    """Write a CRIU image that :func:`load_image` (or a rewrite of it) gave."""
    pycriu = _pycriu()
    with path.open("wb") as handle:
        pycriu.images.dump(image, handle)


def extract_images(payload: Path, dest: Path) -> None:
    """Copy the CRIU images (and stats) of an engine's checkpoint tar into ``dest``, flat.

    Only plain files with image-like names are written, each under its own base name inside
    ``dest`` (nothing can land elsewhere); the tar's members are checked as it streams, and a
    hostile one stops the copy with ArchiveError.

    Raises:
        ArchiveError: the tar is corrupt or hostile, or holds one image name twice.
    """
    # One streamed pass: the checks and the copy together, no TarInfo kept (a payload of 400k
    # members made inspect grow past 232 MiB).
    try:
        _copy_images(payload, dest)
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveError(
            f"checkpoint images are truncated or corrupt: {exc}",
            hint="the archive is damaged or altered: do not use it",
        ) from exc


def _copy_images(payload: Path, dest: Path) -> None:
    with tarfile.open(payload, mode="r|*") as tar:
        for relative, member in archive.iter_nested_tar(tar, what="checkpoint images"):
            base = relative.name
            if not member.isfile() or not (
                base.endswith(".img") or base in _STAT_FILES or base == "descriptors.json"
            ):
                continue
            source = tar.extractfile(member)
            if source is None:
                continue
            if (dest / base).exists():
                raise ArchiveError(
                    f"checkpoint images hold {base} twice ({relative})",
                    hint="the archive is damaged or altered: do not use it",
                )
            with (dest / base).open("xb") as out:
                shutil.copyfileobj(source, out)


def inspect_archive(path: str | Path) -> CheckpointImages:
    """Verify a ctk archive and decode the CRIU images inside it (Docker or Podman).

    Raises:
        NotFound: no such file.
        ArchiveError: the archive is corrupt or hostile, or holds no CRIU images.
        Unsupported: pycriu is not installed.
    """
    import dataclasses

    _pycriu()
    with archive.open_archive(path) as verified, tempfile.TemporaryDirectory() as tmp:
        manifest = verified.manifest
        member = _PAYLOADS.get(manifest.engine)
        if member is None:
            raise ArchiveError(f"archive {path} is from an unknown engine {manifest.engine!r}")
        extract_images(verified.member(member), Path(tmp))
        images = read_images(Path(tmp))
    return dataclasses.replace(
        images, criu_version=manifest.criu_version, kernel=manifest.kernel, manifest=manifest
    )


def inspect_checkpoint(backend: Backend, name: str, checkpoint: str) -> CheckpointImages:
    """Decode the CRIU images of checkpoint ``checkpoint`` that the engine holds for ``name``.

    Raises:
        ContainerNotFound, CheckpointNotFound: no such container or checkpoint.
        Unsupported: pycriu is missing, or the engine cannot hand out the images.
    """
    import dataclasses
    import platform

    from toolkit.criu.probe import probe_criu

    _pycriu()
    with tempfile.TemporaryDirectory() as tmp:
        backend.fetch_checkpoint_images(name, checkpoint, Path(tmp))
        images = read_images(Path(tmp))
    # The images do not record these; the engine's CRIU and kernel are this machine's.
    return dataclasses.replace(
        images, criu_version=probe_criu(run_check=False).version_text, kernel=platform.release()
    )
