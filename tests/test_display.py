"""Terminal tables: key columns (numbers, ids, amounts) are never cut, free text folds."""

from __future__ import annotations

import io

from rich.console import Console

from monitor.display import print_report_table


def test_report_table_keeps_ids_and_amounts_whole_at_80_columns() -> None:
    rows = [
        {
            "account_id": f"MA_{i:08d}LONGID",
            "account_name": "A customer with a rather long trading name " * 2,
            "currency": "INR",
            "monthly_rental": "123456789.50",
        }
        for i in range(3)
    ]
    fields = ("account_id", "account_name", "currency", "monthly_rental")
    for terminal in (True, False):
        buf = io.StringIO()
        console = Console(file=buf, width=80, force_terminal=terminal, color_system=None)
        print_report_table(
            console,
            rows,
            fields,
            "costs [bold]x[/]",
            right=("monthly_rental",),
            footer=[{"account_id": "*", "currency": "INR", "monthly_rental": "370370368.50"}],
        )
        text = buf.getvalue()
        for row in rows:
            assert row["account_id"] in text
        assert "123456789.50" in text and "370370368.50" in text
        assert "costs [bold]x[/]" in text  # markup in a title is shown, not applied
