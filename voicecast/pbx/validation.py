"""Validation of every value that reaches the PBX (AMI headers, AGI arguments, dial strings).

A contact's field must never become an AMI header or a dialplan instruction: numbers are
E.164 digits only, dial strings are built from a template by substituting that number, and
caller-ID names are limited to printable characters without quotes or angle brackets.
"""

from __future__ import annotations

import re

from voicecast.errors import UnsafeValueError

E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}\Z")
_DIALABLE_RE = re.compile(r"^\+?[0-9]{3,20}\Z")
_TEMPLATE_RE = re.compile(r"^[A-Za-z0-9/@_.+:;-]*\{number\}[A-Za-z0-9/@_.+:;-]*\Z")
_ID_RE = re.compile(r"^[A-Za-z0-9-]{8,64}\Z")
_CALLER_NAME_RE = re.compile(r"^[\w .,'&-]{0,40}\Z")
EXTENSION_RE = re.compile(r"^[A-Za-z0-9_+*#-]{1,40}@[A-Za-z0-9_-]{1,40}\Z")
"""A transfer target in the dialplan, ``exten@context`` (dialled as ``Local/exten@context``)."""
QUEUE_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}\Z")
"""A transfer target queue name (``Queue(name)``)."""
_VARIABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_VARIABLE_VALUE_RE = re.compile(r'^[^\x00-\x1f\x7f-\x9f\ud800-\udfff,"\\]{0,1024}\Z')


def check_e164(number: str, what: str = "number") -> str:
    """Return ``number`` if it is E.164 (``+`` then 7 to 15 digits).

    Raises:
        UnsafeValueError: anything else (letters, spaces, dialplan characters, CR/LF).
    """
    if not isinstance(number, str) or not E164_RE.match(number):
        raise UnsafeValueError(f"{what} is not an E.164 number: {number!r}")
    return number


def build_dial_string(template: str, number: str) -> str:
    """Substitute ``number`` into a dial-string template such as ``PJSIP/{number}@trunk``.

    Args:
        template: holds ``{number}`` once, and otherwise only ``A-Za-z0-9/@_.+:;-``.
        number: digits with an optional leading ``+`` (3 to 20 digits).

    Raises:
        UnsafeValueError: the number holds anything but digits and ``+``, or the template
            has other characters (``&``, ``,``, ``(``, spaces... would let Dial() fan out).
    """
    if not isinstance(number, str) or not _DIALABLE_RE.match(number):
        raise UnsafeValueError(f"refusing to dial {number!r}: only digits and + are allowed")
    if not _TEMPLATE_RE.match(template) or template.count("{number}") != 1:
        raise UnsafeValueError(f"invalid dial-string template {template!r}")
    return template.replace("{number}", number)


def check_attempt_id(value: str) -> str:
    """Return ``value`` if it is a valid attempt id (letters, digits, ``-``; 8 to 64 chars).

    Raises:
        UnsafeValueError: otherwise.
    """
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise UnsafeValueError(f"invalid attempt id {value!r}")
    return value


def caller_id_header(number: str, name: str = "") -> str:
    """The AMI ``CallerID`` value: ``"Name" <+33...>`` or ``<+33...>``.

    Raises:
        UnsafeValueError: the number is not E.164, or the name has quotes, angle brackets,
            control characters or more than 40 characters.
    """
    check_e164(number, "caller ID")
    if not _CALLER_NAME_RE.match(name):
        raise UnsafeValueError(f"caller ID name not allowed: {name!r}")
    return f'"{name}" <{number}>' if name else f"<{number}>"


def channel_variable(name: str, value: str, *, reserved: str = "") -> str:
    """The AMI Originate ``Variable`` header value ``name=value``.

    Asterisk splits that header on commas (honouring quotes and backslashes) and sets each
    ``name=value`` part: a value holding ``a,VC_AGI=agi://elsewhere`` would set a second
    variable (reference: Asterisk ``manager.c``, ``man_do_variable_value``). So names are
    plain identifiers, and values (at most 1024 characters) hold no comma, double quote,
    backslash nor control character.

    Args:
        reserved: a name prefix the caller may not use (e.g. ``"VC_"``, voicecast's own).

    Raises:
        UnsafeValueError: the name or the value is outside those sets, or uses ``reserved``.
    """
    if not isinstance(name, str) or not _VARIABLE_NAME_RE.match(name):
        raise UnsafeValueError(f"invalid channel variable name {name!r}")
    if reserved and name.upper().startswith(reserved.upper()):
        raise UnsafeValueError(f"channel variable {name!r}: the prefix {reserved} is reserved")
    if not isinstance(value, str) or not _VARIABLE_VALUE_RE.match(value):
        raise UnsafeValueError(f"channel variable {name}: value not allowed: {value!r}")
    return f"{name}={value}"
