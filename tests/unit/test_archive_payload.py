"""The engine payload allow-list (toolkit.archive.payload): crafted spec.dump/config.dump dicts.

The base dicts are trimmed from a real Podman 4.3 export of ctk-demo/counter (port mapping,
env, labels); each test adds one thing an attacker would and expects exit 8.
"""

from __future__ import annotations

import copy
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from toolkit import archive
from toolkit.archive.payload import (
    PayloadPolicy,
    check_container_spec,
    check_deleted_paths,
    check_libpod_config,
    check_oci_spec,
    check_podman_payload,
)
from toolkit.errors import ArchiveError
from toolkit.models import ArchiveManifest, ContainerSpec

CID = "44e47c36e5513e150f4e07e1a588396c843bb5d6435934c0a19b36e00952d8cf"
USERDATA = f"/run/containers/storage/overlay-containers/{CID}/userdata"
STATIC = f"/var/lib/containers/storage/overlay-containers/{CID}/userdata"
IMAGE_ID = "7862e9d20f786f54c9915c6f13cb7924f1268dcdb179f47bbff9b4603919602f"
CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
    "CAP_SYS_CHROOT",
]  # fmt: skip
POLICY = PayloadPolicy(criu_config_dirs=("/var/lib/ctk/criu-config",))


def _spec() -> dict[str, Any]:
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": ["/counter.sh"],
            "env": ["PATH=/usr/bin:/bin", "FOO=bar"],
            "cwd": "/",
            "capabilities": {k: list(CAPS) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        },
        "root": {"path": "/var/lib/containers/storage/overlay/329405/merged"},
        "hostname": "44e47c36e551",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": []},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": []},
            {
                "destination": "/etc/resolv.conf",
                "type": "bind",
                "source": f"{USERDATA}/resolv.conf",
                "options": ["bind", "rprivate"],
            },
            {
                "destination": "/dev/shm",
                "type": "bind",
                "source": f"{STATIC}/shm",
                "options": ["bind", "rprivate", "nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["rprivate", "nosuid", "ro"],
            },
        ],
        "annotations": {
            "io.container.manager": "libpod",
            "io.podman.annotations.privileged": "FALSE",
            "org.opencontainers.image.stopSignal": "15",
        },
        "linux": {
            "sysctl": {"net.ipv4.ping_group_range": "0 0"},
            "resources": {"devices": [{"allow": False, "access": "rwm"}], "pids": {"limit": 2048}},
            "cgroupsPath": f"/libpod_parent/libpod-{CID}",
            "namespaces": [
                {"type": "pid"},
                {"type": "network", "path": "/run/netns/netns-be1c1526-e43d-fed2"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
            ],
            "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []},
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def _config() -> dict[str, Any]:
    spec = _spec()
    del spec["hostname"]
    return {
        "spec": spec,
        "id": CID,
        "name": "web1",
        "rootfsImageID": IMAGE_ID,
        "ShmDir": f"{STATIC}/shm",
        "staticDir": STATIC,
        "mounts": [f"{STATIC}/shm"],
        "secretsPath": f"{STATIC}/secrets",
        "privileged": False,
        "createNetNS": True,
        "newPortMappings": [{"host_ip": "127.0.0.1", "container_port": 8080, "host_port": 3}],
        "networkMode": "bridge",
        "labels": {"ctk.test": "1"},
        "logPath": f"{STATIC}/ctr.log",
        "conmonPidFile": f"{USERDATA}/conmon.pid",
        "runtime": "runc",
        "pid_file": f"{USERDATA}/pidfile",
        "mountAllDevices": False,
    }


def _manifest(network: str | None = None) -> ArchiveManifest:
    return ArchiveManifest(
        format_version=1,
        engine="podman",
        engine_version="4.3.1",
        criu_version="4.1.1",
        container_id=CID,
        container_name="web1",
        image="ctk-demo/counter",
        image_id=f"sha256:{IMAGE_ID}",
        checkpoint="cp1",
        created="2026-12-02T00:00:00+00:00",
        spec=ContainerSpec(image="ctk-demo/counter", name="web1", network=network).to_dict(),
    )


def _check_spec(
    spec: dict[str, Any], *, host: bool = False, policy: PayloadPolicy = POLICY
) -> None:
    check_oci_spec(spec, what="spec.dump", host_network=host, policy=policy, container_id=CID)


def _refused(match: str, call: Any, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(ArchiveError, match=match) as info:
        call(*args, **kwargs)
    assert info.value.exit_code == 8 and info.value.hint


def test_real_shapes_pass() -> None:
    _check_spec(_spec())
    check_libpod_config(_config(), manifest=_manifest(), policy=POLICY)
    spec = _spec()
    spec["annotations"]["org.criu.config"] = "/var/lib/ctk/criu-config/web1.conf"
    _check_spec(spec)


@pytest.mark.parametrize("hook", ["prestart", "createRuntime", "poststart", "poststop"])
def test_hooks_refused(hook: str) -> None:
    spec = _spec()
    spec["hooks"] = {hook: [{"path": "/bin/sh", "args": ["sh", "-c", "touch /tmp/owned"]}]}
    _refused("hooks", _check_spec, spec)
    config = _config()
    config["spec"]["hooks"] = spec["hooks"]
    _refused("hooks", check_libpod_config, config, manifest=_manifest(), policy=POLICY)


def test_privileged_refused() -> None:
    config = _config()
    config["privileged"] = True
    _refused("privileged", check_libpod_config, config, manifest=_manifest(), policy=POLICY)
    spec = _spec()
    spec["annotations"]["io.podman.annotations.privileged"] = "TRUE"
    _refused("privileged", _check_spec, spec)


def test_added_capability_refused() -> None:
    spec = _spec()
    spec["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    _refused("CAP_SYS_ADMIN", _check_spec, spec)


def test_devices_refused() -> None:
    spec = _spec()
    spec["linux"]["devices"] = [{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]
    _refused("device", _check_spec, spec)
    spec = _spec()
    spec["linux"]["resources"]["devices"].append({"allow": True, "access": "rwm"})
    _refused("device cgroup", _check_spec, spec)


@pytest.mark.parametrize("kind", ["pid", "ipc", "uts", "mount", "network", "user"])
def test_host_namespace_path_refused(kind: str) -> None:
    spec = _spec()
    namespaces = [n for n in spec["linux"]["namespaces"] if n["type"] != kind]
    spec["linux"]["namespaces"] = [*namespaces, {"type": kind, "path": f"/proc/1/ns/{kind}"}]
    _refused("joins", _check_spec, spec)


@pytest.mark.parametrize("kind", ["pid", "ipc", "uts", "mount"])
def test_missing_private_namespace_refused(kind: str) -> None:
    spec = _spec()
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != kind]
    _refused("host's", _check_spec, spec)


def test_network_must_agree_with_manifest() -> None:
    # the manifest says host, the payload has its own namespace: inspect would lie
    _refused("network=host", _check_spec, _spec(), host=True)
    config = _config()
    _refused("manifest says network=host", check_libpod_config, config,
             manifest=_manifest("host"), policy=POLICY)  # fmt: skip
    spec = _spec()
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
    _refused("host's network", _check_spec, spec)
    _check_spec(spec, host=True)  # agreeing host network passes
    config["networkMode"] = "container:abc"
    _refused("joins", check_libpod_config, config, manifest=_manifest(), policy=POLICY)


def test_volumes_only_the_manifests() -> None:
    """libpod's named volumes must be the manifest's (ctk creates those new); the bind mounts
    at their targets pass whatever their source: ctk points them at the new volumes."""
    volumes = PayloadPolicy(criu_config_dirs=POLICY.criu_config_dirs, volumes={"data": "/data"})
    config = _config()
    config["namedVolumes"] = [{"volumeName": "data", "dest": "/data", "options": ["rbind"]}]
    config["spec"]["mounts"].append(
        {"destination": "/data", "type": "bind", "source": "/anywhere/data/_data"}
    )
    check_libpod_config(config, manifest=_manifest(), policy=volumes)
    _refused(
        "not in the manifest", check_libpod_config, config, manifest=_manifest(), policy=POLICY
    )
    config["namedVolumes"][0]["dest"] = "/elsewhere"
    _refused(
        "not in the manifest", check_libpod_config, config, manifest=_manifest(), policy=volumes
    )
    spec = _spec()
    spec["mounts"].append({"destination": "/etc", "type": "bind", "source": "/etc"})
    _refused("bind-mounts", _check_spec, spec, policy=volumes)


def test_bind_mounts_need_allow() -> None:
    spec = _spec()
    spec["mounts"].append(
        {"destination": "/host", "type": "bind", "source": "/", "options": ["rbind"]}
    )
    with pytest.raises(ArchiveError, match="bind-mounts the host's / at /host") as info:
        _check_spec(spec)
    assert info.value.hint == "if the source container really had it, allow it: --allow-mount /"
    _check_spec(spec, policy=PayloadPolicy(allow_mounts=("/",)))
    spec = _spec()
    spec["mounts"].append({"destination": "/data", "type": "bind", "source": "/srv/data"})
    _refused("/srv/data", _check_spec, spec)
    _check_spec(spec, policy=PayloadPolicy(allow_mounts=("/srv",)))
    _refused("/srv/data", _check_spec, spec, policy=PayloadPolicy(allow_mounts=("/srv/dat",)))
    # another container's userdata, or a climb out of this one's
    spec = _spec()
    other = USERDATA.replace(CID, "f" * 64)
    spec["mounts"].append({"destination": "/x", "type": "bind", "source": f"{other}/hosts"})
    _refused("bind-mounts", _check_spec, spec)
    spec["mounts"][-1]["source"] = f"{USERDATA}/../../../../../etc"
    _refused("bind-mounts", _check_spec, spec)


def test_other_mounts_and_sysctls_refused() -> None:
    spec = _spec()
    spec["mounts"][-1]["options"] = ["rprivate"]  # cgroup writable
    _refused("cgroup", _check_spec, spec)
    spec = _spec()
    spec["mounts"].append({"destination": "/mnt", "type": "ext4", "source": "/dev/sda1"})
    _refused("ext4", _check_spec, spec)
    spec = _spec()
    spec["linux"]["sysctl"]["kernel.core_pattern"] = "|/tmp/evil"
    _refused("kernel.core_pattern", _check_spec, spec)


def test_confinement_kept() -> None:
    spec = _spec()
    del spec["linux"]["seccomp"]
    _refused("seccomp", _check_spec, spec)
    spec = _spec()
    spec["linux"]["maskedPaths"] = []
    _refused("unmasks", _check_spec, spec)
    spec = _spec()
    spec["process"]["apparmorProfile"] = "unconfined"
    _refused("AppArmor", _check_spec, spec)


def test_annotations() -> None:
    spec = _spec()
    spec["annotations"]["org.criu.config"] = "/etc/evil.conf"
    _refused("CRIU configuration", _check_spec, spec)
    spec["annotations"]["org.criu.config"] = "/var/lib/ctk/criu-config/../../../etc/x"
    _refused("CRIU configuration", _check_spec, spec)
    spec = _spec()
    spec["annotations"]["run.oci.handler"] = "krun"
    _refused("run.oci.handler", _check_spec, spec)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rootfs", "/"),
        ("logPath", "/etc/cron.d/owned"),
        ("conmonPidFile", f"{USERDATA}/../../../../../../etc/passwd"),
        ("runtime", "/tmp/evil-runtime"),
        ("secrets", [{"Name": "db"}]),
        ("mountAllDevices", True),
        ("rootfsImageID", "f" * 64),
        ("mounts", ["/etc"]),
    ],
)
def test_libpod_config_fields(field: str, value: object) -> None:
    config = _config()
    config[field] = value
    _refused("config.dump", check_libpod_config, config, manifest=_manifest(), policy=POLICY)


@pytest.mark.parametrize(
    "items",
    [
        ["/../../../etc"],
        ["/a/../../b"],
        ["relative"],
        ["/a/./b"],
        ["/a\x00b"],
        "/etc",
        [7],
        ["/" + "x" * 300],
    ],
)
def test_deleted_paths_confined(items: object) -> None:
    _refused("deleted|name", check_deleted_paths, items)


def test_deleted_paths_ok() -> None:
    assert check_deleted_paths(["/bin/ed", "/etc/a b"]) == ["bin/ed", "etc/a b"]


@pytest.mark.parametrize("network", ["container:web", "ns:/proc/1/ns/net", "/proc/1/ns/net"])
def test_docker_spec_foreign_namespaces(network: str) -> None:
    _refused("network", check_container_spec, {"image": "x", "network": network})


def test_docker_spec_ok_and_runtime() -> None:
    check_container_spec(
        {"image": "x", "network": "host", "runtime": "runc"}, allow_host_network=True
    )
    check_container_spec({"image": "x", "network": None})
    _refused("runtime", check_container_spec, {"image": "x", "runtime": "/tmp/evil"})


# -- the whole Podman payload tar -----------------------------------------------------------


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _payload(tmp_path: Path, **extra: bytes) -> Path:
    members = {
        "config.dump": json.dumps(_config()).encode(),
        "spec.dump": json.dumps(_spec()).encode(),
        "checkpoint/pstree.img": b"img",
        **extra,
    }
    path = tmp_path / "podman-checkpoint.tar"
    path.write_bytes(_tar(list(members.items())))
    return path


def _check(path: Path) -> None:
    check_podman_payload(path, _manifest(), criu_config_dirs=("/var/lib/ctk/criu-config",))


def test_payload_ok(tmp_path: Path) -> None:
    deleted = json.dumps(["/bin/ed"]).encode()
    _check(_payload(tmp_path, **{"deleted.files": deleted, "rootfs-diff.tar": _tar([])}))


def test_payload_deleted_files_escape(tmp_path: Path) -> None:
    path = _payload(tmp_path, **{"deleted.files": json.dumps(["/../../../tmp"]).encode()})
    _refused("deleted", _check, path)


def test_payload_hook_in_spec_dump(tmp_path: Path) -> None:
    spec = _spec()
    spec["hooks"] = {"createRuntime": [{"path": "/bin/sh"}]}
    path = _payload(tmp_path, **{"spec.dump": json.dumps(spec).encode()})
    _refused("hooks", _check, path)


def test_payload_missing_or_broken_dumps(tmp_path: Path) -> None:
    path = tmp_path / "p.tar"
    path.write_bytes(_tar([("spec.dump", json.dumps(_spec()).encode())]))
    _refused("no config.dump", _check, path)
    _refused("not JSON", _check, _payload(tmp_path, **{"spec.dump": b"{nope"}))


def test_payload_nested_devshm_checked(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(info)
    path = _payload(tmp_path, **{"devshm-checkpoint.tar": buffer.getvalue()})
    _refused("symlink", _check, path)


def test_exported_api() -> None:
    assert archive.check_podman_payload is check_podman_payload
    assert copy.deepcopy(POLICY) == POLICY


def test_podman_host_network_shape() -> None:
    """Podman 4.3's host network: no networkMode, createNetNS false, no netns in the spec."""
    config = _config()
    del config["networkMode"]
    config["createNetNS"] = False
    namespaces = config["spec"]["linux"]["namespaces"]
    config["spec"]["linux"]["namespaces"] = [n for n in namespaces if n["type"] != "network"]
    del config["spec"]["linux"]["sysctl"]
    check_libpod_config(config, manifest=_manifest("host"), policy=POLICY)
    _refused("payload says host", check_libpod_config, config, manifest=_manifest(), policy=POLICY)


def test_podman_none_network_shape() -> None:
    """Podman 4.3's network none: no networkMode, createNetNS false, a netns without a path."""
    config = _config()
    del config["networkMode"]
    config["createNetNS"] = False
    config["spec"]["linux"]["namespaces"][1] = {"type": "network"}
    check_libpod_config(config, manifest=_manifest("none"), policy=POLICY)
    _refused("network=host", check_libpod_config, config, manifest=_manifest("host"), policy=POLICY)


def test_host_network_needs_the_users_word() -> None:
    _refused("network=host", check_container_spec, {"image": "x", "network": "host"})
