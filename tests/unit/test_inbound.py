"""The call-back line's pure parts: who is calling, in which language."""

from __future__ import annotations

import pytest

from voicecast.dialer.inbound import caller_e164, language_for

OUR_CLI = "+33162000000"


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ("+33199000005", "+33199000005"),
        ("0199000005", "+33199000005"),  # national, read in the country of our number
        ("01 99 00 00 05", "+33199000005"),
        ("0690001234", "+590690001234"),  # a Guadeloupe mobile written nationally
        ("+12025550123", "+12025550123"),
        ("anonymous", None),
        ("", None),
        (None, None),
        ("0199000005\r\nAction: Originate", None),
        ("123", None),
    ],
)
def test_caller_e164(caller: str | None, expected: str | None) -> None:
    assert caller_e164(caller, OUR_CLI) == expected


def test_caller_e164_needs_our_number_in_e164() -> None:
    assert caller_e164("0199000005", "0162000000") is None


@pytest.mark.parametrize(
    ("number", "language"),
    [
        ("+33199000005", "fr"),
        ("+262262123456", "fr"),
        ("+12025550123", "en"),
        ("+442079460123", "en"),
    ],
)
def test_language_for(number: str, language: str) -> None:
    assert language_for(number) == language
