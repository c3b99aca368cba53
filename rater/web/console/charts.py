"""Geometry of the console's pictures, drawn as inline SVG by the templates: a pool's bar
and the overage-by-day chart. Pure arithmetic on integers and Decimals; the amounts
themselves are shown exactly as the query wrote them, never recomputed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

BAR_WIDTH = 160
CHART_WIDTH = 720
CHART_HEIGHT = 180
CHART_LEFT = 8
CHART_BOTTOM = 24  # room for the day labels
MAX_DAYS = 62
MIN_DAYS = 7  # a chart of one day would be one wall-to-wall bar
MAX_BAR_WIDTH = 28


@dataclass(frozen=True, slots=True)
class PoolBar:
    total_s: int
    used_s: int
    available_s: int
    used_px: int  # of BAR_WIDTH
    full: bool


def pool_bar(total_s: int, used_s: int) -> PoolBar:
    available = max(0, total_s - used_s)
    if total_s <= 0:
        return PoolBar(total_s, used_s, available, 0, True)
    used_px = min(BAR_WIDTH, used_s * BAR_WIDTH // total_s)
    return PoolBar(total_s, used_s, available, used_px, available == 0)


@dataclass(frozen=True, slots=True)
class DayBar:
    day: str
    amount: str  # as the query wrote it
    x: int
    y: int
    width: int
    height: int
    label: str  # the day of month, under every bar that has room for it
    label_x: int


@dataclass(frozen=True, slots=True)
class DayChart:
    currency: str
    bars: list[DayBar]
    peak: str  # the largest day's amount, as written: the top of the scale
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    baseline: int = CHART_HEIGHT - CHART_BOTTOM


def day_chart(currency: str, days: Sequence[tuple[str, str]],
              first_day: date | None = None) -> DayChart:
    """Bars for every day from `first_day` (else the first day with charges) to the last
    day with charges, at least MIN_DAYS and at most MAX_DAYS of them; days without
    charges at zero. `days`: (ISO day, amount text)."""
    amounts = {day: amount for day, amount in days}
    if not amounts:
        return DayChart(currency, [], "0")
    earliest = date.fromisoformat(min(amounts))
    first = min(first_day, earliest) if first_day is not None else earliest
    last = max(date.fromisoformat(max(amounts)), first + timedelta(days=MIN_DAYS - 1))
    last = min(last, first + timedelta(days=MAX_DAYS - 1))
    span = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    peak_text = max(amounts.values(), key=Decimal)
    peak = Decimal(peak_text)
    plot_height = CHART_HEIGHT - CHART_BOTTOM - 8
    step = (CHART_WIDTH - CHART_LEFT) // len(span)
    width = min(MAX_BAR_WIDTH, max(2, step - max(1, step // 5)))
    label_every = 1 if step >= 18 else (2 if step >= 9 else 7)
    bars = []
    for i, day in enumerate(span):
        amount = amounts.get(day, "0")
        height = int(Decimal(amount) * plot_height / peak) if peak > 0 else 0
        if Decimal(amount) > 0:
            height = max(height, 1)  # a charge never disappears from the chart
        x = CHART_LEFT + i * step
        bars.append(DayBar(day, amount, x, CHART_HEIGHT - CHART_BOTTOM - height, width, height,
                           day[8:] if i % label_every == 0 else "", x + width // 2))
    return DayChart(currency, bars, peak_text)
