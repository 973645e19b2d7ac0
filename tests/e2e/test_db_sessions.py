"""How much database work one update costs, and that the user cache never answers stale.

Counted with SQLAlchemy's events on the bot's own engine: transactions begun (each session
that touched the database), statements, and on SQLite the writer turns (BEGIN IMMEDIATE).
A plain /price or a press of the menu's Help button must not open a session once the user
is known (the gate's user row and the router's symbol book come from the cache), and no
read anywhere takes SQLite's single writer turn.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event

from bot.db.engine import is_sqlite
from tests.e2e.harness import Harness

# Per update, once the user has been seen: a plain read command needs no session (it
# needed two before the user cache: the symbol book's and the reply's user row).
MAX_SESSIONS_PER_READ = 0


@dataclass
class Count:
    sessions: int = 0
    statements: list[str] = field(default_factory=list)

    @property
    def writer_turns(self) -> int:
        return sum(1 for s in self.statements if s.startswith("BEGIN IMMEDIATE"))


@contextmanager
def counting(h: Harness) -> Iterator[Count]:
    engine = h.svc.db.engine.sync_engine
    count = Count()

    def begin(_conn: Any) -> None:
        count.sessions += 1

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        count.statements.append(" ".join(sql.split())[:80])

    event.listen(engine, "begin", begin)
    event.listen(engine, "before_cursor_execute", statement)
    try:
        yield count
    finally:
        event.remove(engine, "begin", begin)
        event.remove(engine, "before_cursor_execute", statement)


async def test_a_plain_price_and_a_help_press_open_no_session(h: Harness) -> None:
    alice = h.person("Alice")
    await alice.send("/connect paper")  # the /start menu comes with an account
    await alice.send("/price XBTUSD")  # the first one after the connect loads the cached view
    with counting(h) as price:
        await alice.send("/price XBTUSD")
    assert "XBTUSD" in alice.last_text, alice.transcript
    assert price.sessions <= MAX_SESSIONS_PER_READ, price.statements
    assert price.writer_turns == 0, price.statements

    await alice.send("/start")
    with counting(h) as press:
        answer = await alice.press("❓ Help")
    assert answer is not None
    assert "/price" in alice.last_text, alice.transcript  # the help text came
    assert press.sessions <= MAX_SESSIONS_PER_READ, press.statements
    assert press.writer_turns == 0, press.statements


async def test_a_first_contact_writes_its_row_once(h: Harness) -> None:
    bob = h.person("Bob")
    with counting(h) as first:
        await bob.send("/start")
    assert "Hi Bob" in bob.last_text
    row = await h.svc.users.get_user(bob.id)
    assert row is not None and row.first_name == "Bob"
    if is_sqlite(h.svc.db.url):
        # The gate's upsert is the one writer turn; /start's own reads take none.
        assert first.writer_turns == 1, first.statements


async def test_settings_take_effect_on_the_next_update_despite_the_cache(h: Harness) -> None:
    alice = h.person("Alice")
    await alice.send("/price btc")
    assert "XBTUSD" in alice.last_text, alice.transcript
    await alice.send("/price btc")  # now from the cached view
    await alice.send("/settings btc XBTUSDT")
    await alice.send("/price btc")
    assert "XBTUSDT" in alice.last_text, alice.transcript
    await alice.send("/settings btc XBTUSD")
    await alice.send("/price btc")
    assert "XBTUSDT" not in alice.last_text and "XBTUSD" in alice.last_text, alice.transcript

    # The delivery queue's view of her notification modes follows /settings too.
    audience = h.svc.notifier.audience
    before = await audience(alice.id)
    assert before is not None and before.prefs.get("alerts", "on") == "on"
    await alice.send("/settings notify alerts silent")
    after = await audience(alice.id)
    assert after is not None and after.prefs.get("alerts") == "silent"


async def test_use_switches_the_active_network_the_router_reads(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    await alice.send("/connect paper")
    await alice.send("/use testnet")
    await alice.send("/price XBTUSD")  # warms the cached view on testnet
    await alice.send("/start")  # and the cached account list
    active = next(line for line in alice.last_text.splitlines() if "Active account" in line)
    assert "testnet" in active, alice.transcript
    view = await h.svc.users.view(alice.id)
    assert view is not None and view.active_network == "testnet"
    await alice.send("/use paper")
    assert "paper" in alice.last_text, alice.transcript
    await alice.send("/start")
    active = next(line for line in alice.last_text.splitlines() if "Active account" in line)
    assert "paper" in active and "testnet" not in active, alice.transcript
    view = await h.svc.users.view(alice.id)
    assert view is not None and view.active_network == "paper"
    # And the row agrees: the view is the database's, not a copy of its own.
    row = await h.svc.users.get_user(alice.id)
    assert row is not None and row.active_network == "paper"
