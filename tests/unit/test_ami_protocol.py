"""voicecast.ami.protocol: the AMI wire format (parser and encoder, no I/O).

The recorded transcript ``tests/fixtures/ami/originate_busy.txt`` is what Asterisk 22 sends
to the controller for one Originate to a busy number of the sandbox's simulated network
(``Local/+33199000013@sim-pstn``, last digit 3 = busy, Q.850 cause 17), CRLF line endings.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from voicecast.ami.protocol import (
    MAX_MESSAGE_BYTES,
    AmiMessage,
    AmiProtocolError,
    check_value,
    encode_action,
    parse_block,
    parse_messages,
)
from voicecast.dialer.outcomes import Outcome, outcome_of_unanswered
from voicecast.errors import UnsafeValueError
from voicecast.pbx.asterisk import AsteriskBackend, AsteriskEndpoint, attempt_of

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ami"
ATTEMPT = "5f2c9a0e7b1d4c3a8e6f0a1b2c3d4e5f"


@pytest.fixture(scope="module")
def transcript() -> bytes:
    return (FIXTURES / "originate_busy.txt").read_bytes()


def msg(*pairs: tuple[str, str]) -> AmiMessage:
    return AmiMessage(tuple(pairs))


# --- the recorded transcript ----------------------------------------------------------------


def test_fixture_uses_crlf_line_endings(transcript: bytes) -> None:
    assert transcript.endswith(b"\r\n\r\n")
    assert transcript.count(b"\n") == transcript.count(b"\r\n")


def test_parse_recorded_transcript(transcript: bytes) -> None:
    messages, rest = parse_messages(transcript)
    assert rest == b""
    kinds = [m.event or f"Response:{m.response}" for m in messages]
    assert kinds == [
        "Response:Success",
        "FullyBooted",
        "Response:Success",
        "Newchannel",
        "Newchannel",
        "VarSet",
        "Newexten",
        "Newexten",
        "Hangup",
        "OriginateResponse",
        "Hangup",
    ]
    ack = messages[2]
    assert ack.action_id == ATTEMPT
    assert ack["Message"] == "Originate successfully queued"

    first_leg = messages[3]
    assert first_leg["Channel"] == "Local/+33199000013@sim-pstn-00000000;1"
    assert first_leg["Uniqueid"] == ATTEMPT
    assert first_leg["AccountCode"] == ""  # "AccountCode: " (empty value) is kept
    assert messages[4]["Uniqueid"] == ATTEMPT + "-b"

    varset = messages[5]
    assert varset["CallerIDName"] == "Voicecast Démo"  # UTF-8 decoded
    assert varset["Value"] == ATTEMPT

    noop = messages[6]
    # Only the first ":" separates key and value.
    assert noop["AppData"] == f"sim-pstn: call to +33199000013 attempt {ATTEMPT}"

    response = messages[9]
    assert response["Response"] == "Failure"
    assert response["Reason"] == "5"
    assert response["Uniqueid"] == "<null>"
    assert response.action_id == ATTEMPT
    assert response["Application"] == ""

    for hangup in (messages[8], messages[10]):
        assert hangup["Cause"] == "17"
        assert hangup["Cause-txt"] == "User busy"


def test_split_at_every_byte_offset_gives_the_same_messages(transcript: bytes) -> None:
    whole, _ = parse_messages(transcript)
    for cut in range(len(transcript) + 1):
        first, rest = parse_messages(transcript[:cut])
        second, tail = parse_messages(rest + transcript[cut:])
        assert first + second == whole, f"cut at byte {cut}"
        assert tail == b""


def test_byte_by_byte_feed_gives_the_same_messages(transcript: bytes) -> None:
    whole, _ = parse_messages(transcript)
    got: list[AmiMessage] = []
    buffer = b""
    for i in range(len(transcript)):
        messages, buffer = parse_messages(buffer + transcript[i : i + 1])
        got.extend(messages)
    assert got == whole
    assert buffer == b""


class RecordingListener:
    """A PbxListener that records what the backend reports."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def on_originate_result(self, attempt_id: str, answered: bool, reason: int) -> None:
        self.calls.append(("originate", attempt_id, answered, reason))

    def on_hangup(self, attempt_id: str, cause: int, cause_text: str, primary: bool) -> None:
        self.calls.append(("hangup", attempt_id, cause, cause_text, primary))

    def on_connection(self, connected: bool) -> None:
        self.calls.append(("connection", connected))


