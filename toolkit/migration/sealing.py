"""The signature of a migration's archive.

Between the source's export and the destination's import, a migration's archive is a file in
the migration's work directory. ctk signs it and verifies the signature on import, so a file
changed meanwhile (by anything that cannot use the key) is refused before any container is
created. The key is the config's ``[trust] signing_key`` when there is one, else a key made for
this migration alone: its private half exists on disk (0600, in the 0700 work directory) only
while the export runs, and the import checks against the public half held in memory. The
public half is also recorded in the journal, for a rollback's re-import after a crash.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from toolkit.archive.signing import (
    configured_signing_key,
    generate_key,
    load_signing_key,
    public_path,
)
from toolkit.backends.base import Backend
from toolkit.migration.journal import Journal
from toolkit.models import ArchiveInfo, ExportOptions

JOURNAL_KEY = "archive_key"
EPHEMERAL_NAME = "archive-signing.key"


@dataclasses.dataclass(frozen=True)
class ArchiveKey:
    """The key that signs one migration's archive, and how its import verifies it."""

    sign_key: str
    verify: str  # the public key inline (ed25519:...), for ImportOptions.verify_keys
    ephemeral: bool

    @property
    def verify_keys(self) -> tuple[str, ...]:
        return (self.verify,)

    def export(self, source: Backend, name: str, dest: str, options: ExportOptions) -> ArchiveInfo:
        """``source.export_checkpoint`` signed with this key; an ephemeral key is removed
        afterwards, whatever happened."""
        try:
            return source.export_checkpoint(
                name, dest, dataclasses.replace(options, sign_key=self.sign_key)
            )
        finally:
            if self.ephemeral:
                Path(self.sign_key).unlink(missing_ok=True)


def archive_key(journal: Journal) -> ArchiveKey:
    """The configured signing key, or a new one for this migration; recorded in the journal.

    Raises:
        NotFound, InvalidArgument: the configured key is missing or unusable.
    """
    configured = configured_signing_key()
    if configured:
        key = load_signing_key(configured)
        result = ArchiveKey(configured, key.public_key().spec, ephemeral=False)
    else:
        private = journal.workdir / EPHEMERAL_NAME
        for stale in (private, public_path(private)):  # of a killed earlier attempt
            stale.unlink(missing_ok=True)
        generate_key(private)
        key = load_signing_key(private)
        # Only the public half in memory counts; its file is not needed.
        public_path(private).unlink(missing_ok=True)
        result = ArchiveKey(str(private), key.public_key().spec, ephemeral=True)
    journal.extra[JOURNAL_KEY] = result.verify
    return result


def recorded_keys(journal: Journal) -> tuple[str, ...]:
    """The verify keys of a journal's archive (none for migrations before signing)."""
    value = journal.extra.get(JOURNAL_KEY)
    return (str(value),) if value else ()


__all__ = ["ArchiveKey", "archive_key", "recorded_keys"]
