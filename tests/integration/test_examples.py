"""Each example in examples/ run as a newcomer would, on each engine that supports it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Testbed
from toolkit.backends.base import Backend

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, engine: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # This checkout's toolkit, whatever venv runs the tests; CTK_TEST labels what it makes.
    env["CTK"] = f"{sys.executable} -m toolkit"
    env["CTK_TEST"] = "1"
    env["PATH"] = f"/usr/local/sbin:{env.get('PATH', '/usr/bin:/bin')}"
    proc = subprocess.run(
        [str(EXAMPLES / name), "--engine", engine, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc


SEED_EXAMPLES = (
    "bridge", "user-bridge", "host", "overlay", "port-mapping", "inspect", "lifecycle",
    "portability", "layers",
)  # fmt: skip


def test_every_example_has_a_header_and_a_test() -> None:
    # Directories are example suites with their own test (examples/pytest: test_examples_pytest).
    names = sorted(p.name for p in EXAMPLES.iterdir() if p.is_file() and not p.name.startswith("_"))
    assert set(SEED_EXAMPLES) <= set(names)
    for name in SEED_EXAMPLES:
        text = (EXAMPLES / name).read_text()
        assert os.access(EXAMPLES / name, os.X_OK), name
        assert text.splitlines()[1].startswith(f"# {name}: "), name
        assert "Seed concept:" in text, name
    # Every other example (migration, cross-runtime) is run by some integration test.
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    for path in [*EXAMPLES.iterdir(), *(EXAMPLES / "cross-runtime").iterdir()]:
        if path.is_file() and not path.name.startswith("_") and path.name not in SEED_EXAMPLES:
            assert os.access(path, os.X_OK), path.name
            assert path.name in tests, f"examples/{path.name} is run by no test"


def test_bridge(engine: Backend) -> None:
    out = run_example("bridge", engine.kind).stdout
    assert "Subnet:" in out and "the server answered: count=" in out
    assert "OK bridge: reached" in out


def test_user_bridge(engine: Backend) -> None:
    out = run_example("user-bridge", engine.kind).stdout
    assert "resolved ctk-ex-web-" in out and "isolated: cannot resolve" in out
    assert "OK user-bridge" in out


def test_host(engine: Backend) -> None:
    out = run_example("host", engine.kind).stdout
    assert "the server answered: count=" in out and "OK host:" in out


def test_port_mapping(engine: Backend) -> None:
    out = run_example("port-mapping", engine.kind).stdout
    assert "8080/tcp -> 127.0.0.1:" in out and "9999/udp -> " in out
    assert out.count("-> count=") == 3 and "OK port-mapping" in out


def test_inspect(engine: Backend) -> None:
    out = run_example("inspect", engine.kind).stdout
    assert "Gateway:    10.123." in out and "Internal:   true" in out
    assert '"subnet": "10.123.' in out and "OK inspect" in out


def test_layers(engine: Backend) -> None:
    out = run_example("layers", engine.kind).stdout
    assert "shared by a and b: 1" in out and "A /hello.txt" in out and "D /bin/arch" in out
    assert "C /a.txt" in out and "a: 2 layer(s); committed: 3" in out and "OK layers" in out


def test_lifecycle(engine: Backend, criu: None) -> None:
    out = run_example("lifecycle", engine.kind).stdout
    for state in ("state: running", "state: exited", "state: removed"):
        assert state in out
    assert "OK lifecycle" in out


@pytest.mark.swarm
def test_overlay(engine: Backend) -> None:
    out = run_example("overlay", engine.kind).stdout
    if engine.kind == "podman":
        assert "unsupported (exit 6)" in out
    else:
        assert "Attachable: true" in out and "OK overlay:" in out


@pytest.mark.testbed
def test_overlay_two_hosts(testbed: Testbed) -> None:
    # A two-node swarm on the testbed's dockerds: the client on h2 reaches h1's server.
    out = run_example("overlay", "docker", "--testbed").stdout
    assert "swarm join" in out and "OK overlay:" in out and "(from h2 to h1)" in out


def test_portability() -> None:
    # Not parametrised: the example runs the same workflow on both engines itself.
    from tests.conftest import unavailable
    from toolkit.criu.probe import probe_criu

    if not probe_criu().check_ok:
        unavailable("criu not ready")
    out = run_example("portability", "docker").stdout
    assert "OK portability[docker]" in out and "OK portability[podman]" in out


def test_checkpoint_image(engine: Backend, criu: None) -> None:
    # The counter starts on ``engine`` and its checkpoint image is restored on the other one.
    other = "podman" if engine.kind == "docker" else "docker"
    out = run_example("checkpoint-image", engine.kind).stdout
    assert f"OK checkpoint-image[{engine.kind} -> {other}]" in out
    assert "same tree" in out and "pages changed" in out