def make_backend() -> tuple[AsteriskBackend, RecordingListener]:
    endpoint = AsteriskEndpoint(
        ami_host="127.0.0.1",
        ami_port=5038,
        username="voicecast",
        secret="unused",
        agi_host="127.0.0.1",
        agi_port=4573,
        agi_url="agi://127.0.0.1:4573",
        dial_string="Local/{number}@sim-pstn",
    )
    backend = AsteriskBackend(endpoint)
    listener = RecordingListener()
    backend._listener = listener
    return backend, listener


def test_replay_through_the_asterisk_backend_handlers(transcript: bytes) -> None:
    """The transcript, dispatched like AmiClient does, tells the dialer: busy."""
    backend, listener = make_backend()
    messages, _ = parse_messages(transcript)
    for m in messages:
        if m.event == "OriginateResponse":
            backend._on_originate_response(m)
        elif m.event == "Hangup":
            backend._on_hangup(m)

    assert listener.calls == [
        ("hangup", ATTEMPT, 17, "User busy", False),
        ("originate", ATTEMPT, False, 5),
        ("hangup", ATTEMPT, 17, "User busy", True),
    ]
    causes = [int(str(c[2])) for c in listener.calls if c[0] == "hangup"]
    assert outcome_of_unanswered(5, causes) is Outcome.BUSY


def test_backend_ignores_events_that_are_not_ours() -> None:
    backend, listener = make_backend()
    backend._on_hangup(msg(("Event", "Hangup"), ("Uniqueid", "1764412068.42"), ("Cause", "16")))
    backend._on_originate_response(
        msg(("Event", "OriginateResponse"), ("Response", "Failure"), ("Uniqueid", "<null>"))
    )
    assert listener.calls == []
    # Our id is found through Uniqueid when the ActionID is foreign; odd numbers become 0.
    backend._on_originate_response(
        msg(
            ("Event", "OriginateResponse"),
            ("ActionID", "other.1"),
            ("Response", "Success"),
            ("Reason", "x"),
            ("Uniqueid", ATTEMPT),
        )
    )
    backend._on_hangup(msg(("Event", "Hangup"), ("Uniqueid", ATTEMPT), ("Cause", "")))
    assert listener.calls == [
        ("originate", ATTEMPT, True, 0),
        ("hangup", ATTEMPT, 0, "", True),
    ]


@pytest.mark.parametrize(
    ("unique_id", "expected"),
    [
        (ATTEMPT, (ATTEMPT, True)),
        (ATTEMPT + "-b", (ATTEMPT, False)),
        ("1764412068.42", None),
        ("<null>", None),
        ("", None),
        ("short-b", None),
        ("x" * 65, None),
    ],
)
def test_attempt_of(unique_id: str, expected: tuple[str, bool] | None) -> None:
    assert attempt_of(unique_id) == expected


# --- parsing ----------------------------------------------------------------------------------


def test_partial_buffer_is_kept_for_the_next_read() -> None:
    data = b"Response: Success\r\nActionID: 1\r\n\r\nEvent: Hangup\r\nCause: 1"
    messages, rest = parse_messages(data)
    assert [m.headers for m in messages] == [(("Response", "Success"), ("ActionID", "1"))]
    assert rest == b"Event: Hangup\r\nCause: 1"
    assert parse_messages(b"") == ([], b"")
    assert parse_messages(b"Event: X\r\n\r") == ([], b"Event: X\r\n\r")


def test_empty_blocks_are_skipped() -> None:
    messages, rest = parse_messages(b"\r\n\r\n\r\n\r\nEvent: Ping\r\n\r\n")
    assert [m.event for m in messages] == ["Ping"]
    assert rest == b""


