"""Fuzzing with hypothesis (issue 7, hostile input): the contact importer, the scenario
loader and the AMI wire format on arbitrary input.

Each test either gets a valid result or the project's own clear error type, never another
exception, and never leaves half an import in the database. Bounded for CI: a fixed number
of examples per test (a few seconds each), ``derandomize=True`` (the same examples on every
run, so a failure in CI reproduces locally) and no example database.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import unittest.mock
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from voicecast.ami import protocol
from voicecast.ami.protocol import AmiProtocolError, encode_action, parse_messages
from voicecast.contacts.importer import parse_contacts_file
from voicecast.contacts.service import import_contacts
from voicecast.errors import UnsafeValueError, VoicecastError
from voicecast.pbx.validation import E164_RE
from voicecast.scenarios import Scenario, ScenarioError, load_scenario
from voicecast.storage.db import make_engine, migrate, session_factory
from voicecast.storage.models import Contact, ContactList, JournalEntry

_DEEP = int(os.environ.get("VOICECAST_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_DEEP or 200,
    deadline=None,
    derandomize=not _DEEP,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
"""Shared bounds: deterministic, one to a few seconds per test on a busy CI machine.
``VOICECAST_FUZZ_EXAMPLES=20000`` runs a longer, randomised search (by hand, not in CI)."""


# --------------------------------------------------------------------------- importer


@pytest.fixture(scope="module")
def fuzz_sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker[Session]]:
    """One migrated database for a whole fuzz test module (hypothesis runs many examples
    per test; a function-scoped database would be shared anyway)."""
    engine: Engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('fuzzdb')}/t.db")
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


def _counts(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    with sessions() as s:
        return (
            s.scalar(select(func.count()).select_from(ContactList)) or 0,
            s.scalar(select(func.count()).select_from(Contact)) or 0,
            s.scalar(select(func.count()).select_from(JournalEntry)) or 0,
        )


def _import_bytes(sessions: sessionmaker[Session], data: bytes, suffix: str) -> None:
    """Parse ``data`` as a contact file and store it in one transaction, as the CLI does.

    Asserts the outcome: either a clean import (only E.164 numbers, no control characters
    in fields, counts that add up, one journal entry) or a :class:`VoicecastError` with the
    database exactly as before.
    """
    before = _counts(sessions)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"contacts{suffix}"
        path.write_bytes(data)
        try:
            with sessions() as s, s.begin():
                result = parse_contacts_file(path)
                counts = import_contacts(s, "fuzz", result)
        except VoicecastError as exc:
            assert str(exc)
            assert _counts(sessions) == before
            return
    for contact in result.contacts:
        assert E164_RE.match(contact.phone_e164), contact
        for value in contact.fields.values():
            assert value and value == value.strip()
            assert not any(ord(c) < 32 or ord(c) == 127 for c in value), value
    assert result.rows_read >= len(result.contacts) + len(result.rejects)
    after = _counts(sessions)
    assert after[1] == before[1] + counts[0]
    assert after[2] == before[2] + 1  # the contacts.imported entry, in the same transaction


@FUZZ
@given(data=st.binary(max_size=3000), suffix=st.sampled_from([".csv", ".txt", ".xlsx"]))
def test_importer_on_arbitrary_bytes(
    fuzz_sessions: sessionmaker[Session], data: bytes, suffix: str
) -> None:
    _import_bytes(fuzz_sessions, data, suffix)


_CELL = st.one_of(
    st.sampled_from(
        [
            "",
            "01 99 00 00 10",
            "+33199000011",
            "02 61 91 00 12",
            "(+33) 3 53 01 00 13",
            "tel:+12025550123",
            "020 7946 0014",
            "٠١٩٩٠٠٠٠١٥",  # Arabic-Indic digits
            "０１９９０００００１６",  # fullwidth digits
            "3.31990000017E+10",
            "0199000018\r\nAction: Command",
            "' OR 1=1 --",
            '"; DROP TABLE contacts; --',
            '=HYPERLINK("http://example.invalid")',
            "Camille",
            "Société",
            "\x00",
            '"',
            '""',
            "a\nb",
        ]
    ),
    st.text(max_size=20),
)
_HEADERS = st.lists(
    st.sampled_from(["phone", "Téléphone", "first_name", "Prénom", "Nom", "x", "", "sep=;"]),
    min_size=0,
    max_size=5,
)


@st.composite
def odd_csv(draw: st.DrawFn) -> tuple[bytes, str]:
    """Structured but odd CSV text: real header names, ragged rows, stray quotes, hostile
    cells, any of the usual delimiters and line ends, in a random encoding."""
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    quote_cells = draw(st.booleans())
    rows = [draw(_HEADERS)]
    rows += draw(st.lists(st.lists(_CELL, max_size=6), max_size=12))

    def cell(value: str) -> str:
        return '"' + value.replace('"', '""') + '"' if quote_cells else value

    text = newline.join(delimiter.join(cell(c) for c in row) for row in rows)
    if draw(st.booleans()):
        text += newline
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16", "utf-16-le"]))
    suffix = draw(st.sampled_from([".csv", ".txt"]))
    return text.encode(encoding, errors="replace"), suffix


@FUZZ
@given(case=odd_csv())
def test_importer_on_odd_csv_text(
    fuzz_sessions: sessionmaker[Session], case: tuple[bytes, str]
) -> None:
    _import_bytes(fuzz_sessions, *case)


def _xlsx_bytes() -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["phone", "first_name"])
    sheet.append(["+33199000020", "Camille"])
    sheet.append([33199000021, "Louis"])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


_XLSX = _xlsx_bytes()


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_XLSX) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ),
    cut=st.one_of(st.none(), st.integers(4, len(_XLSX))),
)
def test_importer_on_damaged_xlsx(
    fuzz_sessions: sessionmaker[Session], edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(_XLSX)
    for offset, byte in edits:
        data[offset] = byte
    _import_bytes(fuzz_sessions, bytes(data[:cut]), ".xlsx")


# --------------------------------------------------------------------------- scenarios


def _load(text: str, fmt: Any = None) -> None:
    try:
        scenario = load_scenario(text, fmt=fmt)
    except ScenarioError as exc:
        assert exc.problems
        assert str(exc)
        return
    assert isinstance(scenario, Scenario)


@FUZZ
@given(text=st.text(max_size=500), fmt=st.sampled_from([None, "yaml", "json"]))
def test_scenario_loader_on_arbitrary_text(text: str, fmt: Any) -> None:
    _load(text, fmt)


_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["play", "menu", "hangup", "goto", "transfer", "record", "opt_out"]),
    st.sampled_from(["start", "end", "a", "b", "$message", "1", "9", "next", "target"]),
)
_DATA = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                ["type", "next", "audio", "text", "keys", "to", "max_visits", "target", "x"]
            )
            | st.text(max_size=6),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=25,
)
_NODE = st.fixed_dictionaries(
    {"type": st.sampled_from(["play", "menu", "goto", "hangup", "transfer", "record", "bogus"])},
    optional={
        "next": st.sampled_from(["start", "a", "b", "end", "missing"]),
        "target": st.sampled_from(["start", "a", "b", "end"]),
        "text": st.text(max_size=30),
        "audio": st.sampled_from(["$message", "welcome", "../etc/passwd", "a\r\nAction: x"]),
        "keys": st.dictionaries(st.sampled_from(["1", "2", "9", "x"]), st.sampled_from(["a", "b"])),
        "max_visits": st.integers(-2, 5),
        "to": _DATA,
    },
)


@st.composite
def scenario_document(draw: st.DrawFn) -> tuple[str, str]:
    """A scenario-shaped structure (known keys and node types, random links and loops, odd
    values) or any nested data, dumped as YAML or JSON."""
    if draw(st.booleans()):
        data: Any = {
            "version": draw(st.sampled_from([1, 2, "1"])),
            "start": draw(st.sampled_from(["start", "a", "missing"])),
            "nodes": draw(st.dictionaries(st.sampled_from(["start", "a", "b", "end"]), _NODE)),
        }
    else:
        data = draw(_DATA)
    if draw(st.booleans()):
        return json.dumps(data, allow_nan=True), "json"
    return yaml.safe_dump(data, allow_unicode=True), "yaml"


@FUZZ
@given(case=scenario_document())
def test_scenario_loader_on_odd_structures(case: tuple[str, str]) -> None:
    text, fmt = case
    _load(text, fmt)
    _load(text, None)


# --------------------------------------------------------------------------- AMI


def _feed(chunks: list[bytes]) -> tuple[list[Any], bytes]:
    """Feed ``chunks`` to the parser as a client reads them; all messages and the rest."""
    messages: list[Any] = []
    rest = b""
    for chunk in chunks:
        got, rest = parse_messages(rest + chunk)
        messages += got
    return messages, rest


_AMI_PIECES = st.lists(
    st.one_of(
        st.binary(max_size=12),
        st.sampled_from(
            [b"\r\n", b"\r\n\r\n", b"\n", b"\r", b":", b": ", b"Event: Hangup", b"ActionID: 1"]
        ),
    ),
    max_size=40,
).map(b"".join)


@FUZZ
@given(
    stream=_AMI_PIECES, cuts=st.lists(st.integers(0, 400), max_size=12), limit=st.integers(0, 64)
)
def test_ami_parser_is_independent_of_chunking(stream: bytes, cuts: list[int], limit: int) -> None:
    """Whatever the chunking: the same messages and rest, or AmiProtocolError in both cases
    (the message size limit is lowered so that hypothesis reaches it)."""
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    with unittest.mock.patch.object(protocol, "MAX_MESSAGE_BYTES", limit):
        try:
            whole = parse_messages(stream)
        except AmiProtocolError:
            with pytest.raises(AmiProtocolError):
                _feed(chunks)
            return
        assert _feed(chunks) == (whole[0], whole[1])
    for message in whole[0]:
        assert message.headers


_KEY = st.from_regex(r"\A[A-Za-z][A-Za-z0-9_-]{0,20}\Z")
_SAFE_TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00\x7f").filter(
        lambda c: c == "\t" or ord(c) >= 32
    ),
    max_size=30,
)


@FUZZ
@given(action=_KEY, headers=st.lists(st.tuples(_KEY, _SAFE_TEXT), max_size=8))
def test_encode_then_parse_round_trip(action: str, headers: list[tuple[str, str]]) -> None:
    data = encode_action(action, headers)
    messages, rest = parse_messages(data)
    assert rest == b""
    assert len(messages) == 1
    assert messages[0].headers == (("Action", action), *headers)


@FUZZ
@given(
    action=st.text(max_size=12),
    headers=st.lists(st.tuples(st.text(max_size=12), st.text(max_size=30)), max_size=5),
)
def test_encode_action_never_sends_an_injection(
    action: str, headers: list[tuple[str, str]]
) -> None:
    """Any text: either refused (UnsafeValueError) or exactly one message with exactly the
    given headers on the wire (no header or action smuggled in)."""
    try:
        data = encode_action(action, headers)
    except UnsafeValueError:
        return
    messages, rest = parse_messages(data)
    assert rest == b""
    assert [m.headers for m in messages] == [(("Action", action), *headers)]
