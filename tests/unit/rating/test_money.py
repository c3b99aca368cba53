"""SPEC §5.6: exact decimals, half-up to 6 places per charge, never a binary float."""

from __future__ import annotations

import ast
import math
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rater.rating import money
from rater.rating.money import format_micro, overage_amount, rate_to_micro, to_micro


def _half_up_micro(overage_s: int, rate: str) -> int:
    """Independent oracle: exact rational arithmetic, then round half up (amounts are >= 0)."""
    exact = Fraction(overage_s) * Fraction(rate) / 60 * 1_000_000
    return math.floor(exact + Fraction(1, 2))


def test_spec_example_61_s_at_0_025() -> None:
    amount = overage_amount(61, Decimal("0.025"))  # 0.0254166666...
    assert amount == Decimal("0.025417")
    assert isinstance(amount, Decimal)
    assert amount.as_tuple().exponent == -6
    assert str(amount) == "0.025417"


@pytest.mark.parametrize(
    ("overage_s", "rate", "expected"),
    [
        # exact half micro-units: half-up goes away from zero (half-even would not, for some)
        (10, "0.000003", "0.000001"),  # 0.0000005
        (10, "0.000015", "0.000003"),  # 0.0000025 (half-even: 0.000002)
        (30, "0.000001", "0.000001"),  # 0.0000005
        (1, "0.000030", "0.000001"),  # 0.0000005
        (90, "0.000005", "0.000008"),  # 0.0000075
        (6, "1.000005", "0.100001"),  # 0.1000005 (half-even: 0.100000)
        # just below half rounds down
        (1, "0.000029", "0.000000"),  # 0.000000483...
        # exact values keep their digits
        (60, "0.025", "0.025000"),
        (120, "0.10", "0.200000"),
        (3600, "999999.999999", "59999999.999940"),
        (0, "0.025", "0.000000"),
    ],
)
def test_half_up_rounding(overage_s: int, rate: str, expected: str) -> None:
    amount = overage_amount(overage_s, Decimal(rate))
    assert amount == Decimal(expected)
    assert to_micro(amount) == _half_up_micro(overage_s, rate)


rates = st.decimals(
    min_value=Decimal(0), max_value=Decimal("999999.999999"), places=6, allow_nan=False
)


@settings(max_examples=300, deadline=None)
@given(overage_s=st.integers(0, 86_400 * 31), rate=rates)
def test_overage_amount_matches_exact_rational_oracle(overage_s: int, rate: Decimal) -> None:
    amount = overage_amount(overage_s, rate)
    assert isinstance(amount, Decimal)
    micro = to_micro(amount)
    assert type(micro) is int
    assert micro == _half_up_micro(overage_s, str(rate))
    assert Decimal(format_micro(micro)) == amount


def test_to_micro() -> None:
    assert to_micro(Decimal("0.025417")) == 25_417
    assert to_micro(Decimal("0")) == 0
    assert to_micro(Decimal("12.5")) == 12_500_000
    assert type(to_micro(Decimal("1.000001"))) is int


@pytest.mark.parametrize(
    ("micro", "text"),
    [
        (0, "0.000000"),
        (1, "0.000001"),
        (25_417, "0.025417"),
        (1_000_000, "1.000000"),
        (1_234_567, "1.234567"),
        (999_999, "0.999999"),
        (123_456_789_012_345, "123456789.012345"),
    ],
)
def test_format_micro(micro: int, text: str) -> None:
    assert format_micro(micro) == text


@pytest.mark.parametrize(
    ("rate", "micro"),
    [("0.025", 25_000), ("0.1", 100_000), ("1", 1_000_000), ("0.000001", 1),
     ("999999.999999", 999_999_999_999), ("0", 0)],
)
def test_rate_to_micro(rate: str, micro: int) -> None:
    result = rate_to_micro(Decimal(rate))
    assert result == micro
    assert type(result) is int


@pytest.mark.parametrize("rate", ["0.0250001", "0.0000001", "1.1234567"])
def test_rate_to_micro_rejects_seven_decimal_places(rate: str) -> None:
    with pytest.raises(ValueError, match="more than 6 decimal places"):
        rate_to_micro(Decimal(rate))


def test_a_float_rate_is_refused_not_silently_used() -> None:
    with pytest.raises(TypeError):
        overage_amount(61, 0.025)  # type: ignore[arg-type]


MONEY_PATH = ["money.py", "model.py", "split.py", "outputs.py", "increments.py", "results.py"]


@pytest.mark.parametrize("module", MONEY_PATH)
def test_no_float_in_money_path_source(module: str) -> None:
    """No float literal, no `float(...)`, no `float` annotation on the money path."""
    tree = ast.parse((Path(money.__file__).parent / module).read_text())
    floats = [
        node.lineno
        for node in ast.walk(tree)
        if (isinstance(node, ast.Constant) and isinstance(node.value, float))
        or (isinstance(node, ast.Name) and node.id == "float")
    ]
    assert floats == []
