"""Group signal feeds: admins post signals, members follow with their own key and sizing.

A group becomes a feed (`/feed on NAME`). A signal posted there is stored as first
posted and answered with a card; every follower gets a private preview sized by their
own settings, built by `Trading.preview_order` - the same card, expiry and exactly-once
confirm as `/buy`. Nothing is placed without the member's own press, except that a
follow in `auto` mode applies updates that only reduce risk (a tighter stop, a close).

`/feedstats` reads the followers' real fills from the exchange (matched by the clOrdID
of each follower's entry, which prefixes its exits' ids) and shows beside them what the
same trades would have made at the posted entry.
"""

from bot.feeds.book import FanOut, Posted
from bot.feeds.members import MemberLookup, Membership, NotMember
from bot.feeds.record import Record, Trade
from bot.feeds.service import Feeds

__all__ = ["FanOut", "Feeds", "MemberLookup", "Membership", "NotMember", "Posted",
           "Record", "Trade"]
