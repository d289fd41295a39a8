"""Benchmark: AMI events per second parsed and dispatched by the controller's AMI code.

Run: ``.venv/bin/python bench/ami_events.py [--seconds S] [--quick] [--json FILE]``
(no Asterisk needed); ``--record`` makes the transcript again from the sandbox Asterisk
(takes ``/tmp/voicecast-sandbox.lock``, starts and stops it).

The transcript, ``bench/data/ami-burst.txt.gz``, holds the AMI events Asterisk sent to the
controller's AMI user (so filtered as ``asterisk-conf/manager.conf`` says: Newchannel,
Newstate, Hangup, OriginateResponse, FullyBooted) during a burst: a voicecast campaign of
200 contacts at 40 calls per second on the sandbox, the mix of simulated callees of
``bench/dialling.py`` (fictional numbers +33 1 99 00 xx xx). ``bench/data/ami-burst.json``
gives how fast Asterisk produced them: events per second over the burst (first to last
``Timestamp``) and in its busiest second.

The replay runs the production path in memory: an :class:`AsteriskBackend` started as the
dialer starts it (its own handlers subscribed), whose AMI client reads from an in-memory
stream instead of a socket (``AmiClient._read_loop``: :func:`parse_messages`, then
``_dispatch`` to the backend's handlers, then a listener that counts the calls it gets; the
dialer's own work per event, database writes, is in ``bench/dialling.py``'s CPU figures).
Two ways of reading:

- *one event per read*: each event arrives alone (a read, a parse and a dispatch per
  event, with an event-loop turn in between), the costliest case, what the controller
  sees when events trickle in;
- *64 KiB reads*: the events are already waiting, the case of a backlog.

Figures: events per second in each case (wall clock, one core), and the *headroom*: events
per second replayed one per read divided by the rate Asterisk produced them in the burst's
busiest second (and on average over the burst).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import AmiRecorder, fmt, machine_info, sandbox_session, write_json
from voicecast.ami import client as ami_client
from voicecast.ami.protocol import TERMINATOR, parse_messages
from voicecast.pbx import asterisk
from voicecast.pbx.asterisk import AsteriskBackend, AsteriskEndpoint

DATA = Path(__file__).resolve().parent / "data"
TRANSCRIPT = DATA / "ami-burst.txt.gz"
META = DATA / "ami-burst.json"
RECORD_CONTACTS = 200
RECORD_CPS = 40.0


# --- the transcript ----------------------------------------------------------------------------


def event_blocks(raw: bytes) -> list[bytes]:
    """The event messages of an AMI byte stream (each with its terminator), without the
    banner, action responses and any incomplete tail."""
    blocks = raw.split(TERMINATOR)[:-1]  # the last piece is unterminated
    out = []
    for block in blocks:
        lines = block.split(b"\r\n")
        if any(line.startswith(b"Event:") for line in lines):
            start = next(i for i, line in enumerate(lines) if b":" in line)
            out.append(b"\r\n".join(lines[start:]) + TERMINATOR)
    return out


def production_rate(blocks: list[bytes]) -> dict[str, float]:
    """How fast Asterisk produced ``blocks``: events per second over the span of their
    ``Timestamp`` headers and in the busiest whole second."""
    stamps = []
    for block in blocks:
        messages, _ = parse_messages(block)
        stamp = messages[0].get("Timestamp") if messages else None
        if stamp:
            stamps.append(float(stamp))
    stamps.sort()
    per_second = Counter(int(t) for t in stamps)
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
    return {
        "events": len(blocks),
        "span_s": span,
        "events_per_s": (len(stamps) - 1) / span if span == span and span > 0 else float("nan"),
        "peak_1s_events": float(max(per_second.values(), default=0)),
    }


def record(json_path: str | None) -> None:
    """Dial the burst on the sandbox and store the transcript and its rates."""
    from bench.dialling import MESSAGE_S, run_target
    from tests.e2e import faults_harness as h

    recorders: list[AmiRecorder] = []
    with (
        tempfile.TemporaryDirectory(prefix="vc-bench-ami-") as name,
        sandbox_session(Path(name)) as sandbox,
    ):
        tmp = Path(name)
        message = h.tone(tmp / "message.wav", MESSAGE_S)
        result = run_target(
            tmp / "burst", sandbox, RECORD_CPS, RECORD_CONTACTS, message, recorders=recorders
        )
        version = sandbox.version
    blocks = event_blocks(bytes(recorders[0].raw))
    DATA.mkdir(exist_ok=True)
    with gzip.GzipFile(TRANSCRIPT, "wb", mtime=0) as fh:
        fh.write(b"".join(blocks))
    meta = {
        "what": f"AMI events of a voicecast campaign of {RECORD_CONTACTS} contacts at "
        f"{RECORD_CPS:g} CPS on the sandbox Asterisk (bench/ami_events.py --record)",
        "asterisk": version,
        "recorded": machine_info(version)["date"],
        "calls": result["calls_seen"],
        "achieved_cps": round(result["achieved_cps"], 2),
        **production_rate(blocks),
    }
    META.write_text(json.dumps(meta, indent=2) + "\n")
    print(
        f"recorded {meta['events']} events of {meta['calls']} calls in {TRANSCRIPT} "
        f"({TRANSCRIPT.stat().st_size / 1024:.0f} KiB): Asterisk produced "
        f"{fmt(meta['events_per_s'], 0)} events/s, {meta['peak_1s_events']:.0f} in its "
        "busiest second"
    )
    write_json(json_path, {"bench": "ami_record", **meta})


# --- the replay -------------------------------------------------------------------------------


class CountingListener:
    """The dialer's side of the backend (:class:`voicecast.pbx.base.PbxListener`): counts."""

    def __init__(self) -> None:
        self.results = 0
        self.hangups = 0

    def on_originate_result(self, attempt_id: str, answered: bool, reason: int) -> None:
        """An OriginateResponse for one of our attempts."""
        self.results += 1

    def on_hangup(self, attempt_id: str, cause: int, cause_text: str, primary: bool) -> None:
        """A Hangup of one of our attempts' channels."""
        self.hangups += 1

    def on_connection(self, connected: bool, node: str | None = None) -> None:
        """The (in-memory) connection came up."""


