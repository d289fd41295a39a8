"""Benchmark: importing a huge contact CSV (1,000,000 rows by default), time and peak memory.

Run: ``.venv/bin/python bench/import_huge.py [--rows N] [--max-rows M] [--quick]
[--json FILE]``. Prints figures measured in this one run (no pass/fail: machines are shared
and noisy): the time to parse the file, to store it (one transaction, as ``voicecast
contacts import``), and the process's peak resident memory after each phase
(``resource.getrusage``, ``ru_maxrss``: the high-water mark of this process, so run it as
its own process, as ``bench/run`` does). Ratios: rows per second, and the peak memory over
the file's size. ``--quick``: 20,000 rows.

Fictional numbers only: the rows cycle through the ranges reserved for fiction (France
01 99 00 xx xx, 02 61 91 xx xx, 03 53 01 xx xx; UK 020 7946 0xxx; US 202 555 01xx), about
31,000 distinct numbers, written in several national and international spellings; the other
rows are duplicates, merged by the importer. Parsing costs the same per row either way;
memory and storing grow with the distinct numbers, so the figure per distinct contact is
printed too, to extrapolate to a file of a million distinct numbers.

With ``--max-rows`` (default: the importer's :data:`DEFAULT_MAX_ROWS`), a file over the
limit is refused: the time to refuse and the error are printed.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import machine_info, write_json
from voicecast.contacts.importer import DEFAULT_MAX_ROWS, ImportFormatError, parse_contacts_file
from voicecast.contacts.service import import_contacts
from voicecast.storage.db import make_engine, migrate, session_factory
from voicecast.storage.models import Contact


def fictional_numbers() -> Iterator[str]:
    """Every fictional number once, in a national or international spelling."""
    for i in range(10_000):
        yield f"01 99 00 {i // 100:02d} {i % 100:02d}"
        yield f"+33 2 61 91 {i // 100:02d} {i % 100:02d}"
        yield f"03.53.01.{i // 100:02d}.{i % 100:02d}"
    for i in range(1000):
        yield f"+44 20 7946 0{i:03d}"
    for i in range(100):
        yield f"+1 202-555-01{i:02d}"


def write_csv(path: Path, rows: int) -> int:
    """Write ``rows`` data rows (streaming); return the file size in bytes."""
    numbers = itertools.cycle(list(fictional_numbers()))
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=";")
        writer.writerow(["Téléphone", "Prénom", "Nom", "Société", "Commentaire"])
        for i in range(rows):
            writer.writerow([next(numbers), f"Prénom{i}", "Exemple", "Société Fictive", "x"])
    return path.stat().st_size


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    """Generate the file, parse and store it, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help="data rows in the file (default 1,000,000)")
    parser.add_argument(
        "--max-rows",
        type=int,
        default=DEFAULT_MAX_ROWS,
        help=f"the importer's row limit (default {DEFAULT_MAX_ROWS:,})",
    )
    parser.add_argument("--quick", action="store_true", help="20,000 rows")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    args.rows = args.rows or (20_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "huge.csv"
        size = write_csv(path, args.rows)
        print(f"file: {args.rows:,} rows, {size / 2**20:.1f} MiB; limit {args.max_rows:,} rows")
        base = peak_rss_mb()
        print(f"peak RSS before parsing: {base:.0f} MiB")
        started = time.perf_counter()
        try:
            result = parse_contacts_file(path, max_rows=args.max_rows)
        except ImportFormatError as exc:
            took = time.perf_counter() - started
            print(f"refused after {took:.1f} s, peak RSS {peak_rss_mb():.0f} MiB: {exc}")
            write_json(args.json, {"bench": "import", "refused": str(exc), "seconds": took})
            return
        parsed = time.perf_counter() - started
        distinct = len(result.contacts)
        print(
            f"parse: {parsed:.1f} s ({args.rows / parsed:,.0f} rows/s); {distinct:,} distinct, "
            f"{result.duplicates:,} duplicates, {len(result.rejects):,} rejected; "
            f"peak RSS {peak_rss_mb():.0f} MiB"
        )
        engine = make_engine(f"sqlite:///{folder}/bench.db")
        migrate(engine)
        sessions = session_factory(engine)
        started = time.perf_counter()
        with sessions() as s, s.begin():
            imported, _, _ = import_contacts(s, "huge", result)
        stored = time.perf_counter() - started
        with sessions() as s:
            count = s.scalar(select(func.count()).select_from(Contact))
        peak = peak_rss_mb()
        print(
            f"store: {stored:.1f} s for {imported:,} new contacts ({count:,} in the database); "
            f"peak RSS {peak:.0f} MiB"
        )
        print(
            f"memory per distinct contact (parse + store, approx.): "
            f"{(peak - base) * 1024 / max(distinct, 1):.1f} KiB"
        )
        size_mib = size / 2**20
        print(
            f"ratios: {args.rows / parsed:,.0f} rows/s parsed, {args.rows / (parsed + stored):,.0f}"
            f" rows/s parsed and stored; peak RSS / file size {peak / size_mib:.2f}"
        )
        engine.dispose()
    write_json(
        args.json,
        {
            "bench": "import",
            "machine": machine_info(),
            "rows": args.rows,
            "file_mib": size_mib,
            "distinct": distinct,
            "parse_s": parsed,
            "store_s": stored,
            "rows_per_s_parse": args.rows / parsed,
            "rows_per_s_total": args.rows / (parsed + stored),
            "peak_rss_mib": peak,
            "rss_before_mib": base,
            "peak_over_file": peak / size_mib,
        },
    )


if __name__ == "__main__":
    main()
