"""The dashboard's pages: overview, findings, number, accounts, sweeps, and their charts.

Pages are Jinja2 templates shipped in the package, autoescaped: every string from the API is
text in them, never markup. Views are plain functions of the request run on Starlette's thread
pool (the store is synchronous); they read, never write. Charts are cached until a sweep starts
or ends, the only events that change them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any, Final, TypeVar, cast
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context
from markupsafe import Markup
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import Scope

from monitor import reports, vocab
from monitor.clock import Clock
from monitor.config import Settings
from monitor.findings import number_text
from monitor.health import collect
from monitor.rules import rule_ids
from monitor.store import Store
from monitor.vocab import CONTROL_CHARS, SEVERITIES, SEVERITY_RANK
from monitor.web import charts, queries
from monitor.web.queries import STATES, FindingFilter

CHART_CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
MAX_FILTER_LENGTH: Final = 128
MAX_PAGE: Final = 1_000_000
# ASCII digits only: str.isdigit() and int() also take superscript, Arabic-Indic and fullwidth
# digits (and int() fails on the first, and on more than 4,300 digits).
PAGE_NUMBER: Final = re.compile(r"[0-9]{1,7}")
MAX_RENTAL_PANELS: Final = 6
T = TypeVar("T")


async def palette(request: Request) -> Response:
    """The severities' colours (``vocab.PALETTE``) as CSS variables for ``dashboard.css``."""
    headers = {"Cache-Control": "public, max-age=3600"}
    return Response(vocab.palette_css(), media_type="text/css", headers=headers)


def _money(value: Decimal | float | None, currency: str | None = None) -> str:
    return "—" if value is None else vocab.money_text(Decimal(str(value)), currency)


def _duration(started: datetime | None, finished: datetime | None) -> str:
    return vocab.duration_text(finished - started if started and finished else None)


@pass_context
def url_for(context: Mapping[str, Any], name: str, /, **params: Any) -> str:
    """A path on this site (relative to the host, so links survive a reverse proxy). Built from
    the application's root: under a mount (``/static``) ``root_path`` is the mount's."""
    request: Request = context["request"]
    scope = request.scope
    root = str(scope.get("app_root_path", scope.get("root_path", "")))
    return root + str(request.app.url_path_for(name, **params))


def scrub(value: Any) -> Any:
    """What every ``{{ }}`` prints: control and bidi characters become spaces, so an API string
    cannot reverse or hide the text beside it. Markup (a macro's output) stays markup: a space
    never makes a tag."""
    if isinstance(value, Markup):
        return Markup(CONTROL_CHARS.sub(" ", value))  # noqa: S704 (escaped already; spaces only)
    return CONTROL_CHARS.sub(" ", value) if isinstance(value, str) else value


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("monitor.web", "templates"),
        autoescape=True,
        finalize=scrub,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters |= {
        "when": lambda value: vocab.when_text(value) or "—",
        "money": _money,
        "number_url": lambda e164: "/numbers/" + quote(e164, safe="+"),
        "segment": partial(quote, safe=""),  # an account id may hold "/", "?" or "#"
        "with_page": lambda params, page: {**params, "page": page},
        "subject": number_text,
    }
    # Set before Jinja2Templates adds its own url_for, which builds absolute URLs from Host.
    env.globals.update(duration=_duration, urlencode=urlencode, url_for=url_for)
    return env


def _page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    if not PAGE_NUMBER.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE:
        message = f"page must be a whole number from 1 to {MAX_PAGE}, not {raw[:20]!r}"
        raise HTTPException(400, message)
    return int(raw)


