"""The condition language of user-defined rules: dotted paths, operators, message templates.

Pure and self-contained (config validates with it, the rules evaluate with it). A condition is a
TOML table, compiled once when the config loads:

- a leaf ``{ path = "capabilities.voice", eq = false }``: a dotted path into the item's JSON
  (a number segment indexes a list) and exactly one operator;
- ``{ all = [ ... ] }``, ``{ any = [ ... ] }``, ``{ not = { ... } }``; a list means ``all``.

Operators: ``eq``, ``ne``, ``in``, ``not_in``, ``regex``, ``missing``, ``present``, ``lt``,
``le``, ``gt``, ``ge``, ``days_until_lt``, ``days_since_gt``. A value that does not fit an
operator (text compared with ``lt``, a date that does not parse) makes the leaf false, never an
error: items are data from outside.

Regular expressions run on the ``regex`` package, with a time bound: it releases the GIL while it
matches (the service's other threads and its signal handlers keep answering) and gives up after
``REGEX_TIMEOUT`` seconds on one value with ``RegexTimeout``, so a pattern that backtracks
catastrophically cannot hold the process.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

import regex

from monitor.model import parse_day, parse_time

MAX_DEPTH = 12  # path segments and nesting of all/any/not
MAX_TEXT = 10_000  # characters of an item's string a regex looks at
REGEX_TIMEOUT = 1.0  # seconds a regex may search one value
_SEGMENT = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

_VALUE_OPERATORS = ("eq", "ne", "in", "not_in", "regex", "missing", "present")
_NUMBER_OPERATORS = ("lt", "le", "gt", "ge", "days_until_lt", "days_since_gt")  # a number bound
OPERATORS = _VALUE_OPERATORS + _NUMBER_OPERATORS


class ConditionError(ValueError):
    """Raised when a condition, path or template in the config cannot be compiled; ``key``
    names where (e.g. ``when.all[1].regex``)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason


class RegexTimeout(TimeoutError):
    """Raised when a ``regex`` condition gave up on one value after ``REGEX_TIMEOUT`` seconds
    (a pattern that backtracks catastrophically on it): the condition cannot be evaluated."""


@dataclass(frozen=True)
class Today:
    """The day conditions count from, in the time zone dates are read in."""

    date: date
    tz: tzinfo = UTC


Predicate = Callable[[Any, Today], bool]
_MISSING = object()


# --- paths ------------------------------------------------------------------------------------


def parse_path(text: Any, key: str = "path") -> tuple[str, ...]:
    """``"capabilities.voice"`` → ``("capabilities", "voice")``; raises ``ConditionError``."""
    if not isinstance(text, str) or not text:
        raise ConditionError(key, "must be a non-empty dotted path such as 'capabilities.voice'")
    parts = tuple(text.split("."))
    if len(parts) > MAX_DEPTH:
        raise ConditionError(key, f"path {text!r} is deeper than {MAX_DEPTH} levels")
    if not all(_SEGMENT.match(part) for part in parts):
        raise ConditionError(
            key, f"bad path {text!r}: each dot-separated part is letters, digits, '_' or '-'"
        )
    return parts


