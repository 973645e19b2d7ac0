"""The authorization matrix (issue #15 item 3): every command and every button kind, in a
private chat and in a group, by every kind of actor, checked for what the chat shows and
for what must not change.

The cells are generated from the command table (`bot.parse.COMMANDS`) and the button
registry (`bot.buttons.KINDS`), so a command or a button kind added later is covered
without a line here. What each cell expects is a small rule function of the command's
`where` (or the kind's `private` flag), the actor and the chat kind (`command_rule`,
`press_rule`); each cell then checks the victim's world is untouched (`Victim`).

One world per module: one bot, one emulator (flood limits off: pacing is not what is
tested here, and hundreds of replies in one group would otherwise take minutes), the
session's simulator; between cells only the per-user budgets are reset.
"""

from __future__ import annotations

import re
import typing
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest
import pytest_asyncio
from hypothesis import find
from hypothesis import strategies as st
from sqlalchemy import Table, select, update
from sqlmodel import SQLModel

from bot import parse as P
from bot.buttons import KINDS, ButtonData, CardPress, _fields, decode, encode
from bot.db.models import OrderCard
from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import FloodLimits, TelegramEmulator
from bot.sandbox.telegram.state import CallbackQuery, Chat, Message
from bot.scheduler import expire_cards
from handlers.presses import PRIVATE_ONLY_ANSWER
from tests.e2e.harness import Harness, Person

Actor = Literal["owner", "member", "admin", "stranger", "outsider", "operator"]
ChatKind = Literal["private", "group"]
ACTORS: tuple[Actor, ...] = typing.get_args(Actor)
CHATS: tuple[ChatKind, ...] = typing.get_args(ChatKind)
# Fixed ids, far from the emulator's own, so a row "about" a user is found by its ids.
IDS: dict[Actor, int] = {"owner": 9_100_001, "member": 9_100_002, "admin": 9_100_003,
                         "stranger": 9_100_004, "outsider": 9_100_005, "operator": 9_100_006}

# What the chat shows (from handlers/access.py, handlers/presses.py, handlers/start.py).
PRIVATE_BOT = "Sorry, this bot is private. Ask its operator for access."
PRIVATE_BOT_PRESS = "This bot is private."
POINTER = "works in a private chat with me"
STALE = "This button is no longer valid."
APOLOGY = "went wrong"
# Tables that say nothing about a user's world: the update log and the leader's lease.
NOT_STATE = frozenset({"handled_updates", "leader_lease"})
CARDS: Table = OrderCard.__table__  # type: ignore[attr-defined]

Outcome = Literal["served", "silent", "private-bot", "pointer", "stale", "private-only",
                  "refused"]


# --- the rules ---------------------------------------------------------------------------

def command_rule(where: P.Where, actor: Actor, chat: ChatKind) -> Outcome:
    """What a command's example shows, read from the table entry alone."""
    if actor == "outsider":  # not on ALLOWED_USER_IDS: told so in private, ignored in groups
        return "private-bot" if chat == "private" else "silent"
    if where == "operators" and actor != "operator":
        return "silent"  # operators' tools are not advertised
    if where == "private" and chat == "group":
        return "pointer"
    return "served"


Variant = Literal["forged", "stale", "replayed"]


def press_rule(private_kind: bool, actor: Actor, chat: ChatKind, variant: Variant) -> Outcome:
    """How a press is answered, from the kind's `private` flag, the actor and the chat."""
    if actor == "outsider":
        return "private-bot"
    if variant == "forged":
        return "stale"
    if private_kind and chat == "group":
        return "private-only"
    # A stale id, or someone else's data: the kind's handler answers (not your card, gone,
    # admins only ...), and nothing of the victim's may change.
    return "refused"


# --- the world ---------------------------------------------------------------------------

@dataclass
class World:
    h: Harness
    people: dict[Actor, Person]
    group: Chat
    keys: dict[Actor, str]
    # the victims' real callback data, per kind: from the owner's chat, else the group's
    replay: dict[tuple[type[ButtonData], ChatKind], str] = field(default_factory=dict)
    # an expired card, a cancelled one, a deleted alert
    stale: dict[type[ButtonData], list[str]] = field(default_factory=dict)

    def seen(self, actor: Actor, chat: ChatKind) -> Message:
        """A bot message the actor can see there, to press forged data on."""
        where = self.people[actor].chat if chat == "private" else self.group
        msg = self.h.emu.last_bot_message(where, bot=self.h.bot_username)
        assert msg is not None, f"no bot message for {actor} in {chat}"
        return msg