class ReplayClient(ami_client.AmiClient):
    """An :class:`~voicecast.ami.client.AmiClient` whose connection is an in-memory stream:
    ``connect()`` logs nothing in and starts the production read loop on :attr:`stream`."""

    instances: ClassVar[list[ReplayClient]] = []

    async def connect(self) -> None:
        """Start reading from :attr:`stream` (the replay feeds it)."""
        self.stream = asyncio.StreamReader(limit=2**24)
        self._reader = self.stream
        self._logged_in = True
        self._read_task = asyncio.create_task(self._read_loop(), name="ami-replay-reader")
        ReplayClient.instances.append(self)

    def finish(self) -> None:
        """End of the stream: the read loop returns once it has read everything (as after a
        Logoff: no loss reported, no reconnection)."""
        self._logged_in = False
        self.stream.feed_eof()

    async def close(self) -> None:
        """Stop the read loop."""
        task, self._read_task = self._read_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _noop_flow(_call: Any) -> None:
    return None


async def replay(blocks: list[bytes], reps: int, per_event: bool) -> dict[str, float]:
    """Feed ``blocks`` ``reps`` times through the backend; events/s and what the listener
    got."""
    endpoint = AsteriskEndpoint(
        ami_host="127.0.0.1",
        ami_port=5038,
        username="voicecast",
        secret="replay",  # nothing connects
        agi_host="127.0.0.1",
        agi_port=0,
        agi_url="agi://127.0.0.1:4573",
        dial_string="Local/{number}@sim-pstn",
        keepalive=0,
    )
    listener = CountingListener()
    backend = AsteriskBackend(endpoint)
    ReplayClient.instances.clear()
    with mock.patch.object(asterisk, "AmiClient", ReplayClient):
        await backend.start(listener, _noop_flow)
    try:
        client = ReplayClient.instances[-1]
        stream = client.stream
        blob = b"".join(blocks)
        started = time.perf_counter()
        cpu0 = time.process_time()
        for _ in range(reps):
            if per_event:
                for block in blocks:
                    stream.feed_data(block)
                    await asyncio.sleep(0)  # the reader takes this event alone
            else:
                stream.feed_data(blob)  # read back in 64 KiB chunks
        client.finish()
        task = client._read_task
        if task is not None:
            await task
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu0
    finally:
        await backend.stop()
    events = len(blocks) * reps
    return {
        "events": events,
        "seconds": elapsed,
        "events_per_s": events / elapsed,
        "events_per_cpu_s": events / cpu if cpu > 0 else float("nan"),
        "listener_calls": listener.results + listener.hangups,
    }


