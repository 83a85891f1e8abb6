"""libpod's export tar on its way to another host's Podman: config.dump loses the source's
run-root paths, everything else passes byte for byte, in any chunking."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from toolkit.backends.podman.relocate import RUN_ROOT_FIELDS, relocate_export, relocated_config

RUN = "/run/ctk-testbed/h1/podman/storage/overlay-containers/" + "a" * 64 + "/userdata"
CONFIG = {
    "id": "a" * 64,
    "conmonPidFile": f"{RUN}/conmon.pid",
    "pid_file": f"{RUN}/pidfile",
    "staticDir": "/var/lib/x/userdata",
    "name": "web <&>",  # Go escapes these as \\u003c...: the rewrite may only shrink
}


def _tar(members: list[tuple[str, bytes]], *, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _members(raw: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def _go_json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c").encode()


@pytest.mark.parametrize("chunk", [1, 511, 512, 4096, 1 << 20])
def test_config_dump_loses_the_run_root_paths_and_nothing_else_changes(chunk: int) -> None:
    pages = bytes(range(256)) * 700  # not a multiple of 512
    long_name = "checkpoint/" + "p" * 120 + ".img"  # a GNU long-name member
    raw = _tar([("checkpoint/pages-1.img", pages), ("config.dump", _go_json(CONFIG)),
                (long_name, b"x" * 3), ("spec.dump", b"{}")])  # fmt: skip
    out = b"".join(relocate_export([raw[i : i + chunk] for i in range(0, len(raw), chunk)]))
    assert len(out) == len(raw)
    before, after = _members(raw), _members(out)
    assert before.keys() == after.keys()
    config = json.loads(after.pop("config.dump"))
    assert all(config[f] == "" for f in RUN_ROOT_FIELDS)
    assert config["staticDir"] == CONFIG["staticDir"] and config["name"] == CONFIG["name"]
    del before["config.dump"]
    assert before == after


def test_a_file_object_body_and_a_pax_tar_work_too() -> None:
    raw = _tar([("./config.dump", _go_json(CONFIG))], fmt=tarfile.PAX_FORMAT)
    out = b"".join(relocate_export(io.BytesIO(raw)))
    assert json.loads(_members(out)["./config.dump"])["pid_file"] == ""


def test_config_without_those_fields_or_not_json_is_left_alone() -> None:
    plain = _go_json({"id": "x", "conmonPidFile": ""})
    assert relocated_config(plain) == plain
    assert relocated_config(b"not json") == b"not json"
