"""Checkpoint images read as untrusted input (toolkit.archive.checkpoint_image): a saved image
stream staged within bounds, its one layer classified and checked like an archive's payload."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.unit.test_archive_payload import IMAGE_ID, _config, _spec, _tar
from toolkit.archive import checkpoint_image as layout
from toolkit.errors import ArchiveError
from toolkit.models import ArchiveManifest, ImportOptions


def _saved(layers: dict[str, bytes], listed: list[str] | None = None) -> list[bytes]:
    """A docker-archive stream in chunks, as an engine's save route gives it."""
    manifest = [{"Config": "c.json", "RepoTags": ["x:1"], "Layers": listed or list(layers)}]
    data = _tar(
        [*layers.items(), ("c.json", b"{}"), ("manifest.json", json.dumps(manifest).encode())]
    )
    return [data[i : i + 1000] for i in range(0, len(data), 1000)]


def _libpod_layer(**extra: bytes) -> bytes:
    members = {
        "config.dump": json.dumps(_config()).encode(),
        "spec.dump": json.dumps(_spec()).encode(),
        "checkpoint/pstree.img": b"img",
        "rootfs-diff.tar": _tar([("made.txt", b"x")]),
        "deleted.files": json.dumps(["/bin/vi"]).encode(),
        **extra,
    }
    return _tar(list(members.items()))


def test_one_layer_staged_and_read(tmp_path: Path) -> None:
    layer = layout.stage_saved_image(
        _saved({"abc.tar": _libpod_layer()}), tmp_path, declared=10_000
    )
    checked = layout.read_layer(layer, ImportOptions())
    assert checked.layout == layout.LIBPOD and checked.image_id == IMAGE_ID
    assert checked.spec.name == "web1" and checked.spec.command == ("/counter.sh",)
    assert [p.container_port for p in checked.spec.ports] == [8080]
    assert checked.spec.env["FOO"] == "bar"
    (tmp_path / "u").mkdir()
    images, rootfs, deleted = layout.unpack_layer(layer, tmp_path / "u")
    assert (images / "pstree.img").read_bytes() == b"img"
    assert rootfs is not None and deleted == ["/bin/vi"]


def test_several_layers_are_no_checkpoint_image(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="2 layers"):
        layout.stage_saved_image(_saved({"a.tar": b"", "b.tar": b""}), tmp_path, declared=10_000)


def test_stream_beyond_the_declared_size_refused(tmp_path: Path) -> None:
    big = {"abc.tar": _libpod_layer(**{"pad": b"x" * (9 * 1024 * 1024)})}
    with pytest.raises(ArchiveError, match="beyond"):
        layout.stage_saved_image(_saved(big), tmp_path, declared=1000)


def test_layer_named_by_a_climbing_path_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError):
        layout.stage_saved_image(
            _saved({"abc.tar": b""}, listed=["../../etc/passwd"]), tmp_path, declared=10_000
        )


def test_hostile_libpod_layer_refused(tmp_path: Path) -> None:
    spec = _spec()
    spec["hooks"] = {"prestart": [{"path": "/bin/sh"}]}
    saved = _saved({"abc.tar": _libpod_layer(**{"spec.dump": json.dumps(spec).encode()})})
    layer = layout.stage_saved_image(saved, tmp_path, declared=10_000)
    with pytest.raises(ArchiveError, match="hooks"):
        layout.read_layer(layer, ImportOptions())


def test_host_network_needs_the_users_word(tmp_path: Path) -> None:
    config, spec = _config(), _spec()
    config["networkMode"] = "host"
    for doc in (config["spec"], spec):
        doc["linux"]["namespaces"] = [
            n for n in doc["linux"]["namespaces"] if n["type"] != "network"
        ]
    extra = {"config.dump": json.dumps(config).encode(), "spec.dump": json.dumps(spec).encode()}
    layer = layout.stage_saved_image(
        _saved({"abc.tar": _libpod_layer(**extra)}), tmp_path, declared=10_000
    )
    with pytest.raises(ArchiveError, match="network=host"):
        layout.read_layer(layer, ImportOptions())
    assert layout.read_layer(layer, ImportOptions(allow_host_network=True)).spec.network == "host"


def test_ctk_layer_round_trip(tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    (images / "pstree.img").write_bytes(b"img")
    manifest = ArchiveManifest(
        format_version=1, engine="docker", engine_version="20.10", criu_version="Version: 4.1.1",
        container_id="c" * 64, container_name="web1", image="ctk-demo/counter",
        image_id="sha256:" + IMAGE_ID, checkpoint="cp1", created="",
        spec={"image": "ctk-demo/counter", "name": "web1", "command": ["/counter.sh"]},
    )  # fmt: skip
    out = tmp_path / "layer.tar"
    layout.write_ctk_layer(out, manifest=manifest, images=images, rootfs=None, deleted=["/x"])
    checked = layout.read_layer(out, ImportOptions())
    assert checked.layout == layout.CTK and checked.source_engine == "docker"
    assert checked.spec.command == ("/counter.sh",)
    labels = layout.image_labels(manifest)
    assert labels[layout.NAME] == "web1" and labels[layout.CRIU_VERSION] == "40101"


def test_ordinary_layer_is_no_checkpoint_image(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("bin/sh")
        info.type, info.linkname = tarfile.SYMTYPE, "/bin/busybox"
        tar.addfile(info)
    path = tmp_path / "l.tar"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ArchiveError, match="not a checkpoint image"):
        layout.read_layer(path, ImportOptions())


def test_chunk_reader_serves_any_read_size() -> None:
    from toolkit.archive.checkpoint_image import _Chunks

    reader = _Chunks([b"ab", b"", b"cdefg", b"h"])
    assert reader.read(1) == b"a"
    assert reader.read(3) == b"bcd"
    assert reader.read() == b"efgh"
    assert reader.read(5) == b""
