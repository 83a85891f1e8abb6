"""``ctk engine ls|add|rm|use``: named engines in the config file, like docker contexts."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from toolkit.cli._common import json_option, print_json, print_table, wants_json
from toolkit.config import (
    DEFAULT_URLS,
    KINDS,
    TLSOptions,
    add_engine,
    config_path,
    configured_engines,
    load_config,
    remove_engine,
    use_engine,
)

F = TypeVar("F", bound=Callable[..., Any])


def tls_options(func: F) -> F:
    """docker's ``--tlsverify --tlscacert --tlscert --tlskey``, passed on as ``tls``."""

    @functools.wraps(func)
    def wrapper(
        *args: Any,
        tlsverify: bool,
        tlscacert: str | None,
        tlscert: str | None,
        tlskey: str | None,
        **kwargs: Any,
    ) -> Any:
        tls = TLSOptions(verify=tlsverify, ca_cert=tlscacert, cert=tlscert, key=tlskey)
        return func(*args, tls=tls if tls.enabled else None, **kwargs)

    options = (
        click.option("--tlsverify", is_flag=True, help="tcp engines: verify the engine's cert."),
        click.option("--tlscacert", type=click.Path(dir_okay=False), help="CA certificate."),
        click.option("--tlscert", type=click.Path(dir_okay=False), help="Client certificate."),
        click.option("--tlskey", type=click.Path(dir_okay=False), help="Client key."),
    )
    decorated: Any = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


@click.group("engine")
def engine() -> None:
    """Named engines (like docker contexts), kept in $XDG_CONFIG_HOME/ctk/config.toml."""


@engine.command("ls")
@json_option
def ls() -> None:
    """List the built-in and configured engines; * marks the default."""
    default = load_config().get("default")
    rows: list[dict[str, Any]] = [
        {"name": kind, "url": f"{kind}+{DEFAULT_URLS[kind]}", "builtin": True, "tls": False}
        for kind in KINDS
    ]
    for name, ref in sorted(configured_engines().items()):
        tls = ref.tls is not None and ref.tls.enabled
        rows.append({"name": name, "url": str(ref), "builtin": False, "tls": tls})
    for row in rows:
        row["default"] = row["name"] == default
    if wants_json():
        print_json(rows)
        return
    print_table(
        ["NAME", "URL", "TLS"],
        [
            [
                row["name"] + (" *" if row["default"] else ""),
                row["url"],
                "yes" if row["tls"] else "",
            ]
            for row in rows
        ],
    )


@engine.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--default", "make_default", is_flag=True, help="Also make it the default.")
@tls_options
@json_option
def add(name: str, url: str, make_default: bool, tls: TLSOptions | None) -> None:
    """Save engine NAME at URL (e.g. docker+tcp://host:2376 --tlsverify --tlscacert ca.pem)."""
    ref = add_engine(name, url, tls=tls)
    if make_default:
        use_engine(name)
    if wants_json():
        print_json({"name": name, "url": str(ref), "default": make_default})
    else:
        click.echo(name)


@engine.command("rm")
@click.argument("names", nargs=-1, required=True)
@json_option
def rm(names: tuple[str, ...]) -> None:
    """Forget one or more configured engines."""
    for name in names:
        remove_engine(name)
    if wants_json():
        print_json({"removed": list(names)})
    else:
        for name in names:
            click.echo(name)


@engine.command("use")
@click.argument("name")
@json_option
def use(name: str) -> None:
    """Make NAME the default engine (docker, podman or a configured name)."""
    use_engine(name)
    if wants_json():
        print_json({"default": name, "config": str(config_path())})
    else:
        click.echo(name)
