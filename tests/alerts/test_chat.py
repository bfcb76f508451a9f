from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser

from monitor.alerts.channels import limit_for
from monitor.alerts.chat import render_body, render_sweep_partial, render_unreadable_dates
from monitor.alerts.digest import Digest, ordered_items, rental_at_risk
from monitor.alerts.email import CSV_NAME, findings_csv, render_document, render_texts
from monitor.findings import FindingView, number_text, urgency
from monitor.vocab import esc

HOSTILE = [
    "<script>alert(1)</script>",
    "line1\nline2\r\nBcc: evil@x",
    "*bold* _it_ `code`",
    "<!channel>",
    "[click](http://evil)",
]


def item(**kw: object) -> FindingView:
    base: dict[str, object] = {
        "rule": "blocked",
        "severity": "critical",
        "e164": "+911",
        "account_id": "MA_A",
        "message": "number is blocked",
    }
    return FindingView(**(base | kw))  # type: ignore[arg-type]


def test_markdown_escapes_hostile_api_strings() -> None:
    d = Digest(new=[item(tags=tuple(HOSTILE), e164="<b>+1</b>")])
    body = render_body(d, "markdown")
    assert "<script>" not in body and "<!channel>" not in body and "<b>" not in body
    assert "\r" not in body
    assert "line1 line2 Bcc: evil＠x" in body  # newlines folded, no "@" mention
    for line in body.splitlines():
        assert not line.startswith("Bcc")


def test_html_escapes_everything_from_the_api() -> None:
    d = Digest(new=[item(tags=tuple(HOSTILE), account_id='"><img src=x onerror=1>')])
    body = render_document(d, "html").body  # HTML is the email document
    assert "<script>" not in body and "<img" not in body
    assert "&lt;script&gt;" in body


def test_esc_per_format() -> None:
    assert esc("a\nb", "text") == "a b"
    assert esc("`x`", "markdown") == "`ʹxʹ`"
    assert esc("<a>", "html") == "&lt;a&gt;"
    assert esc("", "markdown") == "—"
    assert len(esc("x" * 500, "text")) == 120


# Invisible characters that reorder or hide text: each must be gone from every output.
INVISIBLE = "\u061c\u180e\u200b\u200c\u200d\u200e\u2060\u2061\u2062\u2063\u2064\u2066\u202e\ufeff"


def test_one_control_filter_for_every_output() -> None:
    from monitor import display as formats
    from monitor.alerts.slack import build
    from monitor.vocab import CONTROL_CHARS, csv_cell, one_line, plain, tty

    hidden = "MA_" + "\u200b".join("ACME") + "".join(f"x{ch}" for ch in INVISIBLE)
    assert CONTROL_CHARS.sub("", hidden) == "MA_ACME" + "x" * len(INVISIBLE)
    outputs = [esc(hidden, f) for f in ("text", "markdown", "html")]
    outputs += [plain(hidden, "markdown"), tty(hidden), one_line(hidden), csv_cell(hidden)]
    outputs += [csv_cell(hidden), formats.shown(hidden), formats.csv_text([{"a": hidden}], "a")]
    d = Digest(new=[item(account_id=hidden, account_name=hidden, message=hidden)], swept_at=NOW)
    outputs += [render_body(d, "markdown"), render_body(d, "text"), findings_csv(d)]
    outputs += [render_document(d, f).body for f in ("html", "text")]
    outputs.append(str(build(d, "t")))
    for text in outputs:
        assert not any(ch in text for ch in INVISIBLE), ascii(text)


def test_esc_neutralises_every_mention() -> None:
    for fmt in ("text", "markdown", "html"):
        for value in ("@everyone", "@here", "<@&123>", "<@123>", "ops@example.com"):
            assert "@" not in esc(value, fmt)
    assert esc("@here", "text") == "\uff20here"


def test_unknown_currencies_show_their_code() -> None:
    from monitor.alerts.slack import build
    from monitor.rules.base import money

    risky = [item(monthly_fee=Decimal(123), currency="XOF"), item(e164="+912", currency="xof")]
    risky.append(item(e164="+913", monthly_fee=Decimal("7.5"), currency="952"))
    d = Digest(new=risky, at_risk=rental_at_risk(risky), swept_at=NOW)
    assert d.at_risk == {"952": Decimal("7.5"), "XOF": Decimal(123)}
    for body in (
        render_body(d, "markdown"),
        render_body(d, "text"),
        render_document(d, "html").body,
        render_document(d, "text").body,
        str(build(d, "t")),
    ):
        assert "123.00 XOF" in body and "7.50 952" in body and "?" not in body
    assert money(Decimal(123), "xof") == "123.00 XOF"
    assert money(Decimal(1), "<b>") == "1.00 ?"  # not a code: no markup gets through


