"""Volumes in a ctk archive, without an engine: the manifest's mount list, the data tars, and
libpod's export split and rewritten."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from toolkit import archive
from toolkit.archive.volumes import archived_mounts, check_volume_tar, member_name
from toolkit.backends.volume_data import allowed
from toolkit.errors import ArchiveError
from toolkit.models import ArchiveManifest, ArchiveMember

DIGEST = "0" * 64


def _manifest(
    volumes: list[dict[str, Any]], *members: str, ignored: bool = False
) -> ArchiveManifest:
    return ArchiveManifest(
        format_version=2,
        engine="docker",
        engine_version="20.10",
        criu_version="4.1.1",
        container_id="c" * 64,
        container_name="web1",
        image="ctk-demo/counter",
        image_id="sha256:" + "a" * 64,
        checkpoint="cp1",
        created="2026-01-01T00:00:00+00:00",
        spec={"image": "ctk-demo/counter", "volumes": volumes},
        members=tuple(ArchiveMember(name=m, size=1, sha256=DIGEST) for m in members),
        volumes_ignored=ignored,
    )


def _volume(name: str, target: str, *, anonymous: bool = False) -> dict[str, Any]:
    return {
        "target": target,
        "source": "" if anonymous else name,
        "type": "volume",
        "read_only": False,
        "name": name,
    }


def test_archived_mounts_read_back() -> None:
    manifest = _manifest(
        [_volume("data", "/data"), _volume("f" * 64, "/anon", anonymous=True)],
        member_name("data"),
        member_name("f" * 64),
    )
    mounts = archived_mounts(manifest)
    assert [(m.target, m.source, m.name) for m in mounts] == [
        ("/data", "data", "data"),
        ("/anon", "", "f" * 64),
    ]
    assert archive.spec_from_dict(manifest.spec).volumes == mounts


@pytest.mark.parametrize(
    "entry",
    [
        _volume("../etc", "/data"),  # a name no engine accepts
        _volume("data", "relative"),
        _volume("data", "/data/../etc"),
        _volume("data", "/"),
        {**_volume("data", "/data"), "source": "other"},  # source and name disagree
        {**_volume("data", "/data"), "type": "tmpfs"},
        {"target": "/x", "source": "relative/host", "type": "bind"},
        {"target": "/x", "unknown": 1},
    ],
)
def test_malformed_mounts_are_refused(entry: dict[str, Any]) -> None:
    with pytest.raises(ArchiveError):
        archived_mounts(_manifest([entry], member_name("data")))


def test_a_volume_without_its_data_is_refused_unless_ignored() -> None:
    with pytest.raises(ArchiveError, match="no data for volume data"):
        archived_mounts(_manifest([_volume("data", "/data")]))
    assert archived_mounts(_manifest([_volume("data", "/data")], ignored=True))


def test_a_target_or_volume_twice_is_refused() -> None:
    twice = [_volume("data", "/data"), _volume("data", "/other")]
    with pytest.raises(ArchiveError, match="twice"):
        archived_mounts(_manifest(twice, member_name("data")))


def _tar(path: Path, *entries: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w") as tar:
        for info in entries:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info


def test_volume_tar_stays_inside_the_volume(tmp_path: Path) -> None:
    good = _tar(
        tmp_path / "good.tar",
        _entry("volume", tarfile.DIRTYPE),
        _entry("volume/f"),
        _entry("volume/l", tarfile.SYMTYPE, "f"),
    )
    check_volume_tar(good, volume="data")
    for name, entries in {
        "outside": (_entry("etc/passwd"),),
        "climb": (_entry("volume/../x"),),
        "device": (_entry("volume/d", tarfile.CHRTYPE),),
        "below-symlink": (_entry("volume/l", tarfile.SYMTYPE, "/etc"), _entry("volume/l/x")),
    }.items():
        with pytest.raises(ArchiveError):
            check_volume_tar(_tar(tmp_path / f"{name}.tar", *entries), volume="data")


def test_allow_mount_names_a_path_and_what_lies_below() -> None:
    assert allowed("/srv/data", ("/srv",))
    assert allowed("/srv", ("/srv",))
    assert not allowed("/srv/data", ("/srv/dat",))
    assert not allowed("/srv/data", ("data",))  # a volume's name allows no host path


def _libpod_export(path: Path, config: dict[str, Any], spec: dict[str, Any]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, doc in (("config.dump", config), ("spec.dump", spec)):
            body = json.dumps(doc).encode()
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        inner = io.BytesIO()
        with tarfile.open(fileobj=inner, mode="w") as volume:
            root = _entry("./", tarfile.DIRTYPE)
            volume.addfile(root)
            owned = _entry("./d/f")
            owned.uid = owned.gid = 65534
            volume.addfile(owned, io.BytesIO(b"x"))
        info = tarfile.TarInfo("volumes/data.tar")
        info.size = len(inner.getvalue())
        tar.addfile(info, io.BytesIO(inner.getvalue()))
    return path


def test_libpod_volumes_are_split_out_and_made_this_hosts(tmp_path: Path) -> None:
    old = "/var/lib/containers/storage/volumes/data/_data"
    config = {"namedVolumes": [{"volumeName": "data", "dest": "/data"}], "spec": {"mounts": []}}
    spec = {"mounts": [{"destination": "/data", "source": old, "type": "bind"}]}
    export = _libpod_export(tmp_path / "export.tar", config, spec)
    payload = tmp_path / "payload.tar"
    (members,) = [archive.split_podman_volumes(export, payload, tmp_path, ["data"])]
    assert [m for m, _ in members] == ["volumes/data.tar"]
    with tarfile.open(members[0][1]) as volume:
        owners = {i.name: i.uid for i in volume}
    assert owners == {"volume": 0, "volume/d/f": 65534}  # ctk's names, libpod's owners
    with tarfile.open(payload) as tar:
        assert tar.getnames() == ["config.dump", "spec.dump"]
    check_volume_tar(members[0][1], volume="data")

    out = tmp_path / "restore.tar"
    archive.rewrite_podman_volumes(payload, out, {"data": ("data2", "/srv/vols/data2/_data")})
    with tarfile.open(out) as tar:
        config_out = json.load(tar.extractfile("config.dump"))  # type: ignore[arg-type]
        spec_out = json.load(tar.extractfile("spec.dump"))  # type: ignore[arg-type]
    assert config_out["namedVolumes"][0]["volumeName"] == "data2"
    assert spec_out["mounts"][0]["source"] == "/srv/vols/data2/_data"
    with pytest.raises(ArchiveError, match="not in the manifest"):
        archive.rewrite_podman_volumes(payload, tmp_path / "x.tar", {"other": ("o", "/o")})
