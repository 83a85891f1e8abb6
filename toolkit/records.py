"""ctk's own records: the checkpoints it made (names, creation times) and its state directory.

Docker lists a container's checkpoints without dates and Podman keeps one unnamed checkpoint in
place, so "the latest checkpoint of NAME" needs a record of our own. One small JSON file per
checkpoint under the state directory (``$CTK_STATE_DIR``, else ``/var/lib/ctk`` for root, else
``$XDG_STATE_HOME/ctk``) keeps concurrent ctk processes from overwriting each other.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from toolkit.models import Checkpoint


def state_dir() -> Path:
    """Where ctk keeps its state."""
    if env := os.environ.get("CTK_STATE_DIR"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/ctk")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ctk"


def criu_config_dir() -> Path:
    """Where ctk writes per-container CRIU config files (runc's ``org.criu.config``)."""
    return state_dir() / "criu-config"


def _container_dir(kind: str, url: str, container_id: str) -> Path:
    engine_key = hashlib.sha256(f"{kind}|{url}".encode()).hexdigest()[:16]
    return state_dir() / "checkpoints" / f"{kind}-{engine_key}" / container_id


def new_checkpoint_name() -> str:
    """A unique, sortable default name: ``cp-20261128T204501-123456``."""
    return datetime.now(UTC).strftime("cp-%Y%m%dT%H%M%S-%f")


def record_checkpoint(kind: str, url: str, container_id: str, name: str) -> Checkpoint:
    directory = _container_dir(kind, url, container_id)
    directory.mkdir(parents=True, exist_ok=True)
    created = datetime.now(UTC).isoformat(timespec="microseconds")
    path = directory / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"name": name, "created": created}))
    tmp.replace(path)
    return Checkpoint(name=name, container=container_id, engine=kind, created=created)


def _records(kind: str, url: str, container_id: str) -> dict[str, str]:
    directory = _container_dir(kind, url, container_id)
    result: dict[str, str] = {}
    if not directory.is_dir():
        return result
    for path in directory.glob("*.json"):
        try:
            data = json.loads(path.read_text())
            result[str(data["name"])] = str(data["created"])
        except (OSError, ValueError, KeyError):
            continue
    return result


def names(kind: str, url: str, container_id: str) -> list[str]:
    """Names of the checkpoints ctk recorded for a container."""
    return sorted(_records(kind, url, container_id))


def ordered(
    kind: str, url: str, container_id: str, present: Sequence[str], *, container: str
) -> list[Checkpoint]:
    """The engine's checkpoints, oldest first: by our records, unknown ones first by name."""
    records = _records(kind, url, container_id)
    items = [
        Checkpoint(name=n, container=container, engine=kind, created=records.get(n, ""))
        for n in present
    ]
    return sorted(items, key=lambda c: (c.created != "", c.created, c.name))


def forget_checkpoint(kind: str, url: str, container_id: str, name: str) -> None:
    (_container_dir(kind, url, container_id) / f"{name}.json").unlink(missing_ok=True)


def forget_others(kind: str, url: str, container_id: str, keep: str) -> None:
    for name in _records(kind, url, container_id):
        if name != keep:
            forget_checkpoint(kind, url, container_id, name)


def forget_container(kind: str, url: str, container_id: str) -> None:
    shutil.rmtree(_container_dir(kind, url, container_id), ignore_errors=True)
