"""Live updates: each connected account's private stream, told to its owner in chat.

One `PrivateStream` per (user, network) with a verified key, and the paper engine's
callbacks for paper accounts. Fills (partial and complete), stop triggers, TP/SL
hits and liquidations become messages; a filled entry gets its TP/SL placed; the
position updates drive `/liqalert`; a refresh loop keeps `/deadman` armed.

Exactly once: the stream filters execIDs across reconnects; across restarts the
newest reported fill is kept per account (`LiveCursor`), so fills made while the
bot was down are told once on start and older ones never again.
"""


from bot.live.base import CURSOR_IDS, DEADMAN_INTERVAL, Cursor
from bot.live.streams import LiveUpdates

__all__ = ["CURSOR_IDS", "DEADMAN_INTERVAL", "Cursor", "LiveUpdates"]
