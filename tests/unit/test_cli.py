"""CLI parsing and error rendering, with no engine: every engine URL here points nowhere."""

from __future__ import annotations

import json

from tests.conftest import ctk
from toolkit.errors import ExitCode

NOWHERE = "docker+unix:///nonexistent/docker.sock"


def test_help() -> None:
    result = ctk("--help")
    assert result.returncode == 0
    for verb in ("run", "ps", "logs", "stop", "rm", "checkpoint", "restore", "doctor"):
        assert verb in result.stdout


def test_engine_unavailable_is_one_line_with_hint() -> None:
    result = ctk("ps", engine=NOWHERE)
    assert result.returncode == ExitCode.ENGINE_UNAVAILABLE
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("Error: ") and lines[1].startswith("Hint: ")


def test_bad_engine_is_usage_error() -> None:
    result = ctk("ps", engine="lxc")
    assert result.returncode == ExitCode.USAGE
    assert "unknown engine" in result.stderr


def test_bad_port_is_usage_error() -> None:
    result = ctk("run", "-d", "-p", "x:y", "img", engine=NOWHERE)
    assert result.returncode == ExitCode.USAGE
    assert "-p" in result.stderr


def test_json_flag_both_places() -> None:
    # Both spellings reach the doctor's JSON output (engines down: exit NOT_READY).
    for args in (("--json", "doctor"), ("doctor", "--json")):
        result = ctk(*args, engine=NOWHERE)
        assert result.returncode == ExitCode.NOT_READY
        data = json.loads(result.stdout)
        assert data["ready"] is False
        assert data["checks"][0]["fix"] == "scripts/engines start"


def test_checkpoint_default_subcommand_routes() -> None:
    result = ctk("checkpoint", "--help")
    assert "ls" in result.stdout and "rm" in result.stdout
    result = ctk("checkpoint", "web1", engine=NOWHERE)
    assert result.returncode == ExitCode.ENGINE_UNAVAILABLE


def test_bad_container_name() -> None:
    result = ctk("checkpoint", "../etc", engine=NOWHERE)
    assert result.returncode in (ExitCode.USAGE, ExitCode.ENGINE_UNAVAILABLE)
    assert "Traceback" not in result.stderr


def test_checkpoint_image_options_checked_before_any_engine() -> None:
    # refused before connecting: the engine URL points nowhere, so exit 3 would mean it tried
    cases = [
        ("checkpoint", "web1", "--create-image", "Bad Name"),
        ("checkpoint", "web1", "--create-image", "img:1", "--export", "f.ctk"),
        ("restore", "web1", "--image", "img:1"),
        ("restore", "--image", "img:1", "--import", "f.ctk"),
        ("restore", "--image", "img:1", "--verify", "k.pub"),
        ("checkpoint", "diff", "only-one"),
        ("checkpoint", "diff", "web1", "cp1", "../x"),
    ]
    for args in cases:
        result = ctk(*args, engine=NOWHERE)
        assert result.returncode == ExitCode.USAGE, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_checkpoint_image_inspect_and_diff_usage() -> None:
    for args in (
        ("checkpoint", "inspect", "--image", "img:1", "cp1"),
        ("checkpoint", "diff", "--image", "web1", "a", "b"),
    ):
        result = ctk(*args, engine=NOWHERE)
        assert result.returncode == ExitCode.USAGE, (args, result.stderr)
