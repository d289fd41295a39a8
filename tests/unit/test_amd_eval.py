"""voicecast.amd_eval: the labelled set, the label loader, the matrices and the call runner
(on a fake PBX backend; the real sandbox run is tests/e2e/test_amd_eval.py)."""

from __future__ import annotations

import asyncio
import json
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from voicecast.amd_eval import (
    DECISIONS,
    DEFAULT_SET,
    LABELS,
    VERDICTS,
    AmdEvalError,
    AmdResult,
    LabelledRecording,
    Score,
    build_report,
    confusion_matrix,
    decision_of,
    evaluate,
    load_labels,
    median_verdict_ms,
    parse_amd_overrides,
    policy_plan,
    publish_set,
    render_text,
    run_calls,
    scores,
    verdict_of,
)
from voicecast.config import load_settings
from voicecast.pbx.base import (
    AmdParams,
    CallFlowSession,
    ChannelInfo,
    OriginateRequest,
    PbxListener,
    PlayResult,
)

# --- the shipped set ---------------------------------------------------------------------------


def test_the_shipped_set_loads_with_every_label_and_stays_small() -> None:
    recs = load_labels(DEFAULT_SET)
    assert len(recs) >= 20
    by_label = {label: [r for r in recs if r.label == label] for label in LABELS}
    assert len(by_label["human"]) >= 8
    assert len(by_label["machine"]) >= 8
    assert len(by_label["silence"]) >= 3
    wavs = {p.name for p in DEFAULT_SET.glob("*.wav")}
    assert wavs == {r.path.name for r in recs}, "every shipped WAV is labelled, and only those"
    assert sum(r.path.stat().st_size for r in recs) < 3_000_000
    assert [r.line for r in recs] == list(range(2, len(recs) + 2))


# --- load_labels -------------------------------------------------------------------------------


def _wav(path: Path, rate: int = 8000, channels: int = 1, seconds: float = 0.1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * channels * int(rate * seconds))


def _set(tmp_path: Path, rows: list[str], header: str = "file,label") -> Path:
    for name in ("a.wav", "b.wav", "c_2.wav"):
        _wav(tmp_path / name)
    (tmp_path / "labels.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return tmp_path


def test_labels_load_in_file_order_with_their_line(tmp_path: Path) -> None:
    d = _set(tmp_path, ["a.wav,human", "b.wav, Machine ", "c_2.wav,silence"], "file,label,notes")
    recs = load_labels(d)
    assert [(r.path.name, r.label, r.line, r.name) for r in recs] == [
        ("a.wav", "human", 2, "a"),
        ("b.wav", "machine", 3, "b"),
        ("c_2.wav", "silence", 4, "c_2"),
    ]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["a.wav,human", "b.wav,robot"], r"line 3: label 'robot' of b\.wav is not one of"),
        (["a.wav,human", "zz.wav,human"], r"line 3: zz\.wav not found"),
        (["a.wav,human", "a.wav,machine"], r"line 3: file a\.wav is already listed on line 2"),
        (["../a.wav,human"], r"line 2: file '\.\./a\.wav' must be a \.wav name"),
        (["a b.wav,human"], r"line 2: file 'a b\.wav' must be"),
        (["a.mp3,human"], r"line 2: file 'a\.mp3' must be"),
        ([",human"], r"line 2: file '' must be"),
        ([], r"no recordings listed"),
    ],
)
def test_a_bad_row_is_refused_naming_its_line(
    tmp_path: Path, rows: list[str], message: str
) -> None:
    with pytest.raises(AmdEvalError, match=message):
        load_labels(_set(tmp_path, rows))


def test_a_missing_column_or_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AmdEvalError, match=r"labels\.csv: not found \(a set is a folder"):
        load_labels(tmp_path)
    with pytest.raises(AmdEvalError, match=r"header lacks column\(s\) label"):
        load_labels(_set(tmp_path, ["a.wav"], header="file"))


