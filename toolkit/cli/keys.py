"""``ctk key``: the ed25519 keys that sign and verify checkpoint archives."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli._common import json_option, print_json, wants_json


@click.group()
def key() -> None:
    """Manage the ed25519 keys that sign archives (checkpoint --sign, restore --verify)."""


@key.command("generate")
@click.option(
    "-o",
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key file (default: $XDG_CONFIG_HOME/ctk/keys/signing.key); "
    "the public key goes to OUT.pub.",
)
@json_option
def generate(out: Path | None) -> None:
    """Make a new signing key (mode 0600) and its public key; prints the key id."""
    from toolkit.archive.signing import generate_key

    private, public, key_id = generate_key(out)
    if wants_json():
        print_json({"key_id": key_id, "private_key": str(private), "public_key": str(public)})
        return
    click.echo(key_id)
    click.echo(f"private key: {private} (keep it secret; sign with --sign {private})", err=True)
    click.echo(f"public key:  {public} (give it to importers: --verify {public})", err=True)
