"""AMD accuracy report: a labelled set of greetings through the sandbox Asterisk's ``AMD()``.

``voicecast amd evaluate`` publishes each recording of a labelled set (default the shipped
``sounds/amd-eval/``, made by ``tools/make_amd_set.py``) to the sandbox, calls the sandbox's
``[sim-amd-eval]`` context once per recording (``Local/<n>@sim-amd-eval`` with the channel
variable ``SIM_GREETING``: the callee answers, plays the recording, then sends silence), runs
only ``detect_machine`` on the answered call (the same FastAGI path as a campaign call), hangs
up, and compares AMD's verdict with the label.

Two confusion matrices, rows = labels (``human``, ``machine``, ``silence``):

- AMD's verdict: ``HUMAN``, ``MACHINE`` (a voice-based cause), ``SILENCE`` (``MACHINE`` with
  cause ``INITIALSILENCE``), ``NOTSURE``, ``HANGUP``, ``FAILED`` (no verdict: the call failed);
- the flow's decision under a NOTSURE/silence policy (:func:`voicecast.dialer.flow.
  classify_amd`): ``human``, ``machine``, ``no_answer``, ``hangup``, plus ``failed``.

A recording is right when its verdict is HUMAN for ``human``, MACHINE for ``machine`` and
SILENCE for ``silence``; its decision is right when it is ``human``, ``machine`` and the
policy's ``on_silence`` respectively. Durations: ``verdict_ms`` is the time from the answer
(the FastAGI session's start) to AMD's verdict, in milliseconds. Source: Asterisk
documentation, application ``AMD`` (``AMDSTATUS``, ``AMDCAUSE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import re
import statistics
import uuid
import wave
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicecast.dialer.flow import FlowPlan, classify_amd
from voicecast.dialer.policy import AMD_CHOICES_NOTSURE, AMD_CHOICES_SILENCE
from voicecast.errors import VoicecastError
from voicecast.pbx.base import (
    AmdParams,
    CallFlowSession,
    OriginateRequest,
    PbxBackend,
    PbxError,
    PbxUnavailable,
    amd_param_problem,
)

DEFAULT_SET = Path(__file__).resolve().parent.parent / "sounds" / "amd-eval"
LABELS_FILE = "labels.csv"
LABELS = ("human", "machine", "silence")
VERDICTS = ("HUMAN", "MACHINE", "SILENCE", "NOTSURE", "HANGUP", "FAILED")
DECISIONS = ("human", "machine", "no_answer", "hangup", "failed")
EXPECTED_VERDICT = {"human": "HUMAN", "machine": "MACHINE", "silence": "SILENCE"}
EVAL_DIAL_STRING = "Local/{number}@sim-amd-eval"
PBX_SUBDIR = "amd-eval"  # under the sandbox's sounds folder; the dialplan plays from there
CALLER_ID = "+33199000000"  # fictional (ARCEP test range 01 99 00 xx xx)
RING_TIMEOUT = 10.0  # seconds; the simulated callee answers at once
DEFAULT_CONCURRENCY = 8
SAMPLE_RATE = 8000
_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,64}\.wav\Z")


class AmdEvalError(VoicecastError):
    """The evaluation cannot run: bad label file or set, sandbox down, port taken..."""


@dataclass(frozen=True)
class LabelledRecording:
    """One row of ``labels.csv``.

    Attributes:
        path: the WAV file (8000 Hz mono 16-bit PCM).
        label: ``human``, ``machine`` or ``silence``.
        line: the row's line number in ``labels.csv`` (for messages).
    """

    path: Path
    label: str
    line: int

    @property
    def name(self) -> str:
        """The file's stem: the ``SIM_GREETING`` sent to the dialplan."""
        return self.path.stem


@dataclass(frozen=True)
class AmdResult:
    """AMD's answer for one recording.

    Attributes:
        file: the WAV's file name.
        label: its label.
        status: ``AMDSTATUS`` (``HUMAN``, ``MACHINE``, ``NOTSURE``, ``HANGUP``), or ``FAILED``
            when no verdict came (the call failed or timed out).
        cause: ``AMDCAUSE`` (e.g. ``LONGGREETING-1500-1500``), or why it failed.
        verdict_ms: milliseconds from the answer to the verdict (None when failed).
    """

    file: str
    label: str
    status: str
    cause: str
    verdict_ms: int | None = None


