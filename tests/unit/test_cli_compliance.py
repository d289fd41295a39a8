"""The consent / optout / opposition / refusal commands, through click's CliRunner.

Fictional numbers only (+33 1 99 00 xx xx, +33 2 61 91 xx xx, +1 202 555 01xx).
"""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_workspace import make_workspace, run_cli, said
from click.testing import CliRunner

from voicecast.cli import main


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_workspace(tmp_path, monkeypatch)


run = run_cli
text = said


def test_consent_add_show_and_withdraw(config: Path) -> None:
    added = run(
        config,
        "consent", "add", "01 99 00 00 10", "--purpose", "marketing", "--source", "web",
        "--proof", "form-42", "--wording", "v2", "--at", "2026-01-10T10:00:00",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "+33199000010: marketing consent granted at 2026-01-10T10:00:00+01:00" in text(added)
    withdrawn = run(
        config,
        "consent", "add", "+33199000010", "--purpose", "marketing", "--source", "email",
        "--proof", "mail-7", "--withdrawn", "--at", "2026-02-01T09:00:00Z",
    )  # fmt: skip
    assert withdrawn.exit_code == 0, withdrawn.output
    shown = run(config, "consent", "show", "0199000010", "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["number"] == "+33199000010"
    assert data["in_force"] == {"marketing": "withdrawn", "informational": None}
    assert [r["status"] for r in data["records"]] == ["granted", "withdrawn"]
    assert data["records"][0]["recorded_at"] == "2026-01-10T09:00:00+00:00"
    table = run(config, "consent", "show", "0199000010")
    assert "marketing: refused or withdrawn since 2026-02-01T10:00:00+01:00" in text(table)
    # the table's times are ISO 8601 with their offset, in --timezone (default Europe/Paris)
    assert "2026-01-10T10:00:00+01:00" in text(table)
    assert "2026-01-10 10:00" not in text(table)
    utc = run(config, "consent", "show", "0199000010", "--timezone", "UTC")
    assert "2026-01-10T09:00:00+00:00" in text(utc)
    assert "since 2026-02-01T09:00:00+00:00" in text(utc)


def test_consent_add_reads_naive_times_in_its_timezone(config: Path) -> None:
    # [report] timezone is Europe/Paris; --timezone decides, as in consent import
    ny = run(
        config,
        "consent", "add", "0199000010", "--purpose", "marketing", "--source", "web",
        "--proof", "p", "--at", "2026-11-25T14:32", "--timezone", "America/New_York",
    )  # fmt: skip
    assert ny.exit_code == 0, ny.output
    assert "granted at 2026-11-25T14:32:00-05:00" in text(ny)
    default = run(
        config,
        "consent", "add", "0261910011", "--purpose", "marketing", "--source", "web",
        "--proof", "p", "--at", "2026-11-25T14:32", "--withdrawn",
    )  # fmt: skip
    assert default.exit_code == 0, default.output
    assert "consent refused or withdrawn at 2026-11-25T14:32:00+01:00" in text(default)
    offset = run(
        config,
        "consent", "add", "0353010012", "--purpose", "marketing", "--source", "web",
        "--proof", "p", "--at", "2026-11-25T14:32:00+00:00", "--timezone", "America/New_York",
    )  # fmt: skip
    assert offset.exit_code == 0, offset.output
    assert "granted at 2026-11-25T09:32:00-05:00" in text(offset)  # the offset is kept
    stored = {
        number: json.loads(run(config, "consent", "show", number, "--json").stdout)["records"][0][
            "recorded_at"
        ]
        for number in ("0199000010", "0261910011", "0353010012")
    }
    assert stored == {
        "0199000010": "2026-11-25T19:32:00+00:00",
        "0261910011": "2026-11-25T13:32:00+00:00",
        "0353010012": "2026-11-25T14:32:00+00:00",
    }
    bad_zone = run(
        config,
        "consent", "add", "0199000010", "--purpose", "marketing", "--source", "web",
        "--proof", "p", "--timezone", "Mars/Olympus",
    )  # fmt: skip
    assert bad_zone.exit_code == 2 and "IANA time zone" in bad_zone.output


def test_consent_add_errors_are_one_line(config: Path) -> None:
    bad = run(
        config,
        "consent", "add", "01 99 ABC", "--purpose", "marketing", "--source", "web",
        "--proof", "p",
    )  # fmt: skip
    assert bad.exit_code == 1
    assert "error: phone: contains letters" in bad.stderr
    future = run(
        config,
        "consent", "add", "0199000010", "--purpose", "marketing", "--source", "web",
        "--proof", "p", "--at", "2999-01-01",
    )  # fmt: skip
    assert future.exit_code == 1 and "in the future" in future.stderr
    not_iso = run(
        config,
        "consent", "add", "0199000010", "--purpose", "marketing", "--source", "web",
        "--proof", "p", "--at", "yesterday",
    )  # fmt: skip
    assert not_iso.exit_code == 1 and "--at: 'yesterday' is not ISO 8601" in not_iso.stderr


def test_consent_import(config: Path, tmp_path: Path) -> None:
    good = tmp_path / "consents.csv"
    good.write_text(
        "Téléphone;Finalité;Statut;Date;Preuve\n"
        "01 99 00 00 10;marketing;oui;01/02/2026 14:30;scan-1\n"
        "02 61 91 00 11;marketing;non;02/02/2026;\n",
        encoding="utf-8-sig",
    )
    result = run(config, "consent", "import", str(good), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["imported"], summary["rejected"]) == (2, 0)
    bad = tmp_path / "bad.csv"
    bad.write_text("phone,purpose,status,date\n0199000010,marketing,yes,2026-01-01\n")
    refused = run(config, "consent", "import", str(bad))
    assert refused.exit_code == 1
    assert "bad.csv: header (line 1): no 'proof' column" in refused.stderr
    bad_row = tmp_path / "row.csv"
    bad_row.write_text(
        "phone,purpose,status,date,proof\n0199000012,marketing,yes,2026-01-01,p\n"
        "0199000013,survey,yes,2026-01-01,p\n"
    )
    refused = run(config, "consent", "import", str(bad_row))
    assert refused.exit_code == 1 and "row.csv: line 3: purpose: 'survey'" in refused.stderr
    skipped = run(config, "consent", "import", str(bad_row), "--skip-invalid")
    assert skipped.exit_code == 0
    assert "1 recorded" in text(skipped) and "line 3: purpose" in text(skipped)
    zone = run(config, "consent", "import", str(good), "--timezone", "Mars/Olympus")
    assert zone.exit_code == 2 and "IANA time zone" in zone.output


def test_optout_add_check_import(config: Path, tmp_path: Path) -> None:
    before = run(config, "optout", "check", "01 99 00 00 10")
    assert before.exit_code == 0 and "+33199000010: not opted out" in before.output
    key = tmp_path / "var" / "keys" / "hash.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "back it up" in text(before)
    added = run(config, "optout", "add", "01 99 00 00 10", "--note", "phoned in")
    assert added.exit_code == 0 and "+33199000010: opted out" in added.output
    again = run(config, "optout", "add", "+33199000010")
    assert again.exit_code == 0 and "already opted out since" in text(again)
    check = run(config, "optout", "check", "0199000010")
    assert check.exit_code == 0 and "opted out since" in text(check) and "(cli)" in text(check)
    listing = tmp_path / "optouts.txt"
    listing.write_text("0261910011\n0199000010\n12\n")
    imported = run(config, "optout", "import", str(listing), "--json")
    assert imported.exit_code == 0, imported.output
    summary = json.loads(imported.stdout)
    assert (summary["added"], summary["already"], summary["invalid_lines"]) == (1, 1, 1)
    bad = run(config, "optout", "add", "0199000010\r\n")
    assert bad.exit_code == 1 and "control character" in bad.stderr


def test_lost_key_is_not_silently_replaced(config: Path, tmp_path: Path) -> None:
    assert run(config, "optout", "add", "0199000010").exit_code == 0
    (tmp_path / "var" / "keys" / "hash.key").unlink()
    result = run(config, "optout", "check", "0199000010")
    assert result.exit_code == 1
    assert "is missing but the database holds opt-outs" in result.stderr


def test_opposition_import_and_status(config: Path, tmp_path: Path) -> None:
    empty = run(config, "opposition", "status", "--json")
    assert empty.exit_code == 0
    assert {r["name"]: r["state"] for r in json.loads(empty.stdout)} == {
        "bloctel": "not imported",
        "us-dnc": "not imported",
        "tps": "not imported",
    }
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("202,5550123\n202,5550124\n202,5550124\n2O2,5550125\n")
    result = run(config, "opposition", "import", "us-dnc", str(dnc), "--as-of", "2026-01-01")
    assert result.exit_code == 0, result.output
    out = text(result)
    assert "us-dnc: 2 numbers stored as of 2026-01-01" in out
    assert "line 4: expected AreaCode,PhoneNumber" in out
    status = json.loads(run(config, "opposition", "status", "--json").stdout)
    us = next(r for r in status if r["name"] == "us-dnc")
    assert (us["entries"], us["list_date"][:10], us["max_age_days"]) == (2, "2026-01-01", 31)
    assert us["source"] == "47 CFR 64.1200(c)(2)"
    table = run(config, "opposition", "status")
    assert "bloctel" in table.output and "not imported" in text(table)
    bloctel = tmp_path / "bloctel.txt"
    bloctel.write_text("01 99 00 00 10\n")
    summary = json.loads(
        run(
            config, "opposition", "import", "bloctel", str(bloctel), "--as-of", "2026-01-02",
            "--json",
        ).stdout
    )  # fmt: skip
    assert summary["entries"] == 1 and summary["replaced_entries"] is None
    empty_file = tmp_path / "junk.txt"
    empty_file.write_text("0199\n")
    refused = run(
        config, "opposition", "import", "bloctel", str(empty_file), "--as-of", "2026-01-02"
    )
    assert refused.exit_code == 1 and "junk.txt: no valid phone number" in refused.stderr
    bad_name = run(
        config, "opposition", "import", "robinson", str(bloctel), "--as-of", "2026-01-02"
    )
    assert bad_name.exit_code == 2
    bad_date = run(config, "opposition", "import", "bloctel", str(bloctel), "--as-of", "01/02/2026")
    assert bad_date.exit_code == 1 and "--as-of" in bad_date.stderr


def test_opposition_import_needs_the_list_date(config: Path, tmp_path: Path) -> None:
    bloctel = tmp_path / "bloctel.txt"
    bloctel.write_text("01 99 00 00 10\n")
    undated = run(config, "opposition", "import", "bloctel", str(bloctel))
    assert undated.exit_code == 2 and "Missing option '--as-of'" in undated.output
    status = json.loads(run(config, "opposition", "status", "--json").stdout)
    assert {r["state"] for r in status} == {"not imported"}  # nothing stored
    helped = text(run(config, "opposition", "import", "--help"))
    assert "as given by the registry download" in helped
    assert "Bloctel 30 days" in helped


def test_opposition_status_says_when_the_lists_cannot_be_matched(
    config: Path, tmp_path: Path
) -> None:
    bloctel = tmp_path / "bloctel.txt"
    bloctel.write_text("01 99 00 00 10\n")
    today = datetime.now(UTC).date().isoformat()
    assert (
        run(config, "opposition", "import", "bloctel", str(bloctel), "--as-of", today).exit_code
        == 0
    )
    ok = run(config, "opposition", "status", "--json")
    assert ok.exit_code == 0
    assert next(r for r in json.loads(ok.stdout) if r["name"] == "bloctel")["state"] == "ok"

    key = tmp_path / "var" / "keys" / "hash.key"
    original = key.read_text()
    key.write_text(bytes(range(32)).hex() + "\n")  # a valid key, but not this database's
    wrong = run(config, "opposition", "status")
    assert wrong.exit_code == 1
    assert "cannot be matched" in text(wrong)
    assert "lists cannot be matched" in wrong.stderr and "is not the key" in wrong.stderr
    as_json = run(config, "opposition", "status", "--json")
    assert as_json.exit_code == 1
    states = {r["name"]: r["state"] for r in json.loads(as_json.stdout)}
    assert states == {
        "bloctel": "cannot be matched",
        "us-dnc": "not imported",
        "tps": "not imported",
    }

    key.unlink()
    missing = run(config, "opposition", "status")
    assert missing.exit_code == 1
    assert "cannot be matched" in text(missing) and "is missing" in missing.stderr
    assert not key.exists()  # status never creates a key

    key.write_text(original)
    key.chmod(0o600)
    assert run(config, "opposition", "status").exit_code == 0


def test_wrong_key_is_refused(config: Path, tmp_path: Path) -> None:
    assert run(config, "optout", "add", "0199000010").exit_code == 0
    key = tmp_path / "var" / "keys" / "hash.key"
    key.write_text(bytes(range(32)).hex() + "\n")  # e.g. a fresh install's key
    result = run(config, "optout", "check", "0199000010")
    assert result.exit_code == 1
    assert f"hash key {Path('var/keys/hash.key').resolve()}" in result.stderr.replace("\n", "")
    assert "is not the key" in result.stderr and "restore the right key" in result.stderr


def test_refusal_add(config: Path) -> None:
    result = run(config, "refusal", "add", "01 99 00 00 10", "--at", "2026-03-02T11:00:00+01:00")
    assert result.exit_code == 0, result.output
    assert "no call before 2026-05-01T12:00:00+02:00" in text(result)
    assert "D223-9" in text(result)  # 60 x 24 h: the clocks went forward meanwhile
    naive = run(config, "refusal", "add", "0261910011", "--at", "2026-03-02T11:00")
    assert naive.exit_code == 0, naive.output
    assert "refusal recorded at 2026-03-02T11:00:00+01:00" in text(naive)  # Europe/Paris
    ny = run(
        config, "refusal", "add", "0353010012", "--at", "2026-03-02T11:00",
        "--timezone", "America/New_York",
    )  # fmt: skip
    assert ny.exit_code == 0, ny.output
    assert "refusal recorded at 2026-03-02T11:00:00-05:00" in text(ny)
    kept = run(
        config, "refusal", "add", "0199000011", "--at", "2026-03-02T11:00:00Z",
        "--timezone", "America/New_York",
    )  # fmt: skip
    assert "refusal recorded at 2026-03-02T06:00:00-05:00" in text(kept)


def test_help_texts_name_the_legal_sources(config: Path) -> None:
    assert "L223-1" in run(config, "opposition", "--help").output
    assert "64.1200(c)(2)" in run(config, "opposition", "--help").output
    assert "PECR reg. 21" in run(config, "opposition", "--help").output
    assert "D223-9" in run(config, "refusal", "--help").output
    assert "L34-5" in run(config, "consent", "--help").output


def test_consent_import_purpose_option_for_files_without_the_column(tmp_path: Path) -> None:

    cfg = tmp_path / "voicecast.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/c.db"\n'
        f"[sandbox]\nenabled = false\n"
        f'[compliance]\nhash_key_file = "{tmp_path}/k.key"\n'
    )
    crm = tmp_path / "crm.csv"
    crm.write_text(
        "téléphone;statut;date;preuve\n01 99 00 00 10;oui;25/11/2026 14:32;web-1\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    refused = runner.invoke(main, ["--config", str(cfg), "consent", "import", str(crm)])
    assert refused.exit_code == 1 and "purpose" in refused.output
    done = runner.invoke(
        main, ["--config", str(cfg), "consent", "import", str(crm), "--purpose", "marketing"]
    )
    assert done.exit_code == 0, done.output
    shown = runner.invoke(main, ["--config", str(cfg), "consent", "show", "0199000010"])
    assert "marketing" in shown.output and "web-1" in shown.output
