"""What an engine payload may ask of the host: checked before any engine sees it.

A ctk archive's checksums prove only that nothing changed after it was written, not who wrote
it. Whatever the engine payload says runs as root on the importing host: libpod creates the
container from ``config.dump`` and hands ``spec.dump`` to runc, which runs its OCI hooks on the
host; ``deleted.files`` is removed relative to the container's root. So the payload is held to
what an ordinary container has (an allow-list) and to what the manifest says the source had:

- no OCI hooks, no privileged mode, no capabilities beyond the engines' defaults, no devices,
  no device cgroup rule that allows anything, seccomp and the masked /proc paths kept;
- private pid, ipc, uts and mount namespaces, none joined by path (``/proc/1/ns/...`` is the
  host's); a network namespace exactly when the manifest's network is not ``host``;
- mounts: the engine's own (proc, sysfs, tmpfs, devpts, mqueue, cgroup read-only, and binds of
  the container's own ``userdata`` files) plus the volumes ctk created for the import and the
  bind mounts the user names with ``--allow-mount``; sysctls only from a short namespaced list;
- libpod's host paths (log, pid files, static dir) inside the container's own directory, no
  host rootfs, no secrets, no runtime given as a path;
- every deleted path confined to the container's root.

The functions here are pure (parsed dicts in, :class:`ArchiveError` out) except
:func:`check_podman_payload`, which streams the payload tar once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from toolkit.archive.reader import (
    _decode_errors,
    check_member_name,
    check_nested_tar,
    iter_nested_tar,
)
from toolkit.errors import ArchiveError
from toolkit.models import ArchiveManifest

_HINT = "ctk refuses archives that ask the host for more than an ordinary container: do not use it"

# The union of Docker's and Podman's default capability sets (moby oci/caps/defaults.go,
# containers/common pkg/config/default.go).
DEFAULT_CAPABILITIES = frozenset(
    {
        "CAP_AUDIT_WRITE",
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_MKNOD",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_RAW",
        "CAP_SETFCAP",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETUID",
        "CAP_SYS_CHROOT",
    }
)
# Namespaced sysctls the engines set by default (Podman: ping_group_range; Docker 20.10+:
# ip_unprivileged_port_start); both only mean something in the container's own netns.
DEFAULT_SYSCTLS = frozenset({"net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"})
# Filesystems the engines mount into every container: (type, destination).
_ENGINE_MOUNTS = frozenset(
    {
        ("proc", "/proc"),
        ("sysfs", "/sys"),
        ("devpts", "/dev/pts"),
        ("mqueue", "/dev/mqueue"),
        ("cgroup", "/sys/fs/cgroup"),
        ("cgroup2", "/sys/fs/cgroup"),
    }
)
# The masked and read-only /proc paths whose loss would expose the host's kernel to the container.
_MASKED = frozenset({"/proc/kcore", "/proc/keys"})
_READ_ONLY = frozenset({"/proc/sys", "/proc/sysrq-trigger"})
_PRIVATE_NAMESPACES = ("pid", "ipc", "uts", "mount")
_HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
# libpod's per-container directory: <graph root or run root>/<driver>-containers/<id>/userdata.
_USERDATA = re.compile(r"/[a-z0-9_]+-containers/(?P<id>[0-9a-f]{64})/userdata(?:/|$)")
# A netns libpod made (Podman 4: /run/netns/netns-<uuid>; rootless: under /run/user/UID).
_NETNS = re.compile(r"^(?:/var)?/run/(?:user/\d+/)?netns/[A-Za-z0-9_.-]+$")
_RUNTIME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# libpod config fields that name host paths libpod writes or reads.
_CONFIG_PATHS = ("logPath", "conmonPidFile", "pid_file", "staticDir", "ShmDir", "secretsPath")
# libpod config fields that must be empty: each hands the container something of the host's.
_CONFIG_EMPTY = (
    "rootfs",  # the host directory as the container's root
    "secrets",
    "overlayVolumes",
    "imageVolumes",
    "artifactVolumes",
    "devices",
    "pod",
    "sdnotifySocket",
)


@dataclass(frozen=True)
class PayloadPolicy:
    """What the importing user allows beyond an ordinary container.

    ``allow_mounts`` holds the host paths the user named with ``--allow-mount``;
    ``criu_config_dirs`` the directories where an ``org.criu.config`` annotation may point
    (ctk's own, see :mod:`toolkit.migration.cross_runtime`); ``volumes`` the manifest's volumes
    as {name: target}: libpod's named volumes must be these, and the bind mounts at their
    targets are allowed whatever their source, which ctk points at the volumes it creates
    before libpod sees the payload (:func:`rewrite_podman_volumes`).
    """

    allow_mounts: tuple[str, ...] = ()
    criu_config_dirs: tuple[str, ...] = ()
    volumes: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _refuse(what: str, problem: str) -> ArchiveError:
    return ArchiveError(f"{what}: {problem}", hint=_HINT)


def _normal(path: str) -> PurePosixPath | None:
    """An absolute path without ``..``, ``.`` or empty parts; None for anything else."""
    if not path.startswith("/") or "\x00" in path:
        return None
    parts = [p for p in path.split("/")[1:] if p != ""]
    if any(p in (".", "..") for p in parts):
        return None
    return PurePosixPath("/", *parts)


def _under(path: PurePosixPath, root: str) -> bool:
    base = _normal(root)
    return base is not None and (path == base or base in path.parents)


def check_deleted_paths(items: Any, *, what: str = "deleted path list") -> list[str]:
    """The deleted paths of a payload, each confined to the container's root.

    ``items`` is the parsed list (``deleted.files`` or a Docker manifest's ``deleted``): absolute
    paths inside the container. The result holds them relative, without the leading ``/``.

    Raises:
        ArchiveError: not a list of strings, or a path with ``..``/``.``/NUL/empty parts.
    """
    if not isinstance(items, list):
        raise ArchiveError(f"the {what} is malformed (not a list)", hint=_HINT)
    result: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.startswith("/"):
            raise ArchiveError(f"the {what} names a bad path {item!r}", hint=_HINT)
        result.append(str(check_member_name(item[1:], where=what)))
    return result


def _names(values: Any, what: str, field: str) -> list[str]:
    if values is None:
        return []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise _refuse(what, f"{field} is malformed")
    return values


def _check_process(process: Any, what: str) -> None:
    if process is None:
        return
    if not isinstance(process, dict):
        raise _refuse(what, "process is malformed")
    caps = process.get("capabilities") or {}
    if not isinstance(caps, dict):
        raise _refuse(what, "process capabilities are malformed")
    for kind, values in caps.items():
        extra = sorted(set(_names(values, what, f"capabilities.{kind}")) - DEFAULT_CAPABILITIES)
        if extra:
            raise _refuse(what, f"it adds capabilities ({kind}): {', '.join(extra)}")
    if str(process.get("apparmorProfile") or "") == "unconfined":
        raise _refuse(what, "it turns AppArmor off")


def _check_namespaces(linux: Mapping[str, Any], what: str, *, host_network: bool) -> None:
    raw = linux.get("namespaces") or []
    if not isinstance(raw, list) or not all(isinstance(n, dict) for n in raw):
        raise _refuse(what, "namespaces are malformed")
    kinds: dict[str, str] = {}
    for ns in raw:
        kind, path = str(ns.get("type", "")), str(ns.get("path") or "")
        kinds[kind] = path
        if kind == "network":
            # libpod records the netns it made; a path elsewhere (/proc/1/ns/net) is the host's.
            if path and not _NETNS.match(path):
                raise _refuse(what, f"it joins the network namespace {path}")
        elif path:
            raise _refuse(what, f"it joins the {kind} namespace {path}")
    missing = [k for k in _PRIVATE_NAMESPACES if k not in kinds]
    if missing:
        raise _refuse(what, f"it shares the host's {', '.join(missing)} namespace(s)")
    if host_network and "network" in kinds:
        raise _refuse(
            what, "the manifest says network=host but the payload has a network namespace"
        )
    if not host_network and "network" not in kinds:
        raise _refuse(what, "it uses the host's network, which the manifest does not say")


def _allowed_mount(source: str, policy: PayloadPolicy) -> bool:
    path = _normal(source)
    for allowed in policy.allow_mounts:
        if allowed == source:
            return True
        if path is not None and _under(path, allowed):
            return True
    return False


def _check_mounts(mounts: Any, what: str, policy: PayloadPolicy, container_id: str) -> None:
    if mounts is None:
        return
    if not isinstance(mounts, list) or not all(isinstance(m, dict) for m in mounts):
        raise _refuse(what, "mounts are malformed")
    for mount in mounts:
        kind = str(mount.get("type") or "")
        dest = str(mount.get("destination") or "")
        source = str(mount.get("source") or "")
        options = _names(mount.get("options"), what, "mount options")
        if _normal(dest) is None:
            raise _refuse(what, f"it mounts at a bad path {dest!r}")
        if (kind, dest) in _ENGINE_MOUNTS:
            if kind.startswith("cgroup") and "ro" not in options:
                raise _refuse(what, "it mounts the cgroup file system writable")
            continue
        if kind == "tmpfs":  # fresh memory, nothing of the host's
            continue
        if kind == "bind" or "bind" in options or "rbind" in options:
            if _own_userdata(source, container_id):
                continue
            if dest in policy.volumes.values():  # rewritten to ctk's new volume
                continue
            if _allowed_mount(source, policy):
                continue
            raise ArchiveError(
                f"{what}: it bind-mounts the host's {source or '?'} at {dest}",
                hint=f"if the source container really had it, allow it: --allow-mount {source}",
            )
        raise _refuse(what, f"it mounts a {kind or 'typeless'} file system at {dest}")


def _own_userdata(source: str, container_id: str) -> bool:
    """True for a file of libpod's directory of this very container (hosts, resolv.conf, shm)."""
    path = _normal(source)
    if path is None:
        return False
    found = _USERDATA.search(str(path))
    return found is not None and (not container_id or found.group("id") == container_id)


def _check_linux(linux: Any, what: str, *, host_network: bool) -> None:
    if not isinstance(linux, dict):
        raise _refuse(what, "it has no linux section")
    _check_namespaces(linux, what, host_network=host_network)
    if linux.get("devices"):
        raise _refuse(what, "it adds device files")
    resources = linux.get("resources") or {}
    if not isinstance(resources, dict):
        raise _refuse(what, "resources are malformed")
    rules = resources.get("devices") or []
    if not isinstance(rules, list) or any(
        not isinstance(r, dict) or r.get("allow") is not False for r in rules
    ):
        raise _refuse(what, "its device cgroup rules allow devices")
    sysctls = linux.get("sysctl") or {}
    if not isinstance(sysctls, dict):
        raise _refuse(what, "sysctls are malformed")
    extra = sorted(set(sysctls) - DEFAULT_SYSCTLS)
    if extra:
        raise _refuse(what, f"it sets sysctls {', '.join(extra)}")
    if not linux.get("seccomp"):
        raise _refuse(what, "it turns seccomp off")
    masked = set(_names(linux.get("maskedPaths"), what, "maskedPaths"))
    read_only = set(_names(linux.get("readonlyPaths"), what, "readonlyPaths"))
    if not masked.issuperset(_MASKED) or not read_only.issuperset(_READ_ONLY):
        raise _refuse(what, "it unmasks the host kernel's /proc files")


def _check_annotations(annotations: Any, what: str, policy: PayloadPolicy) -> None:
    if annotations is None:
        return
    if not isinstance(annotations, dict):
        raise _refuse(what, "annotations are malformed")
    for key, value in annotations.items():
        text = str(value)
        if key == "io.podman.annotations.privileged" and text.upper() != "FALSE":
            raise _refuse(what, "it is privileged")
        if key.startswith("run.oci."):  # crun's own switches (handlers, seccomp, groups)
            raise _refuse(what, f"it sets the runtime annotation {key}")
        if key == "org.criu.config":
            # runc hands this host file to CRIU as its configuration (action scripts run on
            # the host): only ctk's own directory.
            path = _normal(text)
            if path is None or not any(_under(path, d) for d in policy.criu_config_dirs):
                raise _refuse(what, f"its CRIU configuration file {text} is not ctk's")


def check_oci_spec(
    spec: Any,
    *,
    what: str,
    host_network: bool,
    policy: PayloadPolicy,
    container_id: str = "",
) -> None:
    """An OCI runtime spec (``spec.dump``, ``config.dump``'s ``spec``) against the allow-list.

    ``host_network`` is what the manifest says (network ``host``); the spec must agree.

    Raises:
        ArchiveError: hooks, privileges, devices, host namespaces, mounts or sysctls beyond
            an ordinary container's and what ``policy`` allows.
    """
    if not isinstance(spec, dict):
        raise _refuse(what, "it is not an OCI spec")
    hooks = spec.get("hooks") or {}
    if not isinstance(hooks, dict) or any(hooks.get(h) for h in (*_HOOKS, *hooks)):
        raise _refuse(what, "it has OCI hooks, which would run on the host as root")
    _check_process(spec.get("process"), what)
    _check_linux(spec.get("linux"), what, host_network=host_network)
    _check_mounts(spec.get("mounts"), what, policy, container_id)
    _check_annotations(spec.get("annotations"), what, policy)


def check_libpod_config(config: Any, *, manifest: ArchiveManifest, policy: PayloadPolicy) -> None:
    """libpod's ``config.dump`` against the allow-list and the manifest.

    Raises:
        ArchiveError: privileged, host paths outside the container's directory, a runtime
            given as a path, or disagreement with the manifest (image, network).
    """
    what = "the payload's config.dump"
    if not isinstance(config, dict):
        raise _refuse(what, "it is not an object")
    container_id = str(config.get("id") or "")
    if config.get("privileged") or config.get("mountAllDevices"):
        raise _refuse(what, "it is privileged")
    for field in _CONFIG_EMPTY:
        if config.get(field):
            raise _refuse(what, f"it sets {field}")
    for field in _CONFIG_PATHS:
        value = str(config.get(field) or "")
        if value and not _own_userdata(value, container_id):
            raise _refuse(what, f"{field} {value} is outside the container's own directory")
    for value in _names(config.get("mounts"), what, "mounts"):
        if not _own_userdata(value, container_id):
            raise _refuse(what, f"it mounts {value}, outside the container's own directory")
    named = config.get("namedVolumes") or []
    if not isinstance(named, list) or not all(isinstance(v, dict) for v in named):
        raise _refuse(what, "namedVolumes is malformed")
    for volume in named:
        name, dest = volume.get("volumeName"), volume.get("dest")
        if name not in policy.volumes or policy.volumes[name] != dest:
            raise _refuse(what, f"it mounts the volume {name!r} at {dest!r}, not in the manifest")
    runtime = str(config.get("runtime") or "")
    if runtime and not _RUNTIME_NAME.match(runtime):
        raise _refuse(what, f"its runtime {runtime!r} is a path, not a runtime's name")
    image_id = str(config.get("rootfsImageID") or "")
    if image_id and _bare_id(image_id) != _bare_id(manifest.image_id):
        raise _refuse(what, f"its image {image_id} is not the manifest's {manifest.image_id}")
    host_network = manifest_network(manifest.spec) == "host"
    mode = str(config.get("networkMode") or "")
    if mode.startswith(("container:", "ns:")):
        raise _refuse(what, f"it joins the network namespace {mode}")
    # Podman 4.3 leaves networkMode out for both the host network and none (createNetNS false
    # for both): the spec's namespaces tell them apart (none: a network namespace of its own).
    payload_host = mode == "host" or not _has_netns(config.get("spec"))
    if payload_host != host_network:
        raise _refuse(
            what,
            f"the manifest says network={manifest_network(manifest.spec) or 'default'}, the "
            f"payload says {'host' if payload_host else mode or 'its own namespace'}",
        )
    check_oci_spec(
        config.get("spec"),
        what=what,
        host_network=host_network,
        policy=policy,
        container_id=container_id,
    )


def _has_netns(spec: Any) -> bool:
    linux = spec.get("linux") if isinstance(spec, dict) else None
    namespaces = linux.get("namespaces") if isinstance(linux, dict) else None
    return isinstance(namespaces, list) and any(
        isinstance(n, dict) and n.get("type") == "network" for n in namespaces
    )


def _bare_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")


def manifest_network(spec: Mapping[str, Any]) -> str:
    """The network the manifest's container spec names ('' for the engine's default)."""
    value = spec.get("network")
    return value if isinstance(value, str) else ""


def check_container_spec(
    spec: Mapping[str, Any],
    *,
    allow_host_network: bool = False,
    what: str = "the manifest's spec",
) -> None:
    """The manifest's container spec, from which Docker's import creates the container.

    Only what ``docker run`` through ctk can ask for is read from it; of that, the network
    must not join another container's or a path's namespaces, the host's network only when
    the user allowed it (``--allow-host-network``: a checksum or even a signature says who
    made the archive, not that this host wants to share its network with it), and the
    runtime must be a name.

    Raises:
        ArchiveError: a network mode that joins foreign namespaces or, not allowed, the
            host's; a runtime given as a path.
    """
    network = manifest_network(spec)
    if network.startswith(("container:", "ns:", "/")):
        raise _refuse(what, f"its network {network!r} joins another namespace")
    if network == "host" and not allow_host_network:
        raise ArchiveError(
            "the archive asks for network=host: its container would share this host's "
            "network namespace",
            hint="if you trust the archive and want that, import with --allow-host-network",
        )
    runtime = spec.get("runtime")
    if runtime is not None and not (isinstance(runtime, str) and _RUNTIME_NAME.match(runtime)):
        raise _refuse(what, f"its runtime {runtime!r} is a path, not a runtime's name")


# -- the Podman payload: libpod's export tar ------------------------------------------------

# Files libpod's restore reads as JSON: parsed here, never handed on bigger than this.
_MAX_JSON = 16 * 1024 * 1024
# Nested tars libpod extracts into the container: its rootfs changes and its /dev/shm.
_NESTED = {"rootfs-diff.tar": True, "devshm-checkpoint.tar": False}


def _read_json(source: IO[bytes] | None, size: int, name: str) -> Any:
    if source is None or size > _MAX_JSON:
        raise ArchiveError(f"the payload's {name} is missing or implausibly large", hint=_HINT)
    try:
        return json.loads(source.read(size + 1))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"the payload's {name} is not JSON: {exc}", hint=_HINT) from exc


def read_podman_payload(payload: Path) -> dict[str, Any]:
    """Stream libpod's export tar once: its members checked (names, links), the nested tars
    libpod extracts into the container (``rootfs-diff.tar``, ``devshm-checkpoint.tar``) checked
    as tars, and ``spec.dump``, ``config.dump`` and ``deleted.files`` parsed (bounded).

    Returns the parsed documents by name (``deleted.files`` already checked).

    Raises:
        ArchiveError: anything hostile or malformed, or no config.dump/spec.dump.
    """
    docs: dict[str, Any] = {}
    what = "podman checkpoint"
    try:
        with tarfile.open(payload, mode="r|*") as tar:
            for relative, info in iter_nested_tar(tar, what=what):
                name = str(relative)
                if not info.isfile():
                    continue
                if name in docs:
                    raise ArchiveError(f"the payload holds {name} twice", hint=_HINT)
                if name in ("spec.dump", "config.dump", "deleted.files"):
                    docs[name] = _read_json(tar.extractfile(info), info.size, name)
                elif name in _NESTED:
                    docs[name] = None
                    check_nested_tar(
                        what=f"the payload's {name}",
                        allow_symlinks=_NESTED[name],
                        fileobj=tar.extractfile(info),
                        keep_names=False,
                    )
    except _decode_errors() as exc:
        raise ArchiveError(f"{what} is truncated or corrupt: {exc}", hint=_HINT) from exc
    if "deleted.files" in docs:
        check_deleted_paths(docs["deleted.files"], what="payload's deleted.files")
    for name in ("config.dump", "spec.dump"):
        if name not in docs:
            raise ArchiveError(f"the payload has no {name}", hint=_HINT)
    if not isinstance(docs["config.dump"], dict):
        raise _refuse("the payload's config.dump", "it is not an object")
    return docs


def check_podman_payload(
    payload: Path,
    manifest: ArchiveManifest,
    *,
    allow_mounts: Sequence[str] = (),
    allow_host_network: bool = False,
    criu_config_dirs: Iterable[str] | None = None,
    volumes: Mapping[str, str] | None = None,
) -> None:
    """Check libpod's export tar before libpod sees it, in one streamed pass.

    Its members (names, links), the nested tars libpod extracts into the container
    (``rootfs-diff.tar``, ``devshm-checkpoint.tar``), ``deleted.files``, and ``spec.dump`` /
    ``config.dump`` against the allow-list and the manifest (see the module's docstring).
    ``volumes`` ({name: target}) are the manifest's volumes, which ctk creates new.

    Raises:
        ArchiveError: anything hostile, malformed, or beyond what the user allowed.
    """
    check_podman_docs(
        read_podman_payload(payload),
        manifest,
        allow_mounts=allow_mounts,
        allow_host_network=allow_host_network,
        criu_config_dirs=criu_config_dirs,
        volumes=volumes,
    )


def check_podman_docs(
    docs: Mapping[str, Any],
    manifest: ArchiveManifest,
    *,
    allow_mounts: Sequence[str] = (),
    allow_host_network: bool = False,
    criu_config_dirs: Iterable[str] | None = None,
    volumes: Mapping[str, str] | None = None,
) -> None:
    """The documents :func:`read_podman_payload` parsed, against the allow-list and ``manifest``
    (``volumes``: as :func:`check_podman_payload` takes them).

    Raises:
        ArchiveError: anything beyond an ordinary container and what the user allowed.
    """
    if criu_config_dirs is None:
        from toolkit import records

        # where toolkit.migration.cross_runtime writes the per-container CRIU configs
        criu_config_dirs = (str(records.state_dir() / "criu-config"),)
    check_container_spec(manifest.spec, allow_host_network=allow_host_network)
    policy = PayloadPolicy(
        allow_mounts=tuple(allow_mounts),
        criu_config_dirs=tuple(criu_config_dirs),
        volumes=dict(volumes or {}),
    )
    config = docs["config.dump"]
    check_libpod_config(config, manifest=manifest, policy=policy)
    check_oci_spec(
        docs["spec.dump"],
        what="the payload's spec.dump",
        host_network=manifest_network(manifest.spec) == "host",
        policy=policy,
        container_id=str(config.get("id") or ""),
    )


def _retarget(spec: Any, targets: Mapping[str, str]) -> None:
    """Point the spec's mounts at ``targets`` (destination -> host path) to those paths."""
    mounts = spec.get("mounts") if isinstance(spec, dict) else None
    for mount in mounts if isinstance(mounts, list) else ():
        if isinstance(mount, dict) and mount.get("destination") in targets:
            mount["source"] = targets[mount["destination"]]


def rewrite_podman_volumes(
    payload: Path, out: Path, volumes: Mapping[str, tuple[str, str]]
) -> None:
    """Copy libpod's export tar to ``out`` with its volumes made this host's.

    ``volumes`` maps each volume name the archive lists to (its name here, its mount point
    here): libpod restores the container with ``config.dump``'s named volumes and runs it with
    ``spec.dump``'s mounts, whose sources are the source host's paths (another storage root on
    another host, another name for a new anonymous volume). Check the copy, not the original:
    it is what libpod gets.

    Raises:
        ArchiveError: ``config.dump`` names a volume the manifest does not list, or the
            payload is malformed.
    """
    targets: dict[str, str] = {}
    seen: list[str] = []

    def config_dump(data: Any) -> Any:
        named = data.get("namedVolumes") if isinstance(data, dict) else None
        for item in named if isinstance(named, list) else ():
            old = item.get("volumeName") if isinstance(item, dict) else None
            if not isinstance(old, str) or old not in volumes:
                raise _refuse(
                    "the payload's config.dump",
                    f"it mounts the volume {old!r}, not in the manifest",
                )
            item["volumeName"] = volumes[old][0]
            targets[str(item.get("dest"))] = volumes[old][1]
        _retarget(data.get("spec"), targets)
        return data

    try:
        with (
            tarfile.open(payload, mode="r|*") as src,
            tarfile.open(out, mode="w|", format=tarfile.PAX_FORMAT) as dst,
        ):
            # libpod writes config.dump before spec.dump (checked: it is the order of its
            # export); a payload in another order is refused rather than half-rewritten.
            for info in src:
                name = info.name.removeprefix("./")
                source = src.extractfile(info) if info.isfile() else None
                if name in ("config.dump", "spec.dump"):
                    data = _read_json(source, info.size, name)
                    seen.append(name)
                    if name == "config.dump":
                        data = config_dump(data)
                    elif "config.dump" not in seen:
                        raise _refuse("the payload", "its spec.dump comes before config.dump")
                    else:
                        _retarget(data, targets)
                    body = json.dumps(data).encode()
                    info.size = len(body)
                    dst.addfile(info, io.BytesIO(body))
                else:
                    dst.addfile(info, source)
                src.members = []  # type: ignore[attr-defined]  # streamed: forget what passed
    except _decode_errors() as exc:
        raise ArchiveError(f"podman checkpoint is truncated or corrupt: {exc}", hint=_HINT) from exc


def _under_volume_root(name: str) -> str:
    # libpod names a volume tar's entries "./" and "./d/f": ctk's are "volume" and "volume/d/f"
    rest = name.removeprefix("./").removeprefix(".").strip("/")
    return f"volume/{rest}" if rest else "volume"


def split_podman_volumes(
    payload: Path, out: Path | None, stage: Path, volumes: Sequence[str]
) -> list[tuple[str, Path]]:
    """Copy libpod's export tar to ``out`` without its ``volumes/NAME.tar`` members, and write
    those of ``volumes`` into ``stage`` as ctk's volume tars (entries under ``volume/``).
    With ``out`` None only the volumes are written (the cross-runtime move reads the rest
    from the export itself).

    libpod's own volume tars keep files' owners; its archive route does not (it hands every
    file out as the container's user), so on Podman ctk takes a volume's data from the export.

    Returns:
        (member name, file) pairs: ``volumes/NAME.tar`` and its staged tar, in ``volumes``'
        order.

    Raises:
        ArchiveError: the export holds no data for one of ``volumes``.
    """
    wanted = {f"volumes/{name}.tar": name for name in volumes}
    found: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(tarfile.open(payload, mode="r|*"))
        dst = (
            stack.enter_context(tarfile.open(out, mode="w|", format=tarfile.PAX_FORMAT))
            if out is not None
            else None
        )
        for info in src:
            name = info.name.removeprefix("./")
            source = src.extractfile(info) if info.isfile() else None
            if name in wanted and source is not None:
                staged = stage / f"volume-{len(found)}.tar"
                with (
                    tarfile.open(fileobj=source, mode="r|") as nested,
                    tarfile.open(staged, mode="w", format=tarfile.PAX_FORMAT) as volume,
                ):
                    for entry in nested:
                        entry.name = _under_volume_root(entry.name)
                        if entry.islnk():
                            entry.linkname = _under_volume_root(entry.linkname)
                        volume.addfile(entry, nested.extractfile(entry) if entry.isfile() else None)
                        nested.members = []  # type: ignore[attr-defined]
                found[wanted[name]] = staged
            elif dst is not None and not name.startswith("volumes/"):
                dst.addfile(info, source)
            src.members = []  # type: ignore[attr-defined]  # streamed: forget what passed
    missing = [v for v in volumes if v not in found]
    if missing:
        raise ArchiveError(f"podman's export holds no data for volume(s) {', '.join(missing)}")
    return [(f"volumes/{name}.tar", found[name]) for name in volumes]
