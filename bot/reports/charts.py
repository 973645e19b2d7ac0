"""Charts as PNG bytes: an equity curve and candlesticks, sized for a phone screen.

Drawn with matplotlib's object API (`matplotlib.figure.Figure`, never pyplot): pyplot keeps
a global registry of figures and a current figure, which threads drawing at once would
share. So `render` can draw in worker threads, away from the event loop, where a chart's
quarter of a second of CPU cannot delay another user's Confirm. matplotlib is imported
inside the functions, so importing this module costs nothing at start-up. Floats are fine
here: this is only drawing (rule 7).
"""

from __future__ import annotations

import asyncio
import functools
import io
import math
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from bot.exchange.types import Order, Position

# Telegram shows photos about 1280 px wide at most; 1000x640 at 100 dpi stays sharp on a
# phone and, with a flat palette, far under 200 KB.
SIZE = (10.0, 6.4)
DPI = 100
BG, FG, GRID = "#ffffff", "#1f2328", "#d8dee4"
UP, DOWN, LINE = "#1a7f37", "#cf222e", "#0969da"

# Two drawing threads: charts use the machine's cores without queueing behind each other
# forever, and a dedicated pool keeps them off asyncio's default executor (which aiohttp
# needs for DNS lookups).
RENDER_THREADS = 2
_pool = ThreadPoolExecutor(max_workers=RENDER_THREADS, thread_name_prefix="chart")
# Per event loop (tests and the sandbox run several in turn): waiting happens in asyncio,
# so a chart request that is cancelled while queued never reaches a thread.
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary())
_style_lock = threading.Lock()
_styled = False


async def render(draw: Callable[..., bytes], *args: Any, **kwargs: Any) -> bytes:
    """Run a drawing function (`candles`, `equity`) in a worker thread, a few at a time."""
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(RENDER_THREADS)
    async with slots:
        return await loop.run_in_executor(_pool, functools.partial(draw, *args, **kwargs))


def _figure() -> tuple[Any, Any]:
    global _styled
    import matplotlib
    from matplotlib.figure import Figure

    with _style_lock:
        if not _styled:
            # Once, before the first figure: later figures only read these defaults, so
            # threads never race on matplotlib's global settings.
            matplotlib.rcParams.update({
                "font.size": 15, "axes.titlesize": 18, "axes.labelsize": 15,
                "xtick.labelsize": 13, "ytick.labelsize": 13,
                "axes.edgecolor": GRID, "axes.labelcolor": FG, "text.color": FG,
                "xtick.color": FG, "ytick.color": FG,
            })
            _styled = True
    fig = Figure(figsize=SIZE, layout="constrained")
    fig.patch.set_facecolor(BG)
    return fig, fig.add_subplot()


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor=BG)
    return buf.getvalue()


def _style(ax: Any) -> None:
    ax.set_facecolor(BG)
    ax.grid(True, color=GRID, linewidth=1)
    ax.spines[["top", "right"]].set_visible(False)


def _dates(ax: Any, span_days: float) -> None:
    import matplotlib.dates as mdates

    fmt = "%H:%M" if span_days <= 1.5 else "%d %b\n%H:%M" if span_days <= 8 else "%d %b"
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt))
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=8))


def amount(value: float, unit: str) -> str:
    """A PnL figure as a person reads it: "+0.00004936 XBT", "−12.50 USDT", never 4.9e-05."""
    places = 2 if unit.upper() in ("USD", "USDT", "USDC") else 8
    text = f"{value:+,.{places}f}"
    if places == 8:
        text = text.rstrip("0").rstrip(".")
    if text.lstrip("+-").replace(",", "").replace(".", "").strip("0") == "":
        text = "0"  # no "+0" or "-0" for a flat period
    return f"{text} {unit}".replace("-", "−")


def equity(series: Sequence[tuple[datetime, float]], title: str, unit: str, *,
           start: datetime | None = None, end: datetime | None = None) -> bytes:
    """Cumulative realised PnL as a step line, green above zero and red below.

    With `start`/`end` the axis spans the whole period asked for (a "7d" chart shows
    seven days, flat where nothing happened), not just the moments with fills.
    """
    fig, ax = _figure()
    _style(ax)
    if series:
        # The period starts from zero realised: the first event is a step up or down.
        first = min(start, series[0][0]) if start is not None else series[0][0]
        xs = [first, *(t for t, _ in series)]
        ys = [0.0, *(v for _, v in series)]
        if end is not None and end > xs[-1]:
            xs.append(end)  # the result holds until now
            ys.append(ys[-1])
        ax.step(xs, ys, where="post", color=LINE, linewidth=3)
        ax.fill_between(xs, ys, 0, step="post", color=LINE, alpha=0.12)
        ax.axhline(0, color=FG, linewidth=1)
        span = (max(xs) - min(xs)).total_seconds() / 86400
        if span < 1 / 24:  # a single moment: give the axis an hour so dates can be drawn
            from datetime import timedelta

            ax.set_xlim(min(xs) - timedelta(minutes=30), max(xs) + timedelta(minutes=30))
            span = 1 / 24
        _dates(ax, span)
        last = ys[-1]
        # The total sits beside the title, where it can never cover the curve.
        ax.set_title(amount(last, unit), loc="right", fontweight="bold",
                     color=UP if last >= 0 else DOWN)
        # Plain numbers on the axis: a "1e−5" offset above it means nothing on a phone.
        from matplotlib.ticker import FuncFormatter

        span_y = max(abs(v) for v in ys) or 1.0
        # Enough places for steps of about a fifth of the range (the axis has ~5 ticks).
        digits = min(8, max(0, -math.floor(math.log10(span_y / 5))))
        ax.yaxis.set_major_formatter(FuncFormatter(
            lambda v, _pos: f"{v:,.{digits}f}".replace("-", "−")))
    else:
        ax.text(0.5, 0.5, "No realised PnL in this period", ha="center", va="center",
                transform=ax.transAxes, fontsize=18)
        ax.set_xticks([])
    ax.set_title(title, loc="left", fontweight="bold")
    ax.set_ylabel(unit)
    return _png(fig)


