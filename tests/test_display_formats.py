"""Report output: CSV that a spreadsheet cannot execute, JSON that a terminal cannot."""

from __future__ import annotations

import csv
import io
import json

from monitor import display as formats
from monitor.vocab import csv_cell


def test_csv_cells_never_start_a_formula() -> None:
    rows = [
        {"a": '=HYPERLINK("http://e.vil")', "b": "+911234567890", "c": "-1.50"},
        {"a": "@SUM(A1)", "b": "+SUM(A1)", "c": "-2+3"},
        {"a": ["x", "=y"], "b": None, "c": True},
    ]
    text = formats.csv_text(rows, ["a", "b", "c"])
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == ["a", "b", "c"]
    assert parsed[1] == ['\'=HYPERLINK("http://e.vil")', "+911234567890", "-1.50"]
    assert parsed[2] == ["'@SUM(A1)", "'+SUM(A1)", "'-2+3"]
    assert parsed[3] == ["x;'=y", "", "true"]


def test_csv_and_json_carry_no_control_characters() -> None:
    rows = [{"a": "line\nbreak\x1b[31m red \u202e"}]
    assert "\x1b" not in formats.csv_text(rows, ["a"]) and "\n" not in csv_cell(rows[0]["a"])
    text = formats.json_text({"rows": rows})
    assert "\x1b" not in text and "\u202e" not in text
    assert json.loads(text)["rows"] == rows


def test_default_format_follows_the_terminal() -> None:
    assert formats.pick(None, True) == "table"
    assert formats.pick(None, False) == "csv"
    assert formats.pick("json", True) == "json"