def person(h: Harness, actor: Actor) -> Person:
    user = h.emu.user(id=IDS[actor], first_name=actor.capitalize())
    return Person(h, user, h.emu.private_chat(user, bot=h.bot_username))


async def relax(h: Harness) -> None:
    """Fresh budgets for the next cell (cheap): each cell is one message or one press, and
    the limits they would hit after hundreds are tested elsewhere."""
    h.svc.ratelimit.burst = h.svc.ratelimit.rate = 1e9
    h.svc.refusals._last.clear()  # the stranger's "this bot is private", every time
    h.app.bot_data.group_read_limit = None
    h.sim.reset_rate_limits()
    # The owner's open cards stay open for the whole run: the expiry job editing one in the
    # middle of a cell would look like someone else's doing.
    now = datetime.now(UTC)
    async with h.svc.db.engine.begin() as conn:
        await conn.execute(update(CARDS)
                           .where(CARDS.c.state.in_(("pending", "armed")),
                                  CARDS.c.expires_at > now)
                           .values(expires_at=now + timedelta(hours=1)))


async def settle(h: Harness) -> None:
    """The update handled, and what it set going in the background (a signal's fan-out to
    its followers, the queued sends) done too, so it lands in this cell and no later one."""
    await h.settle()
    await h.svc.feeds.drain()
    await h.svc.notifier.drain(timeout=10)
    await h.settle()


def callback_data(msgs: list[Message]) -> list[str]:
    return [b["callback_data"] for m in msgs for row in (m.reply_markup or {}).get(
        "inline_keyboard", []) for b in row if "callback_data" in b]


