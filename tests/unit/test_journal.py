"""The proof journal: hash chain, append-only triggers, tamper detection, signed bundles."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_workspace import make_workspace, run_cli, said
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker

from voicecast.cli import main
from voicecast.journal import store
from voicecast.journal.bundle import (
    compare_with_database,
    export_bundle,
    load_public_key,
    load_signing_key,
    verify_bundle,
)
from voicecast.journal.chain import GENESIS, ChainEntry, entry_hash, verify_chain
from voicecast.journal.store import JournalError, acting_as, append, purge_before, verify
from voicecast.storage.models import JournalEntry

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SUBJECT = "ab" * 32


def fill(sessions: sessionmaker[Session], count: int = 6, start: datetime = T0) -> None:
    with sessions() as s, s.begin():
        for i in range(count):
            append(
                s,
                "call.attempt",
                {"campaign": "spring", "attempt_no": i + 1, "note": "é œ"},
                subject=SUBJECT,
                at=start + timedelta(hours=i),
            )


def raw(engine_url: str) -> sqlite3.Connection:
    """A plain sqlite3 connection, triggers dropped: someone editing the file directly."""
    conn = sqlite3.connect(engine_url.removeprefix("sqlite:///"))
    for name in ("journal_entries_no_update", "journal_entries_no_delete",
                 "journal_head_forward", "journal_head_no_delete"):  # fmt: skip
        conn.execute(f"DROP TRIGGER {name}")
    return conn


@pytest.fixture
def db_path(engine) -> str:  # type: ignore[no-untyped-def]
    return str(engine.url)


# --------------------------------------------------------------------------- the chain


def test_chain_of_appended_entries_verifies(sessions: sessionmaker[Session]) -> None:
    fill(sessions)
    with sessions() as s:
        report = verify(s)
        rows = s.query(JournalEntry).order_by(JournalEntry.seq).all()
    assert report.ok and report.checked == 6 and (report.first_seq, report.last_seq) == (1, 6)
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    # the hash is the documented formula over the stored fields
    r = rows[2]
    assert r.hash == entry_hash(
        seq=r.seq, at=r.at, kind=r.kind, actor=r.actor, subject=r.subject, data=r.data,
        prev_hash=r.prev_hash,
    )  # fmt: skip
    assert json.loads(r.data) == {"campaign": "spring", "attempt_no": 3, "note": "é œ"}


def test_rolled_back_append_leaves_no_entry_and_no_gap(sessions: sessionmaker[Session]) -> None:
    fill(sessions, 2)
    with pytest.raises(RuntimeError), sessions() as s, s.begin():
        append(s, "call.attempt", {"x": 1})
        raise RuntimeError("the fact failed")
    fill(sessions, 1)
    with sessions() as s:
        assert [e.seq for e in store.iter_entries(s)] == [1, 2, 3]
        assert verify(s).ok


def test_append_refuses_numbers_as_subject_and_bad_input(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin():
        with pytest.raises(JournalError, match="keyed hash"):
            append(s, "call.attempt", {}, subject="+33199000010")
        with pytest.raises(JournalError, match="kind"):
            append(s, "Call Attempt", {})
        with pytest.raises(JournalError, match="actor"):
            append(s, "call.attempt", {}, actor="user:evil\r\nX: y")
        with pytest.raises(JournalError, match="not JSON"):
            append(s, "call.attempt", {"x": float("nan")})
        with pytest.raises(JournalError, match="aware"):
            append(s, "call.attempt", {}, at=datetime(2026, 1, 1))
    with sessions() as s:
        assert list(store.iter_entries(s)) == []


def test_actor_comes_from_the_context(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin():
        append(s, "optout.recorded", {"source": "cli"})
        with acting_as("user:alice"):
            append(s, "optout.recorded", {"source": "api"})
        append(s, "optout.recorded", {"source": "x"}, actor="callee")
    with sessions() as s:
        assert [e.actor for e in store.iter_entries(s)] == ["system", "user:alice", "callee"]
    with pytest.raises(JournalError):
        acting_as("bad actor").__enter__()


# --------------------------------------------------------------------------- triggers


def test_update_and_delete_through_sql_are_refused(sessions: sessionmaker[Session]) -> None:
    fill(sessions, 3)
    for statement in (
        "UPDATE journal_entries SET actor = 'user:mallory' WHERE seq = 2",
        "DELETE FROM journal_entries WHERE seq = 3",
        "DELETE FROM journal_entries",
        "UPDATE journal_head SET seq = 1",
        "DELETE FROM journal_head",
    ):
        refused = r"append-only|only moves forward|cannot be"
        with pytest.raises(DatabaseError, match=refused), sessions() as s, s.begin():
            s.execute(text(statement))
    with sessions() as s:
        assert verify(s).ok and verify(s).checked == 3


# --------------------------------------------------------------------------- tampering


def test_edited_field_is_named(sessions: sessionmaker[Session], db_path: str) -> None:
    fill(sessions)
    conn = raw(db_path)
    conn.execute('UPDATE journal_entries SET data = \'{"campaign":"other"}\' WHERE seq = 4')
    conn.commit()
    with sessions() as s:
        report = verify(s)
    assert report.first_problem() is not None
    assert report.first_problem().startswith("entry 4: altered")  # type: ignore[union-attr]


def test_edited_field_with_recomputed_hash_breaks_the_next_link(
    sessions: sessionmaker[Session], db_path: str
) -> None:
    fill(sessions)
    with sessions() as s:
        e = s.get(JournalEntry, 3)
        assert e is not None
        forged = entry_hash(seq=3, at=e.at, kind=e.kind, actor="user:mallory",
                            subject=e.subject, data=e.data, prev_hash=e.prev_hash)  # fmt: skip
    conn = raw(db_path)
    conn.execute("UPDATE journal_entries SET actor='user:mallory', hash=? WHERE seq=3", (forged,))
    conn.commit()
    with sessions() as s:
        assert verify(s).first_problem().startswith("entry 4: does not follow")  # type: ignore[union-attr]


def test_deleted_entry_is_named(sessions: sessionmaker[Session], db_path: str) -> None:
    fill(sessions)
    conn = raw(db_path)
    conn.execute("DELETE FROM journal_entries WHERE seq = 3")
    conn.commit()
    with sessions() as s:
        assert verify(s).first_problem() == (
            "entry 3: missing (entry 3 deleted: the chain jumps to 4)"
        )


def test_reordered_entries_are_named(sessions: sessionmaker[Session], db_path: str) -> None:
    fill(sessions)
    conn = raw(db_path)
    conn.execute("UPDATE journal_entries SET seq = -2 WHERE seq = 2")
    conn.execute("UPDATE journal_entries SET seq = 2 WHERE seq = 5")
    conn.execute("UPDATE journal_entries SET seq = 5 WHERE seq = -2")
    conn.commit()
    with sessions() as s:
        report = verify(s)
    assert report.first_problem().startswith("entry 2: does not follow")  # type: ignore[union-attr]
    assert {seq for seq, _ in report.problems} >= {2, 3, 5, 6}


def test_truncated_tail_is_named(sessions: sessionmaker[Session], db_path: str) -> None:
    fill(sessions)
    conn = raw(db_path)
    conn.execute("DELETE FROM journal_entries WHERE seq >= 5")
    conn.commit()
    with sessions() as s:
        assert verify(s).first_problem() == (
            "entry 5: missing (entries 5-6 deleted from the end: the chain head is entry 6)"
        )


def test_truncated_tail_with_rewritten_head_is_caught_by_an_earlier_bundle(
    sessions: sessionmaker[Session], db_path: str, tmp_path: Path
) -> None:
    fill(sessions)
    key = load_signing_key(tmp_path / "k" / "sign.key")
    bundle = tmp_path / "b.zip"
    with sessions() as s:
        export_bundle(s, key, bundle, since=None, until=None, now=T0 + timedelta(days=1))
    conn = raw(db_path)
    last = conn.execute("SELECT hash FROM journal_entries WHERE seq = 4").fetchone()[0]
    conn.execute("DELETE FROM journal_entries WHERE seq >= 5")
    conn.execute("UPDATE journal_head SET seq = 4, hash = ?", (last,))
    conn.commit()
    with sessions() as s:
        assert verify(s).ok  # invisible from the database alone...
        assert compare_with_database(s, bundle) == [  # ...but not against the export
            "entry 5: in the bundle, missing from the database",
            "entry 6: in the bundle, missing from the database",
        ]


def test_pure_chain_reports_an_entry_added_past_the_head() -> None:
    at = T0
    h1 = entry_hash(seq=1, at=at, kind="a.b", actor="system", subject=None, data="{}",
                    prev_hash=GENESIS)  # fmt: skip
    e1 = ChainEntry(1, at, "a.b", "system", None, "{}", GENESIS, h1)
    h2 = entry_hash(seq=2, at=at, kind="a.b", actor="system", subject=None, data="{}",
                    prev_hash=h1)  # fmt: skip
    e2 = ChainEntry(2, at, "a.b", "system", None, "{}", h1, h2)
    assert verify_chain([e1, e2], head_seq=2, head_hash=h2).ok
    assert verify_chain([e1, e2], head_seq=1, head_hash=h1).first_problem() == (
        "entry 2: beyond the chain head (entry 1): added outside voicecast"
    )


# --------------------------------------------------------------------------- retention


def test_purge_keeps_an_anchor_and_the_rest_verifies(sessions: sessionmaker[Session]) -> None:
    fill(sessions, 6)
    cutoff = T0 + timedelta(hours=3)  # entries 1-3 are older
    with sessions() as s, s.begin():
        assert purge_before(s, cutoff, dry_run=True).count == 3
    with sessions() as s:
        assert len(list(store.iter_entries(s))) == 6
    with sessions() as s, s.begin():
        result = purge_before(s, cutoff, at=T0 + timedelta(days=400))
    assert (result.count, result.through_seq) == (3, 3)
    with sessions() as s:
        entries = list(store.iter_entries(s))
        assert [e.seq for e in entries] == [4, 5, 6, 7]
        assert entries[-1].kind == "journal.purged"
        assert json.loads(entries[-1].data)["through_hash"] == result.through_hash
        assert verify(s).ok
    with sessions() as s, s.begin():  # nothing more is old enough
        assert purge_before(s, cutoff).count == 0


def test_deleting_the_oldest_entries_without_a_purge_is_caught(
    sessions: sessionmaker[Session], db_path: str
) -> None:
    fill(sessions)
    conn = raw(db_path)
    conn.execute("DELETE FROM journal_entries WHERE seq <= 2")
    conn.commit()
    with sessions() as s:
        assert verify(s).first_problem() == (
            "entry 1: missing (entries 1-2 deleted: the chain jumps to 3)"
        )


# --------------------------------------------------------------------------- bundles


def test_bundle_round_trip_and_tampering(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    fill(sessions, 6)
    key_path = tmp_path / "keys" / "sign.key"
    key = load_signing_key(key_path)
    assert key_path.stat().st_mode & 0o777 == 0o600
    bundle = tmp_path / "out" / "audit.zip"
    with sessions() as s:
        result = export_bundle(
            s, key, bundle, since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=4),
            now=T0 + timedelta(days=1), organisation="Exemple SARL",
        )  # fmt: skip
    assert (result.count, result.first_seq, result.last_seq) == (3, 2, 4)
    public = load_public_key(_pem(key))
    report = verify_bundle(bundle, public)
    assert report.ok, report.problems
    with zipfile.ZipFile(bundle) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        lines = zf.read("entries.jsonl").decode().splitlines()
    assert manifest["entries"]["first_seq"] == 2 and manifest["chain_head"]["seq"] == 6
    assert manifest["chain_verified"] is True and manifest["organisation"] == "Exemple SARL"

    def rewrite(name: str, content: bytes) -> Path:
        out = tmp_path / f"tampered-{name}.zip"
        with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
            for item in src.namelist():
                dst.writestr(item, content if item == name else src.read(item))
        return out

    edited = lines.copy()
    edited[1] = edited[1].replace("spring", "autumn")
    bad = rewrite("entries.jsonl", ("\n".join(edited) + "\n").encode())
    problems = verify_bundle(bad, public).problems
    assert "entries.jsonl: its SHA-256 differs from the manifest's" in problems
    assert any(p.startswith("entry 3: altered") for p in problems)
    forged = dict(manifest, organisation="Mallory")
    bad = rewrite("manifest.json", json.dumps(forged).encode())
    assert "manifest.sig: the signature does not match manifest.json" in (
        verify_bundle(bad, public).problems
    )
    other = load_signing_key(tmp_path / "other.key")
    assert "the manifest names another signing key than the one given" in (
        verify_bundle(bundle, load_public_key(_pem(other))).problems
    )


def _pem(key: object) -> str:
    from voicecast.journal.bundle import public_pem

    return public_pem(key)  # type: ignore[arg-type]


def test_signing_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sign.key"
    load_signing_key(path)
    path.chmod(0o644)
    with pytest.raises(Exception, match="chmod 600"):
        load_signing_key(path)


# --------------------------------------------------------------------------- CLI


run = run_cli


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_workspace(
        tmp_path, monkeypatch, '[journal]\nsigning_key_file = "var/keys/journal.key"\n'
    )


def test_cli_verify_export_and_verify_bundle(config: Path, tmp_path: Path) -> None:
    from voicecast.app import open_runtime
    from voicecast.config import load_settings

    runtime = open_runtime(load_settings(config))
    fill(runtime.sessions, 5, start=datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    fill(runtime.sessions, 2, start=datetime(2026, 3, 4, 9, 0, tzinfo=UTC))
    ok = run(config, "journal", "verify")
    assert ok.exit_code == 0 and "journal intact: 7 entries checked" in ok.output
    exported = run(config, "journal", "export", "--from", "2026-03-02", "--to", "2026-03-02",
                   "-o", "audit.zip")  # fmt: skip
    assert exported.exit_code == 0, exported.output
    assert "5 entries (1-5), signed" in exported.output
    assert "created the journal signing key" in exported.output
    key = run(config, "journal", "public-key", "-o", "org.pem")
    assert key.exit_code == 0
    checked = run(config, "journal", "verify-bundle", "audit.zip", "--public-key", "org.pem")
    assert checked.exit_code == 0 and "bundle sound: 5 entries (1-5)" in checked.output
    shown = run(config, "journal", "show", "--json", "--limit", "2")
    assert [json.loads(line)["seq"] for line in shown.output.splitlines()] == [6, 7]
    against = run(config, "journal", "verify", "--against", "audit.zip")
    assert against.exit_code == 0

    conn = raw(str(runtime.engine.url))
    conn.execute("UPDATE journal_entries SET kind = 'optout.recorded' WHERE seq = 6")
    conn.commit()
    broken = run(config, "journal", "verify")
    assert broken.exit_code == 1
    assert "journal broken: entry 6: altered" in " ".join(broken.output.split())
    refused = run(config, "journal", "export", "-o", "again.zip")
    assert refused.exit_code == 1 and "does not verify (entry 6" in " ".join(refused.output.split())
    assert not (tmp_path / "again.zip").exists()


def test_append_many_chains_like_single_appends(sessions: sessionmaker[Session]) -> None:
    fill(sessions, 2)
    with sessions() as s, s.begin():
        written = store.append_many(
            s, "optout.recorded", [(SUBJECT, {"source": "import"}), (None, {"n": 2})]
        )
        assert written == 2 and store.append_many(s, "optout.recorded", []) == 0
        with pytest.raises(JournalError, match="keyed hash"):
            store.append_many(s, "optout.recorded", [("+33199000010", {})])
    fill(sessions, 1)
    with sessions() as s:
        entries = list(store.iter_entries(s))
        assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
        assert [e.kind for e in entries][2:4] == ["optout.recorded", "optout.recorded"]
        assert verify(s).ok


def test_an_anchor_moved_without_a_purge_is_caught(
    sessions: sessionmaker[Session], db_path: str
) -> None:
    """Deleting recent entries and moving the anchor over them (no trigger dropped: the head
    may move forward) must not pass for a retention purge."""
    fill(sessions, 6)
    conn = sqlite3.connect(db_path.removeprefix("sqlite:///"))
    digest = conn.execute("SELECT hash FROM journal_entries WHERE seq = 3").fetchone()[0]
    conn.execute("UPDATE journal_head SET anchor_seq = 3, anchor_hash = ?", (digest,))
    conn.execute("DELETE FROM journal_entries WHERE seq <= 3")
    conn.commit()
    with sessions() as s:
        assert verify(s).first_problem() == (
            "entry 3: missing (entries up to 3 deleted: the chain's anchor was moved past them "
            "but no journal.purged entry records a retention purge of them)"
        )


def test_a_purge_with_a_recent_cutoff_is_caught(sessions: sessionmaker[Session]) -> None:
    """A purge entry whose cutoff is less than the shortest retention before it is forged."""
    fill(sessions, 4)
    with sessions() as s, s.begin():
        purge_before(s, T0 + timedelta(hours=2), at=T0 + timedelta(days=364))
    with sessions() as s:
        problem = verify(s).first_problem()
    assert problem is not None and problem.startswith("entry 2: removed by a purge (entry 5)")
    fill(sessions, 1, start=T0 + timedelta(days=800))
    with sessions() as s, s.begin():  # a genuine purge later: anchored, explained, intact
        purge_before(s, T0 + timedelta(days=1), at=T0 + timedelta(days=801))
    with sessions() as s:
        assert verify(s).ok


def test_cli_refuses_unsound_bundles_overwrites_unknown_kinds_and_a_missing_head(
    config: Path, tmp_path: Path
) -> None:
    from voicecast.app import open_runtime
    from voicecast.config import load_settings

    runtime = open_runtime(load_settings(config))
    fill(runtime.sessions, 3)
    assert run(config, "journal", "export", "-o", "a.zip").exit_code == 0
    again = run(config, "journal", "export", "-o", "a.zip")
    assert again.exit_code == 1 and "a.zip exists" in said(again)
    assert run(config, "journal", "export", "-o", "a.zip", "--overwrite").exit_code == 0
    nowhere = run(config, "journal", "export", "-o", "no/such/dir/a.zip")
    assert nowhere.exit_code == 1 and not (tmp_path / "no").exists()
    with zipfile.ZipFile(tmp_path / "a.zip") as src, zipfile.ZipFile("bad.zip", "w") as dst:
        for item in src.namelist():
            body = src.read(item)
            dst.writestr(
                item, body.replace(b"spring", b"autumn") if item == "entries.jsonl" else body
            )
    unsound = run(config, "journal", "verify", "--against", "bad.zip")
    assert unsound.exit_code == 1 and "bad.zip is not a sound bundle" in said(unsound)
    with runtime.sessions() as s:  # sound, but signed by someone else's key
        export_bundle(s, load_signing_key(tmp_path / "other.key"), tmp_path / "other.zip",
                      since=None, until=None, now=T0)  # fmt: skip
    foreign = run(config, "journal", "verify", "--against", "other.zip")
    assert foreign.exit_code == 1 and "another signing key" in said(foreign)
    elsewhere = tmp_path / "elsewhere"  # no voicecast.toml there: no empty "intact" journal
    elsewhere.mkdir()
    os.chdir(elsewhere)
    lost = CliRunner().invoke(main, ["journal", "verify"])
    assert lost.exit_code == 1 and "no database at" in said(lost)
    assert not (elsewhere / "var").exists()
    os.chdir(tmp_path)
    kind = run(config, "journal", "show", "--kind", "nonsense", catch_exceptions=True)
    assert kind.exit_code == 2 and "unknown kind nonsense" in said(kind)
    conn = raw(str(runtime.engine.url))
    conn.execute("DELETE FROM journal_head")
    conn.commit()
    headless = run(config, "journal", "verify")
    assert headless.exit_code == 1
    assert "the chain head (table journal_head) was deleted" in said(headless)


def test_cli_show_keeps_the_data_readable_in_80_columns(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voicecast import cli
    from voicecast.app import open_runtime
    from voicecast.config import load_settings

    runtime = open_runtime(load_settings(config))
    fill(runtime.sessions, 2)
    with runtime.sessions() as s, s.begin():
        append(s, "message.dropped", {"audio_sha256": "cd" * 32, "played_ms": 2500})
    runtime.engine.dispose()
    monkeypatch.setattr(cli.console, "_width", 80)
    narrow = run(config, "journal", "show")
    assert narrow.exit_code == 0, narrow.output
    lines = [line.rstrip() for line in narrow.output.splitlines()]
    assert max(map(len, lines)) <= 80
    # one line per entry, its data whole below it
    assert lines[0] == f"#1  2026-03-02T10:00:00+01:00  call.attempt  system  subject {'ab' * 6}"
    assert lines[1] == '    {"attempt_no": 1, "campaign": "spring", "note": "é œ"}'
    assert lines[2].startswith("#2  2026-03-02T11:00:00+01:00")
    assert lines[-1] == '    {"audio_sha256": "cdcdcdcdcdcd…", "played_ms": 2500}'  # --json: whole

    monkeypatch.setattr(cli.console, "_width", 200)
    wide = run(config, "journal", "show")
    assert wide.exit_code == 0, wide.output
    (row,) = [line for line in wide.output.splitlines() if "2026-03-02T10:00:00+01:00" in line]
    assert '{"attempt_no":1,"campaign":"spring","note":"é œ"}' in row  # a table row
    assert row.split()[1:4] == ["1", "│", "2026-03-02T10:00:00+01:00"]