def test_title_is_one_header_safe_line() -> None:
    d = Digest(new=[item()], resolved=[item()])
    title = render_texts(d, "ops\r\nBcc: x@y").title
    assert "\n" not in title and "\r" not in title
    assert title.startswith("ops Bcc: x@y: 1 new")


def test_sections_and_totals() -> None:
    d = Digest(
        new=[item()],
        reminders=[item(tier=7)],
        resolved=[item(rule="expiring")],
        still_open=4,
        numbers_swept=120,
        at_risk={"INR": Decimal("300"), "USD": Decimal("1.50")},
    )
    body = render_body(d, "text")
    assert "New (1)" in body and "Reminders (1)" in body and "Resolved (1)" in body
    assert "[7d]" in body
    assert "Other findings still open: 4" in body and "Numbers swept: 120" in body
    assert "300.00 INR" in body and "1.50 USD" in body


def test_long_digests_are_cut_with_and_n_more() -> None:
    d = Digest(new=[item(e164=f"+91{i:010d}") for i in range(500)])
    body = render_body(d, "markdown", limit=2000, max_items=1000)
    assert len(body) <= 2000
    assert "…and " in body and " more" in body
    # every listed line is whole: code spans are balanced
    for line in body.splitlines():
        assert line.count("`") % 2 == 0
    capped = render_body(d, "text", max_items=10)
    assert "…and 490 more" in capped


def test_limits_per_channel_kind() -> None:
    assert limit_for("slack://a/b/c") == 35_000
    assert limit_for("mailto://x") == 90_000
    assert limit_for("json://x", 5000) == 5000


def test_templates_override_title_and_intro() -> None:
    d = Digest(new=[item()], numbers_swept=9)
    legacy = {"title": "$new problems in $swept numbers", "intro": "Hello team ($open still open)"}
    texts = render_texts(d, "p", legacy=legacy)
    assert texts.title == "1 problems in 9 numbers"
    body = render_body(d, "text", intro=texts.intro)
    assert body.startswith("Hello team (0 still open)")


def test_rental_at_risk_sums_per_currency() -> None:
    totals = rental_at_risk(
        [
            item(monthly_fee=Decimal("1.5"), currency="USD"),
            item(monthly_fee=Decimal("2.25"), currency="USD"),
            item(monthly_fee=Decimal(300), currency="INR"),
            item(),
        ]
    )
    assert totals == {"INR": Decimal(300), "USD": Decimal("3.75")}


def test_default_title_names_only_what_happened() -> None:
    assert render_texts(Digest(new=[item()] * 3), "dm").title == "dm: 3 new"
    d = Digest(reminders=[item()], resolved=[item(), item()])
    assert render_texts(d, "dm").title == "dm: 1 reminder, 2 resolved"


def test_terminal_text_has_no_c1_controls_or_bidi_overrides() -> None:
    from monitor.vocab import tty

    shown = tty("Mum\u009b31mbai\u202eevil\x1b[2J")
    assert "\u009b" not in shown and "\u202e" not in shown and "\x1b" not in shown
    assert esc("a\u202eb", "html") == "a b"


# --- the email document, its CSV, and the chat digest's order ---------------------------------

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
SEVERITY_CYCLE = ("info", "critical", "warning")


def flagged(count: int, **kw: object) -> list[FindingView]:
    """``count`` findings of mixed severities, rules and due dates, in no useful order."""
    out = []
    for i in range(count):
        sev = SEVERITY_CYCLE[i % 3]
        dated = i % 2 == 0
        out.append(
            item(
                **(
                    {
                        "rule": "billing_due" if dated else "blocked",
                        "severity": sev,
                        "e164": f"+9198{i:08d}",
                        "account_id": f"MA_{i % 7}",
                        "account_name": f"Customer {i % 7}" if i % 7 else None,
                        "message": "next billing soon" if dated else "number is blocked",
                        "due_at": NOW + timedelta(days=(i * 5) % 11 - 3) if dated else None,
                        "monthly_fee": Decimal("1.10"),
                        "currency": "USD",
                        "tags": ("vip",) if i % 4 == 0 else (),
                    }
                    | kw
                )
            )
        )
    return out