@pytest_asyncio.fixture(scope="module")
async def world(world_sim: BitmexSimulator, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[World]:
    emu = TelegramEmulator(FloodLimits.off())
    await emu.start()
    tmp: Path = tmp_path_factory.mktemp("matrix")
    world_sim.faults.clear()
    world_sim.reset_rate_limits()
    allowed = [IDS[a] for a in ACTORS if a not in ("outsider", "operator")]
    # The bot still paces itself as in production, on a clock this much faster.
    h = Harness(world_sim, emu, tmp, TELEGRAM_TIME_SCALE=1000.0,
                ADMIN_IDS=[IDS["operator"]], ALLOWED_USER_IDS=allowed)
    await h.start()
    try:
        await relax(h)
        people = {a: person(h, a) for a in ACTORS}
        keys: dict[Actor, str] = {}
        connected: tuple[Actor, ...] = ("owner", "member", "admin")
        for a in connected:
            key, secret = h.exchange_account()
            await people[a].send(f"/connect testnet {key} {secret}")
            assert "Connected" in people[a].last_text, people[a].transcript
            keys[a] = key
        for a in ACTORS[3:]:  # the others have a chat with the bot, and no account
            await people[a].send("/start")
        group = h.group("Desk", list(people.values()), [people["admin"]], bot_admin=True)
        await h.settle()
        w = World(h, people, group, keys)
        await _victims(w)
        yield w
    finally:
        await h.stop()
        await emu.stop()
    assert not emu.internal_errors, emu.internal_errors


async def _victims(w: World) -> None:
    """The owner's things others will try to touch, the group's, and stale data of both."""
    h, owner, admin = w.h, w.people["owner"], w.people["admin"]
    # Stale: a card the owner cancelled, one that expired, an alert she deleted.
    await owner.send("/buy 100 btc")
    cancelled = callback_data([owner.last])
    await owner.press("✖️ Cancel", owner.last)
    await owner.send("/buy 200 btc")
    expired = owner.last
    [exp_data] = [d for d in callback_data([expired]) if d.startswith("t:c:")]
    card = decode(exp_data)
    assert card is not None
    assert isinstance(card, CardPress)
    async with h.svc.db.engine.begin() as conn:  # as if its minute had passed long ago
        await conn.execute(update(CARDS).where(CARDS.c.id == card.card_id)
                           .values(expires_at=datetime.now(UTC) - timedelta(minutes=5)))
    # What the expiry job does every few seconds, now, so no cell sees it happen.
    assert await expire_cards(h.svc.trading, h.svc.notifier) == 1
    await h.settle()
    await owner.send("/alert btc above 1000001 gone")
    [gone] = await h.svc.alerts.for_chat(owner.chat.id)
    await owner.send("/alerts")
    gone_data = [d for d in callback_data([owner.last]) if d.startswith("al:d:")]
    await owner.send(f"/unalert {gone.id}")
    for d in [exp_data, *cancelled, *gone_data]:
        kind = decode(d)
        assert kind is not None
        w.stale.setdefault(type(kind), []).append(d)
    # Live: a pending card, an alert and its listing, the /start menu, /orders, /disconnect.
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    # Confirmed by her: a resting order (its Cancel row) and a position (its Close row).
    for text in ("/buy 100 xbtusd @ 30000", "/buy 100 xbtusd"):
        await owner.send(text)
        await owner.press("✅ Confirm", owner.find_button("✅ Confirm"))
    assert [r for r in h.sim.engine.order_rows(h.sim.account(w.keys["owner"]).id)
            if r["ordStatus"] == "Filled"], owner.transcript
    # The fill's notice gets its position card once the fill burst is over (bot/live/fills.py,
    # FILL_CARD_QUIET): part of the world, not a change some later cell made.
    await h.emu.wait_for(lambda: any("Order filled" in (m.content or "") and m.buttons
                                     for m in owner.messages), timeout=10)
    for text in ("/buy 100 btc", "/alert btc above 1000000 mine", "/alerts", "/start",
                 "/orders", "/positions", "/disconnect testnet", "/buy btc"):
        await owner.send(text)
    # The group's: an alert and a feed with a signal card (its Follow button).
    for text in ("/alert btc above 1000002 desk", "/alerts", "/feed on desk",
                 "/signal long btc entry 60k sl 58k"):
        await admin.send(text, chat=w.group)
    await owner.send("/follow desk risk 1%")
    for data in callback_data(w.h.emu.bot_messages(owner.chat, bot=h.bot_username)):
        kind = decode(data)
        if kind is not None and not any(data in v for v in w.stale.values()):
            w.replay.setdefault((type(kind), "private"), data)
    for data in callback_data(w.h.emu.bot_messages(w.group, bot=h.bot_username)):
        kind = decode(data)
        if kind is not None:
            w.replay.setdefault((type(kind), "group"), data)
    assert await h.svc.alerts.for_chat(w.group.id), h.emu.transcript(w.group)
    for chat in (owner.chat, w.group):
        assert APOLOGY not in h.emu.transcript(chat, bot=h.bot_username), h.emu.transcript(
            chat, bot=h.bot_username)


# --- what must not change ----------------------------------------------------------------

@dataclass(frozen=True)
class Snapshot:
    """What the victims have: the owner (her rows, her private chat) and the group."""

    # every account's orders on the simulator: (orderID, status, quantity)
    orders: tuple[tuple[Actor, tuple[tuple[str, str, int], ...]], ...]
    owner_rows: tuple[tuple[str, tuple[Any, ...]], ...]
    group_rows: tuple[tuple[str, tuple[Any, ...]], ...]
    owner_chat: tuple[tuple[int, str, str], ...]
    group_chat: tuple[tuple[int, str, str], ...]


def _shown(w: World, chat: Chat) -> tuple[tuple[int, str, str], ...]:
    """The chat as its people see it: texts (edits included) and buttons."""
    return tuple((m.message_id, m.content or "", repr(m.buttons))
                 for m in w.h.emu.chat_messages(chat, bot=w.h.bot_username))


async def snapshot(w: World) -> Snapshot:
    """Every database row that names the owner's id or the group's (one pass over the
    tables), the simulator's orders and both victims' chats."""
    engine = w.h.sim.engine
    orders = tuple((a, tuple((r["orderID"], r["ordStatus"], r["orderQty"])
                             for r in engine.order_rows(w.h.sim.account(k).id)))
                   for a, k in sorted(w.keys.items()))
    owner, group = IDS["owner"], w.group.id
    mine: list[tuple[str, tuple[Any, ...]]] = []
    theirs: list[tuple[str, tuple[Any, ...]]] = []
    async with w.h.svc.db.engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            if table.name in NOT_STATE:
                continue
            for row in (await conn.execute(select(table))).all():
                values = tuple(row)
                if owner in values:
                    mine.append((table.name, values))
                if group in values:
                    theirs.append((table.name, values))
    return Snapshot(orders, tuple(sorted(mine, key=repr)), tuple(sorted(theirs, key=repr)),
                    _shown(w, w.people["owner"].chat), _shown(w, w.group))


def check(w: World, before: Snapshot, after: Snapshot, *, owner: bool, group: bool,
          group_chat: bool, what: object) -> None:
    """No order without a Confirm anywhere; the guarded victims exactly as they were."""
    new = {o[0] for _, rows in after.orders for o in rows} - {
        o[0] for _, rows in before.orders for o in rows}
    assert not new, f"an order without its owner's Confirm: {what}"
    if owner:
        assert dict(after.orders)["owner"] == dict(before.orders)["owner"], what
        assert after.owner_rows == before.owner_rows, what
        assert after.owner_chat == before.owner_chat, what
    if group:
        assert after.group_rows == before.group_rows, what
    if group_chat:
        assert after.group_chat == before.group_chat, what


def new_bot_texts(w: World, chat: Chat, before: int) -> list[str]:
    return [m.content or "" for m in w.h.emu.bot_messages(chat, bot=w.h.bot_username)[before:]]


# --- command cells -----------------------------------------------------------------------

COMMAND_CELLS = [pytest.param(c, a, k, id=f"{c.name}-{k}-{a}")
                 for c in P.COMMANDS for k in CHATS for a in ACTORS]


@pytest.mark.parametrize(("command", "actor", "chat"), COMMAND_CELLS)
async def test_command_cell(world: World, command: P.Command, actor: Actor,
                            chat: ChatKind) -> None:
    w, h = world, world.h
    await relax(h)
    who = w.people[actor]
    where = who.chat if chat == "private" else w.group
    expected = command_rule(command.where, actor, chat)
    # Whose world must stay as it was: the owner's unless she acted, an operator broadcast
    # or the group's admin posted a signal to the feed she follows; the group's unless its
    # admin acted.
    guard_owner = actor != "owner" and not (
        (command.where == "operators" and actor == "operator")
        or (command.where == "group" and actor == "admin" and chat == "group"))
    guard_group = actor != "admin"
    snap = await snapshot(w)
    before = len(h.emu.bot_messages(where, bot=h.bot_username))
    text = command.example  # the group made the bot an admin: it reads every /command
    h.emu.send_text(who.user, where, text, bot=h.bot_username)
    await settle(h)
    said = new_bot_texts(w, where, before)
    transcript = h.emu.transcript(where, bot=h.bot_username)
    assert not any(APOLOGY in t or "Traceback" in t for t in said), transcript
    if expected == "silent":
        assert said == [], transcript
    elif expected == "private-bot":
        assert said == [PRIVATE_BOT], transcript
    elif expected == "pointer":
        assert len(said) == 1 and POINTER in said[0], transcript
        assert f"/{command.name} " in said[0], said
    else:
        assert said, f"{text!r} by {actor} in {chat} got no answer:\n{transcript}"
        assert not any(POINTER in t or "this bot is private" in t for t in said), transcript
    # A command typed in private never posts in the group.
    check(w, snap, await snapshot(w), owner=guard_owner, group=guard_group,
          group_chat=guard_group and chat == "private", what=(text, actor, chat))


# --- press cells -------------------------------------------------------------------------

def _sample(kind: type[ButtonData]) -> ButtonData:
    """A well-formed press of `kind` that points at nothing: ids no row has."""
    values: list[object] = []
    for f in _fields(kind):
        if f.kind == "id":
            values.append(987_654_321)
        elif f.kind == "bool":
            values.append(True)
        elif f.kind == "choice":
            values.append(sorted(f.choices)[0])
        else:
            assert f.pattern is not None
            known = [c for c in ("XBTUSD", "testnet", "1", "a", "-", "100", "x" * 8)
                     if f.pattern.fullmatch(c)]
            # A shape none of those fits (a kind added later): the simplest string it takes.
            values.append(known[0] if known else find(
                st.from_regex(f.pattern, fullmatch=True), lambda _: True))
    return kind(*values)


def forged(kind: type[ButtonData]) -> list[str]:
    """Data no button of ours carries, shaped like this kind's."""
    good = encode(_sample(kind))
    out = [good + ":1", kind.prefix + ":" + "9" * 16]
    if _fields(kind):
        out.append(re.sub(r"[^:]+$", "\u00b9", good))
    return out


def has_id(kind: type[ButtonData]) -> bool:
    return any(f.kind == "id" for f in _fields(kind))


PRESS_CELLS = [pytest.param(kind, a, k, v, id=f"{kind.__name__}-{v}-{k}-{a}")
               for kind in KINDS.values() for v in typing.get_args(Variant)
               for k in CHATS for a in ACTORS
               # the owner replaying her own data is an ordinary press, tested elsewhere; a
               # kind that carries no id cannot point at something gone
               if not (v == "replayed" and a == "owner") and (v != "stale" or has_id(kind))]


def forge(w: World, actor: Actor, message: Message, data: str) -> str:
    """A callback query with data of the presser's choosing: a modified client can send any
    data for any message it sees (Bot API: 'a bad client can send arbitrary data')."""
    emu, who = w.h.emu, w.people[actor]
    account = emu.bot(w.h.bot_username)
    qid = str(4_200_000_000_000_000 + next(emu._query_ids))
    emu._queries[qid] = CallbackQuery(qid, who.user, message, data, account.id,
                                      pressed_at=emu.now())
    emu._enqueue(account, "callback_query", {
        "id": qid, "from": who.user.to_api(), "message": message.to_api(),
        "chat_instance": str(abs(message.chat.id * 31 + account.id)), "data": data})
    return qid


@pytest.mark.parametrize(("kind", "actor", "chat", "variant"), PRESS_CELLS)
async def test_press_cell(world: World, kind: type[ButtonData], actor: Actor, chat: ChatKind,
                          variant: Variant) -> None:
    w, h = world, world.h
    await relax(h)
    source: ChatKind = "private"
    if variant == "forged":
        datas = forged(kind)
    elif variant == "stale":
        if kind in w.stale:
            datas = w.stale[kind]
        else:
            datas = [encode(_sample(kind))]
    else:
        # The victim's data from this kind of chat if she has one there, else the other's.
        other: ChatKind = "group" if chat == "private" else "private"
        source = chat if (kind, chat) in w.replay else other
        datas = [w.replay.get((kind, source)) or encode(_sample(kind))]
    expected = press_rule(kind.private, actor, chat, variant)
    message = w.seen(actor, chat)
    where = message.chat
    # Whose world must stay as it was: the owner's always (but her own stale presses), the
    # group's unless its admin pressed the group's own button.
    guard_owner = actor != "owner"
    guard_group = not (actor == "admin" and source == "group" and variant == "replayed")
    for data in datas:
        await relax(h)
        snap = await snapshot(w)
        before = len(h.emu.bot_messages(where, bot=h.bot_username))
        qid = forge(w, actor, message, data)
        await settle(h)
        answer = h.emu.answers(qid)
        said = new_bot_texts(w, where, before)
        transcript = h.emu.transcript(where, bot=h.bot_username)
        assert answer is not None, f"{data!r} by {actor} in {chat} was never answered"
        text = answer.text or ""
        assert APOLOGY not in text and not any(APOLOGY in t for t in said), (data, transcript)
        if expected == "private-bot":
            assert text == PRIVATE_BOT_PRESS and said == [], (data, text, said)
        elif expected == "stale":
            assert text == STALE and said == [], (data, text, said)
        elif expected == "private-only":
            assert text == PRIVATE_ONLY_ANSWER and said == [], (data, text, said)
        else:  # the kind's own refusal: something the presser can read, never silence
            assert text or said, (data, actor, chat, transcript)
        check(w, snap, await snapshot(w), owner=guard_owner, group=guard_group,
              group_chat=guard_group and chat == "private", what=(data, actor, chat))


def test_the_matrix_covers_the_table_and_the_registry() -> None:
    """Generated, not listed: every command and kind is in the matrix, every actor too."""
    assert {typing.cast(P.Command, p.values[0]).name for p in COMMAND_CELLS} == {
        c.name for c in P.COMMANDS}
    assert {p.values[0] for p in PRESS_CELLS} == set(KINDS.values())
    assert len(COMMAND_CELLS) == len(P.COMMANDS) * len(CHATS) * len(ACTORS)
