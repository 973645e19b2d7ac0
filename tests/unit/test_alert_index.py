"""The alert index: thresholds, moves over driven time, funding, and a model check."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.alerts import (
    AlertIndex,
    AlertSpec,
    Fired,
    FundingAlert,
    MoveAlert,
    PriceAlert,
)

T0 = 1_700_000_000.0  # any epoch second; time is driven, never slept
HOUR = 3600


def ids(fired: list[Fired]) -> list[int]:
    return sorted(f.alert_id for f in fired)


# -- price alerts -----------------------------------------------------------------


def test_above_fires_exactly_at_threshold_and_only_once() -> None:
    index = AlertIndex()
    index.add_price(1, "XBTUSD", "above", D("60000"))
    assert index.on_tick("XBTUSD", D("59999.5"), T0) == []
    assert index.on_tick("XBTUSD", D("60000"), T0 + 1) == [
        Fired(1, "price", "XBTUSD", D("60000"))
    ]
    assert 1 not in index and len(index) == 0
    assert index.on_tick("XBTUSD", D("60001"), T0 + 2) == []


def test_below_fires_exactly_at_threshold_and_only_once() -> None:
    index = AlertIndex()
    index.add_price(1, "XBTUSD", "below", D("50000"))
    assert index.on_tick("XBTUSD", D("50000.5"), T0) == []
    assert ids(index.on_tick("XBTUSD", D("50000"), T0 + 1)) == [1]
    assert index.on_tick("XBTUSD", D("49000"), T0 + 2) == []


def test_a_gap_beyond_the_threshold_fires_with_the_tick_price() -> None:
    index = AlertIndex()
    index.add_price(1, "XBTUSD", "above", D("60000"))
    index.add_price(2, "XBTUSD", "below", D("50000"))
    assert index.on_tick("XBTUSD", D("61234.5"), T0) == [Fired(1, "price", "XBTUSD", D("61234.5"))]
    assert index.on_tick("XBTUSD", D("40000"), T0 + 1) == [Fired(2, "price", "XBTUSD", D("40000"))]


def test_alert_already_crossed_at_creation_fires_on_next_tick() -> None:
    index = AlertIndex()
    index.on_tick("XBTUSD", D("65000"), T0)
    index.add_price(1, "XBTUSD", "above", D("60000"))
    assert ids(index.on_tick("XBTUSD", D("65000"), T0 + 1)) == [1]


def test_ties_fire_together_and_neighbours_do_not() -> None:
    index = AlertIndex()
    for alert_id in (1, 2, 3):
        index.add_price(alert_id, "XBTUSD", "above", D("100"))
    index.add_price(4, "XBTUSD", "above", D("100.5"))
    index.add_price(5, "XBTUSD", "above", D("99.5"))
    assert ids(index.on_tick("XBTUSD", D("99.5"), T0)) == [5]
    assert ids(index.on_tick("XBTUSD", D("100"), T0 + 1)) == [1, 2, 3]
    assert list(index.on_tick("XBTUSD", D("100.4"), T0 + 2)) == []
    assert 4 in index and len(index) == 1


def test_removal_stops_an_alert_and_reports_whether_it_was_there() -> None:
    index = AlertIndex()
    index.add_price(1, "XBTUSD", "above", D("100"))
    index.add_price(2, "XBTUSD", "above", D("100"))
    assert index.remove(1) is True
    assert index.remove(1) is False
    assert index.remove(99) is False
    assert ids(index.on_tick("XBTUSD", D("100"), T0)) == [2]
    assert index.remove(2) is False  # already fired


def test_removed_id_can_be_added_again_with_another_threshold() -> None:
    index = AlertIndex()
    index.add_price(7, "XBTUSD", "above", D("100"))
    index.remove(7)
    index.add_price(7, "XBTUSD", "above", D("200"))
    assert index.on_tick("XBTUSD", D("150"), T0) == []
    assert ids(index.on_tick("XBTUSD", D("200"), T0 + 1)) == [7]


def test_many_alerts_on_several_symbols_fire_only_for_their_symbol() -> None:
    index = AlertIndex()
    symbols = ["XBTUSD", "ETHUSD", "SOLUSD"]
    next_id = 0
    expected: dict[tuple[str, int], list[int]] = {}
    for symbol in symbols:
        for level in range(1, 101):
            next_id += 1
            index.add_price(next_id, symbol, "above", D(1000 + level))
            expected.setdefault((symbol, level), []).append(next_id)
            next_id += 1
            index.add_price(next_id, symbol, "below", D(1000 - level))
    assert len(index) == 600
    assert index.on_tick("ETHUSD", D("1000"), T0) == []
    # ETH climbs to 1050: the 50 lowest "above" alerts of ETH fire, nothing else.
    fired = index.on_tick("ETHUSD", D("1050"), T0 + 1)
    assert ids(fired) == sorted(i for lvl in range(1, 51) for i in expected[("ETHUSD", lvl)])
    assert {f.symbol for f in fired} == {"ETHUSD"}
    assert index.on_tick("XBTUSD", D("1000"), T0 + 2) == []
    assert len(index) == 550
    fired = index.on_tick("SOLUSD", D("990"), T0 + 3)
    assert len(fired) == 10 and len(index) == 540


def test_decimal_boundary_is_exact_where_floats_are_equal() -> None:
    near = D("60000.100000000001")
    assert float(near) == float(D("60000.1"))  # the case floats cannot tell apart
    index = AlertIndex()
    index.add_price(1, "XBTUSD", "above", near)
    index.add_price(2, "XBTUSD", "below", D("60000.1"))
    index.add_price(3, "XBTUSD", "above", D("60000.10"))
    # 60000.1 reaches "above 60000.10" but not "above 60000.100000000001".
    assert ids(index.on_tick("XBTUSD", D("60000.1"), T0)) == [2, 3]
    assert ids(index.on_tick("XBTUSD", D("60000.100000000001"), T0 + 1)) == [1]


def test_below_boundary_is_exact_where_floats_are_equal() -> None:
    index = AlertIndex()
    index.add_price(1, "XBTUSD", "below", D("60000.1"))
    assert index.on_tick("XBTUSD", D("60000.100000000001"), T0) == []
    assert ids(index.on_tick("XBTUSD", D("60000.099999999999"), T0 + 1)) == [1]


def test_thresholds_that_cannot_be_stored_exactly_are_refused() -> None:
    index = AlertIndex()
    with pytest.raises(ValueError):
        index.add_price(1, "XBTUSD", "above", D("1.0000000000000000000000001"))
    with pytest.raises(ValueError):
        index.add_price(1, "XBTUSD", "above", D("NaN"))
    with pytest.raises(ValueError):
        index.add_price(1, "XBTUSD", "sideways", D("1"))  # type: ignore[arg-type]
    assert len(index) == 0


def test_duplicate_ids_are_refused() -> None:
    index = AlertIndex()
    index.add_price(1, "XBTUSD", "above", D("100"))
    with pytest.raises(ValueError):
        index.add_funding(1, "XBTUSD", "above", D("0.001"))


def test_load_adds_in_bulk_and_is_all_or_nothing() -> None:
    index = AlertIndex()
    specs: list[AlertSpec] = [
        PriceAlert(i, "XBTUSD", "below", D(1000 - i)) for i in range(1, 500)
    ]
    specs.append(MoveAlert(1000, "XBTUSD", D("5"), timedelta(hours=1)))
    specs.append(FundingAlert(1001, "XBTUSD", "below", D("-0.0001")))
    assert index.load(specs) == 501
    assert len(index) == 501 and 250 in index
    bad: list[AlertSpec] = [
        PriceAlert(2000, "XBTUSD", "above", D("1")),
        PriceAlert(5, "XBTUSD", "above", D("1")),  # already loaded
    ]
    with pytest.raises(ValueError):
        index.load(bad)
    assert 2000 not in index and len(index) == 501
    # Sorted correctly: 700 reaches the "below" alerts at 700..999, i.e. ids 1..300.
    assert ids(index.on_tick("XBTUSD", D("700"), T0)) == list(range(1, 301))
    index.add_price(3000, "XBTUSD", "below", D("750"))
    # ... and the loaded 5 % move alert sees 700 -> 650 (-7.1 %).
    assert ids(index.on_tick("XBTUSD", D("650"), T0 + 1)) == [*range(301, 351), 1000, 3000]


def test_mass_removal_compacts_and_survivors_still_fire() -> None:
    index = AlertIndex()
    index.load(PriceAlert(i, "XBTUSD", "above", D(100 + i)) for i in range(200))
    for i in range(200):
        if i % 10:
            assert index.remove(i)
    book = index._symbols["XBTUSD"].above
    assert book is not None and len(book) < 200  # tombstones were compacted away
    assert len(index) == 20
    assert ids(index.on_tick("XBTUSD", D("1000"), T0)) == list(range(0, 200, 10))
    assert book.dead == set()


def test_naive_datetime_is_refused_and_aware_datetime_accepted() -> None:
    index = AlertIndex()
    index.add_price(1, "XBTUSD", "above", D("10"))
    with pytest.raises(ValueError):
        index.on_tick("XBTUSD", D("10"), datetime(2024, 1, 1))
    assert ids(index.on_tick("XBTUSD", D("10"), datetime(2024, 1, 1, tzinfo=UTC))) == [1]


# -- move alerts ------------------------------------------------------------------


def test_move_of_5pct_within_the_hour_fires() -> None:
    index = AlertIndex()
    index.add_move(1, "XBTUSD", D("5"), timedelta(hours=1))
    assert index.on_tick("XBTUSD", D("100"), T0) == []
    assert index.on_tick("XBTUSD", D("103"), T0 + 1800) == []
    # Exactly one window after the low: still inside (the window is inclusive).
    assert index.on_tick("XBTUSD", D("105"), T0 + HOUR) == [Fired(1, "move", "XBTUSD", D("5"))]


def test_same_move_spread_over_two_hours_does_not_fire() -> None:
    index = AlertIndex()
    index.add_move(1, "XBTUSD", D("5"), HOUR)
    for step, price in enumerate(["100", "101", "102", "103", "104", "105"]):
        assert index.on_tick("XBTUSD", D(price), T0 + step * 1440) == []  # 0 .. 2 h
    # One second too late for a direct 100 -> 105 jump, too.
    index = AlertIndex()
    index.add_move(1, "XBTUSD", D("5"), HOUR)
    index.on_tick("XBTUSD", D("100"), T0)
    assert index.on_tick("XBTUSD", D("105"), T0 + HOUR + 1) == []


def test_down_move_fires_with_a_negative_value() -> None:
    index = AlertIndex()
    index.add_move(1, "XBTUSD", D("5"), timedelta(minutes=15))
    index.on_tick("XBTUSD", D("200"), T0)
    assert index.on_tick("XBTUSD", D("190.5"), T0 + 600) == []  # -4.75 %
    assert index.on_tick("XBTUSD", D("190"), T0 + 700) == [Fired(1, "move", "XBTUSD", D("-5"))]


def test_move_alerts_fire_as_a_prefix_by_percentage_and_per_window() -> None:
    index = AlertIndex()
    index.add_move(1, "XBTUSD", D("1"), HOUR)
    index.add_move(2, "XBTUSD", D("2"), HOUR)
    index.add_move(3, "XBTUSD", D("3"), HOUR)
    index.add_move(4, "XBTUSD", D("2"), 4 * HOUR)
    index.add_move(5, "ETHUSD", D("1"), HOUR)
    index.on_tick("XBTUSD", D("100"), T0)
    assert ids(index.on_tick("XBTUSD", D("102"), T0 + 60)) == [1, 2, 4]
    assert len(index) == 5  # recurring alerts stay, asleep


def test_move_alert_sleeps_one_window_then_rearms() -> None:
    index = AlertIndex()
    index.add_move(1, "XBTUSD", D("5"), HOUR)
    index.on_tick("XBTUSD", D("100"), T0)
    assert ids(index.on_tick("XBTUSD", D("105"), T0 + 60)) == [1]
    # The move goes on inside the same window: reported once only.
    assert index.on_tick("XBTUSD", D("110"), T0 + 120) == []
    assert index.on_tick("XBTUSD", D("110"), T0 + 60 + HOUR) == []
    # Re-armed once the window has rolled past the firing second; the window then
    # holds only 110, so a fresh 5 % is needed.
    assert index.on_tick("XBTUSD", D("110"), T0 + 61 + HOUR) == []
    assert index.on_tick("XBTUSD", D("112"), T0 + 100 + HOUR) == []
    assert ids(index.on_tick("XBTUSD", D("115.5"), T0 + 200 + HOUR)) == [1]


def test_a_move_is_not_reported_twice_when_the_window_ends_on_the_firing_second() -> None:
    index = AlertIndex()
    index.add_move(1, "XBTUSD", D("5"), HOUR)
    index.on_tick("XBTUSD", D("100"), T0)
    assert ids(index.on_tick("XBTUSD", D("105"), T0 + 0.5)) == [1]  # same second
    # One window later the window still starts at T0 and holds the 100: asleep.
    assert index.on_tick("XBTUSD", D("105"), T0 + HOUR) == []
    assert index.on_tick("XBTUSD", D("105"), T0 + HOUR + 1) == []
    assert ids(index.on_tick("XBTUSD", D("99.75"), T0 + HOUR + 2)) == [1]


def test_one_shot_move_alert_is_removed_when_it_fires() -> None:
    index = AlertIndex()
    index.add_move(1, "XBTUSD", D("5"), HOUR, one_shot=True)
    index.on_tick("XBTUSD", D("100"), T0)
    assert ids(index.on_tick("XBTUSD", D("95"), T0 + 10)) == [1]
    assert 1 not in index
    index.on_tick("XBTUSD", D("100"), T0 + 2 * HOUR)
    assert index.on_tick("XBTUSD", D("90"), T0 + 2 * HOUR + 10) == []


def test_removing_a_sleeping_move_alert_keeps_it_from_rearming() -> None:
    index = AlertIndex()
    index.add_move(1, "XBTUSD", D("5"), timedelta(minutes=15))
    index.on_tick("XBTUSD", D("100"), T0)
    assert ids(index.on_tick("XBTUSD", D("105"), T0 + 1)) == [1]
    assert 1 in index and index.remove(1) and 1 not in index
    index.on_tick("XBTUSD", D("100"), T0 + 2000)
    assert index.on_tick("XBTUSD", D("110"), T0 + 2001) == []


def test_move_boundary_is_exact() -> None:
    # 3 -> 3.03 is exactly 1 %, but (3.03 - 3) / 3 * 100 in floats is 0.99999...
    assert (3.03 - 3.0) / 3.0 * 100.0 < 1.0
    index = AlertIndex()
    index.add_move(1, "XBTUSD", D("1"), HOUR)
    index.add_move(2, "XBTUSD", D("1.0000000001"), HOUR)
    index.on_tick("XBTUSD", D("3"), T0)
    assert index.on_tick("XBTUSD", D("3.03"), T0 + 1) == [Fired(1, "move", "XBTUSD", D("1"))]


def test_move_window_and_percentage_are_validated() -> None:
    index = AlertIndex()
    with pytest.raises(ValueError):
        index.add_move(1, "XBTUSD", D("5"), timedelta(minutes=30))
    with pytest.raises(ValueError):
        index.add_move(1, "XBTUSD", D("0"), HOUR)
    assert len(index) == 0


# -- funding ----------------------------------------------------------------------


def test_funding_above_and_below() -> None:
    index = AlertIndex()
    index.add_funding(1, "XBTUSD", "above", D("0.0005"))
    index.add_funding(2, "XBTUSD", "below", D("-0.0001"))
    index.add_funding(3, "ETHUSD", "above", D("0.0001"))
    assert index.on_funding("XBTUSD", D("0.0001")) == []
    assert index.on_funding("XBTUSD", D("0.0005")) == [Fired(1, "funding", "XBTUSD", D("0.0005"))]
    assert index.on_funding("XBTUSD", D("0.0009")) == []
    assert index.on_funding("XBTUSD", D("-0.0001")) == [
        Fired(2, "funding", "XBTUSD", D("-0.0001"))
    ]
    assert index.on_funding("SOLUSD", D("1")) == []
    # Price ticks never touch funding alerts.
    assert index.on_tick("ETHUSD", D("0.5"), T0) == []
    assert ids(index.on_funding("ETHUSD", D("0.0002"))) == [3]


# -- model check against a naive reference ----------------------------------------


@dataclass
class Naive:
    """Obviously correct and slow: scans every alert and every past tick."""

    alerts: dict[int, AlertSpec] = field(default_factory=dict)
    history: dict[str, list[tuple[int, Fraction]]] = field(default_factory=dict)
    asleep_until: dict[int, int] = field(default_factory=dict)

    def on_tick(self, symbol: str, price: D, at: float) -> list[int]:
        now = math.floor(at)
        p = Fraction(price)
        past = self.history.setdefault(symbol, [])
        past.append((now, p))
        fired = []
        for alert_id, spec in list(self.alerts.items()):
            if spec.symbol != symbol:
                continue
            if isinstance(spec, PriceAlert):
                t = Fraction(spec.price)
                if (p >= t) if spec.direction == "above" else (p <= t):
                    fired.append(alert_id)
                    del self.alerts[alert_id]
            elif isinstance(spec, MoveAlert):
                if self.asleep_until.get(alert_id, now) > now:
                    continue
                w = int(spec.window if isinstance(spec.window, int) else 0)
                move = max(abs(p - q) / q * 100 for t, q in past if t >= now - w)
                if move >= Fraction(spec.pct):
                    fired.append(alert_id)
                    if spec.one_shot:
                        del self.alerts[alert_id]
                    else:
                        self.asleep_until[alert_id] = now + w + 1
        return sorted(fired)

    def on_funding(self, symbol: str, rate: D) -> list[int]:
        fired = []
        for alert_id, spec in list(self.alerts.items()):
            if isinstance(spec, FundingAlert) and spec.symbol == symbol:
                if (rate >= spec.rate) if spec.direction == "above" else (rate <= spec.rate):
                    fired.append(alert_id)
                    del self.alerts[alert_id]
        return sorted(fired)


SYMBOLS = st.sampled_from(["XBTUSD", "ETHUSD"])
PRICES = st.integers(180, 220).map(lambda n: D(n) / 2)  # 90.0 .. 110.0 by 0.5: many ties
RATES = st.integers(-4, 4).map(lambda n: D(n) / 10000)
IDS = st.integers(1, 25)
OPS = st.one_of(
    st.tuples(st.just("price"), IDS, SYMBOLS, st.sampled_from(["above", "below"]), PRICES),
    st.tuples(
        st.just("move"),
        IDS,
        SYMBOLS,
        st.sampled_from([D("0.5"), D("1"), D("2.5"), D("5"), D("10.1")]),
        st.sampled_from([900, 3600]),
        st.booleans(),
    ),
    st.tuples(st.just("funding"), IDS, SYMBOLS, st.sampled_from(["above", "below"]), RATES),
    st.tuples(st.just("remove"), IDS),
    st.tuples(
        st.just("tick"),
        SYMBOLS,
        PRICES,
        st.sampled_from([0, 0.4, 1, 30, 300, 899, 900, 901, 3000, 3600]),
    ),
    st.tuples(st.just("rate"), SYMBOLS, RATES),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, min_size=1, max_size=80))
def test_index_matches_naive_reference(ops: list[tuple[Any, ...]]) -> None:
    index, naive = AlertIndex(), Naive()
    clock = T0
    for op in ops:
        kind = op[0]
        if kind in ("price", "move", "funding"):
            alert_id, symbol = op[1], op[2]
            if alert_id in naive.alerts:
                assert alert_id in index
                continue
            spec: AlertSpec
            if kind == "price":
                spec = PriceAlert(alert_id, symbol, op[3], op[4])
                index.add_price(alert_id, symbol, op[3], op[4])
            elif kind == "move":
                spec = MoveAlert(alert_id, symbol, op[3], op[4], op[5])
                index.add_move(alert_id, symbol, op[3], op[4], one_shot=op[5])
            else:
                spec = FundingAlert(alert_id, symbol, op[3], op[4])
                index.add_funding(alert_id, symbol, op[3], op[4])
            naive.alerts[alert_id] = spec
            naive.asleep_until.pop(alert_id, None)
        elif kind == "remove":
            was = naive.alerts.pop(op[1], None) is not None
            assert index.remove(op[1]) is was
        elif kind == "tick":
            clock += op[3]
            assert ids(index.on_tick(op[1], op[2], clock)) == naive.on_tick(op[1], op[2], clock)
        else:
            assert ids(index.on_funding(op[1], op[2])) == naive.on_funding(op[1], op[2])
        assert len(index) == len(naive.alerts)


def test_a_late_tick_counts_at_the_latest_time_seen() -> None:
    index = AlertIndex()
    index.add_move(1, "XBTUSD", D("5"), timedelta(minutes=15))
    index.on_tick("XBTUSD", D("100"), T0)
    index.on_tick("XBTUSD", D("100"), T0 + 1000)  # the 15-minute window has left T0
    # Stamped before T0 + 1000 but taken as T0 + 1000: the old 100 at T0 is gone,
    # the one at T0 + 1000 is not, so the 5 % up-move is seen.
    assert ids(index.on_tick("XBTUSD", D("105"), T0 + 10)) == [1]


# -- the bulk loader (start-up, from database rows) ------------------------------------


def _bulk_rows() -> list[tuple[int, str, str, str | None, str, int | None]]:
    return [
        (1, "price", "XBTUSD", "above", "60000.50", None),
        (2, "price", "XBTUSD", "below", "59000", None),
        (3, "move", "XBTUSD", None, "2.5", 900),
        (4, "funding", "XBTUSD", "above", "0.00050", None),
        (5, "price", "XBTUSD", "above", "-0.5", None),
        (6, "price", "ETHUSD", "below", "1E+3", None),  # not DecimalText's, still exact
        (7, "price", "XBTUSD", "above", "60000.50000000000001", None),  # 19 digits
        (8, "price", "XBTUSD", "below", "58000.000", None),
    ]


def _spec_of(row: tuple[int, str, str, str | None, str, int | None]) -> AlertSpec:
    alert_id, kind, symbol, direction, text, window = row
    if kind == "move":
        assert window is not None
        return MoveAlert(alert_id, symbol, D(text), window)
    if kind == "funding":
        return FundingAlert(alert_id, symbol, direction, D(text))  # type: ignore[arg-type]
    return PriceAlert(alert_id, symbol, direction, D(text))  # type: ignore[arg-type]


def test_bulk_loaded_rows_fire_exactly_like_specs_loaded_one_by_one() -> None:
    rows = _bulk_rows()
    bulk, specs = AlertIndex(), AlertIndex()
    loader = bulk.bulk_loader()
    for row in rows:
        loader.add(*row)
    assert len(bulk) == 0  # nothing is live before finish
    assert loader.finish() == len(rows) and len(bulk) == len(rows)
    assert loader.symbols == {"XBTUSD", "ETHUSD"}
    specs.load(_spec_of(r) for r in rows)
    for price, at in ((D("60000.4"), T0), (D("60000.5"), T0 + 1),
                      (D("60000.50000000000001"), T0 + 2), (D("58000"), T0 + 3),
                      (D("1000"), T0 + 4)):
        for symbol in ("XBTUSD", "ETHUSD"):
            assert ids(bulk.on_tick(symbol, price, at)) == ids(specs.on_tick(symbol, price, at))
    assert ids(bulk.on_funding("XBTUSD", D("0.0005"))) == ids(specs.on_funding(
        "XBTUSD", D("0.0005"))) == [4]


def test_bulk_loader_refuses_bad_rows_and_skips_ids_already_live() -> None:
    index = AlertIndex()
    index.add_price(1, "XBTUSD", "above", D("70000"))
    loader = index.bulk_loader()
    loader.add(1, "price", "XBTUSD", "above", "1", None)  # created while loading: kept once
    for bad in ((2, "price", "XBTUSD", "sideways", "1", None),
                (3, "move", "XBTUSD", None, "0", 900),
                (4, "move", "XBTUSD", None, "2", 60),
                (5, "price", "XBTUSD", "above", "NaN", None),
                (6, "price", "XBTUSD", "above", "12345678901234567890123", None),
                (7, "oops", "XBTUSD", None, "1", None)):
        with pytest.raises(ValueError):
            loader.add(*bad)
    assert loader.finish() == 0 and len(index) == 1
    assert index.on_tick("XBTUSD", D("2"), T0) == []  # the live one kept its 70,000


Columns = tuple[list[bytes], list[bytes], list[bytes], list[bytes], list[bytes], list[bytes]]


def _copy_columns(rows: list[tuple[Any, ...]]) -> Columns:
    """Rows as PostgreSQL's COPY text would give them to `BulkLoader.add_columns`."""
    def raw(value: Any) -> bytes:
        if value is None:
            return b"\\N"
        text = str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
        return text.encode()

    ids, kinds, symbols, directions, thresholds, windows = (
        [raw(v) for v in column] for column in zip(*rows, strict=True))
    return ids, kinds, symbols, directions, thresholds, windows


