"""Asterisk Manager Interface: a pure message parser/encoder and a small asyncio client.

Why not panoramisk (the design card's suggestion): for a dialer its behaviour on connection
loss is dangerous. panoramisk 1.4 re-sends unanswered actions after a reconnect (an Originate
sent twice is a person called twice), leaves an async Originate's future pending forever
when the connection drops, has no timeout on actions, and a handler that raises inside
``data_received`` kills the connection (see docs in ASTERISK-NOTES). This package never
re-sends anything, gives every action a timeout, fails pending actions on disconnect, and
contains handler errors. Protocol reference: Asterisk documentation, "AMI v2 Specification".
"""

from voicecast.ami.client import AmiClient, AmiConnectionError, AmiError, AmiResponse
from voicecast.ami.protocol import AmiMessage, AmiProtocolError, encode_action, parse_messages

__all__ = [
    "AmiClient",
    "AmiConnectionError",
    "AmiError",
    "AmiMessage",
    "AmiProtocolError",
    "AmiResponse",
    "encode_action",
    "parse_messages",
]
