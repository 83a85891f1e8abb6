from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from toolkit import models
from toolkit.models import ContainerInfo, PortMapping


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80", PortMapping(80)),
        ("8080:80", PortMapping(80, 8080)),
        ("127.0.0.1:8080:80", PortMapping(80, 8080, "127.0.0.1")),
        ("127.0.0.1::80", PortMapping(80, 0, "127.0.0.1")),
        ("53:53/udp", PortMapping(53, 53, protocol="udp")),
    ],
)
def test_port_parse(text: str, expected: PortMapping) -> None:
    assert PortMapping.parse(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "80:x", "70000", "8080:80/icmp", "1:2:3:4"])
def test_port_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        PortMapping.parse(text)


def test_to_dict_is_json() -> None:
    info = ContainerInfo(
        id="a" * 64,
        name="web1",
        image="img",
        image_id="sha256:x",
        status="running",
        running=True,
        ports=(PortMapping(80, 8080),),
        labels={"k": "v"},
    )
    data = json.loads(json.dumps(info.to_dict()))
    assert data["ports"] == [
        {"container_port": 80, "host_port": 8080, "host_ip": "", "protocol": "tcp"}
    ]
    assert data["labels"] == {"k": "v"}
    assert info.short_id == "a" * 12


# -- immutability and hashing -------------------------------------------------------------
# One example of every model, built the way callers build them: plain dicts and lists.
_INFO = dict(id="a" * 64, name="web1", image="img", image_id="sha256:x", status="running")
_MANIFEST = dict(
    format_version=1,
    engine="docker",
    engine_version="26",
    criu_version="4.1.1",
    container_id="c",
    container_name="web1",
    image="img",
    image_id="sha256:x",
    checkpoint="cp1",
    created="2026-01-01T00:00:00Z",
)
EXAMPLES: dict[type, Callable[[], Any]] = {
    models.PortMapping: lambda: models.PortMapping(80, 8080),
    models.Mount: lambda: models.Mount("/data", "vol", name="vol"),
    models.Ulimit: lambda: models.Ulimit("nofile", 1024, 2048),
    models.NetworkAttachment: lambda: models.NetworkAttachment("bridge", "10.0.0.2"),
    models.ContainerSpec: lambda: models.ContainerSpec(
        image="x",
        command=["sh", "-c", "true"],
        env={"A": "1"},
        labels={"k": "v"},
        ports=[models.PortMapping(80)],
        volumes=[models.Mount("/data")],
        ulimits=[models.Ulimit("nofile", 1, 2)],
    ),
    models.ContainerInfo: lambda: models.ContainerInfo(
        **_INFO,
        running=True,
        command=["sh"],
        labels={"k": "v"},
        env={"A": "1"},
        networks=[models.NetworkAttachment("bridge")],
        checkpoints=["cp1"],
    ),
    models.ExecResult: lambda: models.ExecResult(0, "out"),
    models.ProcessList: lambda: models.ProcessList("web1", ["PID"], [["1"], ["2"]]),
    models.ContainerStats: lambda: models.ContainerStats("id", "web1", 1.5),
    models.CheckpointOptions: lambda: models.CheckpointOptions(name="cp1"),
    models.RestoreOptions: lambda: models.RestoreOptions(checkpoint="cp1"),
    models.Checkpoint: lambda: models.Checkpoint("cp1", "web1", "docker"),
    models.EngineInfo: lambda: models.EngineInfo("docker", "unix:///x", "26"),
    models.ExitStatus: lambda: models.ExitStatus(False, "exited", 0),
    models.NetworkSpec: lambda: models.NetworkSpec("net", labels={"k": "v"}),
    models.NetworkEndpoint: lambda: models.NetworkEndpoint("id", "web1", "10.0.0.2/16"),
    models.NetworkInfo: lambda: models.NetworkInfo(
        "id", "net", "bridge", labels={"k": "v"}, containers=[models.NetworkEndpoint("i", "n")]
    ),
    models.ExportOptions: lambda: models.ExportOptions(),
    models.ImportOptions: lambda: models.ImportOptions(ports=[models.PortMapping(80)]),
    models.ArchiveMember: lambda: models.ArchiveMember("rootfs.tar", 1, "00"),
    models.ArchiveManifest: lambda: models.ArchiveManifest(
        **_MANIFEST,
        spec={"image": "img", "command": ["sh"], "env": {"A": "1"}},
        members=[models.ArchiveMember("a", 1, "00")],
        engine_data={"deleted": ["/etc/x"]},
    ),
    models.ArchiveInfo: lambda: models.ArchiveInfo(
        "/a.tar",
        1,
        "zstd",
        models.ArchiveManifest(**_MANIFEST),
        timings={"checkpoint": 0.5},
        criu_stats={"frozen_time": 3},
    ),
    models.ImageProcess: lambda: models.ImageProcess(1, 0, "sh", 1, 2, 8192, ["/bin/sh"]),
    models.ImageSocket: lambda: models.ImageSocket("inet", "stream", "LISTEN", "0.0.0.0:80"),
    models.RuntimeConfig: lambda: models.RuntimeConfig(
        "runc",
        mounts=[models.Mount("/data", "/srv/data", "bind")],
        annotations={"org.criu.config": "/x.conf"},
    ),
    models.CheckpointImages: lambda: models.CheckpointImages(
        [models.ImageProcess(1, 0, "sh", 1, 2, 8192)],
        namespaces={"net": 1},
        stats={"pages": 2},
        external_mounts=["/etc/hosts"],
    ),
    models.MigrationReport: lambda: models.MigrationReport(
        "id",
        "web1",
        "web1",
        "a",
        "b",
        "live",
        "why",
        "done",
        timings={"dump": 0.1},
        rolled_back=["restore"],
        notes=["n"],
        criu_stats={"dump": {"frozen_time": 3}},
        result=models.ContainerInfo(**_INFO, running=True, labels={"k": "v"}),
    ),
    models.DrainReport: lambda: models.DrainReport("a", "b", errors={"web2": "boom"}),
    models.ImageLayer: lambda: models.ImageLayer("sha256:ab", "RUN x", 3, tags=["a:1"]),
    models.ImageInfo: lambda: models.ImageInfo(
        "sha256:ab", tags=["a:1"], labels={"k": "v"}, layers=["sha256:1", "sha256:2"]
    ),
    models.BuildResult: lambda: models.BuildResult("sha256:ab", tags=["a:1"], log=["Step 1"]),
    models.PushResult: lambda: models.PushResult("127.0.0.1:5000/a:1", "sha256:ab", "sha256:cd"),
    models.FileChange: lambda: models.FileChange("A", "/new"),
    models.RegionDiff: lambda: models.RegionDiff(1, "heap", 4096, 8192, changed=1),
    models.CheckpointDiff: lambda: models.CheckpointDiff(
        "cp-a", "cp-b", 4096, True, regions=[models.RegionDiff(1, "heap", 4096, 8192)]
    ),
    models.VolumeInfo: lambda: models.VolumeInfo("v", labels={"ctk.test": "1"}),
    models.EngineEvent: lambda: models.EngineEvent(
        "container", "start", "abc", "1970-01-01T00:00:00Z", attributes={"name": "web1"}
    ),
}


