"""BitMEX realtime WebSocket: keyed tables, heartbeat, reconnect, fill dedupe.

`MarketStream` is the ONE public stream per network (house rule 6);
`PrivateStream` is one per connected user. Both keep each table as rows keyed
by the partial's `keys`, treat the first partial after a (re)connect as the
truth, and call the consumers' async callbacks.

A stream runs on its own `/realtime` socket, or (as the bot runs them) as one of
a few hundred streams of a `/realtimemd` socket in a `StreamPool`: BitMEX allows
60 socket openings per hour per IP, so a socket per user does not scale, and one
`ConnectionBudget` per host decides when the next handshake may happen.

The package, along its seams:

- `tables`: a table's rows and the partial/insert/update/delete semantics;
- `connection`: the one read loop of every socket (budget, handshake, heartbeat,
  reconnect with backoff) and the URLs;
- `base`: a stream's topics, subscriptions and control messages, and its own socket;
- `pool`: the `/realtimemd` multiplexing (`StreamPool`, `MuxSocket`);
- `market` and `private`: the public stream, and one user's (login, fills once, dark).
"""

from bot.exchange.stream.base import BaseStream, Callback, DirectSocket
from bot.exchange.stream.connection import (
    ConnectionBudget,
    Socket,
    StreamOptions,
    mux_url_for,
    ws_url_for,
)
from bot.exchange.stream.market import MarketStream, shared_market_stream
from bot.exchange.stream.pool import MuxSocket, StreamPool
from bot.exchange.stream.private import FillHistory, PrivateStream
from bot.exchange.stream.tables import DEFAULT_KEYS, LOG_LIMIT, PRIVATE, Row, Table

__all__ = [
    "DEFAULT_KEYS",
    "LOG_LIMIT",
    "PRIVATE",
    "BaseStream",
    "Callback",
    "ConnectionBudget",
    "DirectSocket",
    "FillHistory",
    "MarketStream",
    "MuxSocket",
    "PrivateStream",
    "Row",
    "Socket",
    "StreamOptions",
    "StreamPool",
    "Table",
    "mux_url_for",
    "shared_market_stream",
    "ws_url_for",
]
