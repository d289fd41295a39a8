"""An independent AMI observer for end-to-end tests.

It logs in next to the controller and records, with Asterisk's own timestamps, every
Newchannel / Hangup / OriginateResponse event, and polls ``CoreShowChannels`` to sample
Asterisk's own channel count. Runs in a thread so tests stay synchronous.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass, field

from voicecast.ami.protocol import AmiMessage, parse_messages

PRIMARY_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class AmiMonitor:
    port: int
    secret: str
    poll_interval: float = 0.1
    events: list[AmiMessage] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self._sock.recv(100)  # banner
        self._send(f"Action: Login\r\nUsername: voicecast\r\nSecret: {self.secret}\r\n\r\n")
        self._listing: list[AmiMessage] = []
        self._listings: list[tuple[float, list[str]]] = []
        self._asked_at = 0.0
        self._poll_id = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _send(self, text: str) -> None:
        self._sock.sendall(text.encode())

    def _run(self) -> None:
        buf = b""
        self._sock.settimeout(self.poll_interval)
        next_poll = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_poll:
                self._poll_id += 1
                # a Ping first: its response carries Asterisk's clock (Timestamp)
                self._send(
                    f"Action: Ping\r\nActionID: ping-{self._poll_id}\r\n\r\n"
                    f"Action: CoreShowChannels\r\nActionID: mon-{self._poll_id}\r\n\r\n"
                )
                next_poll = now + self.poll_interval
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            self.raw.extend(chunk)
            msgs, buf = parse_messages(buf + chunk)
            for m in msgs:
                self._handle(m)

    def _handle(self, m: AmiMessage) -> None:
        ev = m.event
        if ev is None and (m.get("ActionID") or "").startswith("ping-"):
            # Asterisk's clock just before it takes the channel snapshot of this poll
            self._asked_at = float(m.get("Timestamp") or 0.0)
        elif ev == "CoreShowChannel":
            self._listing.append(m)
        elif ev == "CoreShowChannelsComplete":
            ours = [
                c.get("Uniqueid") or ""
                for c in self._listing
                if PRIMARY_ID.match(c.get("Uniqueid") or "")
            ]
            self._listings.append((self._asked_at, ours))
            self._listing = []
        elif ev in ("Newchannel", "Hangup", "OriginateResponse"):
            self.events.append(m)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    # --- views ------------------------------------------------------------------------------

    def primary_newchannels(self) -> list[AmiMessage]:
        """Newchannel events of our outbound legs (Uniqueid = an attempt id)."""
        return [
            e
            for e in self.events
            if e.event == "Newchannel" and PRIMARY_ID.match(e.get("Uniqueid") or "")
        ]

    def dialled_numbers(self) -> list[str]:
        """The number of each outbound leg Asterisk created, in order (from the channel name
        ``Local/<number>@sim-pstn-...``)."""
        out = []
        for e in self.primary_newchannels():
            channel = e.get("Channel") or ""
            out.append(channel.split("/", 1)[-1].split("@", 1)[0])
        return out

    def max_concurrent_from_events(self) -> int:
        """Peak number of our primary channels alive at once, from Asterisk's event order."""
        up: set[str] = set()
        peak = 0
        for e in self.events:
            uid = e.get("Uniqueid") or ""
            if not PRIMARY_ID.match(uid):
                continue
            if e.event == "Newchannel":
                up.add(uid)
                peak = max(peak, len(up))
            elif e.event == "Hangup":
                up.discard(uid)
        return peak

    def max_concurrent_sampled(self) -> int:
        """Peak of Asterisk's own CoreShowChannels count of our primary channels.

        CoreShowChannels reads the channel snapshot cache, which keeps a channel a little
        after its hangup, and this connection may receive that Hangup event after the
        listing; meanwhile the dialer, told of the hangup, may already have placed the next
        call, which the same listing shows. The snapshot was taken after the Ping before the
        listing and after every listed channel was created (Asterisk's Newchannel
        timestamps), so a listed channel whose Hangup Asterisk timestamped before that
        instant was already gone: not counted. A channel alive at the snapshot always is.
        A listing can show one channel twice under the same Uniqueid (seen in a full-suite
        run: one attempt listed twice among six entries); channels are counted once each.
        """
        created = {
            e.get("Uniqueid") or "": float(e.get("Timestamp") or 0.0)
            for e in self.events
            if e.event == "Newchannel"
        }
        hung_up = {
            e.get("Uniqueid") or "": float(e.get("Timestamp") or 0.0)
            for e in self.events
            if e.event == "Hangup"
        }
        peaks = []
        for asked_at, listed in self._listings:
            uids = set(listed)  # a channel being renamed (Local optimisation) is listed twice
            taken_after = max([asked_at, *(created.get(uid, 0.0) for uid in uids)])
            peaks.append(sum(1 for uid in uids if hung_up.get(uid, float("inf")) > taken_after))
        return max(peaks, default=0)