def test_a_wav_asterisk_cannot_play_as_is_is_refused(tmp_path: Path) -> None:
    d = _set(tmp_path, ["a.wav,human", "hifi.wav,human"])
    _wav(d / "hifi.wav", rate=44100, channels=2)
    with pytest.raises(AmdEvalError, match=r"line 3: hifi\.wav is 44100 Hz, 2 channel"):
        load_labels(d)
    (d / "hifi.wav").write_bytes(b"not a wav")
    with pytest.raises(AmdEvalError, match=r"line 3: hifi\.wav is not a PCM WAV"):
        load_labels(d)


# --- --amd overrides ---------------------------------------------------------------------------


def test_amd_overrides_change_only_the_named_fields() -> None:
    p = parse_amd_overrides(["greeting=2000", "maximum-number-of-words = 4"])
    assert p == AmdParams(greeting=2000, maximum_number_of_words=4)
    assert parse_amd_overrides([]) == AmdParams()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("greeting", "expected key=value"),
        ("greting=2000", r"unknown AMD parameter 'greting' \(initial_silence, greeting"),
        ("greeting=2s", "greeting must be an integer"),
        ("greeting=-1", "out of range"),
        ("silence_threshold=40000", "out of range"),
        ("greeting=70000", "out of range"),  # the bound campaign create applies
    ],
)
def test_a_bad_amd_override_is_refused(item: str, message: str) -> None:
    with pytest.raises(AmdEvalError, match=message):
        parse_amd_overrides([item])


# --- verdicts, decisions, matrices -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cause", "verdict"),
    [
        ("HUMAN", "HUMAN-800-800", "HUMAN"),
        ("MACHINE", "LONGGREETING-1500-1500", "MACHINE"),
        ("MACHINE", "MAXWORDS-4-3", "MACHINE"),
        ("MACHINE", "INITIALSILENCE-2500-2500", "SILENCE"),
        ("machine", "initialsilence-2500-2500", "SILENCE"),
        ("NOTSURE", "TOOLONG-5000", "NOTSURE"),
        ("HANGUP", "", "HANGUP"),
        ("FAILED", "originate failed (reason 0)", "FAILED"),
        ("", "", "FAILED"),
    ],
)
def test_verdict_of(status: str, cause: str, verdict: str) -> None:
    assert verdict_of(status, cause) == verdict


@pytest.mark.parametrize(
    ("status", "cause", "notsure", "silence", "decision"),
    [
        ("HUMAN", "HUMAN-800-800", "machine", "machine", "human"),
        ("MACHINE", "MAXWORDS-4-3", "human", "no_answer", "machine"),
        ("MACHINE", "INITIALSILENCE-2500-2500", "human", "machine", "machine"),
        ("MACHINE", "INITIALSILENCE-2500-2500", "human", "no_answer", "no_answer"),
        ("NOTSURE", "TOOLONG-5000", "human", "machine", "human"),
        ("NOTSURE", "TOOLONG-5000", "machine", "machine", "machine"),
        ("NOTSURE", "TOOLONG-5000", "hangup", "machine", "no_answer"),
        ("HANGUP", "", "human", "machine", "hangup"),
        ("FAILED", "timeout", "human", "machine", "failed"),
    ],
)
def test_decision_follows_classify_amd_and_the_policy(
    status: str, cause: str, notsure: str, silence: str, decision: str
) -> None:
    assert decision_of(status, cause, policy_plan(AmdParams(), notsure, silence)) == decision


def test_a_bad_policy_is_refused() -> None:
    with pytest.raises(AmdEvalError, match="on_notsure 'maybe'"):
        policy_plan(AmdParams(), "maybe", "machine")
    with pytest.raises(AmdEvalError, match="on_silence 'human'"):
        policy_plan(AmdParams(), "human", "human")