def load_transcript() -> tuple[list[bytes], dict[str, Any]]:
    """The stored transcript's events and their production rates.

    Raises:
        FileNotFoundError: not recorded yet (``--record``).
    """
    with gzip.open(TRANSCRIPT, "rb") as fh:
        raw = fh.read()
    meta: dict[str, Any] = json.loads(META.read_text())
    return event_blocks(raw), meta


def run(seconds: float) -> dict[str, Any]:
    """Replay both ways for about ``seconds`` each; the figures."""
    blocks, meta = load_transcript()
    out: dict[str, Any] = {"bench": "ami_events", "transcript": meta}
    for key, per_event in (("per_event", True), ("bulk", False)):
        probe = asyncio.run(replay(blocks, 1, per_event))
        reps = max(1, round(seconds / max(probe["seconds"], 1e-6)))
        out[key] = asyncio.run(replay(blocks, reps, per_event))
        expected = probe["listener_calls"] * reps
        if out[key]["listener_calls"] != expected or not probe["listener_calls"]:
            raise AssertionError(
                f"{key}: the listener got {out[key]['listener_calls']} calls, not {expected}"
            )
    produced_peak = meta["peak_1s_events"]
    produced_avg = meta["events_per_s"]
    out["headroom_peak"] = out["per_event"]["events_per_s"] / produced_peak
    out["headroom_avg"] = out["per_event"]["events_per_s"] / produced_avg
    return out


def main() -> None:
    """Replay (or record) and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="replay time per way")
    parser.add_argument("--quick", action="store_true", help="about 0.5 s per way")
    parser.add_argument("--record", action="store_true", help="record the transcript again")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.record:
        record(args.json)
        return
    r = run(0.5 if args.quick else args.seconds)
    meta = r["transcript"]
    print(
        f"transcript: {meta['events']:,} events of {meta['calls']} calls at "
        f"{meta['achieved_cps']} CPS; Asterisk produced {fmt(meta['events_per_s'], 0)} "
        f"events/s, {meta['peak_1s_events']:.0f} in its busiest second ({meta['asterisk']})"
    )
    for key, label in (("per_event", "one event per read"), ("bulk", "64 KiB reads")):
        x = r[key]
        print(
            f"replay, {label}: {fmt(x['events_per_s'], 0)} events/s "
            f"({x['events']:,} events in {fmt(x['seconds'])} s; "
            f"{fmt(x['events_per_cpu_s'], 0)} per CPU second)"
        )
    print(
        f"headroom: {fmt(r['headroom_peak'], 0)}x the busiest second's rate, "
        f"{fmt(r['headroom_avg'], 0)}x the burst's average (one event per read)"
    )
    write_json(args.json, {**r, "machine": machine_info()})


if __name__ == "__main__":
    main()
