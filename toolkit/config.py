"""Engine selection, in one place: ``--engine`` flag > ``CTK_ENGINE`` > config file > autodetect.

An engine is named ``docker`` or ``podman`` (their standard local sockets), by URL
(``docker+unix:///path.sock``, ``docker+tcp://host:2376``, ``docker+ssh://user@host``,
``podman+unix:///path.sock``, ``podman+tcp://host:port``,
``podman+ssh://user@host[:port]/run/podman/podman.sock``), or by a name configured in
``$XDG_CONFIG_HOME/ctk/config.toml``::

    default = "remote"
    [engines.remote]
    url = "docker+tcp://10.0.0.5:2376"
    tlsverify = true
    cacert = "/etc/ctk/ca.pem"
    cert = "/etc/ctk/cert.pem"
    key = "/etc/ctk/key.pem"

Backends are imported lazily so that ``import toolkit`` and ``ctk --help`` work without the SDKs.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tomllib
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from toolkit.backends import DEFAULT_URLS as DEFAULT_URLS  # re-exported: callers and tests use it
from toolkit.backends.base import Backend
from toolkit.errors import Conflict, EngineUnavailable, InvalidArgument, NotFound

logger = logging.getLogger(__name__)

KINDS = ("docker", "podman")
_SCHEMES = ("unix", "tcp", "ssh", "http")


@dataclass(frozen=True)
class TLSOptions:
    """TLS for a ``tcp://`` engine, as docker's ``--tlsverify --tlscacert --tlscert --tlskey``.

    ``verify`` checks the engine's certificate against ``ca_cert``; ``cert``/``key`` are the
    client's own pair. Any of them turns TLS on. A CA given turns ``verify`` on: naming the
    CA to trust and then trusting any certificate would be a man-in-the-middle's gift (it
    used to connect to a server whose certificate another CA had signed).
    """

    verify: bool = False
    ca_cert: str | None = None
    cert: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if self.ca_cert and not self.verify:
            object.__setattr__(self, "verify", True)

    @property
    def enabled(self) -> bool:
        return bool(self.verify or self.ca_cert or self.cert or self.key)


@dataclass(frozen=True)
class EngineRef:
    """Which engine to talk to: its kind, its API URL and (for tcp) TLS, and its config name."""

    kind: str
    url: str
    tls: TLSOptions | None = None
    # Which config entry it came from: a label, not part of the engine's identity.
    name: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.kind}+{self.url}"


_TLS_QUERY = {"tlsverify": "verify", "cacert": "ca_cert", "cert": "cert", "key": "key"}
_TRUE = ("1", "true", "yes", "on")


def _tls_from_query(url: str, query: str) -> TLSOptions | None:
    values = parse_qs(query, keep_blank_values=True)
    unknown = set(values) - set(_TLS_QUERY)
    if unknown:
        raise InvalidArgument(
            f"unknown option {sorted(unknown)[0]!r} in engine URL {url!r}",
            hint="URL options: ?tlsverify=1&cacert=PATH&cert=PATH&key=PATH",
        )
    if not values:
        return None
    return TLSOptions(
        verify=values.get("tlsverify", ["0"])[-1].lower() in _TRUE,
        ca_cert=values.get("cacert", [None])[-1],
        cert=values.get("cert", [None])[-1],
        key=values.get("key", [None])[-1],
    )


def parse_engine(value: str) -> EngineRef:
    """Parse ``docker``, ``podman`` or ``KIND+SCHEME://...`` into an EngineRef.

    A ``tcp://`` URL may carry TLS options as a query: ``?tlsverify=1&cacert=PATH&cert=PATH&
    key=PATH``.

    Raises:
        InvalidArgument: not an engine name ctk knows, or a malformed URL.
    """
    text = value.strip()
    if text in KINDS:
        return EngineRef(text, DEFAULT_URLS[text])
    kind, plus, url = text.partition("+")
    if not plus or kind not in KINDS:
        raise InvalidArgument(
            f"unknown engine {value!r}",
            hint="use docker, podman, or a URL like docker+unix:///var/run/docker.sock",
        )
    parsed = urlparse(url)
    if parsed.scheme not in _SCHEMES:
        raise InvalidArgument(
            f"unsupported engine URL {url!r}",
            hint="URL schemes: unix:///path.sock, tcp://host:port, ssh://user@host",
        )
    if parsed.scheme == "unix" and not parsed.path:
        raise InvalidArgument(f"engine URL {url!r} names no socket path")
    if parsed.scheme in ("tcp", "ssh", "http") and not parsed.hostname:
        raise InvalidArgument(f"engine URL {url!r} names no host")
    try:
        port = parsed.port
    except ValueError as exc:
        raise InvalidArgument(f"bad port in engine URL {url!r}") from exc
    if parsed.scheme == "tcp" and port is None:
        raise InvalidArgument(
            f"engine URL {url!r} names no port", hint="e.g. docker+tcp://host:2376"
        )
    if parsed.scheme == "ssh":
        _check_ssh_target(url, parsed.netloc)
    if parsed.scheme == "ssh" and kind == "docker" and parsed.path not in ("", "/"):
        raise InvalidArgument(
            f"docker+ssh URLs name no socket: {url!r}",
            hint="use docker+ssh://user@host[:port]; docker finds its socket there",
        )
    tls = None
    if parsed.query:
        if parsed.scheme != "tcp":
            raise InvalidArgument(f"only tcp:// engine URLs take options: {url!r}")
        tls = _tls_from_query(url, parsed.query)
        url = parsed._replace(query="").geturl()
    return EngineRef(kind, url, tls)


_SSH_USER_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.$-]*$")
_SSH_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.%A-Za-z]+\]|[A-Za-z0-9_.][A-Za-z0-9_.-]*)$")
_SSH_HINT = "ssh engine URLs look like docker+ssh://user@host[:port]"


def _check_ssh_target(url: str, netloc: str) -> None:
    """``user@host[:port]`` and nothing ssh could read as an option or a second argument.

    The target reaches the ssh command (after ``--``, too): a host like
    ``-oProxyCommand=...`` would otherwise run a command on this machine.
    """
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise InvalidArgument(
            f"engine URL {url!r} holds whitespace or control characters", hint=_SSH_HINT
        )
    user, at, hostport = netloc.rpartition("@")
    if at and (":" in user or not _SSH_USER_RE.match(user)):
        raise InvalidArgument(
            f"bad ssh user in engine URL {url!r}",
            hint=f"{_SSH_HINT}; no password, and the user may not begin with '-'",
        )
    host = hostport
    if not host.startswith("["):
        host = host.rpartition(":")[0] if ":" in host else host
    elif "]" in host:
        host = host[: host.index("]") + 1]
    if not _SSH_HOST_RE.match(host):
        raise InvalidArgument(
            f"bad ssh host {host!r} in engine URL {url!r}",
            hint=f"{_SSH_HINT}; the host may not begin with '-'",
        )


_ENGINE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # fullmatch: no "\n" at the end


def validate_engine_name(name: str) -> None:
    """Names for ``[engines.NAME]``: not a kind, not a URL."""
    if name in KINDS or not _ENGINE_NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"invalid engine name {name!r}",
            hint="names are letters, digits, '_', '.', '-' (not docker or podman)",
        )


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/ctk/config.toml``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ctk" / "config.toml"


def load_config() -> dict[str, Any]:
    """The config file's data ({} when there is none).

    Raises:
        InvalidArgument: the file is not readable TOML.
    """
    path = config_path()
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidArgument(f"cannot read {path}: {exc}", hint="fix or remove the file") from exc


def save_config(data: dict[str, Any]) -> Path:
    """Write the config file atomically (a reader never sees half of it)."""
    import tomli_w

    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(tomli_w.dumps(data))
    tmp.replace(path)
    return path


def _entry_ref(name: str, entry: object) -> EngineRef:
    if not isinstance(entry, dict) or not entry.get("url"):
        raise InvalidArgument(
            f"engine {name!r} in {config_path()} has no url",
            hint=f"set it with: ctk engine add {name} URL",
        )
    ref = parse_engine(str(entry["url"]))
    options = TLSOptions(
        verify=bool(entry.get("tlsverify", False)),
        ca_cert=entry.get("cacert"),
        cert=entry.get("cert"),
        key=entry.get("key"),
    )
    return replace(ref, tls=options if options.enabled else ref.tls, name=name)


def configured_engines() -> dict[str, EngineRef]:
    """The ``[engines.NAME]`` entries of the config file, by name."""
    engines = load_config().get("engines") or {}
    return {str(name): _entry_ref(str(name), entry) for name, entry in engines.items()}


def lookup_engine(value: str) -> EngineRef:
    """A configured engine NAME, or else anything :func:`parse_engine` accepts."""
    text = value.strip()
    if text not in KINDS and "+" not in text:
        engines = load_config().get("engines") or {}
        if text in engines:
            return _entry_ref(text, engines[text])
    return parse_engine(text)


def add_engine(name: str, url: str, *, tls: TLSOptions | None = None) -> EngineRef:
    """Save ``[engines.NAME]``.

    Raises:
        InvalidArgument: bad name or URL.
        Conflict: the name is taken.
    """
    validate_engine_name(name)
    ref = parse_engine(url)
    data = load_config()
    engines = data.setdefault("engines", {})
    if name in engines:
        raise Conflict(
            f"engine {name} is already configured", hint=f"remove it first: ctk engine rm {name}"
        )
    entry: dict[str, Any] = {"url": f"{ref.kind}+{ref.url}"}
    options = tls if tls is not None and tls.enabled else ref.tls
    if options is not None:
        if urlparse(ref.url).scheme != "tcp":
            raise InvalidArgument("TLS options apply to tcp:// engines only")
        entry["tlsverify"] = options.verify
        for key, value in (
            ("cacert", options.ca_cert),
            ("cert", options.cert),
            ("key", options.key),
        ):
            if value:
                entry[key] = str(Path(value).expanduser().absolute())
    engines[name] = entry
    save_config(data)
    return _entry_ref(name, entry)


def remove_engine(name: str) -> None:
    """Delete ``[engines.NAME]`` (and the default, if it named it).

    Raises:
        NotFound: no such engine is configured.
    """
    data = load_config()
    engines = data.get("engines") or {}
    if name not in engines:
        raise NotFound(f"no engine named {name} is configured", hint="list them: ctk engine ls")
    del engines[name]
    if data.get("default") == name:
        del data["default"]
    save_config(data)


def use_engine(name: str) -> None:
    """Make NAME (configured, ``docker`` or ``podman``) the default.

    Raises:
        NotFound: no such engine is configured.
    """
    data = load_config()
    if name not in KINDS and name not in (data.get("engines") or {}):
        raise NotFound(f"no engine named {name} is configured", hint="list them: ctk engine ls")
    data["default"] = name
    save_config(data)


def _from_config() -> EngineRef | None:
    data = load_config()
    default = data.get("default")
    if not default:
        return None
    engines = data.get("engines") or {}
    if default in engines:
        return _entry_ref(str(default), engines[default])
    return parse_engine(str(default))


_WARNED_PLAIN: set[str] = set()


def _warn_plain_tcp(ref: EngineRef) -> None:
    """Once per process and engine: plain tcp is readable and changeable on the way."""
    scheme = urlparse(ref.url).scheme
    if scheme not in ("tcp", "http") or (ref.tls is not None and ref.tls.enabled):
        return
    if str(ref) in _WARNED_PLAIN:
        return
    _WARNED_PLAIN.add(str(ref))
    fix = (
        "use TLS (--tlsverify --tlscacert CA --tlscert CERT --tlskey KEY) or docker+ssh://"
        if ref.kind == "docker"
        else "Podman's service has no TLS: use podman+ssh://user@host/run/podman/podman.sock"
    )
    print(
        f"Warning: {ref} is plain TCP: anyone on the path can read and change what ctk "
        f"sends and receives, checkpoints included; {fix}",
        file=sys.stderr,
        flush=True,
    )


def connect(ref: EngineRef) -> Backend:
    """A backend for the engine (nothing is contacted yet).

    Warns once on stderr when the engine is reached over plain (unencrypted) tcp.
    """
    _warn_plain_tcp(ref)
    if ref.kind == "docker":
        from toolkit.backends.docker import DockerBackend

        if ref.tls is not None and ref.tls.enabled:
            return DockerBackend(ref.url, tls=ref.tls)
        return DockerBackend(ref.url)
    from toolkit.backends.podman import PodmanBackend

    if ref.tls is not None and ref.tls.enabled:
        # Neither podman nor its SDK speaks TLS to the REST service.
        from toolkit.errors import Unsupported

        raise Unsupported(
            "Podman's REST service has no TLS",
            hint="reach a remote Podman over podman+ssh://user@host/run/podman/podman.sock",
        )
    return PodmanBackend(ref.url)


def resolve_engine(flag: str | None = None, *, tls: TLSOptions | None = None) -> EngineRef:
    """The engine to use, by precedence: flag > CTK_ENGINE > config default > autodetect.

    ``tls`` (the CLI's ``--tls*`` options) overrides the TLS settings of the selected engine.
    """
    ref = _resolve(flag)
    if tls is not None and tls.enabled:
        if urlparse(ref.url).scheme != "tcp":
            raise InvalidArgument(
                f"TLS options apply to tcp:// engines, not {ref}",
                hint="e.g. --engine docker+tcp://host:2376 --tlsverify --tlscacert ca.pem",
            )
        ref = replace(ref, tls=tls)
    return ref


def _resolve(flag: str | None) -> EngineRef:
    for value in (flag, os.environ.get("CTK_ENGINE")):
        if value:
            return lookup_engine(value)
    configured = _from_config()
    if configured is not None:
        return configured
    for kind in KINDS:
        ref = EngineRef(kind, DEFAULT_URLS[kind])
        if _socket_exists(ref) and connect(ref).ping():
            return ref
    raise EngineUnavailable(
        "no container engine answers (tried docker, then podman)",
        hint="start them with: scripts/engines start, or pass --engine URL",
    )


def _socket_exists(ref: EngineRef) -> bool:
    parsed = urlparse(ref.url)
    return parsed.scheme != "unix" or Path(parsed.path).exists()


def get_backend(flag: str | None = None, *, tls: TLSOptions | None = None) -> Backend:
    """The backend selected by precedence: what the user typed (``--engine``, ``--to``,
    ``--from``, a drain's ENGINE: ``docker``, ``podman``, a configured name or a URL), else
    ``CTK_ENGINE``, the config file's default, the first engine that answers.

    This is the one way from text to a connected engine: it keeps the TLS settings (of the
    URL, the config entry or ``tls``, the CLI's ``--tls*`` options) and ssh URLs, and when
    the selected engine is Podman at its standard socket, nothing answers there, and the
    podman command is installed, the backend runs on a temporary ``podman system service``
    that ``close()`` (or the end of the process) stops. ``CTK_NO_PODMAN_SERVICE=1`` turns
    this off.

    Raises:
        InvalidArgument: not an engine ctk knows, or TLS options for a non-tcp engine.
        EngineUnavailable: nothing was named and no engine answers.
        Unsupported: TLS options for Podman.
    """
    return open_engine(resolve_engine(flag, tls=tls))


# The engine each backend was opened from, so that one can be opened again with the same
# settings (drain opens one per worker thread; a migration's journal records it for
# --recover). Backends only know their kind and URL: TLS lives here.
_OPENED: weakref.WeakKeyDictionary[Backend, EngineRef] = weakref.WeakKeyDictionary()


def open_engine(ref: EngineRef) -> Backend:
    """A backend for an already resolved engine: its TLS settings, and the temporary Podman
    service when Podman's standard socket is silent (see :func:`get_backend`).

    Raises:
        Unsupported: TLS options for Podman.
    """
    tls = " with TLS" if ref.tls is not None and ref.tls.enabled else ""
    named = f" (configured as {ref.name})" if ref.name else ""
    logger.debug("opening engine %s%s%s", ref, tls, named)
    backend = connect(ref)
    if ref.kind == "podman" and ref.url == DEFAULT_URLS["podman"]:
        backend = _with_temporary_service(backend, ref)
    _OPENED[backend] = ref
    return backend


def engine_ref(backend: Backend) -> EngineRef:
    """The engine a backend talks to, with the TLS settings it was opened with."""
    return _OPENED.get(backend) or EngineRef(backend.kind, backend.url)


def reopen(backend: Backend) -> Backend:
    """Another connection to the same engine, with the same settings (for another thread)."""
    return open_engine(engine_ref(backend))


_TLS_RECORD = {"tlsverify": "verify", "cacert": "ca_cert", "cert": "cert", "key": "key"}


def engine_record(backend: Backend) -> dict[str, str]:
    """What a journal keeps of an engine to open it again later: kind, URL, config name and
    TLS settings (file paths, no secrets), as strings."""
    ref = engine_ref(backend)
    record = {"kind": ref.kind, "url": ref.url}
    if ref.name:
        record["name"] = ref.name
    if ref.tls is not None and ref.tls.enabled:
        record["tlsverify"] = "1" if ref.tls.verify else "0"
        for key, attr in _TLS_RECORD.items():
            value = getattr(ref.tls, attr)
            if key != "tlsverify" and value:
                record[key] = str(value)
    return record


def open_recorded(record: Mapping[str, str]) -> Backend:
    """The engine of an :func:`engine_record` (a journal's older ``kind``/``url`` too).

    Raises:
        InvalidArgument: the record names no kind ctk knows.
        Unsupported: TLS options for Podman.
    """
    kind, url = record.get("kind", ""), record.get("url", "")
    if kind not in KINDS or not url:
        raise InvalidArgument(f"cannot reopen the engine {kind}+{url}: not an engine ctk knows")
    tls = None
    if "tlsverify" in record:
        tls = TLSOptions(
            verify=record["tlsverify"] in _TRUE,
            ca_cert=record.get("cacert"),
            cert=record.get("cert"),
            key=record.get("key"),
        )
    return open_engine(EngineRef(kind, url, tls, name=record.get("name")))


def _with_temporary_service(backend: Backend, ref: EngineRef) -> Backend:
    import shutil

    from toolkit.backends.podman_service import DISABLE_ENV, TemporaryPodmanService

    if os.environ.get(DISABLE_ENV) == "1" or not shutil.which("podman") or backend.ping():
        return backend
    from toolkit.backends.podman import PodmanBackend

    backend.close()
    return PodmanBackend(ref.url, service=TemporaryPodmanService.start())