def test_confusion_matrix_has_every_cell_and_counts_pairs() -> None:
    m = confusion_matrix([("a", "x"), ("a", "x"), ("b", "y")], ["a", "b"], ["x", "y"])
    assert m == {"a": {"x": 2, "y": 0}, "b": {"x": 0, "y": 1}}
    with pytest.raises(ValueError, match=r"\('c', 'x'\)"):
        confusion_matrix([("c", "x")], ["a"], ["x"])
    with pytest.raises(ValueError, match=r"\('a', 'z'\)"):
        confusion_matrix([("a", "z")], ["a"], ["x"])


def test_scores_per_row_and_overall() -> None:
    m = {"a": {"x": 3, "y": 1}, "b": {"x": 0, "y": 0}, "c": {"x": 2, "y": 2}}
    s = scores(m, {"a": "x", "b": "y"})
    assert s == {
        "a": Score(3, 4),
        "b": Score(0, 0),
        "c": Score(0, 4),  # no expected cell: never correct
        "overall": Score(3, 8),
    }
    assert s["a"].rate == 0.75 and s["b"].rate is None
    assert s["a"].text() == "3/4 (75%)" and s["b"].text() == "0/0"


RESULTS = [
    AmdResult("h1.wav", "human", "HUMAN", "HUMAN-812-800", 2011),
    AmdResult("h2.wav", "human", "MACHINE", "MAXWORDS-3-2", 2281),
    AmdResult("h3.wav", "human", "NOTSURE", "TOOLONG-5000", 5400),
    AmdResult("m1.wav", "machine", "MACHINE", "LONGGREETING-1500-1500", 3061),
    AmdResult("m2.wav", "machine", "FAILED", "no AMD verdict within 30 s", None),
    AmdResult("s1.wav", "silence", "MACHINE", "INITIALSILENCE-2500-2500", 2981),
    AmdResult("s2.wav", "silence", "NOTSURE", "TOOLONG-5000", 5400),
]


def test_report_matrices_and_scores() -> None:
    r = build_report("set", RESULTS, AmdParams(), on_notsure="human", on_silence="no_answer")
    assert list(r.verdicts) == list(LABELS)
    assert all(list(row) == list(VERDICTS) for row in r.verdicts.values())
    assert all(list(row) == list(DECISIONS) for row in r.decisions.values())
    assert r.verdicts["human"] == {
        "HUMAN": 1,
        "MACHINE": 1,
        "SILENCE": 0,
        "NOTSURE": 1,
        "HANGUP": 0,
        "FAILED": 0,
    }
    assert r.verdicts["machine"]["FAILED"] == 1
    assert r.verdicts["silence"]["SILENCE"] == 1 and r.verdicts["silence"]["NOTSURE"] == 1
    assert r.verdict_scores["human"] == Score(1, 3)
    assert r.verdict_scores["silence"] == Score(1, 2)
    assert r.verdict_scores["overall"] == Score(3, 7)
    # NOTSURE -> human: the silent line's NOTSURE is decided human
    assert r.decisions["human"]["human"] == 2
    assert r.decisions["silence"] == {
        "human": 1,
        "machine": 0,
        "no_answer": 1,
        "hangup": 0,
        "failed": 0,
    }
    assert r.decision_scores["silence"] == Score(1, 2)  # expected: on_silence = no_answer
    assert r.decision_scores["machine"] == Score(1, 2)


def test_median_verdict_time_per_label() -> None:
    assert median_verdict_ms(iter(RESULTS)) == {"human": 2281, "machine": 3061, "silence": 4190}
    assert median_verdict_ms([]) == {"human": None, "machine": None, "silence": None}