def test_lf_only_lines_inside_a_message() -> None:
    messages, _ = parse_messages(b"Event: Hangup\nCause: 17\r\nCause-txt: User busy\n\r\n\r\n")
    assert messages[0].headers == (
        ("Event", "Hangup"),
        ("Cause", "17"),
        ("Cause-txt", "User busy"),
    )


def test_line_without_colon_is_kept_under_the_empty_key() -> None:
    block = b"Response: Follows\r\nPrivilege: Command\r\nCore uptime: 10 s\r\nno colon here"
    message = parse_block(block)
    assert message is not None
    assert message.headers[-1] == ("", "no colon here")
    assert message.get("") == "no colon here"
    assert message["Core uptime"] == "10 s"


def test_value_spacing() -> None:
    message = parse_block(b"A:value\r\nB:  two spaces\r\n  C  : x\r\nD:\r\nE: a: b")
    assert message is not None
    assert message.headers == (
        ("A", "value"),
        ("B", " two spaces"),
        ("C", "x"),
        ("D", ""),
        ("E", "a: b"),
    )


def test_non_utf8_bytes_are_replaced() -> None:
    data = b"Event: Newchannel\r\nCallerIDName: Jos\xe9 \xff\xfe\r\n\r\nEvent: Hangup\r\n\r\n"
    messages, rest = parse_messages(data)
    assert rest == b""
    assert messages[0]["CallerIDName"] == "Jos\ufffd \ufffd\ufffd"
    assert messages[1].event == "Hangup"


def test_oversized_tail_raises() -> None:
    ok = b"x" * MAX_MESSAGE_BYTES
    assert parse_messages(ok) == ([], ok)
    with pytest.raises(AmiProtocolError):
        parse_messages(b"x" * (MAX_MESSAGE_BYTES + 1))
    with pytest.raises(AmiProtocolError):
        parse_messages(b"Event: Ping\r\n\r\nData: " + b"x" * MAX_MESSAGE_BYTES)


def test_message_accessors() -> None:
    m = msg(
        ("Event", "VarSet"),
        ("ActionID", "a-1"),
        ("Variable", "A=1"),
        ("variable", "B=2"),
        ("Response", "Success"),
    )
    assert m.event == "VarSet"
    assert m.response == "Success"
    assert m.action_id == "a-1"
    assert m.get("EVENT") == "VarSet"
    assert m.get("missing") is None
    assert m.get("missing", "d") == "d"
    assert m["variable"] == "A=1"
    assert m.get_all("VARIABLE") == ["A=1", "B=2"]
    assert m.get_all("nothing") == []
    assert "actionid" in m
    assert "Missing" not in m
    assert 3 not in m
    with pytest.raises(KeyError):
        m["Missing"]
    assert m.as_dict() == {
        "Event": "VarSet",
        "ActionID": "a-1",
        "Variable": "A=1",
        "variable": "B=2",
        "Response": "Success",
    }


# --- encoding ---------------------------------------------------------------------------------


def test_encode_action_exact_bytes() -> None:
    assert encode_action("Ping", {"ActionID": "p-1"}) == b"Action: Ping\r\nActionID: p-1\r\n\r\n"
    assert encode_action("Ping", {}) == b"Action: Ping\r\n\r\n"


def test_encode_action_round_trip_with_duplicate_headers() -> None:
    headers = {
        "Channel": "Local/+33199000010@sim-pstn",
        "Context": "voicecast-outbound",
        "Exten": "s",
        "Priority": "1",
        "CallerID": '"Hélène Démo" <+33261910000>',
        "Timeout": "30000",
        "Async": "true",
        "ChannelId": ATTEMPT,
        "OtherChannelId": ATTEMPT + "-b",
        "Variable": [f"VC_ATTEMPT={ATTEMPT}", "VC_AGI=agi://127.0.0.1:4573", "X=a:b=c"],
        "ActionID": ATTEMPT,
    }
    data = encode_action("Originate", headers)
    assert data.endswith(b"\r\n\r\n")
    assert data.count(b"\r\n\r\n") == 1
    messages, rest = parse_messages(data)
    assert rest == b""
    [m] = messages
    assert m.headers[0] == ("Action", "Originate")
    assert m.get_all("Variable") == headers["Variable"]
    assert m["CallerID"] == '"Hélène Démo" <+33261910000>'
    expected = [("Action", "Originate")]
    for key, value in headers.items():
        values = [value] if isinstance(value, str) else value
        expected.extend((key, v) for v in values)
    assert list(m.headers) == expected