class _Rows(HTMLParser):
    """Collects the text of every finding row (a ``<tr>`` of ``<tbody>``) and the headings."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self.headings: list[str] = []
        self._in_body = self._in_row = self._in_h2 = False
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._in_row, self._text = True, []
        elif tag == "h2":
            self._in_h2, self._text = True, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "tr" and self._in_row:
            self.rows.append(" ".join(self._text))
            self._in_row = False
        elif tag == "h2":
            self.headings.append(" ".join(self._text))
            self._in_h2 = False

    def handle_data(self, data: str) -> None:
        if self._in_row or self._in_h2:
            self._text.append(data.strip())


def parse_rows(body: str) -> _Rows:
    parser = _Rows()
    parser.feed(body)
    return parser


def test_email_names_all_120_flagged_numbers_in_tables_most_urgent_first() -> None:
    items = flagged(120)
    d = Digest(new=items[:100], reminders=items[100:], numbers_swept=600, swept_at=NOW)
    doc = render_document(d, "html", max_rows=200)
    parsed = parse_rows(doc.body)
    assert len(parsed.rows) == 120 and doc.attachments == ()
    for it in items:
        assert sum(it.e164 in row for row in parsed.rows) == 1
    assert [h.split()[0] for h in parsed.headings] == ["Critical", "Warning", "Info"]
    # within a section: new before reminders; then no date (broken now) before dated, nearest
    # date first
    expected = [
        i.e164
        for part in (d.new, d.reminders)
        for i in sorted(part, key=urgency)
        if i.severity == "critical"
    ]
    shown = [r.split()[0] for r in parsed.rows[: len(expected)]]
    assert shown == expected
    assert "<style" not in doc.body and "<script" not in doc.body


NOTE = "1 number has an unreadable expires_at: +911"


def test_unreadable_dates_are_a_note_in_every_digest_not_a_warning() -> None:
    """Numbers with an unreadable date are a line of the digest's summary, in chat, email and
    Slack alike, with none of the partial sweep's warning marks."""
    from monitor.alerts.slack import build

    d = Digest(new=[item()], notes=NOTE, swept_at=NOW)
    for body in (
        render_body(d, "markdown"),
        render_body(d, "text"),
        render_document(d, "html").body,
        render_document(d, "text").body,
        str(build(d, "title")),
    ):
        assert NOTE in body and "note" in body.lower()
        assert "⚠" not in body and "&#9888;" not in body and "Warning" not in body
    partial = render_body(Digest(new=[item()], caveat="1 item(s) could not be read"), "text")
    assert "⚠ 1 item(s) could not be read" in partial and "Note" not in partial


def test_the_unreadable_dates_notice_is_no_incomplete_sweep_notice() -> None:
    title, body = render_unreadable_dates(NOTE, "html", NOW)
    assert title == "did-monitor: numbers with unreadable dates"
    assert body.startswith("<p>") and NOTE in body and "incomplete" not in body
    assert title != render_sweep_partial(NOTE, "html", NOW)[0]
    assert "<b>" not in render_unreadable_dates("<b>x</b>", "html", NOW)[1]


def test_email_summary_counts_rules_and_exact_money() -> None:
    items = flagged(9)
    d = Digest(
        new=items[:6],
        reminders=items[6:8],
        resolved=items[8:],
        still_open=4,
        numbers_swept=300,
        at_risk={"INR": Decimal("300.50"), "USD": Decimal("0.1") + Decimal("0.2")},
        swept_at=NOW,
    )
    body = render_document(d, "html").body
    assert "6</b> new" in body and "2</b> reminders" in body and "1</b> resolved" in body
    assert "300</b> numbers swept" in body
    assert "300.50 INR" in body and "0.30 USD" in body
    assert "3 Critical" in body and "2 Warning" in body and "3 Info" in body
    assert "blocked <b>4</b>" in body and "billing_due <b>4</b>" in body
    assert "1 Resolved" in body


def test_email_escapes_hostile_api_strings_in_html_and_text() -> None:
    d = Digest(
        new=[
            item(
                e164="<img src=x onerror=alert(1)>",
                account_id='"><script>x</script>',
                account_name="Acme & <b>Sons</b>",
                tags=tuple(HOSTILE),
                message="number is blocked",
            )
        ],
        swept_at=NOW,
    )
    html_body = render_document(d, "html").body
    assert "<img" not in html_body and "<script>" not in html_body and "<b>Sons" not in html_body
    assert "&lt;img src=x onerror=alert(1)&gt;" in html_body
    assert "Acme &amp; &lt;b&gt;Sons&lt;/b&gt;" in html_body
    text_body = render_document(d, "text").body
    assert "line1 line2 Bcc: evil@x" in text_body
    assert not any(line.startswith("Bcc") for line in text_body.splitlines())


