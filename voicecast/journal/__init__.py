"""The proof journal: an append-only, hash-chained record of everything that proves each
call was lawful (gate decisions, attempts, message drops, opt-outs, consents, imports,
erasures, console and API changes).

* :mod:`.chain`: the hash chain, pure (encoding, hashes, verification).
* :mod:`.kinds`: the entry kinds and their data.
* :mod:`.store`: appending and reading in the database (triggers of migration 0006 refuse
  UPDATE and DELETE).
* :mod:`.bundle`: signed export bundles for auditors.
"""

from voicecast.journal.store import (
    JournalError,
    acting_as,
    append,
    cli_actor,
    current_actor,
    subject_of,
    verify,
)

__all__ = [
    "JournalError",
    "acting_as",
    "append",
    "cli_actor",
    "current_actor",
    "subject_of",
    "verify",
]