@dataclass(frozen=True)
class Score:
    """``correct`` out of ``total``; ``rate`` is None when ``total`` is 0."""

    correct: int
    total: int

    @property
    def rate(self) -> float | None:
        """``correct / total`` (0.0 to 1.0), or None for an empty row."""
        return self.correct / self.total if self.total else None

    def text(self) -> str:
        """``"9/10 (90%)"``, or ``"0/0"``."""
        rate = self.rate
        return f"{self.correct}/{self.total}" + (f" ({rate:.0%})" if rate is not None else "")


Matrix = dict[str, dict[str, int]]
"""A confusion matrix: ``matrix[label][column]`` = number of recordings."""


# --- pure functions ----------------------------------------------------------------------------


def load_labels(set_dir: Path) -> list[LabelledRecording]:
    """Read ``<set_dir>/labels.csv`` (UTF-8, header with at least ``file`` and ``label``).

    Each ``file`` is a WAV file name in ``set_dir`` (letters, digits and ``_``, then ``.wav``;
    the dialplan accepts no other character), at most once; ``label`` is one of
    :data:`LABELS`; the WAV must be 8000 Hz mono 16-bit PCM. Other columns are ignored.

    Raises:
        AmdEvalError: the folder or label file is missing, a column is missing, or a row is
            wrong (the message names the file, the line and the field), or no rows.
    """
    labels = Path(set_dir) / LABELS_FILE
    if not labels.is_file():
        raise AmdEvalError(
            f"{labels}: not found (a set is a folder of WAV files with a labels.csv)"
        )
    try:
        text = labels.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AmdEvalError(f"{labels}: cannot read: {exc}") from exc
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in ("file", "label") if c not in (reader.fieldnames or [])]
    if missing:
        raise AmdEvalError(f"{labels}: header lacks column(s) {', '.join(missing)}")
    out: list[LabelledRecording] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        where = f"{labels}, line {line}"
        name = (row.get("file") or "").strip()
        label = (row.get("label") or "").strip().lower()
        if not _NAME_RE.match(name):
            raise AmdEvalError(
                f"{where}: file {name!r} must be a .wav name of letters, digits and _ only"
            )
        if name in seen:
            raise AmdEvalError(f"{where}: file {name} is already listed on line {seen[name]}")
        seen[name] = line
        if label not in LABELS:
            raise AmdEvalError(
                f"{where}: label {label!r} of {name} is not one of {', '.join(LABELS)}"
            )
        path = Path(set_dir) / name
        _check_wav(path, where)
        out.append(LabelledRecording(path, label, line))
    if not out:
        raise AmdEvalError(f"{labels}: no recordings listed")
    return out


def _check_wav(path: Path, where: str) -> None:
    if not path.is_file():
        raise AmdEvalError(f"{where}: {path.name} not found in {path.parent}")
    try:
        with wave.open(str(path), "rb") as w:
            shape = (w.getframerate(), w.getnchannels(), w.getsampwidth())
    except (wave.Error, EOFError, OSError) as exc:
        raise AmdEvalError(f"{where}: {path.name} is not a PCM WAV file: {exc}") from exc
    if shape != (SAMPLE_RATE, 1, 2):
        raise AmdEvalError(
            f"{where}: {path.name} is {shape[0]} Hz, {shape[1]} channel(s), "
            f"{8 * shape[2]}-bit; Asterisk needs 8000 Hz mono 16-bit"
        )


