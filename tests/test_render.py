from __future__ import annotations

from decimal import Decimal

from monitor.render import (
    Digest,
    Item,
    esc,
    limit_for,
    render_body,
    render_title,
    rental_at_risk,
)

HOSTILE = [
    "<script>alert(1)</script>",
    "line1\nline2\r\nBcc: evil@x",
    "*bold* _it_ `code`",
    "<!channel>",
    "[click](http://evil)",
]


def item(**kw: object) -> Item:
    base: dict[str, object] = {
        "rule": "blocked",
        "severity": "critical",
        "e164": "+911",
        "account_id": "MA_A",
        "message": "number is blocked",
    }
    return Item(**(base | kw))  # type: ignore[arg-type]


def test_markdown_escapes_hostile_api_strings() -> None:
    d = Digest(new=[item(tags=tuple(HOSTILE), e164="<b>+1</b>")])
    body = render_body(d, "markdown")
    assert "<script>" not in body and "<!channel>" not in body and "<b>" not in body
    assert "\r" not in body
    assert "line1 line2 Bcc: evil@x" in body  # newlines folded into the same line
    for line in body.splitlines():
        assert not line.startswith("Bcc")


def test_html_escapes_everything_from_the_api() -> None:
    d = Digest(new=[item(tags=tuple(HOSTILE), account_id='"><img src=x onerror=1>')])
    body = render_body(d, "html")
    assert "<script>" not in body and "<img" not in body
    assert "&lt;script&gt;" in body


def test_esc_per_format() -> None:
    assert esc("a\nb", "text") == "a b"
    assert esc("`x`", "markdown") == "`ʹxʹ`"
    assert esc("<a>", "html") == "&lt;a&gt;"
    assert esc("", "markdown") == "—"
    assert len(esc("x" * 500, "text")) == 120


def test_title_is_one_header_safe_line() -> None:
    d = Digest(new=[item()], resolved=[item()])
    title = render_title(d, "ops\r\nBcc: x@y", {})
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
    assert "Still open: 4" in body and "Numbers swept: 120" in body
    assert "300 INR" in body and "1.5 USD" in body


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
    assert (
        render_title(d, "p", {"title": "$new problems in $swept numbers"})
        == "1 problems in 9 numbers"
    )
    body = render_body(d, "text", templates={"intro": "Hello team ($open still open)"})
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
    assert render_title(Digest(new=[item()] * 3), "dm", {}) == "dm: 3 new"
    d = Digest(reminders=[item()], resolved=[item(), item()])
    assert render_title(d, "dm", {}) == "dm: 1 reminder, 2 resolved"


def test_terminal_text_has_no_c1_controls_or_bidi_overrides() -> None:
    from monitor.render import tty

    shown = tty("Mum\u009b31mbai\u202eevil\x1b[2J")
    assert "\u009b" not in shown and "\u202e" not in shown and "\x1b" not in shown
    assert esc("a\u202eb", "html") == "a b"
