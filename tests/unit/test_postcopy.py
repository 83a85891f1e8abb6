"""Pure logic of the post-copy path: page statistics, rootfs changes, refusals before freezing."""

from __future__ import annotations

import json
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from toolkit.errors import Unsupported
from toolkit.migration import postcopy


def test_page_stats_split_first_touch_and_background(tmp_path: Path) -> None:
    log = tmp_path / "lazy-pages.log"
    log.write_text(
        "(00.1) uffd: 1-12: #PF at 0x8173000\n"
        "(00.1) uffd: 1-12: #PF at 0x8174000\n"
        "(00.2) uffd: 9-13: UFFD transferred pages: (7/7)\n"
        "(00.4) uffd: 1-12: UFFD transferred pages: (65547/65547)\n"
    )
    stats = postcopy._page_stats(log)
    assert stats == {
        "pages": 65554,
        "pages_on_demand": 2,
        "pages_background": 65552,
        "bytes": 65554 * 4096,
    }


def test_page_stats_of_a_missing_log_are_zero(tmp_path: Path) -> None:
    assert postcopy._page_stats(tmp_path / "none.log")["pages"] == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="a whiteout is a 0/0 character device (mknod)")
def test_upper_changes_carry_files_and_whiteouts_not_runtime_mounts(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "www").mkdir(parents=True)
    (upper / "www" / "count").write_text("7\n")
    (upper / "etc").mkdir()
    (upper / "etc" / "hosts").write_text("runtime's\n")
    os.mknod(upper / "gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    out = tmp_path / "rootfs-diff.tar"
    deleted = postcopy._upper_changes(upper, out)
    assert deleted == ["/gone"]
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert "www/count" in names and "etc" in names
    assert "etc/hosts" not in names and "gone" not in names


def test_import_tar_swaps_the_templates_checkpoint(tmp_path: Path) -> None:
    stage = tmp_path / "template"
    (stage / "checkpoint").mkdir(parents=True)
    (stage / "checkpoint" / "pages-1.img").write_text("template's memory")
    (stage / "config.dump").write_text("{}")
    (stage / "rootfs-diff.tar").write_text("template's rootfs")
    template = tmp_path / "template.tar"
    with tarfile.open(template, "w") as tar:
        for item in sorted(stage.rglob("*")):
            tar.add(item, arcname=item.relative_to(stage).as_posix(), recursive=False)
    images = tmp_path / "images"
    images.mkdir()
    (images / "inventory.img").write_text("lazy")
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_text("source's rootfs")
    out = tmp_path / "import.tar"
    postcopy._import_tar(postcopy._template_members(template), images, rootfs, ["/gone"], out)
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        deleted = json.loads(tar.extractfile("deleted.files").read())  # type: ignore[union-attr]
        diff = tar.extractfile("rootfs-diff.tar").read()  # type: ignore[union-attr]
    assert names == {"checkpoint", "checkpoint/inventory.img", "config.dump", "rootfs-diff.tar",
                     "deleted.files"}  # fmt: skip
    assert deleted == ["/gone"] and diff == b"source's rootfs"
    with tarfile.open(out) as tar:
        assert tar.extractfile("config.dump").read() == b"{}"  # type: ignore[union-attr]


class _Other:
    kind = "docker"
    url = "unix:///var/run/docker.sock"


def test_check_refuses_a_non_podman_engine_and_keep_source() -> None:
    fake: Any = _Other()
    with pytest.raises(Unsupported, match="needs Podman at both ends") as info:
        postcopy.check(fake, fake, "web1")
    assert info.value.exit_code == 6
    with pytest.raises(Unsupported, match="post-copy moves the container"):
        postcopy.check(fake, fake, "web1", keep_source=True)


MIB = 1024 * 1024


def test_auto_picks_postcopy_only_for_a_large_container_both_ends_can_move() -> None:
    chosen, why = postcopy.auto_choice(600 * MIB, 512 * MIB, None)
    assert chosen and why.startswith("auto: post-copy") and "600 MiB" in why
    small, why = postcopy.auto_choice(64 * MIB, 512 * MIB, None)
    assert not small and "64 MiB, under 512 MiB" in why
    refused, why = postcopy.auto_choice(600 * MIB, 512 * MIB, "post-copy needs Podman at both ends")
    assert not refused and why == "post-copy not chosen: post-copy needs Podman at both ends"


def test_auto_threshold_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(postcopy.AUTO_MIB_ENV, raising=False)
    assert postcopy.auto_threshold() == postcopy.AUTO_MIB * MIB
    monkeypatch.setenv(postcopy.AUTO_MIB_ENV, "32")
    assert postcopy.auto_threshold() == 32 * MIB
    monkeypatch.setenv(postcopy.AUTO_MIB_ENV, "lots")  # not a number: the default
    assert postcopy.auto_threshold() == postcopy.AUTO_MIB * MIB