def test_email_past_the_row_cap_attaches_every_finding_as_csv() -> None:
    items = flagged(130)
    resolved = flagged(5, rule="expiring")
    d = Digest(new=items, resolved=resolved, swept_at=NOW)
    doc = render_document(d, "html", max_rows=100)
    parsed = parse_rows(doc.body)
    assert len(parsed.rows) == 100
    assert "100</b> most urgent of <b>135</b> findings" in doc.body
    assert CSV_NAME in doc.body
    # the most urgent are the ones shown: every critical one is in the body
    for it in items:
        if it.severity == "critical":
            assert any(it.e164 in r for r in parsed.rows)
    (att,) = doc.attachments
    assert att.name == CSV_NAME and att.mimetype == "text/csv"
    assert att.content.startswith("\ufeffchange,")  # UTF-8 with a BOM, as Excel wants
    rows = list(csv.DictReader(io.StringIO(att.content[1:])))
    assert len(rows) == 135
    order = ordered_items(d)
    for row, (change, it) in zip(rows, order, strict=True):
        assert row["change"] == change and row["number"] == it.e164
        assert row["severity"] == it.severity and row["rule"] == it.rule
        assert row["account_id"] == it.account_id
        assert row["account_name"] == (it.account_name or "")
        assert row["message"] == it.message
        assert row["due_date"] == (it.due_at.strftime("%Y-%m-%d") if it.due_at else "")
        assert row["days_left"] == ("" if it.due_at is None else str((it.due_at - NOW).days))
        assert Decimal(row["monthly_fee"]) == it.monthly_fee and row["currency"] == "USD"
        assert row["tags"] == "; ".join(it.tags)
    text = render_document(d, "text", max_rows=100)
    assert "100 most urgent of 135" in text.body and text.attachments == doc.attachments


def test_csv_cells_cannot_run_as_spreadsheet_formulas() -> None:
    d = Digest(
        new=[item(e164="+919800000001", account_id='=HYPERLINK("http://x")', tags=("@SUM(1)",))]
    )
    (row,) = list(csv.DictReader(io.StringIO(findings_csv(d))))
    assert row["number"] == "+919800000001"  # a plain number stays as it is
    assert row["account_id"] == '\'=HYPERLINK("http://x")'
    assert row["tags"] == "'@SUM(1)"


def test_markdown_digest_is_grouped_by_severity_most_urgent_first() -> None:
    items = flagged(12)
    d = Digest(new=items, resolved=[item(rule="expiring", severity="info")], swept_at=NOW)
    body = render_body(d, "markdown")
    headings = [line for line in body.splitlines() if line.startswith("*")]
    assert headings == [
        "*🔴 Critical (4)*",
        "*🟠 Warning (4)*",
        "*🔵 Info (4)*",
        "*✅ Resolved (1)*",
    ]
    for it in items:
        assert it.e164 in body


def test_with_a_dashboard_each_number_links_to_its_page() -> None:
    hostile = item(e164='+91"><script>/../x?y#z')
    d = Digest(new=[item(e164="+919800000001"), hostile], swept_at=NOW)
    body = render_document(d, "html", dashboard_url="https://mon.example.com/dash/").body
    assert 'href="https://mon.example.com/dash/numbers/+919800000001"' in body
    assert (
        'href="https://mon.example.com/dash/numbers/+91%22%3E%3Cscript%3E%2F..%2Fx%3Fy%23z"' in body
    )
    assert 'href="https://mon.example.com/dash/findings"' in body
    assert "href" not in render_document(d, "html").body


def test_findings_without_a_number_show_their_account_or_watch_escaped() -> None:
    account = item(
        rule="no_active_number",
        e164="account:MA_<b>X",
        account_id="MA_<b>X",
        account_name="Acme & <i>Sons</i>",
        message="customer has no active number",
        has_number=False,
    )
    unnamed = item(e164="account:MA_PLAIN", account_id="MA_PLAIN", has_number=False)
    watch = item(rule="low_availability", e164="availability:IN:*", account_id="", has_number=False)
    regional = item(e164="availability:IN:mumbai", account_id="", has_number=False)
    assert number_text(account) == "Acme & <i>Sons</i>"
    assert number_text(unnamed) == "MA_PLAIN"
    assert number_text(watch) == "availability IN"
    assert number_text(regional) == "availability IN mumbai"
    d = Digest(new=[account, unnamed, watch, regional], swept_at=NOW)
    body = render_document(d, "html", dashboard_url="https://mon.example.com/").body
    assert "account:" not in body and "availability:" not in body
    assert "<i>Sons" not in body and "Acme &amp; &lt;i&gt;Sons&lt;/i&gt;" in body
    assert "MA_&lt;b&gt;X" in body and "<b>X" not in body
    assert "/numbers/" not in body  # nothing to link to
    text = render_document(d, "text").body
    assert "account:" not in text and "availability IN mumbai" in text
    for fmt in ("markdown", "text"):
        rendered = render_body(d, fmt)  # type: ignore[arg-type]
        assert "account:" not in rendered and "availability:" not in rendered, fmt
        assert "<i>Sons" not in rendered or fmt == "text", fmt