def parse_amd_overrides(items: Iterable[str], base: AmdParams | None = None) -> AmdParams:
    """Apply ``key=value`` overrides (milliseconds, or a count for
    ``maximum_number_of_words``, or a level 0-32767 for ``silence_threshold``) to ``base``
    (default :class:`AmdParams` defaults).

    Raises:
        AmdEvalError: no ``=``, an unknown field (the message lists the known ones), or a
            value that is not a non-negative integer.
    """
    changes: dict[str, int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise AmdEvalError(f"--amd {item!r}: expected key=value, e.g. greeting=2000")
        try:
            number = int(value.strip())
        except ValueError:
            raise AmdEvalError(f"--amd {item!r}: {key} must be an integer") from None
        problem = amd_param_problem(key, number)
        if problem is not None:
            raise AmdEvalError(f"--amd {item!r}: {problem}")
        changes[key] = number
    return dataclasses.replace(base or AmdParams(), **changes)


def verdict_of(status: str, cause: str) -> str:
    """AMD's (status, cause) as one of :data:`VERDICTS`: ``MACHINE`` with cause
    ``INITIALSILENCE-...`` is ``SILENCE``; an unknown status is ``FAILED``."""
    status = status.upper()
    if status == "MACHINE":
        return "SILENCE" if cause.upper().startswith("INITIALSILENCE") else "MACHINE"
    return status if status in VERDICTS else "FAILED"


def decision_of(status: str, cause: str, plan: FlowPlan) -> str:
    """What the call flow would do (:func:`classify_amd` under ``plan``'s policy), as one of
    :data:`DECISIONS`; ``failed`` when there was no verdict."""
    if verdict_of(status, cause) == "FAILED":
        return "failed"
    return classify_amd(status, cause, plan).value


def median_verdict_ms(results: Iterable[AmdResult]) -> dict[str, int | None]:
    """Per label, the median milliseconds from the answer to AMD's verdict (calls that got a
    verdict only); None for a label without any."""
    rows = list(results)
    out: dict[str, int | None] = {}
    for label in LABELS:
        times = [r.verdict_ms for r in rows if r.label == label and r.verdict_ms is not None]
        out[label] = round(statistics.median(times)) if times else None
    return out


def confusion_matrix(
    pairs: Iterable[tuple[str, str]], rows: Sequence[str], cols: Sequence[str]
) -> Matrix:
    """Count (row, column) pairs into ``{row: {col: n}}`` with every row and column present.

    Raises:
        ValueError: a pair names a row or column not in ``rows`` / ``cols``.
    """
    matrix: Matrix = {r: dict.fromkeys(cols, 0) for r in rows}
    for row, col in pairs:
        if row not in matrix or col not in matrix[row]:
            raise ValueError(f"({row!r}, {col!r}) is not a cell of the matrix")
        matrix[row][col] += 1
    return matrix


def scores(matrix: Matrix, expected: Mapping[str, str]) -> dict[str, Score]:
    """Per-row score (the ``expected[row]`` cell over the row's total) and ``overall``.

    Rows missing from ``expected`` count in the totals and are never correct.
    """
    out: dict[str, Score] = {}
    for row, cells in matrix.items():
        out[row] = Score(cells.get(expected.get(row, ""), 0), sum(cells.values()))
    out["overall"] = Score(sum(s.correct for s in out.values()), sum(s.total for s in out.values()))
    return out


@dataclass(frozen=True)
class EvalReport:
    """The evaluation's outcome: per-recording results, both matrices and their scores."""

    set_dir: str
    params: AmdParams
    on_notsure: str
    on_silence: str
    results: list[AmdResult]
    verdicts: Matrix = field(default_factory=dict)
    decisions: Matrix = field(default_factory=dict)
    verdict_scores: dict[str, Score] = field(default_factory=dict)
    decision_scores: dict[str, Score] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (scores as ``{"correct", "total", "rate"}``)."""

        def sc(d: dict[str, Score]) -> dict[str, Any]:
            return {
                k: {"correct": s.correct, "total": s.total, "rate": s.rate} for k, s in d.items()
            }

        plan = self.plan()
        return {
            "set": self.set_dir,
            "amd": dataclasses.asdict(self.params),
            "policy": {"on_notsure": self.on_notsure, "on_silence": self.on_silence},
            "verdicts": self.verdicts,
            "verdict_scores": sc(self.verdict_scores),
            "decisions": self.decisions,
            "decision_scores": sc(self.decision_scores),
            "median_verdict_ms": median_verdict_ms(self.results),
            "results": [
                {
                    **dataclasses.asdict(r),
                    "verdict": verdict_of(r.status, r.cause),
                    "decision": decision_of(r.status, r.cause, plan),
                }
                for r in self.results
            ],
        }

    def plan(self) -> FlowPlan:
        """The policy as a :class:`FlowPlan` (no sounds)."""
        return policy_plan(self.params, self.on_notsure, self.on_silence)


def policy_plan(
    params: AmdParams, on_notsure: str = "human", on_silence: str = "machine"
) -> FlowPlan:
    """A :class:`FlowPlan` carrying only AMD parameters and the NOTSURE/silence policy.

    Raises:
        AmdEvalError: ``on_notsure`` not human/machine/hangup or ``on_silence`` not
            machine/no_answer.
    """
    if on_notsure not in AMD_CHOICES_NOTSURE:
        raise AmdEvalError(f"on_notsure {on_notsure!r}: expected human, machine or hangup")
    if on_silence not in AMD_CHOICES_SILENCE:
        raise AmdEvalError(f"on_silence {on_silence!r}: expected machine or no_answer")
    return FlowPlan(
        message="", voicemail_message="", amd=params, on_notsure=on_notsure, on_silence=on_silence
    )


def build_report(
    set_dir: Path | str,
    results: Sequence[AmdResult],
    params: AmdParams,
    on_notsure: str = "human",
    on_silence: str = "machine",
) -> EvalReport:
    """Both confusion matrices and their scores from per-recording ``results``.

    Raises:
        AmdEvalError: an invalid policy (see :func:`policy_plan`).
        ValueError: a result's label is not one of :data:`LABELS`.
    """
    plan = policy_plan(params, on_notsure, on_silence)
    verdicts = confusion_matrix(
        ((r.label, verdict_of(r.status, r.cause)) for r in results), LABELS, VERDICTS
    )
    decisions = confusion_matrix(
        ((r.label, decision_of(r.status, r.cause, plan)) for r in results), LABELS, DECISIONS
    )
    expected_decision = {"human": "human", "machine": "machine", "silence": on_silence}
    return EvalReport(
        set_dir=str(set_dir),
        params=params,
        on_notsure=on_notsure,
        on_silence=on_silence,
        results=list(results),
        verdicts=verdicts,
        decisions=decisions,
        verdict_scores=scores(verdicts, EXPECTED_VERDICT),
        decision_scores=scores(decisions, expected_decision),
    )


# --- running the calls -------------------------------------------------------------------------


class _Collector:
    """PbxListener + call-flow handler: one future per attempt, set by the first of the AMD
    verdict (flow), a failed Originate, our leg's hangup, or a lost AMI connection."""

    def __init__(self, params: AmdParams) -> None:
        self.params = params
        self.pending: dict[str, asyncio.Future[tuple[str, str, int | None]]] = {}

    def expect(self, attempt_id: str) -> asyncio.Future[tuple[str, str, int | None]]:
        fut: asyncio.Future[tuple[str, str, int | None]] = (
            asyncio.get_running_loop().create_future()
        )
        self.pending[attempt_id] = fut
        return fut

    def _settle(self, attempt_id: str, status: str, cause: str, ms: int | None = None) -> None:
        fut = self.pending.get(attempt_id)
        if fut is not None and not fut.done():
            fut.set_result((status, cause, ms))

    def on_originate_result(self, attempt_id: str, answered: bool, reason: int) -> None:
        if not answered:
            self._settle(attempt_id, "FAILED", f"originate failed (reason {reason})")

    def on_hangup(self, attempt_id: str, cause: int, cause_text: str, primary: bool) -> None:
        if primary:
            self._settle(attempt_id, "FAILED", f"hung up before a verdict (Q.850 {cause})")

    def on_connection(self, connected: bool, node: str | None = None) -> None:
        if not connected:
            for attempt_id in list(self.pending):
                self._settle(attempt_id, "FAILED", "AMI connection lost")

    async def flow(self, call: CallFlowSession) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        if call.attempt_id not in self.pending:
            await call.hangup()
            return
        try:
            status, cause = await call.detect_machine(self.params)
        except Exception as exc:  # an AGI error or timeout: report it, never leave it pending
            self._settle(call.attempt_id, "FAILED", f"AMD did not run: {exc}")
        else:
            ms = round((loop.time() - started) * 1000)
            self._settle(call.attempt_id, status, cause, ms)
        finally:
            if not call.hung_up:
                await call.hangup()


async def run_calls(
    backend: PbxBackend,
    recordings: Sequence[LabelledRecording],
    params: AmdParams,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    call_timeout: float | None = None,
) -> list[AmdResult]:
    """Call the sandbox once per recording (at most ``concurrency`` calls at once) and collect
    AMD's (status, cause); returns results in ``recordings`` order.

    Starts and stops ``backend`` itself. Dial string: the backend's (the caller sets
    :data:`EVAL_DIAL_STRING`); number: ``100 + index``; variable ``SIM_GREETING`` = the
    recording's stem. A call without a verdict within ``call_timeout`` seconds (default ring
    timeout + AMD's total analysis time + 15 s) is hung up and reported ``FAILED``.

    Raises:
        PbxUnavailable: the backend cannot start (AMI down, FastAGI port taken).
    """
    if concurrency < 1:
        raise AmdEvalError(f"concurrency must be at least 1, not {concurrency}")
    limit = call_timeout or RING_TIMEOUT + params.total_analysis_time / 1000 + 15.0
    collector = _Collector(params)
    await backend.start(collector, collector.flow)
    gate = asyncio.Semaphore(concurrency)
    run_id = uuid.uuid4().hex[:10]

    async def one(index: int, rec: LabelledRecording) -> AmdResult:
        attempt_id = f"amdeval-{run_id}-{index:03d}"
        async with gate:
            fut = collector.expect(attempt_id)
            request = OriginateRequest(
                attempt_id=attempt_id,
                number=str(100 + index),
                caller_id=CALLER_ID,
                ring_timeout=RING_TIMEOUT,
                variables={"SIM_GREETING": rec.name},
            )
            try:
                await backend.originate(request)
                status, cause, ms = await asyncio.wait_for(fut, limit)
            except PbxError as exc:
                status, cause, ms = "FAILED", f"originate: {exc}", None
            except TimeoutError:
                status, cause, ms = "FAILED", f"no AMD verdict within {limit:g} s", None
                with contextlib.suppress(PbxError):
                    await backend.hangup(attempt_id)
            return AmdResult(rec.path.name, rec.label, status, cause, ms)

    try:
        return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(recordings))))
    finally:
        await backend.stop(grace=5.0)


