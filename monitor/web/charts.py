"""The dashboard's charts: SVG documents drawn by pygal on the server, shown with ``<img>``.

An SVG shown as an image runs no script and fetches nothing, so the pages work with JavaScript
off and stay within their content security policy. pygal still writes its configuration into a
``<script>`` element even with ``js=[]`` (no tooltip script linked); that element is removed, so
an SVG opened on its own holds no script either. Labels (currencies, statuses) come from the API:
control characters are taken out of them and pygal's XML serialiser escapes the rest.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import pygal
from pygal.style import Style

from monitor.vocab import CONTROL_CHARS, currency_code

# pygal appends a finder for its map plugins to sys.meta_path, one without find_spec(): every
# later failed import in the process then raises an ImportWarning. No map is drawn here.
sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, pygal.PluginImportFixer)]

_SCRIPT = re.compile(rb"<script\b[^>]*>.*?</script>", re.DOTALL)
_STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#222222",
    foreground_strong="#111111",
    foreground_subtle="#767676",
    colors=("#1f6fb2", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207"),
    font_family="system-ui, sans-serif",
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=12,
    title_font_size=14,
)


def _amount(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


_CONFIG: Final[dict[str, Any]] = {
    "js": [],  # pygal's default links a tooltip script on a CDN
    "style": _STYLE,
    "width": 720,
    "height": 300,
    "legend_at_bottom": True,
    "show_minor_x_labels": False,
    "x_label_rotation": 30,  # time labels side by side would touch
    "x_labels_major_count": 6,
    "truncate_legend": 30,
    "truncate_label": 20,
    "no_data_text": "no complete sweep yet",
    "margin": 12,
    "margin_right": 48,  # room for the last time label
    "include_x_axis": True,  # counts and amounts from zero: a 1% dip is not a cliff
    "value_formatter": _amount,
}


def _svg(chart: Any, times: Sequence[datetime] | None, **series: Sequence[float]) -> bytes:
    """``chart`` with one label per sweep, to the minute, so two sweeps of one day are told
    apart (pygal prints only ``x_labels_major_count`` of them, so they never overprint)."""
    if times is not None:
        chart.x_labels = [f"{t:%Y-%m-%d %H:%M}" for t in times]
    for title, values in series.items():
        chart.add(title, list(values))
    return _SCRIPT.sub(b"", chart.render())


def _line(title: str) -> Any:
    return pygal.Line(**_CONFIG, title=title, show_legend=False, dots_size=2)


def inventory_chart(times: Sequence[datetime], sizes: Sequence[int]) -> bytes:
    """Numbers seen by each complete sweep, on an axis from zero."""
    return _svg(_line("Inventory size"), times, numbers=sizes)


def rental_chart(times: Sequence[datetime], currency: str, values: Sequence[float]) -> bytes:
    """Monthly rental of the active numbers in one currency, on a linear axis from zero (one
    panel per currency: amounts in different currencies share no axis)."""
    code = currency_code(currency) or "no currency"
    return _svg(_line(f"Monthly rental of active numbers, {code}"), times, **{code: values})


def findings_chart(
    times: Sequence[datetime], opened: Sequence[int], resolved: Sequence[int]
) -> bytes:
    """Findings opened and resolved by each complete sweep."""
    chart = pygal.Bar(**_CONFIG, title="Findings opened and resolved per sweep")
    return _svg(chart, times, opened=opened, resolved=resolved)


def status_chart(by_status: Mapping[str, int]) -> bytes:
    """The current inventory by status, largest first; each count in its label (printed
    inside the bars, a short bar's count overprinted the axis). Control and bidi characters of
    a status reorder what is read, and most are not even allowed in XML."""
    chart = pygal.HorizontalBar(**_CONFIG, title="Numbers by status", show_legend=False)
    ordered = sorted(by_status.items(), key=lambda kv: (-kv[1], kv[0]))
    label = {status: CONTROL_CHARS.sub(" ", status).strip() or "?" for status in by_status}
    chart.x_labels = [f"{label[status]} ({count:,})" for status, count in ordered]
    return _svg(chart, None, numbers=[count for _, count in ordered])
