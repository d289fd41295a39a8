"""Contact lists: parse CSV/xlsx exports (:mod:`.importer`) and store them (:mod:`.service`)."""

from voicecast.contacts.importer import (
    CANONICAL_FIELDS,
    ImportFormatError,
    InvalidPhoneError,
    ParsedContact,
    ParseResult,
    RejectedRow,
    normalize_phone,
    parse_contacts_file,
    write_rejects_csv,
)
from voicecast.contacts.service import ImportSummary, import_contacts

__all__ = [
    "CANONICAL_FIELDS",
    "ImportFormatError",
    "ImportSummary",
    "InvalidPhoneError",
    "ParseResult",
    "ParsedContact",
    "RejectedRow",
    "import_contacts",
    "normalize_phone",
    "parse_contacts_file",
    "write_rejects_csv",
]
