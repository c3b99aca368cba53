"""Money (SPEC §5.6): exact decimals, rounded half-up to 6 places per charge.

Amounts travel as integer micro-units (1e-6 of the currency unit) inside the
rater and in Redis, and as decimal strings with six places on the wire.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

MICRO = Decimal("0.000001")
MICRO_PER_UNIT = 1_000_000


def overage_amount(overage_s: int, rate_per_minute: Decimal) -> Decimal:
    """`overage_s x rate / 60`, rounded half-up to 6 decimal places."""
    return (Decimal(overage_s) * rate_per_minute / Decimal(60)).quantize(
        MICRO, rounding=ROUND_HALF_UP
    )


def to_micro(amount: Decimal) -> int:
    return int((amount * MICRO_PER_UNIT).to_integral_value(rounding=ROUND_HALF_UP))


def format_micro(micro: int) -> str:
    """`1234567` -> `"1.234567"`: always six places, as billing systems expect a fixed scale."""
    units, fraction = divmod(micro, MICRO_PER_UNIT)
    return f"{units}.{fraction:06d}"


def format_signed_micro(micro: int) -> str:
    """A difference of amounts: `-250` -> `"-0.000250"`, `250` -> `"0.000250"`."""
    return f"-{format_micro(-micro)}" if micro < 0 else format_micro(micro)


def rate_to_micro(rate_per_minute: Decimal) -> int:
    """Rates carry at most 6 decimal places (schema), so this is exact."""
    micro = rate_per_minute * MICRO_PER_UNIT
    if micro != micro.to_integral_value():
        raise ValueError(f"rate {rate_per_minute} has more than 6 decimal places")
    return int(micro)
