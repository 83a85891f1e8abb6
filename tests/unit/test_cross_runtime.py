"""Cross-runtime portability verdicts: what stops a checkpoint moving to the other runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from toolkit.backends.inspection import runtime_config_from_inspect
from toolkit.migration.cross_runtime import can_restore_on, container_portable_to
from toolkit.models import CheckpointImages, Mount, RuntimeConfig

STANDARD = ("/dev/null", "/dev/shm", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


def images(*mounts: str) -> CheckpointImages:
    return CheckpointImages(processes=(), external_mounts=tuple(mounts))


@pytest.mark.parametrize(("source", "dest"), [("docker", "podman"), ("podman", "docker")])
def test_standard_mounts_move_either_way(source: str, dest: str) -> None:
    ok, reason = can_restore_on(
        images(*STANDARD, "/run/.containerenv", "/sys/fs/cgroup/cpu"), dest, source_kind=source
    )
    assert ok and "live" in reason


def test_volume_blocks_the_move_and_is_named() -> None:
    ok, reason = can_restore_on(images(*STANDARD, "/data"), "podman", source_kind="docker")
    assert not ok and "/data" in reason and "ctk migrate" in reason


def test_volume_the_move_recreates_does_not_block_it() -> None:
    ok, _ = can_restore_on(
        images(*STANDARD, "/data"), "podman", source_kind="docker", carried=("/data",)
    )
    assert ok


def test_same_runtime_and_unknown_runtime() -> None:
    assert can_restore_on(images(), "docker", source_kind="docker")[0]
    assert not can_restore_on(images(), "lxc", source_kind="docker")[0]


class FakeBackend:
    def __init__(self, kind: str, attrs: dict[str, Any]) -> None:
        self.kind = kind
        self.url = f"unix:///fake/{kind}.sock"
        self._attrs = attrs

    def runtime_config(self, name: str) -> RuntimeConfig:
        return runtime_config_from_inspect(self._attrs)


@pytest.mark.parametrize(
    ("attrs", "needle"),
    [
        ({"OCIRuntime": "crun"}, "crun"),
        ({"HostConfig": {"NetworkMode": "backend-net"}}, "backend-net"),
    ],
)
def test_container_refusals_say_why(attrs: dict[str, Any], needle: str) -> None:
    ok, reason = container_portable_to(FakeBackend("podman", attrs), "web1", "docker")  # type: ignore[arg-type]
    assert not ok and needle in reason


class FakeVolumeBackend(FakeBackend):
    """A source that reads volumes (VolumeData): its mounts are the inspect's."""

    def container_volumes(self, name: str) -> tuple[Mount, ...]:
        return self.runtime_config(name).mounts

    def _unused(self, *_args: object, **_kwargs: object) -> None:
        raise NotImplementedError

    volumes = create_volume = inspect_volume = remove_volume = prune_volumes = _unused
    volume_access = read_volume = write_volume = _unused


BIND = {"Type": "bind", "Source": "/srv/data", "Destination": "/data"}
VOLUME = {"Type": "volume", "Name": "db", "Source": "/v/db/_data", "Destination": "/db"}


def test_volumes_move_across_runtimes() -> None:
    source = FakeVolumeBackend("docker", {"Mounts": [VOLUME]})
    assert container_portable_to(source, "web1", "podman")[0]  # type: ignore[arg-type]


def test_bind_mount_moves_only_when_allowed() -> None:
    source = FakeVolumeBackend("podman", {"Mounts": [VOLUME, BIND]})
    ok, reason = container_portable_to(source, "web1", "docker")  # type: ignore[arg-type]
    assert not ok and "--allow-mount /srv/data" in reason
    allowed = container_portable_to(source, "web1", "docker", allow_mounts=["/srv"])  # type: ignore[arg-type]
    assert allowed[0]


def test_volumes_need_a_backend_that_reads_them() -> None:
    ok, reason = container_portable_to(FakeBackend("podman", {"Mounts": [VOLUME]}), "w", "docker")  # type: ignore[arg-type]
    assert not ok and "cannot read volumes" in reason


def test_container_with_ctk_containerenv_bind_is_portable() -> None:
    attrs = {
        "Mounts": [{"Type": "bind", "Source": "/dev/null", "Destination": "/run/.containerenv"}]
    }
    assert container_portable_to(FakeBackend("docker", attrs), "web1", "podman")[0]  # type: ignore[arg-type]


def test_same_engine_is_not_cross_runtime() -> None:
    assert not container_portable_to(FakeBackend("docker", {}), "web1", "docker")[0]  # type: ignore[arg-type]


def test_doctor_cross_runtime_line() -> None:
    from toolkit.doctor import cross_runtime_check
    from toolkit.models import EngineInfo

    docker = EngineInfo("docker", "unix:///var/run/docker.sock", "20.10", checkpoint_capable=True)
    podman = EngineInfo("podman", "unix:///run/podman/podman.sock", "4.3.1", default_runtime="crun")
    check = cross_runtime_check(docker, podman, True)
    assert check.ok and "runc" in check.detail and "not proved" not in check.detail
    assert "not proved" in cross_runtime_check(docker, podman).detail
    # another host's Podman: the CRIU config goes through the engine, live moves still work
    remote = cross_runtime_check(docker, podman, False)
    assert remote.ok and "through the engine" in remote.detail
    assert not cross_runtime_check(docker, None).ok
    off = EngineInfo("docker", "unix:///var/run/docker.sock", "20.10", checkpoint_capable=False)
    assert "experimental" in cross_runtime_check(off, podman).detail