def test_copy_text_values_decode_like_the_server_encodes() -> None:
    from bot.db.engine import copy_text_value

    assert copy_text_value(b"\\N") is None
    assert copy_text_value(b"\\\\N") == "\\N"  # a text that reads \N is no NULL
    assert copy_text_value(b"a\\tb\\\\\\nc\\\\") == "a\tb\\\nc\\"
    assert copy_text_value("ü".encode()) == "ü"


def test_bulk_columns_load_like_rows_column_wise_or_row_by_row(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.alerts.index import BulkLoader
    from bot.db.engine import copy_text_value

    rows = _bulk_rows()
    plain = [r for r in rows if r[0] not in (6, 7)]
    extra = (9, "price", "X\tY", "below", "2", None)  # a symbol COPY escapes
    odd = [*(r for r in rows if r[0] in (6, 7)), extra]
    bulk, by_rows, specs = AlertIndex(), AlertIndex(), AlertIndex()
    loader, row_loader = bulk.bulk_loader(), by_rows.bulk_loader()
    real_add = BulkLoader.add
    added: list[int] = []

    def add(self: BulkLoader, alert_id: int, *a: Any) -> None:
        added.append(alert_id)
        real_add(self, alert_id, *a)

    monkeypatch.setattr(BulkLoader, "add", add)
    loader.add_columns(*_copy_columns(plain), copy_text_value)
    assert added == []  # plain text: column-wise
    loader.add_columns(*_copy_columns(odd), copy_text_value)
    assert added == [6, 7, 9]  # "1E+3" and 19 digits: the chunk row by row
    assert len(bulk) == 0 and loader.finish() == len(rows) + 1
    assert loader.symbols == {"XBTUSD", "ETHUSD", "X\tY"}
    for row in [*rows, extra]:
        row_loader.add(*row)
    row_loader.finish()
    specs.load(_spec_of(r) for r in [*rows, extra])
    for price, at in ((D("60000.4"), T0), (D("60000.5"), T0 + 1),
                      (D("60000.50000000000001"), T0 + 2), (D("58000"), T0 + 3),
                      (D("1000"), T0 + 4), (D("-1"), T0 + 5)):
        for symbol in ("XBTUSD", "ETHUSD", "X\tY"):
            fired = ids(specs.on_tick(symbol, price, at))
            assert ids(bulk.on_tick(symbol, price, at)) == fired
            assert ids(by_rows.on_tick(symbol, price, at)) == fired
    assert ids(bulk.on_funding("XBTUSD", D("0.0005"))) == [4]


def test_bulk_columns_refuse_bad_rows_and_skip_ids_already_live() -> None:
    from bot.db.engine import copy_text_value

    good = (10, "price", "XBTUSD", "below", "1", None)
    for bad in ((2, "price", "XBTUSD", "sideways", "1", None),
                (3, "move", "XBTUSD", None, "0", 900),
                (3, "move", "XBTUSD", None, "-2", 900),
                (4, "move", "XBTUSD", None, "2", 60),
                (5, "price", "XBTUSD", "above", "NaN", None),
                (5, "price", "XBTUSD", "above", "1-2", None),
                (6, "price", "XBTUSD", "above", "12345678901234567890123", None),
                (7, "oops", "XBTUSD", None, "1", None),
                (8, "price", None, "above", "1", None)):
        loader = AlertIndex().bulk_loader()
        with pytest.raises(ValueError):
            loader.add_columns(*_copy_columns([good, bad]), copy_text_value)
    index = AlertIndex()
    index.add_price(1, "XBTUSD", "above", D("70000"))
    loader = index.bulk_loader()
    loader.add_columns(*_copy_columns([good, (1, "price", "XBTUSD", "above", "1", None)]),
                       copy_text_value)  # 1 was created while loading: kept once
    loader.add_columns(*_copy_columns([good]), copy_text_value)  # read twice: once
    assert loader.finish() == 1 and len(index) == 2
    assert index.on_tick("XBTUSD", D("2"), T0) == []  # the live one kept its 70,000


def test_rearm_puts_fired_one_shot_alerts_back_as_they_were() -> None:
    index = AlertIndex()
    index.add_price(1, "XBTUSD", "above", D("60000.1"))
    index.add_move(2, "XBTUSD", D("1"), 900, one_shot=True)
    index.on_tick("XBTUSD", D("59000"), T0)
    fired = index.on_tick("XBTUSD", D("60000.1"), T0 + 1)
    assert ids(fired) == [1, 2] and len(index) == 0
    assert index.rearm(fired) == 2 and len(index) == 2
    assert index.rearm(fired) == 0  # already back
    assert ids(index.on_tick("XBTUSD", D("60000.1"), T0 + 2)) == [1, 2]
    assert len(index) == 0  # still one-shot