def test_report_renders_as_text_and_json() -> None:
    r = build_report("set", RESULTS, AmdParams(greeting=2000))
    text = render_text(r)
    assert "greeting=2000" in text
    assert "policy: NOTSURE -> human, silence -> machine" in text
    assert "FAILED" in text.splitlines()[4]  # the FAILED column shows when used
    assert "HANGUP" not in text.splitlines()[4]
    assert "overall" in text and "3/7 (43%)" in text
    assert "median time from answer to verdict: human 2281 ms, machine 3061 ms" in text
    line = next(x for x in text.splitlines() if x.startswith("h2.wav"))
    assert "MAXWORDS-3-2" in line and "<- wrong" in line
    data = json.loads(json.dumps(r.to_dict()))
    assert data["amd"]["greeting"] == 2000
    assert data["median_verdict_ms"]["silence"] == 4190
    assert data["verdict_scores"]["overall"] == {"correct": 3, "total": 7, "rate": 3 / 7}
    assert [x["file"] for x in data["results"]] == [x.file for x in RESULTS]
    assert data["results"][5]["verdict"] == "SILENCE"
    assert data["results"][5]["decision"] == "machine"
    assert data["results"][4]["decision"] == "failed"


# --- run_calls on a fake backend ---------------------------------------------------------------


class FakeCall:
    """A FastAGI session whose AMD answers from a table, after ``delay`` seconds."""

    def __init__(self, attempt_id: str, answer: tuple[str, str], delay: float) -> None:
        self.attempt_id = attempt_id
        self.answer = answer
        self.delay = delay
        self._hung_up = False
        self.params: AmdParams | None = None

    @property
    def hung_up(self) -> bool:
        return self._hung_up

    async def detect_machine(self, params: AmdParams) -> tuple[str, str]:
        self.params = params
        await asyncio.sleep(self.delay)
        if self.answer[0] == "RAISE":
            raise RuntimeError("AGI timeout")
        return self.answer

    async def wait_for_silence(self, silence_ms: int, timeout: float) -> bool:
        raise AssertionError("not used")

    async def sound_exists(self, sound: str) -> bool:
        raise AssertionError("not used")

    async def play(self, sound: str, escape_digits: str = "") -> PlayResult:
        raise AssertionError("not used")

    async def hangup(self) -> None:
        self._hung_up = True


