"""The end-to-end harness: a real PTB Application against the Bot API emulator and the
BitMEX simulator, and people who chat with it.

A test reads like a conversation:

    alice = h.person("Alice")
    await alice.send("/connect testnet KEY SECRET")
    assert "Connected" in alice.last.text
    await alice.send("/buy 100 btc")
    await alice.press("Confirm")

`send` and `press` return when the bot has finished processing the update (counted
exactly, not guessed with sleeps) and the emulator has gone quiet.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.runner import BotRunner
from bot.sandbox.telegram import TelegramEmulator
from bot.sandbox.telegram.state import Chat, Message, User
from bot.services import Services
from tests.dbs import test_database_url


@dataclass
class Person:
    h: Harness
    user: User
    chat: Chat
    key: str | None = None  # the testnet key `Harness.connected` gave them

    @property
    def id(self) -> int:
        return self.user.id

    async def send(self, text: str, chat: Chat | None = None, *,
                   anonymous: bool = False) -> Message | None:
        """Type `text` (in the private chat unless `chat`; `anonymous`: as a group admin
        with "Remain anonymous" on); the bot's latest message there."""
        where = chat or self.chat
        self.h.emu.send_text(self.user, where, text, bot=self.h.bot_username,
                             anonymous=anonymous)
        await self.h.settle()
        return self.h.emu.last_bot_message(where, bot=self.h.bot_username)

    async def press(self, label: str, message: Message | None = None) -> Any:
        """Press a button (by label) on `message` (default: the newest bot message with it)."""
        msg = message or self.find_button(label)
        qid = self.h.emu.press(self.user, msg, label, bot=self.h.bot_username)
        await self.h.settle()
        return self.h.emu.answers(qid)

    def find_button(self, label: str, chat: Chat | None = None) -> Message:
        for m in reversed(self.h.emu.bot_messages(chat or self.chat, bot=self.h.bot_username)):
            if any(label.lower() == b.lower() for row in m.buttons for b in row):
                return m
        raise AssertionError(f"no button {label!r} in the chat:\n{self.transcript}")

    @property
    def last(self) -> Message:
        m = self.h.emu.last_bot_message(self.chat, bot=self.h.bot_username)
        assert m is not None, "the bot has not written to this chat"
        return m

    @property
    def last_text(self) -> str:
        return self.last.content or ""

    @property
    def messages(self) -> list[Message]:
        return self.h.emu.chat_messages(self.chat, bot=self.h.bot_username)

    @property
    def bot_texts(self) -> list[str]:
        return [m.content or "" for m in self.h.emu.bot_messages(self.chat,
                                                                 bot=self.h.bot_username)]

    @property
    def transcript(self) -> str:
        return self.h.emu.transcript(self.chat, bot=self.h.bot_username)


class Harness(BotRunner):
    """A BotRunner plus the people who talk to it."""

    def __init__(self, sim: BitmexSimulator, emu: TelegramEmulator, tmp: Path,
                 **settings: Any) -> None:
        # SQLite in tmp, or the PostgreSQL test server when TEST_DATABASE_URL is set.
        settings.setdefault("DATABASE_URL", test_database_url(tmp))
        settings.setdefault("PAPER_STATE_FILE", str(tmp / "bot-paper.pickle"))
        super().__init__(sim, emu, tmp, **settings)

    @property
    def svc(self) -> Services:
        assert self.services is not None
        return self.services

    def person(self, first_name: str = "User", username: str | None = None) -> Person:
        user = self.emu.user(first_name=first_name, username=username)
        chat = self.emu.private_chat(user, bot=self.bot_username)
        return Person(self, user, chat)

    def group(self, title: str, members: list[Person], admins: list[Person],
              bot_admin: bool = False) -> Chat:
        """A group with the bot in it. By default a plain member, as Telegram adds bots: in
        privacy mode it then sees only `/cmd@bot`, general commands when it posted last,
        and replies to it. `bot_admin=True` is a group whose admins made it an admin (with
        "Delete messages"): it reads everything, as free-text signals need."""
        return self.emu.group(title, [p.user for p in members], [p.user for p in admins],
                              bots=[self.bot_username], bot_admin=bot_admin)

    def promote_bot(self, chat: Chat, by: Person | None = None) -> None:
        """The group's admins make the bot an admin (a `my_chat_member` update follows)."""
        self.emu.promote(chat, self.emu.bot(self.bot_username).user,
                         by=by.user if by is not None else None)

    def exchange_account(self, permissions: tuple[str, ...] = ("order", "orderCancel"),
                         xbt: float = 1.0, usdt: float = 10000) -> tuple[str, str]:
        return self.sim.add_account(permissions=permissions, xbt=xbt, usdt=usdt)

    async def fills_told(self, p: Person, key: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until the bot has told `p` of every fill the simulator made on `key`'s
        account, position cards included. A fill notice comes over the private stream,
        after the Confirm press has settled: a test that next reads the chat's newest
        message would otherwise race it."""
        account = self.sim.account(key).id

        def fills() -> set[str]:
            return {r["execID"] for r in self.sim.engine.execution_rows(account)
                    if r["execType"] == "Trade"}

        try:
            async with asyncio.timeout(timeout):
                while True:
                    made = fills()
                    # Returns at the moment all of them are told, with no await between
                    # that check and ours: a fill the simulator made meanwhile is waited
                    # for too.
                    await self.svc.live.fills_told(p.user.id, made)
                    if fills() <= made:
                        break
        except TimeoutError:
            raise AssertionError(f"fills not told within {timeout}s:\n{p.transcript}") from None
        # The last notice's position card is an edit in the delivery queue by now (behind a
        # settings read): delivered before the quiet moment `settle` waits for.
        await self.svc.notifier.drain(timeout)
        await self.settle()

    async def connected(self, name: str = "Trader", **kw: Any) -> tuple[Person, str]:
        """A person with a testnet key connected; returns them and the key id."""
        p = self.person(name)
        key, secret = self.exchange_account(**kw)
        await p.send(f"/connect testnet {key} {secret}")
        assert "Connected" in p.last_text, p.transcript
        p.key = key
        return p, key
