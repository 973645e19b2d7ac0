"""The exchange clock estimate learned from Date headers."""

from __future__ import annotations

import email.utils

from bot.exchange.timesync import UNKNOWN_SKEW, ExchangeClock, parse_date


def date(t: float) -> str:
    return email.utils.formatdate(t, usegmt=True)


def test_unknown_until_an_answer_then_within_resolution_and_round_trip() -> None:
    c = ExchangeClock()
    assert not c.known and c.offset == 0 and c.error == UNKNOWN_SKEW
    # BitMEX 20 s behind us; a 0.2 s round trip; the server stamped 1000.7 -> "1000"
    c.note(date(1000.7), sent=1020.6, received=1020.8)
    assert c.known
    assert abs(c.offset - (-20.0)) <= c.error <= 0.5 + 0.1 + 1e-9


def test_one_odd_answer_does_not_move_the_estimate() -> None:
    c = ExchangeClock()
    for i in range(5):
        t = 2000.0 + 10 * i
        c.note(date(t + 5.3), sent=t, received=t + 0.1)  # BitMEX 5.3 s ahead
    c.note(date(9999.0), sent=2050.0, received=2050.1)  # a stale proxy's date
    assert abs(c.offset - 5.3) <= 0.6 and c.error < 1.0


def test_forget_and_unreadable_dates() -> None:
    c = ExchangeClock()
    c.note("not a date", 1.0, 2.0)
    c.note(None, 1.0, 2.0)
    assert not c.known and parse_date("garbage") is None
    c.note(date(100.0), 100.0, 100.0)
    c.forget()
    assert not c.known
