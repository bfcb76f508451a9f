"""Report rows as a terminal table, CSV or JSON: the formats the report commands print.

Rows are dicts with JSON-ready values (text, numbers, booleans, None, lists of text). Every
format treats the values as data: the table strips control characters and Rich markup, CSV cells
cannot start a spreadsheet formula, and JSON is ASCII with every control character escaped.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from monitor.render import one_line, tty

Format = Literal["table", "csv", "json"]
FORMATS: tuple[Format, ...] = ("table", "csv", "json")

# A leading = @ (or + - followed by something that is not a plain number, like "+SUM(A1)") makes
# a spreadsheet evaluate the cell; "+911234567890" and "-1.50" stay numbers as they are.
_FORMULA = re.compile(r"^(?:[=@\t\r]|[+-](?![0-9][0-9.]*$))")


# Columns that may fold on a narrow terminal; numbers, ids and amounts are never cut.
WRAP = frozenset({"account_name", "region", "application_id", "tags", "field", "before", "after"})


def pick(fmt: str | None, is_terminal: bool) -> Format:
    """The format asked for; without one, a table on a terminal and CSV otherwise."""
    if fmt in FORMATS:
        return fmt
    return "table" if is_terminal else "csv"


def cell(value: Any) -> str:
    """One value as CSV text: lists joined by ``;``, none as empty, never a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        text = ";".join(cell(v) for v in value)
    else:
        text = one_line(str(value))
    return "'" + text if _FORMULA.match(text) else text


def csv_text(rows: Iterable[dict[str, Any]], fields: Sequence[str]) -> str:
    """A header line of ``fields``, then one line per row (RFC 4180 quoting, ``\\r\\n``)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(fields)
    for row in rows:
        writer.writerow([cell(row.get(f)) for f in fields])
    return buf.getvalue()


def json_text(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=True, default=str) + "\n"


def shown(value: Any) -> str:
    """One value as terminal text (markup and control characters made harmless)."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return tty(", ".join(str(v) for v in value))
    return tty(value)
