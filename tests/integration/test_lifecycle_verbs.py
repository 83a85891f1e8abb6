"""Every lifecycle verb end to end on both engines: library and CLI, refused transitions too."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import (
    BUSYBOX_IMAGE,
    COUNTER_IMAGE,
    ENGINES,
    Containers,
    counts,
    ctk,
    holds,
    last_count,
    unavailable,
    wait_count_at_least,
    wait_for,
)
from toolkit.backends.base import Backend
from toolkit.config import DEFAULT_URLS, EngineRef, connect
from toolkit.errors import Conflict, ContainerNotFound, ExitCode
from toolkit.models import (
    CheckpointOptions,
    ContainerInfo,
    ContainerSpec,
    ContainerStats,
    Mount,
    PortMapping,
    ProcessList,
    Ulimit,
)

pytestmark = pytest.mark.integration

# Podman raises RLIMIT_NPROC to its own default once any ulimit is given; that is not
# permitted here (see ENVIRONMENT.md), so every spec with ulimits sets nproc below the limit.
# Podman raises the soft nofile limit to the hard one, so soft and hard are equal here.
ULIMITS = ("nofile=1000:1000", "nproc=4096:4096")


def _json(*args: str, engine: Backend) -> object:
    # --json right after the verb: after an image or exec's NAME it would be the command's.
    result = ctk(args[0], "--json", *args[1:], engine=engine.kind)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _keys(model: type) -> set[str]:
    return {f.name for f in dataclasses.fields(model)}


def _http_count(port: int, *, timeout: float = 3) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=timeout) as response:
        return int(response.read().decode().strip())


def _published_port(engine: Backend, name: str) -> int:
    return next(p.host_port for p in engine.inspect(name).ports if p.container_port == 8080)


def test_create_start_restart_stop(engine: Backend, containers: Containers) -> None:
    name = containers.name("create")
    result = ctk("create", "--name", name, "-l", "ctk.test=1", COUNTER_IMAGE, engine=engine.kind)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) == 64
    info = engine.inspect(name)
    assert info.status == "created" and not info.running and info.started_at == ""
    assert name in ctk("ps", "-a", engine=engine.kind, check=True).stdout
    assert name not in ctk("ps", engine=engine.kind, check=True).stdout

    assert ctk("start", name, engine=engine.kind, check=True).stdout.strip() == name
    info = engine.inspect(name)
    assert info.running and info.status == "running" and info.started_at
    wait_count_at_least(engine, name, 2)
    # docker start of a running container succeeds and changes nothing: so does ctk's.
    assert ctk("start", name, engine=engine.kind).returncode == 0
    engine.start(name)
    assert engine.inspect(name).running

    ctk("restart", "-t", "1", name, engine=engine.kind, check=True)
    assert engine.inspect(name).running

    # The counter lives in memory: a restart begins it again at 1.
    def restarted() -> bool:
        values = counts(engine, name)
        return any(b < a for a, b in itertools.pairwise(values))

    wait_for(restarted, what="the counter to start again after restart")
    engine.stop(name, timeout=1)
    info = engine.inspect(name)
    assert info.status == "exited" and info.finished_at and not info.running


def test_pause_keeps_memory_state(engine: Backend, containers: Containers) -> None:
    info = containers.run(COUNTER_IMAGE, ports=(PortMapping.parse("127.0.0.1::8080"),))
    port = _published_port(engine, info.name)
    wait_count_at_least(engine, info.name, 3)
    wait_for(lambda: _http_count(port) >= 3, what="the HTTP endpoint")

    assert ctk("pause", info.name, engine=engine.kind, check=True).stdout.strip() == info.name
    paused = engine.inspect(info.name)
    assert paused.paused and paused.status == "paused" and paused.running
    frozen = last_count(engine, info.name)
    # While frozen, the endpoint does not answer and the counter does not move.
    with pytest.raises((urllib.error.URLError, TimeoutError, ConnectionError, OSError)):
        _http_count(port, timeout=2)
    holds(lambda: last_count(engine, info.name) == frozen, seconds=2, what="count frozen")

    assert ctk("unpause", info.name, engine=engine.kind, check=True).stdout.strip() == info.name
    assert not engine.inspect(info.name).paused
    wait_count_at_least(engine, info.name, frozen + 2)
    values = counts(engine, info.name)
    # The same process carried on: no restart from 1, no gap.
    assert values == list(range(1, len(values) + 1))
    assert _http_count(port) >= frozen + 1


def test_refused_transitions(engine: Backend, containers: Containers) -> None:
    info = containers.run(COUNTER_IMAGE)
    name = info.name
    with pytest.raises(Conflict):
        engine.unpause(name)
    assert ctk("unpause", name, engine=engine.kind).returncode == ExitCode.CONFLICT
    engine.pause(name)
    with pytest.raises(Conflict):
        engine.pause(name)
    start = ctk("start", name, engine=engine.kind)
    assert start.returncode == ExitCode.CONFLICT and "Hint:" not in start.stdout
    rm = ctk("rm", name, engine=engine.kind)
    assert rm.returncode == ExitCode.CONFLICT and "Traceback" not in rm.stderr
    engine.unpause(name)
    engine.stop(name, timeout=1)
    for args in (("pause", name), ("unpause", name), ("kill", name), ("exec", name, "true")):
        result = ctk(*args, engine=engine.kind)
        assert result.returncode == ExitCode.CONFLICT, (args, result.stderr)
        assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
    for call in (engine.top, engine.stats):
        with pytest.raises(Conflict):
            call(name)
    with pytest.raises(ContainerNotFound):
        engine.pause("ctk-test-no-such-container")
    assert ctk("kill", "ctk-test-nope", engine=engine.kind).returncode == ExitCode.NOT_FOUND


def test_kill_with_signal(engine: Backend, containers: Containers) -> None:
    script = 'trap "echo got-term; exit 42" TERM; echo ready; while true; do sleep 0.2; done'
    info = containers.run(BUSYBOX_IMAGE, command=("sh", "-c", script))
    wait_for(lambda: "ready" in engine.logs(info.name), what="the trap to be set")
    assert ctk("kill", "-s", "TERM", info.name, engine=engine.kind, check=True).returncode == 0
    assert engine.wait(info.name) == 42
    assert "got-term" in engine.logs(info.name)
    assert engine.inspect(info.name).exit_code == 42

    other = containers.run(COUNTER_IMAGE)
    engine.kill(other.name)
    assert engine.wait(other.name) == 137  # 128 + SIGKILL


def test_exec_passes_exit_code_and_output(engine: Backend, containers: Containers) -> None:
    info = containers.run(COUNTER_IMAGE)
    result = ctk(
        "exec", info.name, "sh", "-c", "echo out; echo err >&2; exit 3", engine=engine.kind
    )
    assert result.returncode == 3
    assert result.stdout == "out\n" and "err" in result.stderr
    result = ctk(
        "exec", "-e", "X=1", "-w", "/tmp", info.name, "sh", "-c", "echo $X $(pwd)",
        engine=engine.kind,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "1 /tmp"
    lib = engine.exec(info.name, ["sh", "-c", "id -u; exit 9"], user="65534")
    assert lib.exit_code == 9 and lib.stdout.strip() == "65534"
    data = json.loads(ctk("exec", "--json", info.name, "true", engine=engine.kind).stdout)
    assert data == {"exit_code": 0, "stdout": "", "stderr": ""}


def test_logs_tail_since_follow(engine: Backend, containers: Containers) -> None:
    info = containers.run(COUNTER_IMAGE)
    wait_count_at_least(engine, info.name, 3)
    tail = ctk("logs", "--tail", "2", info.name, engine=engine.kind, check=True).stdout
    assert len(tail.strip().splitlines()) == 2
    assert ctk("logs", "--since", "0", info.name, engine=engine.kind, check=True).stdout.startswith(
        "count=1\n"
    )
    future = str(int(time.time()) + 3600)
    assert ctk("logs", "--since", future, info.name, engine=engine.kind, check=True).stdout == ""

    # follow ends by itself when the container stops
    script = "for i in 1 2 3; do echo line$i; sleep 1; done"
    short = containers.run(BUSYBOX_IMAGE, command=("sh", "-c", script))
    followed = ctk("logs", "-f", short.name, engine=engine.kind, timeout=60)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.split() == ["line1", "line2", "line3"]
    followed = ctk("logs", "-f", "--tail", "1", short.name, engine=engine.kind, timeout=60)
    assert followed.stdout.split() == ["line3"]


def test_ps_filter_and_quiet(engine: Backend, containers: Containers) -> None:
    group = uuid.uuid4().hex[:8]
    one, two = (
        engine.run(
            ContainerSpec(
                image=COUNTER_IMAGE,
                name=containers.name("ps"),
                labels={"ctk.test": "1", "ctk.group": value},
            )
        )
        for value in (group, f"other-{group}")
    )
    quiet = ctk(
        "ps", "-q", "--filter", f"label=ctk.group={group}", engine=engine.kind, check=True
    ).stdout.split()
    assert quiet == [one.short_id]
    rows = _json("ps", "--filter", "label=ctk.group", engine=engine)
    assert isinstance(rows, list)
    names = {r["name"] for r in rows}
    assert {one.name, two.name} <= names
    assert [c.name for c in engine.containers(filters={"name": [two.name]})] == [two.name]
    engine.stop(two.name, timeout=1)
    assert [
        c.name for c in engine.containers(filters={"label": [f"ctk.group=other-{group}"]})
    ] == []
    stopped = engine.containers(all=True, filters={"label": [f"ctk.group=other-{group}"]})
    assert [c.name for c in stopped] == [two.name]
    bad = ctk("ps", "--filter", "colour=red", engine=engine.kind)
    assert bad.returncode == ExitCode.USAGE


def _volume_exists(kind: str, volume: str) -> bool:
    binary = shutil.which(kind)
    if binary is None:
        unavailable(f"the {kind} command is needed to look at volumes")
    probe = subprocess.run([binary, "volume", "inspect", volume], capture_output=True, check=False)
    return probe.returncode == 0


def _remove_volume(kind: str, volume: str) -> None:
    subprocess.run([kind, "volume", "rm", "-f", volume], capture_output=True, check=False)


def test_rm_volumes(engine: Backend, containers: Containers) -> None:
    kept = containers.run(COUNTER_IMAGE, volumes=(Mount.parse("/data"),))
    gone = containers.run(COUNTER_IMAGE, volumes=(Mount.parse("/data"),))
    kept_volume = kept.mounts[0].name
    gone_volume = gone.mounts[0].name
    assert kept.mounts[0].type == "volume" and kept.mounts[0].target == "/data"
    try:
        assert ctk("rm", "-f", kept.name, engine=engine.kind).returncode == 0
        assert _volume_exists(engine.kind, kept_volume)
        assert ctk("rm", "-f", "-v", gone.name, engine=engine.kind).returncode == 0
        assert not _volume_exists(engine.kind, gone_volume)
    finally:
        _remove_volume(engine.kind, kept_volume)
        _remove_volume(engine.kind, gone_volume)


def test_run_flags(
    engine: Backend, containers: Containers, tmp_path_factory: pytest.TempPathFactory
) -> None:
    host_dir = tmp_path_factory.mktemp("bind")
    (host_dir / "hello.txt").write_text("from the host\n")
    name = containers.name("flags")
    args = ["run", "-d", "--name", name, "-l", "ctk.test=1", "--restart", "on-failure:2"]
    args += ["--memory", "64m", "--cpus", "0.5", "-v", f"{host_dir}:/host:ro"]
    args += ["-e", "A=b", "-w", "/tmp", "--hostname", "flagged"]
    for limit in ULIMITS:
        args += ["--ulimit", limit]
    result = ctk(*args, COUNTER_IMAGE, engine=engine.kind)
    assert result.returncode == 0, result.stderr
    info = engine.inspect(name)
    assert info.restart_policy == "on-failure:2"
    assert info.memory == 64 * 1024 * 1024 and info.cpus == 0.5
    assert info.env["A"] == "b" and info.working_dir == "/tmp" and info.hostname == "flagged"
    bind = next(m for m in info.mounts if m.target == "/host")
    assert bind.type == "bind" and bind.read_only and bind.source == str(host_dir)
    assert engine.exec(name, ["cat", "/host/hello.txt"]).stdout == "from the host\n"
    assert engine.exec(name, ["sh", "-c", "ulimit -n"]).stdout.strip() == "1000"
    assert engine.exec(name, ["touch", "/host/x"]).exit_code != 0  # read-only


def test_run_rm(engine: Backend, containers: Containers) -> None:
    name = containers.name("rm")
    result = ctk("run", "--rm", "--name", name, BUSYBOX_IMAGE, "sh", "-c", "echo bye; exit 4",
                 engine=engine.kind)  # fmt: skip
    assert result.returncode == 4 and "bye" in result.stdout
    assert name not in {c.name for c in engine.containers(all=True)}

    detached = containers.name("rmd")
    ctk("run", "-d", "--rm", "--name", detached, BUSYBOX_IMAGE, "sh", "-c", "sleep 1",
        engine=engine.kind, check=True)  # fmt: skip
    wait_for(
        lambda: detached not in {c.name for c in engine.containers(all=True)},
        what="the engine to remove the container",
    )


def test_wait_top_stats(engine: Backend, containers: Containers) -> None:
    short = containers.run(BUSYBOX_IMAGE, command=("sh", "-c", "sleep 1; exit 5"))
    assert ctk("wait", short.name, engine=engine.kind, check=True).stdout.strip() == "5"
    info = containers.run(COUNTER_IMAGE, memory=64 * 1024 * 1024)
    top = ctk("top", info.name, engine=engine.kind, check=True).stdout
    assert "counter.sh" in top and "httpd" in top
    processes = engine.top(info.name)
    assert processes.titles and any("counter.sh" in " ".join(p) for p in processes.processes)
    table = ctk("stats", "--no-stream", info.name, engine=engine.kind, check=True).stdout
    assert info.name in table and "%" in table and "MiB" in table
    stats = engine.stats(info.name)
    assert stats.memory_usage > 0 and stats.memory_limit == 64 * 1024 * 1024
    assert stats.cpu_percent >= 0 and 0 < stats.memory_percent < 100 and stats.pids >= 2


def test_several_names_at_once(engine: Backend, containers: Containers) -> None:
    a = containers.run(COUNTER_IMAGE)
    b = containers.run(COUNTER_IMAGE)
    names = (a.name, b.name)
    for verb, check in (
        ("pause", lambda i: i.paused),
        ("unpause", lambda i: i.running and not i.paused),
        ("stop", lambda i: not i.running),
        ("start", lambda i: i.running),
        ("restart", lambda i: i.running),
        ("kill", lambda i: not i.running),
    ):
        result = ctk(verb, *names, engine=engine.kind)
        assert result.returncode == 0, (verb, result.stderr)
        assert result.stdout.split() == list(names)
        assert all(check(engine.inspect(n)) for n in names), verb
    # one failure among several: the others are still done, and the exit code says so
    result = ctk("rm", a.name, "ctk-test-nope", b.name, engine=engine.kind)
    assert result.returncode == ExitCode.NOT_FOUND
    assert result.stdout.split() == [a.name, b.name]


def test_json_for_every_command(engine: Backend, containers: Containers) -> None:
    name = containers.name("json")
    created = _json("create", "--name", name, "-l", "ctk.test=1", COUNTER_IMAGE, engine=engine)
    assert isinstance(created, dict) and created["name"] == name and created["status"] == "created"
    assert set(created) == _keys(ContainerInfo)
    assert _json("start", name, engine=engine) == {"started": [name], "errors": []}
    wait_count_at_least(engine, name, 1)
    assert _json("pause", name, engine=engine) == {"paused": [name], "errors": []}
    assert _json("unpause", name, engine=engine) == {"unpaused": [name], "errors": []}
    assert _json("restart", "-t", "1", name, engine=engine) == {"restarted": [name], "errors": []}
    inspected = _json("inspect", name, engine=engine)
    assert isinstance(inspected, list) and inspected[0]["name"] == name
    # the model's fields, plus the layers `ctk inspect` adds (the image's stack, the RW layer)
    assert inspected[0].keys() == engine.inspect(name).to_dict().keys() | {
        "image_layers",
        "rw_layer_size",
    }
    rows = _json("ps", "--filter", f"name={name}", engine=engine)
    assert isinstance(rows, list) and rows[0]["name"] == name
    assert set(rows[0]) == _keys(ContainerInfo)
    top = _json("top", name, engine=engine)
    assert isinstance(top, dict) and top["titles"] and top["processes"]
    assert set(top) == _keys(ProcessList)
    stats = _json("stats", "--no-stream", name, engine=engine)
    assert isinstance(stats, list) and stats[0]["name"] == name and stats[0]["memory_usage"] > 0
    assert set(stats[0]) == _keys(ContainerStats)
    wait_count_at_least(engine, name, 1)
    logs = _json("logs", name, engine=engine)
    assert isinstance(logs, dict) and logs["lines"][0] == "count=1"
    executed = _json("exec", name, "echo", "hi", engine=engine)
    assert executed == {"exit_code": 0, "stdout": "hi\n", "stderr": ""}
    assert _json("kill", "-s", "KILL", name, engine=engine) == {"killed": [name], "errors": []}
    assert _json("wait", name, engine=engine) == [{"name": name, "exit_code": 137}]
    assert _json("stop", name, engine=engine) == {"stopped": [name], "errors": []}
    assert _json("rm", "-v", name, engine=engine) == {"removed": [name], "errors": []}


@pytest.fixture
def both_engines() -> Iterator[dict[str, Containers]]:
    made: dict[str, Containers] = {}
    for kind in ENGINES:
        backend = connect(EngineRef(kind, DEFAULT_URLS[kind]))
        if not backend.ping():
            unavailable(f"{kind} does not answer")
        made[kind] = Containers(backend, [])
    yield made
    for containers in made.values():
        containers.cleanup()
        containers.backend.close()


def test_inspect_same_keys_and_values_on_both_engines(
    both_engines: dict[str, Containers],
) -> None:
    infos = {}
    for kind, containers in both_engines.items():
        spec = ContainerSpec(
            image=COUNTER_IMAGE,
            name=containers.name("same"),
            env={"GREETING": "hi"},
            ports=(PortMapping.parse("127.0.0.1::8080"),),
            labels={"ctk.test": "1", "role": "web"},
            hostname="same-host",
            working_dir="/www",
            user="0",
            volumes=(Mount.parse("/data"),),
            restart="unless-stopped",
            memory=32 * 1024 * 1024,
            cpus=1.5,
            ulimits=tuple(Ulimit.parse(u) for u in ULIMITS),
        )
        infos[kind] = containers.backend.run(spec).to_dict()
    docker, podman = infos["docker"], infos["podman"]
    assert docker.keys() == podman.keys()
    for key in ("status", "running", "paused", "command", "image_id", "labels", "hostname",
                "working_dir", "user", "restart_policy", "memory", "cpus", "exit_code",
                "auto_remove", "finished_at"):  # fmt: skip
        assert docker[key] == podman[key], key
    for info in (docker, podman):
        assert info["env"]["GREETING"] == "hi"
        assert [(p["container_port"], p["host_ip"]) for p in info["ports"]] == [(8080, "127.0.0.1")]
        assert [(m["type"], m["target"]) for m in info["mounts"]] == [("volume", "/data")]
        assert len(info["networks"]) == 1 and info["networks"][0]["ip_address"]
        assert info["started_at"].endswith("Z") and info["created"]


def test_shell_completion_of_container_names(engine: Backend, containers: Containers) -> None:
    info = containers.run(COUNTER_IMAGE)
    words = f"ctk --engine {engine.kind} pause {info.name[:-3]}"
    env = dict(os.environ, _CTK_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD="4")
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit"], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert proc.stdout.strip().splitlines() == [f"plain,{info.name}"]


def test_verbs_on_a_paused_container(engine: Backend, containers: Containers) -> None:
    info = containers.run(COUNTER_IMAGE)
    name = info.name
    # docker stops, restarts and kills a paused container; ctk does so on Podman too
    for verb, args, running in (
        ("stop", ("-t", "1"), False),
        ("restart", ("-t", "1"), True),
        ("kill", (), False),
    ):
        if not engine.inspect(name).running:
            engine.start(name)
        engine.pause(name)
        result = ctk(verb, *args, name, engine=engine.kind)
        assert result.returncode == 0, (verb, result.stderr)
        after = engine.inspect(name)
        assert after.running is running and not after.paused, verb
    engine.start(name)
    engine.pause(name)
    assert engine.stats(name).memory_usage > 0
    with pytest.raises(Conflict):
        engine.exec(name, ["true"])
    assert ctk("rm", "-f", name, engine=engine.kind).returncode == 0


@pytest.mark.criu
def test_inspect_lists_ctk_checkpoints(engine: Backend, containers: Containers, criu: None) -> None:
    info = containers.run(COUNTER_IMAGE)
    assert info.checkpoints == ()
    wait_count_at_least(engine, info.name, 1)
    made = engine.checkpoint(info.name, CheckpointOptions(leave_running=True))
    assert engine.inspect(info.name).checkpoints[-1] == made.name
    data = json.loads(ctk("inspect", info.name, engine=engine.kind, check=True).stdout)[0]
    assert data["checkpoints"][-1] == made.name
