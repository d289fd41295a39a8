"""Tables that stay readable in a narrow terminal.

The CLI prints lists of records through :func:`print_records`: a rich table when the console
is wide enough to show every identifier (names, instants, hashes, counts) whole on one line
and to give each free-text column a useful width, and otherwise one block of
``Label  value`` lines per record (the same information, nothing cut). Rich would otherwise
squeeze every column of a wide table into an 80-column terminal and break names and dates
into fragments the user can neither read nor copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.padding import Padding
from rich.table import Column, Table
from rich.text import Text

Cell = str | Text | None
"""A cell: plain text (never read as rich markup), a styled :class:`~rich.text.Text`, or
None (empty). A cell may hold several lines."""


@dataclass(frozen=True)
class Field:
    """One column of :func:`print_records`.

    Attributes:
        label: the column header, and the label of each line in the stacked layout.
        whole: the cells are never broken across lines (identifiers, instants, hashes,
            counts, short codes); the table layout is used only when they all fit whole.
        min_width: for the other columns (free text, wrapped at spaces), the narrowest width
            (terminal cells) the table layout may give them; below it the stacked layout is
            used.
        justify: alignment in the table layout.
    """

    label: str
    whole: bool = True
    min_width: int = 16
    justify: Literal["left", "right"] = "left"


TABLE_OVERHEAD_PER_COLUMN = 3
"""Terminal cells a rich table with the default box adds per column (padding 1 on each side
and one border), plus one for the right edge."""


def cell_text(value: Cell) -> Text:
    """A cell as :class:`~rich.text.Text` (plain text is never read as markup)."""
    if isinstance(value, Text):
        return value
    return Text("" if value is None else str(value))


def natural_width(label: str, cells: Sequence[Text]) -> int:
    """The width (terminal cells) a column needs to show its header and every line of its
    cells without wrapping."""
    widest = cell_len(label)
    for cell in cells:
        for line in cell.plain.splitlines() or [""]:
            widest = max(widest, cell_len(line))
    return widest


def table_widths(
    fields: Sequence[Field], rows: Sequence[Sequence[Text]], width: int
) -> list[int] | None:
    """The content width of each column when ``rows`` fit a table ``width`` cells wide, or
    None when they do not.

    Whole columns get their natural width; the others share what is left (the narrowest
    first get their natural width when it fits their share), each at least its
    ``min_width`` (or its natural width when smaller).
    """
    natural = [natural_width(f.label, [row[i] for row in rows]) for i, f in enumerate(fields)]
    budget = width - TABLE_OVERHEAD_PER_COLUMN * len(fields) - 1
    widths = [n if f.whole else 0 for f, n in zip(fields, natural, strict=True)]
    rest = budget - sum(widths)
    if rest < 0:
        return None
    flexible = sorted((i for i, f in enumerate(fields) if not f.whole), key=lambda i: natural[i])
    for done, i in enumerate(flexible):
        share = rest // (len(flexible) - done)
        given = min(natural[i], share)
        if given < min(fields[i].min_width, natural[i]):
            return None
        widths[i] = given
        rest -= given
    return widths


def print_records(
    console: Console,
    title: str | None,
    fields: Sequence[Field],
    rows: Sequence[Sequence[Cell]],
    *,
    stacked: bool | None = None,
) -> None:
    """Print ``rows`` (one value per field each) as a table, or as stacked blocks.

    Args:
        console: where to print; its ``width`` decides the layout.
        title: printed above (the table's title, or a bold line).
        stacked: force the stacked layout (True) or the table (False); default: the table
            when :func:`table_widths` finds it fits, else stacked.

    Raises:
        ValueError: a row does not hold one value per field.
    """
    cells = [[cell_text(value) for value in row] for row in rows]
    for row in cells:
        if len(row) != len(fields):
            raise ValueError(f"row of {len(row)} values for {len(fields)} fields")
    widths = None if stacked else table_widths(fields, cells, console.width)
    if stacked is False and widths is None:
        widths = [natural_width(f.label, [row[i] for row in cells]) for i, f in enumerate(fields)]
    if widths is not None:
        table = Table(
            *(
                Column(
                    f.label,
                    width=max(w, 1),
                    no_wrap=f.whole,
                    overflow="fold",
                    justify=f.justify,
                )
                for f, w in zip(fields, widths, strict=True)
            ),
            title=title,
            title_justify="left",
        )
        for row in cells:
            table.add_row(*row)
        console.print(table)
        return
    if title:
        console.print(Text(title, style="bold"))
    for number, row in enumerate(cells):
        if number:
            console.print()
        console.print(record_block(fields, row))


def record_block(fields: Sequence[Field], row: Sequence[Text]) -> RenderableType:
    """One record as ``Label  value`` lines (empty values left out), indented by two
    cells; long values wrap under their own column."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(overflow="fold")
    for f, value in zip(fields, row, strict=True):
        if value.plain.strip():
            grid.add_row(Text(f"{f.label}:"), value)
    return Padding(grid, (0, 0, 0, 2), expand=False)
