"""Charts are real PNGs, phone-sized, non-trivial and under 200 KB; PnL figures add up."""

from __future__ import annotations

import io
import struct
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bot.exchange.types import Execution
from bot.reports import charts
from bot.reports.pnl import compute

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def decoded(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct colours), decoding the whole image."""
    import matplotlib.image as mpimg
    import numpy as np

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(io.BytesIO(data), format="png")
    h, w = img.shape[:2]
    assert struct.unpack(">II", data[16:24]) == (w, h)
    colours = len(np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    return w, h, colours


def test_candles_png() -> None:
    rows = []
    p = 60000.0
    for i in range(100):
        c = p + (i % 7 - 3) * 40
        rows.append((T0 + timedelta(hours=i + 1), p, max(p, c) + 25, min(p, c) - 25, c))
        p = c
    data = charts.candles(rows, "XBTUSD · 1h", 3600)
    w, h, colours = decoded(data)
    assert (w, h) == (1000, 640)
    assert 10_000 < len(data) < 200_000
    assert colours > 20  # green, red, text, grid, antialiasing: not a blank canvas


def test_equity_png_and_empty_period() -> None:
    series = [(T0 + timedelta(hours=i), (i % 5 - 2) * 0.001) for i in range(50)]
    data = charts.equity(series, "Realised PnL · 7d", "XBT")
    assert decoded(data)[:2] == (1000, 640) and len(data) < 200_000
    assert decoded(data)[2] > 20
    one = charts.equity(series[:1], "Realised PnL · 1d", "XBT")  # one event still draws
    assert decoded(one)[:2] == (1000, 640)
    empty = charts.equity([], "Realised PnL · 1d", "XBT")
    assert decoded(empty)[:2] == (1000, 640)


def test_reports_module_does_not_import_matplotlib_at_start() -> None:
    import subprocess

    code = "import sys, bot.reports, handlers.reports; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def ex(kind: str, realised: int, comm: int, minutes: int, qty: int = 100,
       cur: str = "XBt", order: str | None = None) -> Execution:
    return Execution(
        exec_id=f"{kind}{minutes}", order_id=order or f"o{minutes}", cl_ord_id="",
        symbol="XBTUSD", side="Buy",
        last_qty=Decimal(qty), last_px=Decimal(60000), exec_type=kind, ord_type="Market",
        ord_status="Filled", exec_cost=0, exec_comm=comm, realised_pnl=realised,
        settl_currency=cur, text="", timestamp=T0 + timedelta(minutes=minutes))


def test_pnl_figures_from_executions() -> None:
    rows = [
        ex("Trade", -75, 75, 1),  # open: only the fee is realised
        ex("Trade", 925, 75, 2),  # close with +1000 gross
        ex("Funding", -30, 30, 3),  # funding paid
        ex("Trade", -80, 75, 4),  # close at a small loss (gross −5)
        ex("Trade", 500, 10, 5, cur="USDt"),
        ex("Trade", 925, 75, 2),  # duplicate row from overlapping pages
        ex("Trade", 1, 1, -10),  # before the period
    ]
    figures = compute(rows, T0, T0 + timedelta(days=1))
    xbt = figures["XBt"]
    assert (xbt.net, xbt.fees, xbt.funding, xbt.fills) == (740, 225, -30, 3)
    assert xbt.trading == 740 + 30 + 225 == 995
    assert (xbt.wins, xbt.losses, xbt.win_rate) == (1, 1, 0.5)
    assert [v for _, v in xbt.curve] == [-75, 850, 820, 740]
    assert figures["USDt"].net == 500


def test_equity_figures_read_as_plain_amounts() -> None:
    # A day of small XBT PnL is the common case: it must not read "-4.936e-05".
    assert charts.amount(-0.00004936, "XBT") == "−0.00004936 XBT"
    assert charts.amount(0.0102804201, "XBT") == "+0.01028042 XBT"
    assert charts.amount(1234.5, "USDT") == "+1,234.50 USDT"
    assert charts.amount(-0.0, "XBT") == "0 XBT"
    tiny = [(T0 + timedelta(hours=i), -0.00001234 * i) for i in range(5)]
    data = charts.equity(tiny, "Realised PnL · 1d", "XBT")
    assert decoded(data)[:2] == (1000, 640) and decoded(data)[2] > 20


def test_equity_spans_the_period_asked_for() -> None:
    from datetime import UTC, datetime, timedelta

    from bot.reports import charts

    now = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
    pts = [(now - timedelta(hours=30), 0.00012), (now - timedelta(hours=29), -0.00004)]
    narrow = charts.equity(pts, "Realised PnL · 7d", "XBT")
    wide = charts.equity(pts, "Realised PnL · 7d", "XBT", start=now - timedelta(days=7),
                         end=now)
    assert wide.startswith(b"\x89PNG") and wide != narrow
    assert len(wide) < 200_000


def test_a_close_filled_in_pieces_is_one_trade_in_the_win_rate() -> None:
    rows = [
        ex("Trade", -75, 75, 1),  # open
        ex("Trade", 300, 25, 2, qty=30, order="close1"),  # one close, three partial fills
        ex("Trade", 300, 25, 3, qty=30, order="close1"),
        ex("Trade", -20, 25, 4, qty=40, order="close1"),  # the last piece alone lost
        ex("Trade", -75, 75, 5),  # open again
        ex("Trade", -200, 75, 6, order="close2"),  # a losing close
    ]
    xbt = compute(rows, T0, T0 + timedelta(days=1))["XBt"]
    assert xbt.fills == 6
    assert (xbt.wins, xbt.losses) == (1, 1)  # not 2 wins and 2 losses


# --- issue #14 item 8: the position's levels on /chart -------------------------------------

def _levels_rows() -> list[tuple[datetime, float, float, float, float]]:
    return [(T0 + timedelta(minutes=i + 1), 60000.0 + i, 60010.0 + i, 59990.0 + i,
             60005.0 + i) for i in range(20)]


def test_position_levels_name_entry_exits_and_liquidation() -> None:
    from bot.exchange.types import Order, Position

    pos = Position.from_row({"symbol": "XBTUSD", "currency": "XBt", "currentQty": 100,
                             "avgEntryPrice": 60000, "liquidationPrice": 45000.5,
                             "markPrice": 60100})
    base = {"symbol": "XBTUSD", "side": "Sell", "orderQty": 50, "ordStatus": "New",
            "execInst": "ReduceOnly"}
    orders = [
        Order.from_row({**base, "orderID": "a", "ordType": "Limit", "price": 70000}),
        Order.from_row({**base, "orderID": "b", "ordType": "Limit", "price": 65000}),
        Order.from_row({**base, "orderID": "c", "ordType": "Stop", "stopPx": 58000}),
        # not an exit: an entry order that would add to the position
        Order.from_row({**base, "orderID": "d", "side": "Buy", "ordType": "Limit",
                        "price": 59000, "execInst": ""}),
        Order.from_row({**base, "orderID": "e", "symbol": "ETHUSD", "ordType": "Limit",
                        "price": 4000}),
    ]
    assert charts.position_levels(pos, orders) == [
        ("entry", 60000.0), ("SL", 58000.0), ("TP 1", 65000.0), ("TP 2", 70000.0),
        ("liq", 45000.5)]


def test_candles_draw_each_level_as_a_labelled_line_in_view() -> None:
    levels = [("entry", 60000.0), ("SL", 58000.0), ("TP", 65000.0), ("liq", 45000.5)]
    fig = charts.candles_figure(_levels_rows(), "XBTUSD · 1m", 60, levels)
    ax = fig.axes[0]
    drawn = [(line.get_label(), line.get_ydata()[0]) for line in ax.get_lines()
             if not line.get_label().startswith("_")]
    assert drawn == levels
    lo, hi = ax.get_ylim()
    assert lo < 45000.5 and hi > 65000.0  # the liquidation far below stays on the chart
    texts = [t.get_text() for t in ax.texts]
    assert "liq 45,000.5" in texts and "SL 58,000" in texts
    # without a position: no level lines at all, and still a PNG
    plain = charts.candles_figure(_levels_rows(), "XBTUSD · 1m", 60)
    assert [ln.get_label() for ln in plain.axes[0].get_lines()
            if not ln.get_label().startswith("_")] == []
    assert charts.candles(_levels_rows(), "XBTUSD · 1m", 60, levels)[:4] == b"\x89PNG"