def test_every_model_has_an_example() -> None:
    every = {
        cls
        for cls in vars(models).values()
        if isinstance(cls, type)
        and dataclasses.is_dataclass(cls)
        and cls.__module__ == models.__name__
    }
    assert every == set(EXAMPLES)


@pytest.mark.parametrize("cls", list(EXAMPLES), ids=lambda cls: cls.__name__)
def test_every_model_is_hashable_and_equal_by_value(cls: type) -> None:
    first, second = EXAMPLES[cls](), EXAMPLES[cls]()
    assert hash(first) == hash(second) and first == second
    assert len({first, second}) == 1
    # copies and JSON round trips keep working on the frozen fields
    assert copy.deepcopy(first) == first and pickle.loads(pickle.dumps(first)) == first
    assert json.loads(json.dumps(first.to_dict())) == first.to_dict()


def _mutable_parts(value: Any) -> list[Any]:
    """Every mapping and sequence reachable from a model's fields."""
    found: list[Any] = []
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            found += _mutable_parts(getattr(value, f.name))
    elif isinstance(value, Mapping):
        found.append(value)
        for item in value.values():
            found += _mutable_parts(item)
    elif isinstance(value, list | tuple):
        found.append(value)
        for item in value:
            found += _mutable_parts(item)
    return found