# --- the sandbox side --------------------------------------------------------------------------


def publish_set(recordings: Sequence[LabelledRecording], sounds_dir: Path) -> Path:
    """Copy the recordings to ``<sounds_dir>/amd-eval/`` (atomic, 0644), where the sandbox's
    ``[sim-amd-eval]`` plays them from; returns that folder.

    Raises:
        AmdEvalError: the folder cannot be written.
    """
    from voicecast.audio.convert import atomic_write_bytes

    dest = Path(sounds_dir) / PBX_SUBDIR
    try:
        for rec in recordings:
            target = dest / rec.path.name
            data = rec.path.read_bytes()
            if not (target.is_file() and target.read_bytes() == data):
                atomic_write_bytes(target, data)
    except OSError as exc:
        raise AmdEvalError(f"cannot publish the AMD set to {dest}: {exc}") from exc
    return dest


def evaluate(
    runtime: Any,
    set_dir: Path = DEFAULT_SET,
    params: AmdParams | None = None,
    *,
    on_notsure: str = "human",
    on_silence: str = "machine",
    concurrency: int = DEFAULT_CONCURRENCY,
) -> EvalReport:
    """Run the labelled set in ``set_dir`` through the running sandbox's AMD.

    Args:
        runtime: a :class:`voicecast.app.Runtime` with the sandbox enabled.
        params: AMD parameters (default :class:`AmdParams`).

    Raises:
        AmdEvalError: the sandbox is not enabled or not running, a dialer is running (it
            holds the FastAGI port), AMI is unreachable, a label file error, or every call
            failed (e.g. a sandbox started before ``[sim-amd-eval]`` existed).
    """
    from voicecast.app import endpoint
    from voicecast.dialer.controller import lease_holder
    from voicecast.pbx.asterisk import AsteriskBackend
    from voicecast.sandbox import Sandbox

    params = params or AmdParams()
    policy_plan(params, on_notsure, on_silence)  # validate before calling anything
    recordings = load_labels(set_dir)
    if runtime.sandbox is None:
        raise AmdEvalError(
            "amd evaluate runs on the sandbox's simulated callees: set [sandbox] enabled = true"
        )
    if Sandbox(runtime.settings).running_pid() is None:
        raise AmdEvalError(
            "the sandbox Asterisk is not running: start it with `voicecast sandbox up`"
        )
    with runtime.sessions() as s:
        holder = lease_holder(s)
    if holder is not None:
        raise AmdEvalError(
            f"a dialer is running ({holder}) and holds the FastAGI port: stop `voicecast serve` "
            "or the `campaign start --wait` first"
        )
    publish_set(recordings, runtime.sounds_dir)
    ep = dataclasses.replace(endpoint(runtime), dial_string=EVAL_DIAL_STRING)
    backend = AsteriskBackend(ep)
    try:
        results = asyncio.run(run_calls(backend, recordings, params, concurrency=concurrency))
    except PbxUnavailable as exc:
        hint = (
            "is a dialer (`voicecast serve`, `campaign start --wait`) running?"
            if "FastAGI" in str(exc)
            else "is the sandbox up? `voicecast sandbox up`"
        )
        raise AmdEvalError(f"{exc}; {hint}") from exc
    if all(r.status == "FAILED" for r in results):
        raise AmdEvalError(
            f"every call failed (first: {results[0].cause}); restart the sandbox with "
            "`voicecast sandbox up` so that it has the [sim-amd-eval] context"
        )
    return build_report(set_dir, results, params, on_notsure, on_silence)