def lookup(item: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` in a JSON-shaped ``item``, or ``_MISSING``."""
    node = item
    for part in path:
        if isinstance(node, dict):  # JSON objects decode to dicts (an ABC check costs more)
            if part not in node:
                return _MISSING
            node = node[part]
        elif isinstance(node, list) and part.isdigit():
            index = int(part)
            if index >= len(node):
                return _MISSING
            node = node[index]
        else:
            return _MISSING
    return node


def is_missing(value: Any) -> bool:
    """Absent, null, or blank text: what the monitor treats as "not set"."""
    return value is _MISSING or value is None or (isinstance(value, str) and not value.strip())


# --- values -----------------------------------------------------------------------------------


def as_decimal(value: Any) -> Decimal | None:
    """A finite number from a JSON number or numeric text; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def as_local_date(value: Any, tz: tzinfo) -> date | None:
    """An RFC 3339 time (UTC when it has no offset) or a bare date, as a date in ``tz``.

    A bare date is already a calendar day and is taken as is; a time is moved into ``tz`` first,
    so ``2026-12-08T18:30:00Z`` is the 9th in Asia/Kolkata.
    """
    if not isinstance(value, str):
        return None
    if len(value.strip()) == 10:
        return parse_day(value)
    parsed = parse_time(value)
    try:
        return parsed.astimezone(tz).date() if parsed is not None else None
    except (OverflowError, ValueError):
        return None


def _equal(actual: Any, expected: Any) -> bool:
    numeric = isinstance(expected, int | float) and not isinstance(expected, bool)
    if numeric and not isinstance(actual, bool):
        number = as_decimal(actual)
        return number is not None and number == as_decimal(expected)
    return type(actual) is type(expected) and actual == expected  # text, a list or true/false


def _check_value(value: Any, key: str) -> Any:
    values = value if isinstance(value, list) else [value]
    if all(isinstance(v, str | bool | int | float) for v in values):
        return value
    raise ConditionError(key, "must be text, a number, true/false, or a list of those")


# --- compiling --------------------------------------------------------------------------------


def compile_condition(spec: Any, key: str = "when", depth: int = 0) -> Predicate:
    """Compile a condition table (see the module docstring); raises ``ConditionError``."""
    if depth > MAX_DEPTH:
        raise ConditionError(key, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(spec, list):
        return _all([compile_condition(s, f"{key}[{i}]", depth + 1) for i, s in enumerate(spec)])
    if not isinstance(spec, Mapping):
        raise ConditionError(key, "must be a table such as { path = 'status', eq = 'active' }")
    keys = set(spec)
    group = next((g for g in ("all", "any", "not") if g in keys), None)
    if group is not None and keys != {group}:
        raise ConditionError(key, f"'{group}' cannot be mixed with other keys")
    if group == "not":
        inner = compile_condition(spec["not"], f"{key}.not", depth + 1)
        return lambda item, today: not inner(item, today)
    if group is not None:
        items = spec[group]
        if not isinstance(items, list) or not items:
            raise ConditionError(f"{key}.{group}", "must be a non-empty list of conditions")
        parts = [
            compile_condition(s, f"{key}.{group}[{i}]", depth + 1) for i, s in enumerate(items)
        ]
        return _all(parts) if group == "all" else _any(parts)
    if "path" not in keys:
        raise ConditionError(key, "needs 'path' and one operator, or 'all', 'any' or 'not'")
    path = parse_path(spec["path"], f"{key}.path")
    ops = sorted(keys - {"path"})
    unknown = [op for op in ops if op not in OPERATORS]
    if unknown:
        raise ConditionError(
            f"{key}.{unknown[0]}", f"unknown operator (use one of {', '.join(OPERATORS)})"
        )
    if len(ops) != 1:
        raise ConditionError(key, "needs exactly one operator beside 'path'")
    op = ops[0]
    return _leaf(path, op, spec[op], f"{key}.{op}")


def _all(parts: list[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]

    def every(item: Any, today: Today) -> bool:
        # A plain loop: all() over a generator costs a generator per number and rule.
        for p in parts:  # noqa: SIM110
            if not p(item, today):
                return False
        return True

    return every


def _any(parts: list[Predicate]) -> Predicate:
    def some(item: Any, today: Today) -> bool:
        for p in parts:  # noqa: SIM110  (as in _all)
            if p(item, today):
                return True
        return False

    return some


def _leaf(path: tuple[str, ...], op: str, value: Any, key: str) -> Predicate:
    if op in ("missing", "present"):
        if not isinstance(value, bool):
            raise ConditionError(key, "must be true or false")
        want_missing = value if op == "missing" else not value
        return lambda item, _t: is_missing(lookup(item, path)) == want_missing
    if op in ("eq", "ne"):
        expected = _check_value(value, key)
        equal = op == "eq"
        return lambda item, _t: _equal(lookup(item, path), expected) == equal
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ConditionError(key, "must be a non-empty list of values")
        options = [_check_value(v, f"{key}[{i}]") for i, v in enumerate(value)]
        inside = op == "in"
        return lambda item, _t: any(_equal(lookup(item, path), v) for v in options) == inside
    if op == "regex":
        if not isinstance(value, str):
            raise ConditionError(key, "must be a regular expression in a string")
        try:
            pattern = regex.compile(value)
        except regex.error as exc:
            raise ConditionError(key, f"not a valid regular expression: {exc}") from None
        where = ".".join(path)

        def search(item: Any, _t: Today) -> bool:
            found = lookup(item, path)
            if not isinstance(found, str):
                return False
            try:
                return pattern.search(found[:MAX_TEXT], timeout=REGEX_TIMEOUT) is not None
            except TimeoutError:
                raise RegexTimeout(
                    f"{key} gave up on {where} after {REGEX_TIMEOUT:g} s "
                    f"({len(found)} characters): the pattern backtracks too much; simplify it"
                ) from None

        return search
    bound = as_decimal(value) if not isinstance(value, str) else None
    if bound is None:
        raise ConditionError(key, "must be a number")
    if op in ("days_until_lt", "days_since_gt"):
        since = op == "days_since_gt"

        def days(item: Any, today: Today) -> bool:
            when = as_local_date(lookup(item, path), today.tz)
            if when is None:
                return False
            if since:
                return (today.date - when).days > bound
            return (when - today.date).days < bound

        return days
    compare: Callable[[Decimal, Decimal], bool] = getattr(operator, op)  # lt, le, gt or ge

    def number(item: Any, _t: Today) -> bool:
        found = as_decimal(lookup(item, path))
        return found is not None and compare(found, bound)

    return number


# --- message templates ------------------------------------------------------------------------


def compile_template(text: Any, key: str = "message") -> Callable[[Any, Callable[[Any], str]], str]:
    """``"{e164} is {status}"`` → a function of (item, value formatter) → text.

    Placeholders are dotted paths (checked here); ``{{`` and ``}}`` are literal braces. A path
    the item lacks becomes ``—``. ``show`` turns each value into safe text (the caller's job).
    """
    if not isinstance(text, str) or not text.strip():
        raise ConditionError(key, "must be non-empty text")
    pieces: list[str | tuple[str, ...]] = []
    work = text.replace("{{", "\x00").replace("}}", "\x01")
    pos = 0
    for match in _PLACEHOLDER.finditer(work):
        pieces.append(work[pos : match.start()])
        pieces.append(parse_path(match.group(1).strip(), f"{key} placeholder {{{match.group(1)}}}"))
        pos = match.end()
    pieces.append(work[pos:])
    literal = "".join(p for p in pieces if isinstance(p, str))
    if "{" in literal or "}" in literal:
        raise ConditionError(key, "unbalanced '{' or '}' (write {{ or }} for a literal brace)")

    def render(item: Any, show: Callable[[Any], str]) -> str:
        out = []
        for piece in pieces:
            if isinstance(piece, str):
                out.append(piece.replace("\x00", "{").replace("\x01", "}"))
            else:
                value = lookup(item, piece)
                out.append("—" if value is _MISSING or value is None else show(value))
        return "".join(out)

    return render