def _choice(request: Request, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = request.query_params.get(name, default) or default
    if value and value not in allowed:
        raise HTTPException(400, f"{name} must be one of {', '.join(allowed)}")
    return value


def _text(request: Request, name: str) -> str:
    value = request.query_params.get(name, "").strip()
    if len(value) > MAX_FILTER_LENGTH:
        raise HTTPException(400, f"{name} is longer than {MAX_FILTER_LENGTH} characters")
    if "\x00" in value:  # PostgreSQL refuses NUL in text: no value on record holds one
        raise HTTPException(400, f"{name} must not hold a NUL character")
    return value


@dataclass(eq=False, repr=False)
class Dashboard:
    """The pages over one store. ``next_sweep`` answers when the scheduler sweeps next (the
    service's own answer, jitter included); without it the cron's next fire time is shown."""

    store: Store
    settings: Settings
    _: KW_ONLY
    clock: Clock
    next_sweep: Callable[[], datetime | None] | None = None
    _charts: dict[str, tuple[tuple[Any, ...], Any]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.tz = self.settings.rules_zone  # the forecast counts whole days of the rules' time zone
        self.per_page = self.settings.dashboard.page_size
        self.templates = Jinja2Templates(env=environment())

    def routes(self) -> list[BaseRoute]:
        """Each route is named after its view."""
        views: dict[str, Callable[[Request], Any]] = {
            "/": self.overview,
            "/findings": self.findings,
            "/numbers/{e164:path}": self.number,
            "/accounts": self.accounts,
            "/accounts/{account_id:path}": self.account,
            "/silences": self.silences,
            "/sweeps": self.sweeps,
            "/charts/{name}.svg": self.chart,
            "/static/palette.css": palette,
        }
        static = StaticFiles(packages=[("monitor.web", "static")])
        routes: list[BaseRoute] = [
            Route(path, view, methods=["GET"], name=view.__name__) for path, view in views.items()
        ]
        return [*routes, Mount("/static", static, name="static")]

    def _render(
        self, request: Request, template: str, context: Mapping[str, Any], status: int = 200
    ) -> Response:
        page = {"now": self.clock(), "active": template.removesuffix(".html")} | dict(context)
        return self.templates.TemplateResponse(request, template, page, status_code=status)

    def error_page(self, scope: Scope, status: int, message: str) -> Response:
        """An HTML error page; plain text if even that cannot be drawn."""
        try:
            return self._render(
                Request(scope), "error.html", {"status": status, "message": message}, status
            )
        except Exception:  # the error may be in the templates themselves
            return PlainTextResponse(f"{status}: {message}\n", status)

    def overview(self, request: Request) -> Response:
        info = collect(self.settings, self.store, self.clock())
        if self.next_sweep is not None:
            info["next_sweep"] = self.next_sweep()
        by_status = self.store.numbers_by_status()
        # status.collect counts "open" as /findings and /metrics do: silenced ones apart.
        info["open_findings"].sort(key=lambda i: (-SEVERITY_RANK.get(i["severity"], -1), i["rule"]))
        critical = sum(i["count"] for i in info["open_findings"] if i["severity"] == "critical")
        context = {
            "info": info,
            "critical": critical,
            "rental_charts": self._rental_currencies(),
            "by_status": sorted(by_status.items(), key=lambda kv: (-kv[1], kv[0])),
            "inventory_total": sum(by_status.values()),
            "failing_after": self.settings.alerts.failing_after,
            "schedule_cron": self.settings.schedule.cron,
        }
        return self._render(request, "overview.html", context)

    def findings(self, request: Request) -> Response:
        filters = FindingFilter(
            rule=_text(request, "rule"),
            severity=_choice(request, "severity", SEVERITIES, ""),
            account=_text(request, "account"),
            number=_text(request, "number"),
            state=_choice(request, "state", STATES, "open"),
        )
        page_number, now = _page_number(request), self.clock()
        context = {
            "page": queries.findings_page(self.store, filters, page_number, self.per_page, now),
            "filters": filters,
            "rules": rule_ids(self.settings.rules, enabled_only=True),
            "severities": SEVERITIES,
            "states": STATES,
        }
        return self._render(request, "findings.html", context)

    def number(self, request: Request) -> Response:
        e164 = str(request.path_params["e164"])
        if "\x00" in e164:  # PostgreSQL refuses NUL in text: no number on record holds one
            raise HTTPException(404, "no such number on record")
        history = reports.number_history(self.store.history(e164))
        findings = queries.findings_of_number(self.store, e164, self.clock())
        if not history and not findings:
            raise HTTPException(404, f"no number {e164} on record")
        context = {
            "e164": e164,
            "names": self.store.account_names(v["account_id"] for v in history),
            "history": list(reversed(history)),
            "current": next((v for v in reversed(history) if v["valid_to"] is None), None),
            "findings": findings,
            "findings_limit": queries.NUMBER_FINDINGS_LIMIT,
        }
        return self._render(request, "number.html", context)

    def accounts(self, request: Request) -> Response:
        page_number, now = _page_number(request), self.clock()
        page = queries.accounts_page(self.store, page_number, self.per_page, now, self.tz)
        return self._render(request, "accounts.html", {"page": page})

    def account(self, request: Request) -> Response:
        account_id = str(request.path_params["account_id"])
        if "\x00" in account_id or len(account_id) > MAX_FILTER_LENGTH:
            raise HTTPException(404, "no such account on record")
        now = self.clock()
        row = queries.account(self.store, account_id, now, self.tz)
        if row is None:
            raise HTTPException(404, f"no account {account_id} on record")
        filters = FindingFilter(account=account_id)
        page_number = _page_number(request)
        context = {
            "account": row,
            "numbers": queries.account_numbers(self.store, account_id, page_number, self.per_page),
            "findings": queries.findings_page(self.store, filters, 1, self.per_page, now),
            "filters": filters,
        }
        return self._render(request, "account.html", context)

    def silences(self, request: Request) -> Response:
        rows = self.store.silences()
        names = self.store.account_names(s["account_id"] for s in rows)
        return self._render(request, "silences.html", {"silences": rows, "names": names})

    def sweeps(self, request: Request) -> Response:
        page = queries.sweeps_page(self.store, _page_number(request), self.per_page)
        return self._render(request, "sweeps.html", {"page": page})

    def chart(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        draw = self._chart_drawers().get(name)
        if draw is None:
            raise HTTPException(404, f"no chart named {name}")
        return Response(
            self._cached(name, draw),
            media_type="image/svg+xml",
            headers={"Content-Security-Policy": CHART_CSP, "Cache-Control": "no-cache"},
        )

    def _cached(self, name: str, make: Callable[[], T]) -> T:
        """``make()``, kept until a sweep starts or ends (``queries.data_version``). A dict's get
        and set are atomic: two threads may each draw a chart once, neither sees half of one."""
        version = queries.data_version(self.store)
        cached = self._charts.get(name)
        if cached is None or cached[0] != version:
            cached = self._charts[name] = (version, make())
        return cast(T, cached[1])

    def _history(self, *columns: str) -> list[list[Any]]:
        """The start times of the complete sweeps the charts show, then each of ``columns``."""
        sweeps = queries.complete_sweeps(self.store)
        return [[s[column] for s in sweeps] for column in ("started_at", *columns)]

    def _rental(self) -> dict[str, list[float]]:
        return self._cached(
            "rental series", lambda: queries.rental_by_sweep(self.store, self._history("id")[1])
        )

    def _rental_currencies(self) -> list[str]:
        """The currencies with a rental panel, largest rental first (at most
        ``MAX_RENTAL_PANELS``); panel ``rental-N`` draws the N-th."""
        series = self._rental()
        return sorted(series, key=lambda c: (-max(series[c], default=0), c))[:MAX_RENTAL_PANELS]

    def _chart_drawers(self) -> dict[str, Callable[[], bytes]]:
        history, opened_resolved = self._history, ("findings_opened", "findings_resolved")
        drawers: dict[str, Callable[[], bytes]] = {
            "inventory": lambda: charts.inventory_chart(*history("numbers_seen")),
            "findings": lambda: charts.findings_chart(*history(*opened_resolved)),
            "status": lambda: charts.status_chart(self.store.numbers_by_status()),
        }
        for index, currency in enumerate(self._rental_currencies()):
            drawers[f"rental-{index}"] = partial(self._rental_chart, currency)
        return drawers

    def _rental_chart(self, currency: str) -> bytes:
        return charts.rental_chart(self._history()[0], currency, self._rental()[currency])