def test_encode_action_from_pairs_keeps_order_and_duplicates() -> None:
    pairs = [("Variable", "A=1"), ("ActionID", "x-1"), ("Variable", "B=2")]
    [m], _ = parse_messages(encode_action("Setvar", pairs))
    assert m.headers == (("Action", "Setvar"), *pairs)


def test_encode_action_values_that_are_safe_on_the_wire() -> None:
    # Unicode line separators are not AMI line ends (only LF is): they round trip.
    value = "a\x85b\u2028c\u2029d é"
    [m], _ = parse_messages(encode_action("Ping", {"X-Note": value}))
    assert m["X-Note"] == value


CONTROL_CHARS = ["\r", "\n", "\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f"]


@pytest.mark.parametrize("char", CONTROL_CHARS, ids=[f"0x{ord(c):02x}" for c in CONTROL_CHARS])
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_control_character_in_a_value_is_refused(char: str, where: str) -> None:
    value = {"start": char + "abc", "middle": "ab" + char + "c", "end": "abc" + char}[where]
    with pytest.raises(UnsafeValueError):
        encode_action("Originate", {"Channel": value})
    with pytest.raises(UnsafeValueError):
        encode_action("Originate", {"Variable": ["A=1", value]})
    with pytest.raises(UnsafeValueError):
        encode_action("Originate", [("Exten", "s"), ("CallerID", value)])
    with pytest.raises(UnsafeValueError):
        encode_action(value, {})
    with pytest.raises(UnsafeValueError):
        check_value("Channel", value)


@pytest.mark.parametrize(
    "value",
    [
        "x\r\nAction: Originate",
        "x\r\n\r\nAction: Originate\r\nChannel: PJSIP/+12025550100@trunk",
        "x\nAction: Originate",
        "+33199000010\r\nVariable: A=1",
    ],
)
def test_injection_through_a_value_is_refused(value: str) -> None:
    with pytest.raises(UnsafeValueError):
        encode_action("Originate", {"Channel": "Local/+33199000010@sim-pstn", "CallerID": value})


@pytest.mark.parametrize(
    "key",
    [
        "Fo\no",
        "Fo\r\no",
        "Foo\r",
        "Foo\x00",
        "\nFoo",
        "Foo\x1b",
        "Foo Bar",
        "Foo:",
        " Foo",
        "",
        "1Foo",
        "Fé",
        "K" * 65,
    ],
)
def test_bad_header_name_is_refused(key: str) -> None:
    with pytest.raises(UnsafeValueError):
        encode_action("Ping", {key: "x"})
    with pytest.raises(UnsafeValueError):
        encode_action("Ping", [("ActionID", "1"), (key, "x")])


@pytest.mark.parametrize("action", ["", "Origi nate", "Originate:", "Originate\r", "1Ping"])
def test_bad_action_name_is_refused(action: str) -> None:
    with pytest.raises(UnsafeValueError):
        encode_action(action, {})


@pytest.mark.parametrize("key", ["Foo\n", "Variable\n"])
def test_header_name_with_trailing_newline_is_refused(key: str) -> None:
    with pytest.raises(UnsafeValueError):
        encode_action("Ping", {key: "x"})


def test_non_text_value_is_refused() -> None:
    with pytest.raises(UnsafeValueError):
        encode_action("Originate", {"Variable": ["A=1", 2]})  # type: ignore[list-item]
