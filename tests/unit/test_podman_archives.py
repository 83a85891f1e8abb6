"""The Podman backend's payload rewriting, without an engine: spec.dump annotated for a
per-container CRIU config (``restore --import --tcp-close``)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from toolkit.backends.podman.archives import _annotate_spec


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _read(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def test_annotate_spec_sets_the_annotation_and_keeps_the_rest(tmp_path: Path) -> None:
    spec = {"ociVersion": "1.0.2", "annotations": {"keep": "me", "org.criu.config": "/old"}}
    source, dest = tmp_path / "in.tar", tmp_path / "out.tar"
    images = b"\x00" * 5000
    _tar(
        source,
        {
            "config.dump": b"{}",
            "./spec.dump": json.dumps(spec).encode(),
            "checkpoint/p.img": images,
        },
    )
    _annotate_spec(source, dest, {"org.criu.config": "/new.conf"})
    out = _read(dest)
    assert list(out) == ["config.dump", "./spec.dump", "checkpoint/p.img"]
    assert json.loads(out["./spec.dump"])["annotations"] == {
        "keep": "me",
        "org.criu.config": "/new.conf",
    }
    assert out["checkpoint/p.img"] == images and out["config.dump"] == b"{}"


def test_annotate_spec_without_annotations(tmp_path: Path) -> None:
    source, dest = tmp_path / "in.tar", tmp_path / "out.tar"
    _tar(source, {"spec.dump": b'{"ociVersion": "1.0.2"}'})
    _annotate_spec(source, dest, {"org.criu.config": "/c.conf"})
    assert json.loads(_read(dest)["spec.dump"])["annotations"] == {"org.criu.config": "/c.conf"}
