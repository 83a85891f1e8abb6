"""Images as layer stacks and a container's read-write layer, end to end on both engines:
build with no registry, history, inspect, save/rm/load, diff, commit, cp, volumes."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX_IMAGE, TEST_LABEL, Containers, ctk, wait_for
from toolkit import copying
from toolkit.backends.base import Backend, ContainerLayers, Events, Images, Volumes
from toolkit.errors import EngineError, ImageNotFound, InvalidArgument, NotFound, VolumeNotFound

pytestmark = pytest.mark.integration


class MadeImages:
    """Image names a test makes, removed by exact name (never a prune) in teardown."""

    def __init__(self, backend: Images) -> None:
        self.backend = backend
        self.names: list[str] = []

    def name(self, what: str = "img") -> str:
        name = f"ctk-test/{what}-{uuid.uuid4().hex[:10]}:1"
        self.names.append(name)
        return name

    def cleanup(self) -> None:
        for name in reversed(self.names):
            with contextlib.suppress(ImageNotFound):
                self.backend.remove_image(name, force=True)


@pytest.fixture
def made_images(engine: Backend) -> Iterator[MadeImages]:
    assert isinstance(engine, Images)
    made = MadeImages(engine)
    yield made
    made.cleanup()


def _images(engine: Backend) -> Images:
    assert isinstance(engine, Images)
    return engine


def _layers(engine: Backend) -> ContainerLayers:
    assert isinstance(engine, ContainerLayers)
    return engine


def _context(tmp_path: Path, *steps: str, base: str = BUSYBOX_IMAGE) -> Path:
    context = tmp_path / f"ctx-{uuid.uuid4().hex[:6]}"
    context.mkdir()
    (context / "payload.txt").write_text("from the context\n")
    (context / "Dockerfile").write_text("\n".join([f"FROM {base}", *steps]) + "\n")
    return context


def test_build_adds_layers_on_a_shared_base(
    engine: Backend, made_images: MadeImages, tmp_path: Path
) -> None:
    images = _images(engine)
    base = images.inspect_image(BUSYBOX_IMAGE)
    tag_a, tag_b = made_images.name("a"), made_images.name("b")
    built_a = images.build_image(
        _context(tmp_path, "COPY payload.txt /payload.txt", 'CMD ["cat", "/payload.txt"]'),
        tags=(tag_a,),
        labels=TEST_LABEL,
    )
    built_b = images.build_image(
        _context(tmp_path, "RUN echo layered > /b.txt"), tags=(tag_b,), labels=TEST_LABEL
    )
    a, b = images.inspect_image(tag_a), images.inspect_image(tag_b)
    assert (a.id, b.id) == (built_a.id, built_b.id) and a.id != b.id
    assert a.engine == engine.kind and a.labels["ctk.test"] == "1"
    assert any(t.endswith(tag_a) for t in a.tags) and a.command == ("cat", "/payload.txt")
    # The base's read-only layers are shared: both stacks start with them, then one more each.
    for image in (a, b):
        assert image.layers[: len(base.layers)] == base.layers
        assert len(image.layers) == len(base.layers) + 1
    assert a.layers[-1] != b.layers[-1]
    history = images.image_history(tag_b)
    assert len(history) > len(images.image_history(BUSYBOX_IMAGE))
    assert any("echo layered > /b.txt" in layer.created_by for layer in history)
    assert a.id in {i.id for i in images.images(labels=TEST_LABEL)}


def test_build_errors(engine: Backend, made_images: MadeImages, tmp_path: Path) -> None:
    images = _images(engine)
    with pytest.raises(EngineError, match="build failed"):
        images.build_image(
            _context(tmp_path, "RUN exit 3"), tags=(made_images.name(),), labels=TEST_LABEL
        )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidArgument, match="no Dockerfile"):
        images.build_image(empty)
    # No registry: a FROM that is not local fails rather than pulling.
    with pytest.raises((EngineError, NotFound)):
        images.build_image(
            _context(tmp_path, base="ctk-test/not-there-anywhere:1"),
            tags=(made_images.name(),),
            labels=TEST_LABEL,
        )


def test_save_rm_load_keeps_the_image_id(
    engine: Backend, made_images: MadeImages, tmp_path: Path
) -> None:
    images = _images(engine)
    tag = made_images.name("saved")
    built = images.build_image(
        _context(tmp_path, "RUN echo saved > /saved.txt"), tags=(tag,), labels=TEST_LABEL
    )
    archive = tmp_path / "image.tar"
    result = ctk("image", "save", tag, "-o", str(archive), engine=engine.kind, check=True)
    assert result.returncode == 0 and archive.stat().st_size > 0
    images.remove_image(tag)
    assert not engine.has_image(built.id)
    ctk("image", "load", "-i", str(archive), engine=engine.kind, check=True)
    assert engine.has_image(built.id)
    assert images.inspect_image(tag).id == built.id


def test_diff_shows_added_changed_deleted_and_commit_adds_one_layer(
    engine: Backend, containers: Containers, made_images: MadeImages
) -> None:
    layers, images = _layers(engine), _images(engine)
    info = containers.run(
        BUSYBOX_IMAGE,
        command=(
            "sh",
            "-c",
            "echo new > /new.txt; echo more >> /etc/passwd; rm /bin/arch; touch /ready; sleep 600",
        ),
    )
    wait_for(lambda: any(c.path == "/ready" for c in layers.changes(info.name)), what="the writes")
    changes = {(c.kind, c.path) for c in layers.changes(info.name)}
    assert {("A", "/new.txt"), ("C", "/etc/passwd"), ("D", "/bin/arch")} <= changes
    out = ctk("diff", info.name, engine=engine.kind, check=True).stdout.splitlines()
    assert "A /new.txt" in out and "D /bin/arch" in out and "C /etc/passwd" in out
    (shown,) = json.loads(ctk("inspect", info.name, engine=engine.kind, check=True).stdout)
    assert shown["rw_layer_size"] >= len("new\n") and shown["rw_layer_size"] == layers.layer_size(
        info.name
    )
    assert shown["image_layers"] == list(images.inspect_image(BUSYBOX_IMAGE).layers)

    tag = made_images.name("committed")
    image_id = layers.commit(info.name, tag, message="one more layer", labels=TEST_LABEL)
    base, committed = images.inspect_image(BUSYBOX_IMAGE), images.inspect_image(tag)
    assert committed.id == image_id and committed.labels["ctk.test"] == "1"
    assert committed.layers[:-1] == base.layers and len(committed.layers) == len(base.layers) + 1
    assert len(images.image_history(tag)) == len(images.image_history(BUSYBOX_IMAGE)) + 1
    # The committed layer holds the writes: a container of the new image sees them.
    child = containers.run(tag, command=("sleep", "600"))
    assert engine.exec(child.name, ["cat", "/new.txt"]).stdout.strip() == "new"
    assert engine.exec(child.name, ["ls", "/bin/arch"]).exit_code != 0


def test_cp_both_ways(engine: Backend, containers: Containers, tmp_path: Path) -> None:
    layers = _layers(engine)
    info = containers.run(BUSYBOX_IMAGE, command=("sleep", "600"))
    source = tmp_path / "in.txt"
    source.write_text("to the container\n")
    # into a directory, and as a new name
    copying.copy_to_container(layers, source, info.name, "/tmp")
    ctk("cp", str(source), f"{info.name}:/renamed.txt", engine=engine.kind, check=True)
    assert engine.exec(info.name, ["cat", "/tmp/in.txt"]).stdout == "to the container\n"
    assert engine.exec(info.name, ["cat", "/renamed.txt"]).stdout == "to the container\n"
    # back out: a file under a new name, a directory into a directory
    out = tmp_path / "out"
    out.mkdir()
    ctk("cp", f"{info.name}:/renamed.txt", str(out / "back.txt"), engine=engine.kind, check=True)
    assert (out / "back.txt").read_text() == "to the container\n"
    copying.copy_from_container(layers, info.name, "/tmp", out)
    assert (out / "tmp" / "in.txt").read_text() == "to the container\n"
    with pytest.raises(NotFound):
        copying.copy_from_container(layers, info.name, "/not/there", out)
    missing = ctk("cp", f"{info.name}:/not/there", str(out), engine=engine.kind)
    assert missing.returncode == 4 and "no such path" in missing.stderr


def test_volume_create_inspect_ls_rm_prune(engine: Backend) -> None:
    assert isinstance(engine, Volumes)
    name = f"ctk-test-vol-{uuid.uuid4().hex[:10]}"
    other = f"ctk-test-vol-{uuid.uuid4().hex[:10]}"
    try:
        made = engine.create_volume(name, labels=TEST_LABEL)
        assert (made.name, made.engine, made.labels) == (name, engine.kind, TEST_LABEL)
        assert engine.inspect_volume(name).mountpoint
        assert name in {v.name for v in engine.volumes(labels=TEST_LABEL)}
        engine.remove_volume(name)
        with pytest.raises(VolumeNotFound):
            engine.inspect_volume(name)
        with pytest.raises(VolumeNotFound):
            engine.remove_volume(name)
        # prune with the run's own label only: never what this test did not make
        run_label = {"ctk.test": "1", "ctk.test.run": other}
        ctk(
            "volume",
            "create",
            "-l",
            "ctk.test=1",
            "-l",
            f"ctk.test.run={other}",
            other,
            engine=engine.kind,
            check=True,
        )
        assert engine.prune_volumes(labels={"ctk.test.run": other}) == [other]
        assert other not in {v.name for v in engine.volumes(labels=run_label)}
    finally:
        for volume in (name, other):
            with contextlib.suppress(VolumeNotFound):
                engine.remove_volume(volume, force=True)


def test_image_prune_by_label_removes_only_the_tests_images(
    engine: Backend, made_images: MadeImages, tmp_path: Path
) -> None:
    images = _images(engine)
    run = uuid.uuid4().hex[:10]
    tag = made_images.name("pruned")
    built = images.build_image(
        _context(tmp_path, f"RUN echo {run} > /run.txt"),
        tags=(tag,),
        labels={**TEST_LABEL, "ctk.test.run": run},
    )
    removed = images.prune_images(all=True, labels={"ctk.test.run": run})
    assert built.id in removed
    assert not engine.has_image(built.id)
    assert engine.has_image(images.inspect_image(BUSYBOX_IMAGE).id)


def test_image_commands_through_the_cli(
    engine: Backend, made_images: MadeImages, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:10]
    tag = made_images.name("cli")
    context = _context(tmp_path, f"RUN echo {run} > /run.txt")
    built = ctk(
        "build",
        "-q",
        "-t",
        tag,
        "-l",
        "ctk.test=1",
        "-l",
        f"ctk.test.run={run}",
        str(context),
        engine=engine.kind,
        check=True,
    ).stdout.strip()
    assert built.startswith("sha256:")
    listed = json.loads(
        ctk("images", "--json", "-l", f"ctk.test.run={run}", engine=engine.kind, check=True).stdout
    )
    assert [i["id"] for i in listed] == [built]
    table = ctk("image", "ls", "-l", f"ctk.test.run={run}", engine=engine.kind, check=True).stdout
    assert "REPOSITORY" in table and built.removeprefix("sha256:")[:12] in table
    history = ctk("image", "history", tag, engine=engine.kind, check=True).stdout
    assert f"echo {run} > /run.txt" in history
    assert ctk("history", tag, engine=engine.kind, check=True).stdout == history
    (inspected,) = json.loads(ctk("image", "inspect", tag, engine=engine.kind, check=True).stdout)
    assert inspected["id"] == built and len(inspected["layers"]) >= 2
    missing = ctk("image", "inspect", "ctk-test/never-built:1", engine=engine.kind)
    assert missing.returncode == 4 and "no such image" in missing.stderr
    other = made_images.name("cli-tagged")
    ctk("tag", tag, other, engine=engine.kind, check=True)
    assert _images(engine).inspect_image(other).id == built
    ctk("image", "rm", other, engine=engine.kind, check=True)
    assert engine.has_image(built)  # untagged only: the first name still holds it
    removed = ctk("rmi", tag, engine=engine.kind, check=True).stdout
    assert "Untagged:" in removed or "Deleted:" in removed
    assert not engine.has_image(built)
    again = ctk("image", "rm", tag, engine=engine.kind)
    assert again.returncode == 4


def test_volume_commands_through_the_cli(engine: Backend) -> None:
    assert isinstance(engine, Volumes)
    name = f"ctk-test-vol-{uuid.uuid4().hex[:10]}"
    try:
        assert (
            ctk(
                "volume", "create", "-l", "ctk.test=1", name, engine=engine.kind, check=True
            ).stdout.strip()
            == name
        )
        (shown,) = json.loads(ctk("volume", "inspect", name, engine=engine.kind, check=True).stdout)
        assert shown["labels"] == {"ctk.test": "1"} and shown["engine"] == engine.kind
        assert name in ctk("volume", "ls", "-q", engine=engine.kind, check=True).stdout.split()
        assert ctk("volume", "rm", name, engine=engine.kind, check=True).stdout.strip() == name
        gone = ctk("volume", "inspect", name, engine=engine.kind)
        assert gone.returncode == 4 and "no such volume" in gone.stderr
    finally:
        with contextlib.suppress(VolumeNotFound):
            engine.remove_volume(name, force=True)


def test_events_of_a_container_filtered_and_as_json(
    engine: Backend, containers: Containers
) -> None:
    assert isinstance(engine, Events)
    since = int(time.time()) - 1
    name = containers.name()
    containers.run(BUSYBOX_IMAGE, name=name, command=("true",))
    wait_for(lambda: not engine.inspect(name).running, what="the container to exit")
    engine.remove(name, force=True)
    until = int(time.time()) + 1
    # A window that has ended: Podman 4.3 answers a window still open with what it read so
    # far, which may stop short of the last events.
    wait_for(lambda: time.time() > until + 0.5, what="the event window to close")
    seen = list(engine.events(since=since, until=until, filters={"container": [name]}))
    actions = [e.action for e in seen]
    assert {"create", "start"} <= set(actions) and actions.index("create") < actions.index("start")
    assert {e.name for e in seen} == {name} and {e.type for e in seen} == {"container"}
    out = ctk(
        "events",
        "--json",
        "--since",
        str(since),
        "--until",
        str(until),
        "-f",
        f"container={name}",
        "-f",
        "event=start",
        engine=engine.kind,
        check=True,
    ).stdout.splitlines()
    assert [json.loads(line)["action"] for line in out] == ["start"], (out, since, until, seen)
