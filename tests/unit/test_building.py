"""Pure logic of builds, layers and ctk cp: context tars, builder output, references,
change kinds, copy targets and the unpacking that refuses to leave its destination."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from toolkit import copying
from toolkit.backends import building, inspection
from toolkit.errors import ArchiveError, EngineError, InvalidArgument


def test_context_tar_finds_the_dockerfile_and_adds_one_from_outside(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Containerfile").write_text("FROM scratch\n")
    (context / "data").write_text("x")
    body, inside = building.context_tar(context)
    names = _names(body)
    assert inside == "Containerfile" and "./data" in names
    outside = tmp_path / "Other.Dockerfile"
    outside.write_text("FROM scratch\n")
    body, inside = building.context_tar(context, outside)
    assert inside == building.OUTSIDE_DOCKERFILE
    assert inside in _names(body)
    with pytest.raises(InvalidArgument, match="no Dockerfile"):
        building.context_tar(_empty(tmp_path))


def _names(body: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return tar.getnames()


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty"
    path.mkdir()
    return path


def test_build_result_reads_aux_ids_podman_last_lines_and_errors() -> None:
    docker_like = [{"stream": "Step 1/1 : FROM scratch\n"}, {"aux": {"ID": "sha256:" + "a" * 64}}]
    assert building.build_result(docker_like, ("x:1",)).id == "sha256:" + "a" * 64
    podman_43 = [{"stream": "STEP 1/1: FROM scratch\n"}, {"stream": "b" * 64 + "\n"}]
    assert building.build_result(podman_43, ()).id == "sha256:" + "b" * 64
    with pytest.raises(EngineError, match="build failed: boom"):
        building.build_result([{"stream": "RUN false\n"}, {"error": "boom"}], ())
    with pytest.raises(EngineError, match="without an image ID"):
        building.build_result([{"stream": "nothing\n"}], ())


def test_json_lines_spanning_chunks() -> None:
    chunks = [b'{"stream": "a"}\n{"str', b'eam": "b"}\n', b'{"aux": {"ID": "c"}}']
    assert [e.get("stream") or e["aux"]["ID"] for e in building.json_lines(chunks)] == [
        "a",
        "b",
        "c",
    ]


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("app", ("app", "latest")),
        ("app:2", ("app", "2")),
        ("host:5000/app", ("host:5000/app", "latest")),
        ("host:5000/app:3", ("host:5000/app", "3")),
    ],
)
def test_split_reference(reference: str, expected: tuple[str, str]) -> None:
    assert building.split_reference(reference) == expected


def test_changes_from_api_both_kinds_of_kind() -> None:
    rows = [{"Path": "/b", "Kind": 1}, {"Path": "/a", "Kind": 0}, {"Path": "/c", "Kind": 2}]
    assert [(c.kind, c.path) for c in inspection.changes_from_api(rows)] == [
        ("C", "/a"),
        ("A", "/b"),
        ("D", "/c"),
    ]
    assert inspection.changes_from_api(None) == []


def test_image_from_inspect_same_keys_on_both_engines() -> None:
    raw = {
        "Id": "c" * 64,
        "RepoTags": ["a:1", "<none>:<none>"],
        "Created": 0,
        "Size": 10,
        "Labels": {"k": "v"},
        "RootFS": {"Layers": ["sha256:1"]},
        "Config": {"Cmd": ["sh"]},
    }
    info = inspection.image_from_inspect(raw, engine="podman")
    assert info.id == "sha256:" + "c" * 64 and info.tags == ("a:1",)
    assert info.created == "1970-01-01T00:00:00Z" and info.layers == ("sha256:1",)
    assert info.short_id == "c" * 12 and info.command == ("sh",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("web:/etc", ("web", "/etc")),
        ("web:", ("web", "/")),
        ("./a:b", (None, "./a:b")),
        ("/tmp/x", (None, "/tmp/x")),
        ("file", (None, "file")),
    ],
)
def test_split_target(value: str, expected: tuple[str | None, str]) -> None:
    assert copying.split_target(value) == expected


def _tar(*members: tarfile.TarInfo, data: bytes = b"x") -> tarfile.TarFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    buffer.seek(0)
    return tarfile.open(fileobj=buffer, mode="r|")


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 1 if kind == tarfile.REGTYPE else 0
    return info


def test_unpack_renames_the_top_member(tmp_path: Path) -> None:
    copying._unpack(_tar(_member("src.txt")), tmp_path, "dest.txt")
    assert (tmp_path / "dest.txt").read_bytes() == b"x"


@pytest.mark.parametrize(
    "members",
    [
        [_member("../escape")],
        [_member("/abs")],
        [_member("d", tarfile.SYMTYPE, "/etc"), _member("d/passwd")],
        [_member("h", tarfile.LNKTYPE, "../../etc/passwd")],
    ],
    ids=["dotdot", "absolute", "through-symlink", "hardlink-out"],
)
def test_unpack_refuses_to_leave_the_destination(
    tmp_path: Path, members: list[tarfile.TarInfo]
) -> None:
    with pytest.raises(ArchiveError):
        copying._unpack(_tar(*members), tmp_path, None)
    assert not (tmp_path.parent / "escape").exists()


def test_event_from_api_docker_and_podman_shapes() -> None:
    raw = {
        "Type": "container",
        "Action": "start",
        "Actor": {"ID": "abc", "Attributes": {"name": "web1", "ctk.test": "1"}},
        "time": 1,
        "timeNano": 1_500_000_000,
    }
    event = inspection.event_from_api(raw)
    assert (event.type, event.action, event.id, event.name) == ("container", "start", "abc", "web1")
    assert event.time == "1970-01-01T00:00:01.500000Z" and event.attributes["ctk.test"] == "1"
    old = inspection.event_from_api({"status": "die", "id": "x", "time": 0})
    assert (old.action, old.id, old.time) == ("die", "x", "1970-01-01T00:00:00Z")