class FakeBackend:
    """Answers each Originate per the greeting's name: ``fail`` -> failed Originate,
    ``mute`` -> answered but no flow ever runs; otherwise the flow's AMD answers
    ``answers[name]``."""

    def __init__(self, answers: dict[str, tuple[str, str]], delay: float = 0.01) -> None:
        self.answers = answers
        self.delay = delay
        self.requests: list[OriginateRequest] = []
        self.calls: list[FakeCall] = []
        self.hangups: list[str] = []
        self.up = 0
        self.max_up = 0
        self.started = self.stopped = False
        self._listener: PbxListener | None = None
        self._flow: Callable[[CallFlowSession], Awaitable[None]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        return self.started and not self.stopped

    async def start(
        self, listener: PbxListener, flow: Callable[[CallFlowSession], Awaitable[None]]
    ) -> None:
        self._listener, self._flow = listener, flow
        self.started = True

    async def stop(self, *, grace: float = 0.0) -> None:
        self.stopped = True

    async def originate(self, request: OriginateRequest) -> None:
        self.requests.append(request)
        task = asyncio.create_task(self._call(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, request: OriginateRequest) -> None:
        assert self._listener is not None and self._flow is not None
        name = request.variables["SIM_GREETING"]
        await asyncio.sleep(0)
        if name == "fail":
            self._listener.on_originate_result(request.attempt_id, False, 0)
            return
        self._listener.on_originate_result(request.attempt_id, True, 4)
        if name == "mute":
            return
        self.up += 1
        self.max_up = max(self.max_up, self.up)
        call = FakeCall(request.attempt_id, self.answers[name], self.delay)
        self.calls.append(call)
        await self._flow(call)
        self.up -= 1
        self._listener.on_hangup(request.attempt_id, 16, "Normal Clearing", True)

    async def list_channels(self) -> list[ChannelInfo]:
        return []

    async def hangup(self, attempt_id: str, cause: int = 16) -> None:
        self.hangups.append(attempt_id)


def _recs(names: list[str]) -> list[LabelledRecording]:
    return [LabelledRecording(Path(f"/set/{n}.wav"), "human", i + 2) for i, n in enumerate(names)]


def test_run_calls_collects_each_verdict_in_order_within_the_concurrency() -> None:
    names = [f"h{i}" for i in range(10)]
    answers = {n: ("HUMAN", f"HUMAN-80{i}-800") for i, n in enumerate(names)}
    backend = FakeBackend(answers)
    params = AmdParams(greeting=2000)
    results = asyncio.run(run_calls(backend, _recs(names), params, concurrency=3))
    assert [(r.file, r.status, r.cause) for r in results] == [
        (f"{n}.wav", "HUMAN", answers[n][1]) for n in names
    ]
    assert all(r.verdict_ms is not None and r.verdict_ms >= 0 for r in results)
    assert backend.started and backend.stopped
    assert backend.max_up == 3
    assert all(c.params == params and c.hung_up for c in backend.calls)
    req = backend.requests[0]
    assert req.number == "100" and req.variables == {"SIM_GREETING": "h0"}
    assert len({r.attempt_id for r in backend.requests}) == 10


def test_run_calls_reports_failures_without_stopping() -> None:
    backend = FakeBackend({"ok": ("MACHINE", "MAXWORDS-4-3"), "boom": ("RAISE", "")})
    results = asyncio.run(
        run_calls(backend, _recs(["fail", "mute", "ok", "boom"]), AmdParams(), call_timeout=0.3)
    )
    got = {r.file: (r.status, r.cause) for r in results}
    assert got["fail.wav"] == ("FAILED", "originate failed (reason 0)")
    assert got["mute.wav"] == ("FAILED", "no AMD verdict within 0.3 s")
    assert got["ok.wav"] == ("MACHINE", "MAXWORDS-4-3")
    assert got["boom.wav"] == ("FAILED", "AMD did not run: AGI timeout")
    mute_id = next(r.attempt_id for r in backend.requests if r.variables["SIM_GREETING"] == "mute")
    assert backend.hangups == [mute_id]


def test_run_calls_refuses_zero_concurrency() -> None:
    with pytest.raises(AmdEvalError, match="concurrency"):
        asyncio.run(run_calls(FakeBackend({}), [], AmdParams(), concurrency=0))


# --- evaluate: preconditions, publishing -------------------------------------------------------


def test_evaluate_needs_the_sandbox_enabled_and_running(tmp_path: Path) -> None:
    cfg = tmp_path / "voicecast.toml"
    cfg.write_text(f'[sandbox]\nenabled = true\ndir = "{tmp_path}/sb"\n')
    settings = load_settings(cfg, environ={})
    off: Any = SimpleNamespace(settings=settings, sandbox=None)
    with pytest.raises(AmdEvalError, match=r"set \[sandbox\] enabled = true"):
        evaluate(off, DEFAULT_SET)
    down: Any = SimpleNamespace(settings=settings, sandbox=object())
    with pytest.raises(AmdEvalError, match="not running: start it with `voicecast sandbox up`"):
        evaluate(down, DEFAULT_SET)
    with pytest.raises(AmdEvalError, match="on_silence 'human'"):
        evaluate(down, DEFAULT_SET, on_silence="human")


def test_publish_copies_the_set_under_amd_eval(tmp_path: Path) -> None:
    recs = load_labels(DEFAULT_SET)[:3]
    dest = publish_set(recs, tmp_path / "sounds")
    assert dest == tmp_path / "sounds" / "amd-eval"
    for r in recs:
        assert (dest / r.path.name).read_bytes() == r.path.read_bytes()
        assert (dest / r.path.name).stat().st_mode & 0o777 == 0o644
    assert publish_set(recs, tmp_path / "sounds") == dest  # unchanged files: no rewrite
