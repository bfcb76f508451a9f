"""The vocabulary's small readers; its formatters are drawn through every renderer in
``test_findings.py``."""

from __future__ import annotations

import pytest

from monitor.vocab import ascii_digits


@pytest.mark.parametrize(
    ("text", "digits"),
    [("0", True), ("0123456789", True), ("", False), ("²", False), ("١", False), ("８", False)],
)
def test_ascii_digits_are_0_to_9_only(text: str, digits: bool) -> None:
    assert ascii_digits(text) is digits
