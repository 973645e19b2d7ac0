"""BitMEX's clock, as learned from its answers' `Date` headers.

BitMEX judges api-expires by its own clock. If this host's clock runs ahead of it, an
order signed "valid for 15 s" by our clock stays valid longer by BitMEX's, and a lost
order we gave up on could still fill - the user sends it again and it fills twice. So
every deadline about what BitMEX can still accept is kept in exchange time.
"""

from __future__ import annotations

import email.utils
import statistics
from collections import deque

# Before any answer was seen nothing bounds the skew; a host clock off by more than
# this is refused by BitMEX anyway ("expired"), which makes us re-learn.
UNKNOWN_SKEW = 30.0
# Date has whole-second resolution and is truncated: the server's clock was somewhere
# in [Date, Date + 1) when it stamped the answer.
DATE_RESOLUTION = 1.0


def parse_date(value: str | None) -> float | None:
    """An RFC 7231 Date header as UNIX seconds; None if absent or unreadable."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # "-0000" in RFC 2822 terms; HTTP dates are GMT
        return None
    return parsed.timestamp()


class ExchangeClock:
    """Offset of the exchange's clock from ours (exchange = local + offset), with a bound.

    Each answer gives one sample: the server stamped Date somewhere between our send and
    our receipt, so its clock at the round trip's midpoint is about Date + 0.5, give or
    take half the resolution plus half the round trip. The estimate is the median of the
    recent samples (one slow answer or one stale proxy date does not move it) and its
    error the median sample error, widened by the samples' median distance from it.
    """

    def __init__(self, keep: int = 7) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=keep)

    @property
    def known(self) -> bool:
        return bool(self._samples)

    def note(self, date: str | None, sent: float, received: float) -> None:
        server = parse_date(date)
        if server is None or received < sent:
            return
        half_rtt = (received - sent) / 2
        offset = server + DATE_RESOLUTION / 2 - (sent + half_rtt)
        self._samples.append((offset, DATE_RESOLUTION / 2 + half_rtt))

    def forget(self) -> None:
        """The estimate proved wrong (BitMEX called a request expired): start over."""
        self._samples.clear()

    @property
    def offset(self) -> float:
        if not self._samples:
            return 0.0
        return statistics.median(o for o, _ in self._samples)

    @property
    def error(self) -> float:
        """How far `offset` may be off, in seconds (UNKNOWN_SKEW until an answer came)."""
        if not self._samples:
            return UNKNOWN_SKEW
        mid = self.offset
        spread = statistics.median(abs(o - mid) for o, _ in self._samples)
        return statistics.median(e for _, e in self._samples) + spread