@pytest.mark.parametrize("cls", list(EXAMPLES), ids=lambda cls: cls.__name__)
def test_no_model_can_be_changed(cls: type) -> None:
    value = EXAMPLES[cls]()
    first = dataclasses.fields(value)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, first, None)
    for part in _mutable_parts(value):
        # dicts and lists given to the constructor were frozen, nested ones too
        assert isinstance(part, models.FrozenDict | models.FrozenList | tuple), (cls.__name__, part)
        if isinstance(part, models.FrozenList):
            for change in (
                lambda s: s.append("x"),
                lambda s: s.extend(["x"]),
                lambda s: s.__setitem__(0, "x"),
                lambda s: s.pop(),
                lambda s: s.sort(),
                lambda s: s.clear(),
            ):
                with pytest.raises(TypeError, match="immutable"):
                    change(part)
        if isinstance(part, models.FrozenDict):
            for change in (
                lambda m: m.__setitem__("new", "1"),
                lambda m: m.update(new="1"),
                lambda m: m.pop("new", None),
                lambda m: m.setdefault("new", "1"),
                lambda m: m.popitem(),
                lambda m: m.clear(),
            ):
                with pytest.raises(TypeError, match="immutable"):
                    change(part)
    hash(value)


def test_json_data_in_mappings_stays_lists_and_dicts() -> None:
    # readers of engine_data and a manifest's spec check isinstance(x, list) / dict, as for
    # any JSON: the frozen values still are lists and dicts (that cannot change)
    manifest = EXAMPLES[models.ArchiveManifest]()
    deleted = manifest.engine_data["deleted"]
    assert isinstance(deleted, list) and deleted == ["/etc/x"]
    assert isinstance(manifest.spec["env"], dict) and isinstance(manifest.spec["command"], list)
    with pytest.raises(TypeError):
        deleted += ["/etc/y"]
    assert json.dumps(manifest.engine_data) == '{"deleted": ["/etc/x"]}'
    # typed sequence fields are tuples, also when a list came from such JSON
    spec = models.ContainerSpec(**{k: manifest.spec[k] for k in ("image", "command", "env")})
    assert spec.command == ("sh",) and type(spec.command) is tuple


def test_a_frozen_spec_env_cannot_change() -> None:
    # the example: a dict given to the constructor can no longer change the spec
    env = {"A": "1"}
    spec = models.ContainerSpec(image="x", env=env)
    env["A"] = "2"
    assert spec.env == {"A": "1"}
    with pytest.raises(TypeError):
        spec.env["A"] = "2"  # type: ignore[index]
    with pytest.raises(TypeError):
        del spec.env["A"]  # type: ignore[attr-defined]
    mapping = spec.env
    with pytest.raises(TypeError):
        mapping |= {"B": "2"}  # type: ignore[operator]
    assert hash(models.ContainerSpec(image="x")) == hash(models.ContainerSpec(image="x"))
    # what callers do with the fields still works: unpacking, replace, plain-dict equality
    assert {**spec.env, "B": "2"} == {"A": "1", "B": "2"}
    assert dataclasses.replace(spec, env={"C": "3"}).env == {"C": "3"}