# A labelled horizontal line on a candle chart: ("entry", 60000.0), ("SL", 58000.0) …
Level = tuple[str, float]
LEVEL_COLOURS = {"entry": LINE, "SL": DOWN, "TP": UP, "liq": "#8250df"}


STOP_TYPES = frozenset({"Stop", "StopLimit", "MarketIfTouched", "LimitIfTouched"})


def position_levels(pos: Position, orders: Sequence[Order]) -> list[Level]:
    """What a position's chart marks: entry, its reduce-only exits (SL = stops, TP N =
    limits, nearest first) and BitMEX's estimated liquidation price."""
    levels: list[Level] = []
    if pos.avg_entry_price:
        levels.append(("entry", float(pos.avg_entry_price)))
    exits = [o for o in orders if o.symbol == pos.symbol and o.is_open
             and ("ReduceOnly" in o.exec_inst or "Close" in o.exec_inst)]
    levels += [("SL", float(o.stop_px)) for o in exits
               if o.ord_type in STOP_TYPES and o.stop_px is not None]
    entry = float(pos.avg_entry_price or 0)
    tps = sorted((float(o.price) for o in exits
                  if o.ord_type not in STOP_TYPES and o.price is not None),
                 key=lambda v: abs(v - entry))
    levels += [(f"TP {n}" if len(tps) > 1 else "TP", v) for n, v in enumerate(tps, 1)]
    if pos.liquidation_price:
        levels.append(("liq", float(pos.liquidation_price)))
    return levels


def candles(rows: Sequence[tuple[datetime, float, float, float, float]], title: str,
            width_seconds: float, levels: Sequence[Level] = ()) -> bytes:
    """Candlesticks from (end time, open, high, low, close) rows; `levels` (the user's
    entry, SL, TPs, estimated liquidation) as labelled horizontal lines."""
    return _png(candles_figure(rows, title, width_seconds, levels))


def candles_figure(rows: Sequence[tuple[datetime, float, float, float, float]], title: str,
                   width_seconds: float, levels: Sequence[Level] = ()) -> Any:
    """The figure `candles` draws (tests read its lines back)."""
    import matplotlib.dates as mdates
    from matplotlib.patches import Rectangle

    fig, ax = _figure()
    _style(ax)
    width = width_seconds / 86400 * 0.7  # matplotlib dates are in days
    for end, o, hi, lo, c in rows:
        x = mdates.date2num(end) - width_seconds / 86400 / 2  # centre of the bucket
        colour = UP if c >= o else DOWN
        ax.vlines(x, lo, hi, color=colour, linewidth=1.5)
        ax.add_patch(Rectangle((x - width / 2, min(o, c)), width,
                               max(abs(c - o), (hi - lo) * 0.01 or 1e-9),
                               facecolor=colour, edgecolor=colour))
    if rows:
        first, last = rows[0][0], rows[-1][0]
        ax.set_xlim(mdates.date2num(first) - width_seconds / 86400,
                    mdates.date2num(last) + width_seconds / 86400 * 0.2)
        # The levels stay in view: a liquidation off the chart is the one worth seeing.
        lo_all = min([r[3] for r in rows] + [v for _, v in levels])
        hi_all = max([r[2] for r in rows] + [v for _, v in levels])
        pad = (hi_all - lo_all) * 0.05 or hi_all * 0.001 or 1
        ax.set_ylim(lo_all - pad, hi_all + pad)
        ax.xaxis_date()
        _dates(ax, (last - first).total_seconds() / 86400)
        close = rows[-1][4]
        ax.axhline(close, color=LINE, linewidth=1, linestyle="--")
        ax.annotate(f"{close:,.8g}", xy=(1, close), xycoords=("axes fraction", "data"),
                    xytext=(6, 0), textcoords="offset points", ha="left", va="center",
                    color=BG, fontsize=13, fontweight="bold", annotation_clip=False,
                    bbox={"facecolor": LINE, "edgecolor": LINE, "boxstyle": "round,pad=0.2"})
    else:
        ax.text(0.5, 0.5, "No trades yet", ha="center", va="center", transform=ax.transAxes,
                fontsize=18)
    for label, value in levels:
        colour = LEVEL_COLOURS.get(label.split()[0], FG)
        ax.axhline(value, color=colour, linewidth=2, linestyle="-", label=label)
        ax.annotate(f"{label} {value:,.8g}", xy=(0, value), xycoords=("axes fraction", "data"),
                    xytext=(6, 4), textcoords="offset points", ha="left", va="bottom",
                    color=colour, fontsize=13, fontweight="bold", annotation_clip=False)
    ax.yaxis.tick_right()
    ax.set_title(title, loc="left", fontweight="bold")
    return fig
