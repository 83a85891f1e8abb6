"""``ctk completion``: scripts for each shell, and the completions they ask ctk for."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ctk
from toolkit.errors import ExitCode


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_script_for_each_shell(shell: str) -> None:
    result = ctk("completion", shell)
    assert result.returncode == 0
    assert "_CTK_COMPLETE" in result.stdout and f"{shell}_complete" in result.stdout


def test_unknown_shell() -> None:
    assert ctk("completion", "tcsh").returncode == ExitCode.USAGE


def test_completes_verbs() -> None:
    env = dict(os.environ, _CTK_COMPLETE="bash_complete", COMP_WORDS="ctk unp", COMP_CWORD="1")
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit"], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert proc.stdout.strip().splitlines() == ["plain,unpause"]