def _craft(directory: Path, *, netns_ext: bool, root_mode: int) -> None:
    pycriu = pytest.importorskip("pycriu")
    fown = {"uid": 0, "euid": 0, "signum": 0, "pid_type": 0, "pid": 0}
    images = {
        "pstree.img": {"magic": "PSTREE", "entries": [{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1}]},
        "ids-1.img": {
            "magic": "IDS",
            "entries": [{"vm_id": 2, "files_id": 2, "fs_id": 2, "sighand_id": 2, "net_ns_id": 10}],
        },
        "files.img": {
            "magic": "FILES",
            "entries": [
                {
                    "type": "REG",
                    "id": 6,
                    "reg": {
                        "id": 6,
                        "flags": 0,
                        "pos": 0,
                        "fown": fown,
                        "name": "/",
                        "mnt_id": 230,
                        "mode": root_mode,
                    },
                }
            ],
        },
    }
    if netns_ext:
        images["netns-10.img"] = {"magic": "NETNS", "entries": [{"ext_key": "extRootNetNS"}]}
    for name, image in images.items():
        with (directory / name).open("wb") as handle:
            pycriu.images.dump(image, handle)


def test_docker_images_join_podman_network_namespace(tmp_path: Path) -> None:
    from toolkit.criu.images import load_image
    from toolkit.migration.cross_runtime import _prepare_images

    _craft(tmp_path, netns_ext=False, root_mode=0o40755)
    _prepare_images(tmp_path, "docker", "podman")
    assert load_image(tmp_path / "netns-10.img")["entries"] == [{"ext_key": "extRootNetNS"}]


def test_podman_images_fit_docker(tmp_path: Path) -> None:
    from toolkit.criu.images import load_image
    from toolkit.migration.cross_runtime import _prepare_images

    _craft(tmp_path, netns_ext=True, root_mode=0o40555)
    _prepare_images(tmp_path, "podman", "docker")
    # Docker restores into an empty namespace (libnetwork sets it up) ...
    assert not (tmp_path / "netns-10.img").exists()
    # ... and its rootfs root is 0755, which CRIU checks without skip-file-rwx-check
    assert load_image(tmp_path / "files.img")["entries"][0]["reg"]["mode"] == 0o40755


class _Podman:
    """A destination whose host does (or does not) read back ctk's files."""

    kind = "podman"
    url = "unix:///forwarded/podman.sock"

    def __init__(self, shares: bool) -> None:
        self.shares = shares
        self.asked: list[tuple[Path, str]] = []

    def shares_directory(self, directory: Path, *, image: str) -> bool:
        self.asked.append((directory, image))
        return self.shares


def test_cross_runtime_into_podman_needs_proof_of_a_shared_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from toolkit.errors import ExitCode, Unsupported
    from toolkit.migration import cross_runtime
    from toolkit.migration.criu_config import LocalCriuConfig, criu_config

    monkeypatch.setenv("CTK_STATE_DIR", str(tmp_path))
    local = _Podman(True)
    with criu_config(local, target="web", image="sha256:abc") as config:  # type: ignore[arg-type]
        assert isinstance(config, LocalCriuConfig)
        assert Path(config.path).parent == cross_runtime.criu_config_dir()
        config.write(["skip-file-rwx-check"])
        assert Path(config.path).read_text() == "skip-file-rwx-check\n"
        assert config.labels == {cross_runtime.CONFIG_LABEL: config.path}
    assert local.asked == [(cross_runtime.criu_config_dir(), "sha256:abc")]
    # kept (the container names it) after a success, gone after a failure
    assert Path(config.path).exists()
    with (
        pytest.raises(RuntimeError),
        criu_config(local, target="web", image="sha256:abc") as failed,  # type: ignore[arg-type]
    ):
        raise RuntimeError("restore failed")
    assert not Path(failed.path).exists()
    # Not proved shared, and no volumes or archive routes to write it through the engine.
    with (
        pytest.raises(Unsupported) as excinfo,
        criu_config(_Podman(False), target="web", image="sha256:abc"),  # type: ignore[arg-type]
    ):
        pass
    assert excinfo.value.exit_code == ExitCode.UNSUPPORTED == 6
    assert "does not see" in excinfo.value.message and "--mode cold" in excinfo.value.hint


def _tar(path: Path, members: dict[str, bytes | None]) -> Path:
    """A tar at ``path``: each name a file with its bytes, or a directory (None)."""
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o1777
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_podman_dev_shm_files_are_taken_from_the_export_only_when_there_are_some(
    tmp_path: Path,
) -> None:
    from toolkit.backends.docker.migration import _root_as
    from toolkit.migration.cross_runtime import _devshm

    shm = _tar(tmp_path / "shm.tar", {"./": None, "./PostgreSQL.1": b"segment"})
    export = _tar(tmp_path / "export.tar", {"devshm-checkpoint.tar": shm.read_bytes()})
    (tmp_path / "a").mkdir()
    carried = _devshm(export, tmp_path / "a")
    assert carried is not None and carried.read_bytes() == shm.read_bytes()
    # the volume's root gets the mode of the tar's root (1777, as /dev/shm)
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(_root_as(carried, "shm"))) as root:
        [entry] = root.getmembers()
    assert entry.name == "shm" and entry.isdir() and entry.mode == 0o1777
    empty = _tar(tmp_path / "empty.tar", {"./": None})
    (tmp_path / "b").mkdir()
    assert (
        _devshm(
            _tar(tmp_path / "e2.tar", {"devshm-checkpoint.tar": empty.read_bytes()}), tmp_path / "b"
        )
        is None
    )
    (tmp_path / "c").mkdir()
    assert _devshm(_tar(tmp_path / "e3.tar", {"config.dump": b"{}"}), tmp_path / "c") is None
