"""Benchmark: importing a huge contact CSV (1,000,000 rows by default), time and peak memory.

Run: ``.venv/bin/python bench/import_huge.py [--rows N] [--max-rows M]``. Prints figures
measured in this one run (no pass/fail: machines are shared and noisy): the time to parse
the file, to store it (one transaction, as ``voicecast contacts import``), and the process's
peak resident memory after each phase (``resource.getrusage``, ``ru_maxrss``).

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
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import func, select

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
    parser.add_argument("--rows", type=int, default=1_000_000, help="data rows in the file")
    parser.add_argument(
        "--max-rows",
        type=int,
        default=DEFAULT_MAX_ROWS,
        help=f"the importer's row limit (default {DEFAULT_MAX_ROWS:,})",
    )
    args = parser.parse_args()
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
        engine.dispose()


if __name__ == "__main__":
    main()
