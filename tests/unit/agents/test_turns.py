"""The direct consumer's turn-taking with the rest of the event loop (`_Turns`): the loop is
handed back once a turn's worth of work is done; while the consumer keeps up a turn stays
short (the API first), and behind a backlog it lengthens to the time the loop took to come
back (bounded), so that under a flood of requests rating keeps about half the loop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rater.agents import cdr_consumer
from rater.agents.cdr_consumer import BEHIND_TURN_S, MAX_TURN_S, TURN_S, _Turns


class _Clock:
    def __init__(self, readings: list[float]) -> None:
        self.readings: Iterator[float] = iter(readings)

    def __call__(self) -> float:
        return next(self.readings)


async def test_behind_a_backlog_turns_follow_how_long_the_loop_took_to_come_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (TURN_S, BEHIND_TURN_S, MAX_TURN_S) == (0.001, 0.005, 0.02)
    clock = _Clock([
        0.0,               # built
        0.0,               # start
        0.0005,            # half a turn held: keep going
        0.0012,            # a turn held: hand the loop back...
        0.0132,            # ...it came back 12 ms later: other work was queued
        0.0222,            # 9 ms of the 12 ms turn: keep going
        0.0253,            # the turn is used up: hand back...
        0.0254,            # ...back at once: the loop is idle again
        0.0290,            # 3.6 ms held: keep going, a backlog's turn is 5 ms at least
        0.0305,            # 5.1 ms held: hand back...
        0.5305,            # ...back after half a second (overload)
    ])
    monkeypatch.setattr(cdr_consumer.time, "perf_counter", clock)
    turns = _Turns()
    turns.behind = True  # a backlog waits: rating takes its share of a busy loop
    turns.start()
    await turns.pause()
    assert turns.turn == TURN_S
    await turns.pause()
    assert turns.turn == pytest.approx(0.012)
    await turns.pause()
    assert turns.turn == pytest.approx(0.012)
    await turns.pause()
    assert turns.turn == BEHIND_TURN_S
    await turns.pause()
    assert turns.turn == BEHIND_TURN_S
    await turns.pause()
    assert turns.turn == MAX_TURN_S


async def test_while_keeping_up_a_turn_stays_short_however_busy_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock([0.0, 0.0, 0.0012, 0.0512, 0.0524, 0.1024])
    monkeypatch.setattr(cdr_consumer.time, "perf_counter", clock)
    turns = _Turns()
    turns.start()
    await turns.pause()  # a turn held; the loop comes back 50 ms later
    assert turns.turn == TURN_S
    await turns.pause()  # and again: the API keeps coming first
    assert turns.turn == TURN_S
