"""scripts/bench --quick as a smoke test: it completes and writes valid JSON and plots.

It asserts no times: speed goals live in the benchmark's own ratios (README, Performance).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.criu, pytest.mark.bench]

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads((tmp_path / "results.json").read_text())
    assert {s["engine"] for s in data["p1"]["samples"]} == {"docker", "podman"}
    assert {s["method"] for s in data["p1"]["samples"]} == {"raw", "lib", "cli"}
    assert all(r["ratio"] > 0 for r in data["p1"]["ratios"] + data["p4"]["ratios"])
    for png in ("p1.png", "p4.png", "p3.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "P1" in (tmp_path / "results.md").read_text()
    # P2 needs the testbed: measured when it is up, else said to be not measured
    p2 = data["p2"]
    assert "status" in p2 or all(r["downtime_s"] > 0 for r in p2["ratios"])
    if "status" not in p2:
        assert (tmp_path / "p2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # ctk's live migration against the manual Podman way and post-copy, in the same
        # repetitions
        podman = [s for s in p2["samples"] if s["engine"] == "podman"]
        assert {s["method"] for s in podman} == {"ctk", "manual", "postcopy"}
        lazy = [r for r in p2["ratios"] if r["engine"] == "podman"]
        assert all(r["postcopy_s"] > 0 and r["all_pages_s"] >= r["postcopy_s"] for r in lazy)
    # P3: ctk export, the by-hand tar | compressor and ctk import, per engine and compression
    p3 = data["p3"]
    for method in ("ctk", "hand", "import"):
        assert {s["engine"] for s in p3["samples"] if s["method"] == method} == {
            "docker",
            "podman",
        }
    assert all(s["bytes"] > 0 for s in p3["samples"] if s["method"] != "import")
    assert {(r["engine"], r["compression"]) for r in p3["ratios"]} >= {
        ("docker", "zstd"),
        ("podman", "zstd"),
    }
    assert "P3: not measured" not in (tmp_path / "results.md").read_text()