def render_text(report: EvalReport) -> str:
    """The report as plain text: parameters, both matrices with scores, every recording."""
    p = report.params
    lines = [
        f"AMD evaluation of {len(report.results)} recordings from {report.set_dir}",
        "AMD parameters (ms): " + " ".join(f"{k}={v}" for k, v in dataclasses.asdict(p).items()),
        f"policy: NOTSURE -> {report.on_notsure}, silence -> {report.on_silence}",
        "",
    ]
    used = [c for c in VERDICTS if c not in ("HANGUP", "FAILED")] + [
        c for c in ("HANGUP", "FAILED") if any(report.verdicts[r][c] for r in LABELS)
    ]
    lines += _matrix_lines("AMD verdict", report.verdicts, used, report.verdict_scores)
    lines.append("")
    used_d = [c for c in DECISIONS if c != "failed"] + (
        ["failed"] if any(report.decisions[r]["failed"] for r in LABELS) else []
    )
    lines += _matrix_lines("decision", report.decisions, used_d, report.decision_scores)
    lines.append("")
    medians = median_verdict_ms(report.results)
    lines.append(
        "median time from answer to verdict: "
        + ", ".join(f"{k} {'-' if v is None else f'{v} ms'}" for k, v in medians.items())
    )
    lines.append("")
    plan = report.plan()
    width = max(len(r.file) for r in report.results)
    lines.append(f"{'file':<{width}}  {'label':<7}  {'verdict':<8}  {'decision':<9}  ms     cause")
    for r in report.results:
        verdict = verdict_of(r.status, r.cause)
        ok = "" if verdict == EXPECTED_VERDICT[r.label] else "  <- wrong"
        ms = "" if r.verdict_ms is None else str(r.verdict_ms)
        lines.append(
            f"{r.file:<{width}}  {r.label:<7}  {verdict:<8}  "
            f"{decision_of(r.status, r.cause, plan):<9}  {ms:<5}  {r.cause}{ok}"
        )
    return "\n".join(lines)


def _matrix_lines(
    title: str, matrix: Matrix, cols: Sequence[str], score: Mapping[str, Score]
) -> list[str]:
    widths = [max(len(c), 4) for c in cols]
    corner = f"label / {title}"
    head = f"{corner:<22}" + "".join(f"  {c:>{w}}" for c, w in zip(cols, widths, strict=True))
    out = [head + "  correct"]
    for row in LABELS:
        cells = "".join(f"  {matrix[row][c]:>{w}}" for c, w in zip(cols, widths, strict=True))
        out.append(f"{row:<22}{cells}  {score[row].text()}")
    out.append(
        f"{'overall':<22}"
        + "".join(f"  {'':>{w}}" for w in widths)
        + f"  {score['overall'].text()}"
    )
    return out
