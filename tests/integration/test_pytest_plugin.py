"""ctk's pytest plugin, run by pytester in a subprocess on each engine.

Each inner run loads the plugin by module (``-p no:ctk`` first, so an installed entry point
does not register it twice) and talks to the engine under test only.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from toolkit.backends.base import Backend
from toolkit.errors import ContainerNotFound

pytestmark = pytest.mark.integration

# pytester puts sys.modules back as it found them after each test: an engine SDK imported for
# the first time inside a test would be imported a second time by the next one, beside the
# copies other modules still hold. So the SDKs are loaded here, and `engine` comes before
# `pytester` in every test's arguments.
importlib.import_module("toolkit.backends.docker")
importlib.import_module("toolkit.backends.podman")

PLUGIN = ("-p", "no:ctk", "-p", "toolkit.pytest_plugin", "-p", "no:cacheprovider")


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*PLUGIN, "-rs", *args, timeout=600)


def _gone(engine: Backend, name: str) -> bool:
    try:
        engine.inspect(name)
    except ContainerNotFound:
        return True
    return False


@pytest.fixture
def relaxed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inner run is not strict unless a test asks for it (the outer CI=true is not passed)."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("CTK_STRICT", raising=False)
    monkeypatch.delenv("CTK_CRIU", raising=False)


def test_engine_and_container_fixtures(
    engine: Backend, pytester: pytest.Pytester, relaxed: None
) -> None:
    names = pytester.path / "names.txt"
    pytester.makepyfile(
        f"""
        from pathlib import Path
        from toolkit import ContainerSpec
        from toolkit.readiness import ReadyCheck, wait_for_http, http_url

        NAMES = Path({str(names)!r})

        def test_engine(ctk_engine):
            assert ctk_engine.kind == {engine.kind!r}
            assert ctk_engine.ping()

        def test_container(ctk_container, ctk_engine):
            info = ctk_container(
                "ctk-demo/counter", ports=(8080,), ready=ReadyCheck.http(8080, "/count", body=r"\\d")
            )
            with NAMES.open("a") as f:
                f.write(info.name + "\\n")
            assert info.running and info.labels["ctk.test"] == "1"
            assert info.ports[0].host_port > 0 and info.ports[0].host_ip == "127.0.0.1"
            assert int(wait_for_http(http_url(info, 8080, "/count"), timeout=30)) >= 1

        def test_container_from_spec(ctk_container):
            spec = ContainerSpec(image="ctk-demo/busybox", command=("sleep", "300"))
            info = ctk_container(spec, labels={{"purpose": "spec"}})
            with NAMES.open("a") as f:
                f.write(info.name + "\\n")
            assert info.labels["purpose"] == "spec" and info.labels["ctk.test"] == "1"
        """
    )
    result = _run(pytester, "--ctk-engine", engine.kind, "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([f"*test_engine?{engine.kind}? PASSED*"])
    made = names.read_text().split()
    assert len(made) == 2
    assert all(_gone(engine, name) for name in made), made


def test_snapshot_isolation_between_tests(
    engine: Backend, pytester: pytest.Pytester, criu: None, relaxed: None
) -> None:
    names = pytester.path / "names.txt"
    pytester.makepyfile(
        f"""
        import re
        from pathlib import Path
        import pytest
        from toolkit.readiness import ReadyCheck, wait_until

        NAMES = Path({str(names)!r})
        pytestmark = pytest.mark.ctk_snapshot(
            "ctk-demo/counter", ports=(8080,), ready=ReadyCheck.log(r"count=[3-9]")
        )

        def counts(snap):
            return [int(n) for n in re.findall(r"count=(\\d+)", snap.logs())]

        @pytest.mark.parametrize("round", [1, 2, 3])
        def test_increment_from_snapshot(ctk_snapshot, round):
            with NAMES.open("a") as f:
                f.write(ctk_snapshot.name + "\\n")
            start = counts(ctk_snapshot)[0]
            # The snapshot was taken at count 3 (or 4): never what a previous round left.
            assert 3 < start <= 6, start
            wait_until(lambda: counts(ctk_snapshot)[-1] >= 9, timeout=30, what="count 9")
        """
    )
    result = _run(pytester, "--ctk-engine", engine.kind)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["*ctk snapshot timings*", f"ctk-demo/counter on {engine.kind}*cold start*restore*3 test*"]
    )
    made = set(names.read_text().split())
    assert len(made) == 3  # a clone of its own for each test, removed after it
    assert all(_gone(engine, name) for name in made), made


INNER_NEEDS_CRIU = """
    import pytest
    from toolkit.readiness import ReadyCheck

    @pytest.mark.requires_criu
    def test_marked():
        pass

    @pytest.mark.ctk_snapshot("ctk-demo/counter", ready=ReadyCheck.log("count=1"))
    def test_snapshot(ctk_snapshot):
        pass
"""


def test_missing_criu_skips_or_fails_when_strict(
    engine: Backend, pytester: pytest.Pytester, relaxed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(INNER_NEEDS_CRIU)
    monkeypatch.setenv("CTK_CRIU", "/nonexistent/criu")
    result = _run(pytester, "--ctk-engine", engine.kind)
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*CRIU is not installed (looked in /nonexistent/criu)*"])

    result = _run(pytester, "--ctk-engine", engine.kind, "--ctk-strict")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*strict: missing prerequisites fail*"])

    monkeypatch.setenv("CI", "true")
    result = _run(pytester, "--ctk-engine", engine.kind)
    result.assert_outcomes(errors=2)


def test_missing_engine_skips_or_fails_when_strict(
    engine: Backend, pytester: pytest.Pytester, relaxed: None, tmp_path: Path
) -> None:
    other = "podman" if engine.kind == "docker" else "docker"
    pytester.makepyfile(
        f"""
        import pytest

        def test_uses_engine(ctk_engine):
            pass

        @pytest.mark.requires_engine({other!r})
        def test_required(ctk_engine):
            assert ctk_engine.kind == {other!r}
        """
    )
    missing = f"{engine.kind}+unix://{tmp_path}/missing.sock"
    result = _run(pytester, "--ctk-engine", missing)
    # The required kind is not among the chosen engines: it runs on that kind's default socket.
    result.assert_outcomes(skipped=1, passed=1)
    result.stdout.fnmatch_lines(["*does not answer at unix://*missing.sock*"])
    result = _run(pytester, "--ctk-engine", missing, "--ctk-strict")
    result.assert_outcomes(errors=1, passed=1)


def test_snapshot_without_marker_is_a_usage_error(
    engine: Backend, pytester: pytest.Pytester, relaxed: None
) -> None:
    pytester.makepyfile(
        """
        def test_no_marker(ctk_snapshot):
            pass
        """
    )
    result = _run(pytester, "--ctk-engine", engine.kind)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*needs a marker*ctk_snapshot_factory*"])
