"""Readable output in narrow terminals: :mod:`voicecast.cli_layout` and ``campaign list``
(names never cut, whatever the width)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from cli_workspace import make_workspace, run_cli
from journal_fakes import make_campaign
from rich.console import Console
from rich.text import Text

from voicecast.app import open_runtime
from voicecast.cli_layout import Field, print_records, table_widths
from voicecast.config import load_settings
from voicecast.storage.models import Campaign

DEMO = "demo-20261129-211234"
FIELDS = [Field("Name"), Field("When"), Field("Note", whole=False, min_width=10)]
ROW = [DEMO, "2026-11-29T21:12:34+01:00", "paused: outside the calling hours of the campaign"]


def _printed(width: int, rows: list[list[str]], **kw: bool) -> list[str]:
    out = Console(width=width, file=io.StringIO(), color_system=None)
    print_records(out, "Things", FIELDS, rows, **kw)
    text = out.file.getvalue()  # type: ignore[attr-defined]
    return [line.rstrip() for line in text.splitlines()]


def test_a_table_only_when_identifiers_fit_whole_and_free_text_gets_its_minimum() -> None:
    cells = [[Text(v) for v in ROW]]
    # whole columns at their natural width; the free text shares what is left
    assert table_widths(FIELDS, cells, 120) == [20, 25, 49]
    assert table_widths(FIELDS, cells, 70) == [20, 25, 15]
    assert table_widths(FIELDS, cells, 64) is None  # the note would get 9 < 10 cells
    assert table_widths(FIELDS, cells, 40) is None  # the identifiers do not fit


def test_records_print_as_a_table_when_wide_and_as_blocks_when_narrow() -> None:
    wide = _printed(120, [ROW, ROW])
    assert wide[0] == "Things" and sum(DEMO in line for line in wide) == 2
    assert any("paused: outside the calling hours of the campaign" in line for line in wide)
    narrow = _printed(50, [ROW, ["other", "", "x"]])
    assert max(map(len, narrow)) <= 50
    assert narrow[:4] == [
        "Things",
        f"  Name: {DEMO}",
        "  When: 2026-11-29T21:12:34+01:00",
        "  Note: paused: outside the calling hours of the",
    ]
    assert narrow[5:] == ["", "  Name: other", "  Note: x"]  # empty values left out
    assert _printed(120, [ROW], stacked=True)[1] == f"  Name: {DEMO}"
    with pytest.raises(ValueError, match="row of 2 values for 3 fields"):
        _printed(80, [ROW[:2]])


def test_campaign_list_never_cuts_a_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voicecast import cli

    config = make_workspace(tmp_path, monkeypatch)
    empty = run_cli(config, "campaign", "list")
    assert empty.exit_code == 0 and "no campaigns yet" in empty.output
    runtime = open_runtime(load_settings(config))
    make_campaign(runtime.sessions, ["+33199000010", "+33199000011"], name=DEMO)
    runtime.engine.dispose()

    for width in (80, 200):
        monkeypatch.setattr(cli.console, "_width", width)
        shown = run_cli(config, "campaign", "list")
        assert shown.exit_code == 0, shown.output
        lines = shown.output.splitlines()
        assert max(map(len, lines)) <= width
        (row,) = [line for line in lines if DEMO in line]
        assert row.split()[1:5] == [DEMO, "│", "running", "│"], shown.output
        assert "0/2" in row and "…" not in shown.output

    # a long note: in 80 columns each campaign becomes a block of lines, the name whole
    with runtime.sessions() as s, s.begin():
        s.query(Campaign).update(
            {"status_reason": "outside the calling hours (Europe/Paris, 10:00-13:00)"}
        )
    runtime.engine.dispose()
    monkeypatch.setattr(cli.console, "_width", 80)
    shown = run_cli(config, "campaign", "list")
    assert shown.exit_code == 0, shown.output
    lines = [line.rstrip() for line in shown.output.splitlines()]
    assert max(map(len, lines)) <= 80
    assert f"  campaign: {DEMO}" in lines and "  done:     0/2" in lines, shown.output
    assert any("outside the calling hours" in line for line in lines)
