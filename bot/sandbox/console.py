"""`python -m bot sandbox`: the whole bot offline, in a terminal chat.

The BitMEX simulator, the Telegram Bot API emulator and the real bot run in one
process on free loopback ports with a throwaway database and master key. You type
as a Telegram user; the bot's messages appear with their buttons numbered (type the
number to press), edits are shown as edits and photos are saved to files.

Lines starting with ':' drive the sandbox itself, so they can never clash with the
bot's commands:
  :help                     this list
  :user NAME                talk as another user (created on first use; stays in a group)
  :group TITLE              switch to a group with every sandbox user (first is admin)
  :private                  back to your private chat with the bot
  :key [read|withdraw]      create a simulated BitMEX testnet API key and show it
  :connect [read|withdraw]  create such a key and send /connect testnet KEY SECRET for you
  :mark SYMBOL PRICE        move the simulated market (stops, fills, liquidations follow);
                            SYMBOL is XBTUSD, ETHUSD, XBTUSDT or ETHUSDT (btc, eth work too)
  :liquidate SYMBOL SIZE [buy|sell]   a market liquidation of SIZE contracts (2m = 2,000,000)
  :advance SECONDS          move simulated time forward (funding, dead-man switch)
  :overload on|off          BitMEX sheds load: every order with a size gets 503
  :wait SECONDS             wait (script mode) so background messages can arrive
  :quit                     leave
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TextIO

from bot.sandbox.bitmex import BitmexSimulator, Clock, Engine, PriceDriver, RateLimitConfig
from bot.sandbox.runner import BotRunner
from bot.sandbox.telegram import FloodLimits, TelegramEmulator
from bot.sandbox.telegram.state import Chat, Message, User

BOT_USERNAME = "SandboxBitmexBot"


@dataclass
class Console:
    sim: BitmexSimulator
    emu: TelegramEmulator
    runner: BotRunner
    out: Path
    echo_input: bool = False
    stream: TextIO = sys.stdout
    users: dict[str, User] = field(default_factory=dict)
    groups: dict[str, Chat] = field(default_factory=dict)
    me: User | None = None
    chat: Chat | None = None
    seen: dict[tuple[int, int], int] = field(default_factory=dict)
    buttons: list[tuple[Message, str]] = field(default_factory=list)
    photos: int = 0

    def print(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    # --- people and chats ---------------------------------------------------------

    def switch_user(self, name: str) -> None:
        key = name.lower()
        if key not in self.users:
            self.users[key] = self.emu.user(first_name=name.capitalize(), username=key)
        self.me = self.users[key]
        if self.chat is not None and self.chat.is_group:
            if not self.chat.present(self.me.id):
                self.emu.join(self.chat, self.me)
            self.print(f"· you are now {self.me.first_name}, still in '{self.chat.title}' "
                       "(:private for your private chat)")
            return
        self.chat = self.emu.private_chat(self.me, bot=BOT_USERNAME)
        self.mark_all_seen()
        self.print(f"· you are now {self.me.first_name} in your private chat with the bot")

    def switch_group(self, title: str) -> None:
        key = title.lower()
        if key not in self.groups:
            people = list(self.users.values())
            self.groups[key] = self.emu.group(title, people[1:], people[:1],
                                              bots=[BOT_USERNAME], bot_admin=True)
        self.chat = self.groups[key]
        self.mark_all_seen()
        admins = ", ".join(u.first_name for u in list(self.users.values())[:1])
        self.print(f"· in group '{title}' (admin: {admins}); type /help or /feed on")

    def mark_all_seen(self) -> None:
        assert self.chat is not None
        self.buttons.clear()  # numbers shown in another chat must not press here
        for m in self.emu.chat_messages(self.chat, bot=BOT_USERNAME, include_deleted=True):
            self.seen[(self.chat.id, m.message_id)] = m.version

    # --- showing what the bot did -----------------------------------------------------

    def show_changes(self) -> None:
        assert self.chat is not None
        fresh = True  # buttons are numbered anew for each batch of output
        for m in self.emu.chat_messages(self.chat, bot=BOT_USERNAME, include_deleted=True):
            key = (self.chat.id, m.message_id)
            old = self.seen.get(key)
            if old == m.version and not (m.deleted and old is not None and old >= 0):
                continue
            if m.deleted:
                if old is not None and old >= 0:
                    who = "bot" if m.from_bot else m.sender.first_name
                    self.print(f"  ✂ ({who}'s message #{m.message_id} was deleted)")
                self.seen[key] = -1
                continue
            self.seen[key] = m.version
            if not m.from_bot:
                continue
            if fresh and m.buttons:
                self.buttons.clear()
                fresh = False
            self.render(m, edited=old is not None)

    def render(self, m: Message, *, edited: bool) -> None:
        tag = "bot (edited)" if edited else "bot"
        body = m.content or ""
        if m.photo_bytes:
            self.photos += 1
            self.out.mkdir(parents=True, exist_ok=True)
            path = self.out / f"photo-{self.photos:03d}.png"
            path.write_bytes(m.photo_bytes)
            body = f"[photo saved to {path}] {body}"
        lines = body.splitlines() or [""]
        self.print(f"{tag} ▸ {lines[0]}")
        for line in lines[1:]:
            self.print(f"        {line}")
        if m.buttons:
            labels = []
            for row in m.buttons:
                for label in row:
                    self.buttons.append((m, label))
                    labels.append(f"[{len(self.buttons)}] {label}")
            self.print("        " + "  ".join(labels))

    # --- input ------------------------------------------------------------------------

    async def handle(self, line: str) -> bool:
        """One line of input; False to quit."""
        line = line.strip()
        if not line:
            return True
        if self.echo_input:
            who = self.me.first_name if self.me else "you"
            self.print(f"{who} ▸ {line}")
        if line.startswith(":"):
            return await self.control(line[1:].split())
        assert self.me is not None and self.chat is not None
        if line.isdigit() and self.buttons:
            n = int(line)
            if not 1 <= n <= len(self.buttons):
                self.print(f"· no button [{n}]")
                return True
            message, label = self.buttons[n - 1]
            try:
                qid = self.emu.press(self.me, message, label, bot=BOT_USERNAME)
            except ValueError:
                self.print("· that button is gone")
                return True
            await self.settle()
            answer = self.emu.answers(qid)
            if answer is not None and answer.text:
                self.print(f"  ⓘ {answer.text}")
        else:
            self.emu.send_text(self.me, self.chat, line, bot=BOT_USERNAME)
            await self.settle()
        self.show_changes()
        return True

    async def settle(self) -> None:
        try:
            await self.runner.settle(timeout=15)
        except TimeoutError:
            self.print("· (the bot is still working…)")

    async def control(self, words: list[str]) -> bool:
        if not words:
            return True
        cmd, args = words[0].lower(), words[1:]
        engine = self.sim.engine
        try:
            if cmd in ("quit", "exit", "q"):
                return False
            if cmd == "help":
                self.print(__doc__.split("Lines starting", 1)[1].split("\n", 2)[2].rstrip())
            elif cmd == "user" and args:
                self.switch_user(args[0])
            elif cmd == "group" and args:
                self.switch_group(" ".join(args))
            elif cmd == "private":
                assert self.me is not None
                self.chat = self.emu.private_chat(self.me, bot=BOT_USERNAME)
                self.buttons.clear()
                self.print("· back in your private chat")
                # What arrived meanwhile (a signal's preview), with its buttons numbered.
                self.show_changes()
            elif cmd in ("key", "connect"):
                perms = ["order", "orderCancel"]
                if args and args[0] == "read":
                    perms = []
                elif args and args[0] == "withdraw":
                    perms.append("withdraw")
                elif args:
                    self.print(f"· usage: :{cmd} [read|withdraw]")
                    return True
                key, secret = self.sim.add_account(permissions=perms)
                if cmd == "connect":
                    assert self.me is not None and self.chat is not None
                    if self.chat.is_group:
                        self.print("· :connect works in your private chat; type :private first")
                        return True
                    self.print(f"· simulated testnet key with {perms or 'read-only'} permissions "
                               "sent as /connect testnet KEY SECRET")
                    self.emu.send_text(self.me, self.chat, f"/connect testnet {key} {secret}",
                                       bot=BOT_USERNAME)
                    await self.settle()
                    self.show_changes()
                    return True
                self.print(f"· simulated testnet key with {perms or 'read-only'} permissions:")
                self.print(f"  /connect testnet {key} {secret}")
            elif cmd == "mark" and len(args) == 2:
                symbol = _symbol(args[0], engine.instruments)
                engine.set_mark(symbol, Decimal(args[1].replace(",", "")))
                self.print(f"· {symbol} marked at {args[1]}")
                await asyncio.sleep(0.3)  # let the socket fan the tick out
                await self.settle()
                self.show_changes()
            elif cmd == "liquidate" and len(args) >= 2:
                symbol = _symbol(args[0], engine.instruments)
                size = _size(args[1])
                side = args[2].capitalize() if len(args) > 2 else "Sell"
                if side not in ("Buy", "Sell"):
                    self.print("· usage: :liquidate SYMBOL SIZE [buy|sell]")
                    return True
                mark = engine.instrument(symbol).mark
                engine.liquidate_market(symbol, side, int(size), mark)
                self.print(f"· market liquidation: {side} {size:,} {symbol} @ {mark}")
                await asyncio.sleep(0.3)  # the liquidation feed posts from the socket
                await self.settle()
                self.show_changes()
            elif cmd == "advance" and args:
                engine.clock.advance(float(args[0]))
                self.print(f"· simulated time +{args[0]} s")
                await asyncio.sleep(0.3)
                await self.settle()
                self.show_changes()
            elif cmd == "overload" and args and args[0] in ("on", "off"):
                self.sim.faults.load_shedding = args[0] == "on"
                self.print("· BitMEX is shedding load: orders with a size are refused (503)"
                           if args[0] == "on" else "· BitMEX takes every order again")
            elif cmd == "wait" and args:
                await asyncio.sleep(min(float(args[0]), 30))
                self.show_changes()
            elif cmd in _USAGE:
                self.print(f"· usage: {_USAGE[cmd]}")
            else:
                self.print("· unknown sandbox command; :help lists them")
        except (ValueError, KeyError, InvalidOperation, ArithmeticError) as e:
            self.print(f"· sandbox: {e}")
        except Exception as e:  # the simulator refusing something must not end the session
            self.print(f"· sandbox: {type(e).__name__}: {e}")
        return True


_USAGE = {
    "user": ":user NAME",
    "group": ":group TITLE",
    "mark": ":mark SYMBOL PRICE   e.g. :mark XBTUSD 61000",
    "liquidate": ":liquidate SYMBOL SIZE [buy|sell]   e.g. :liquidate XBTUSD 2m",
    "advance": ":advance SECONDS",
    "wait": ":wait SECONDS",
    "overload": ":overload on|off",
}
_ALIASES = {"BTC": "XBTUSD", "XBT": "XBTUSD", "ETH": "ETHUSD"}


def _symbol(word: str, known: Mapping[str, object]) -> str:
    """A simulator symbol from what a newcomer types (btc, xbtusd, ETHUSDT)."""
    w = word.upper()
    w = _ALIASES.get(w, w)
    if w not in known:
        raise ValueError(f"unknown symbol {word}; the simulator has {', '.join(known)}")
    return w


def _size(word: str) -> Decimal:
    w = word.lower().replace(",", "").lstrip("$")
    mult = Decimal(1)
    if w.endswith("k"):
        mult, w = Decimal(1000), w[:-1]
    elif w.endswith("m"):
        mult, w = Decimal(1_000_000), w[:-1]
    return Decimal(w) * mult


async def run(script: list[str] | None, seed: int | None, out: str, interactive: bool) -> int:
    engine = Engine(Clock(follow_wall=True))
    # BitMEX's own REST limits (120/min and 10/s per key, 30/min per address without one),
    # so what works here works on the exchange.
    sim = BitmexSimulator(engine, rate_limit=RateLimitConfig())
    emu = TelegramEmulator(FloodLimits())
    await sim.start()
    await emu.start()
    engine.backfill(hours=24 * 7, seed=seed)  # so /chart and /price have a past to show
    driver = PriceDriver(engine, seed=seed, volatility=0.0003, interval=1.0,
                         liquidation_chance=0.02)
    driver_task = asyncio.create_task(driver.run()) if interactive else None
    with tempfile.TemporaryDirectory(prefix="bitmex-bot-sandbox-") as tmp:
        runner = BotRunner(sim, emu, Path(tmp), username=BOT_USERNAME, fast_retries=False)
        await runner.start()
        console = Console(sim, emu, runner, Path(out), echo_input=not interactive)
        console.switch_user("you")
        if interactive:
            console.print(f"Sandbox ready: BitMEX simulator at {sim.url}, Telegram emulator at "
                          f"{emu.url}. Type /start, or :help for sandbox commands. Ctrl-D quits.")
        try:
            if script is not None:
                for line in script:
                    if line.lstrip().startswith("#"):
                        continue
                    if not await console.handle(line):
                        break
            elif interactive:
                ticker = asyncio.create_task(_background(console))
                try:
                    while True:
                        line = await asyncio.to_thread(_prompt, console)
                        if not await console.handle(line):
                            break
                finally:
                    ticker.cancel()
            else:
                for line in sys.stdin.read().splitlines():
                    if not await console.handle(line):
                        break
        finally:
            if driver_task is not None:
                driver.stop()
                driver_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await driver_task
            await runner.stop()
            await emu.stop()
            await sim.stop()
    return 0


def _prompt(console: Console) -> str:
    who = console.me.first_name if console.me else "you"
    try:
        return input(f"{who} ▸ ")
    except EOFError:
        return ":quit"


async def _background(console: Console) -> None:
    """Show alerts and fills that arrive while the user is not typing."""
    while True:
        await asyncio.sleep(0.5)
        with contextlib.suppress(Exception):
            console.show_changes()


def main(script: str | None = None, seed: int | None = None, out: str = "sandbox-out") -> int:
    import logging

    # The terminal is the chat: library chatter (rate-limit retries, start/stop) stays out.
    for name in ("telegram", "httpx", "apscheduler", "aiohttp", "alembic", "bot"):
        logging.getLogger(name).setLevel(logging.WARNING)
    interactive = script is None and sys.stdin.isatty()
    lines = Path(script).read_text().splitlines() if script is not None else None
    return asyncio.run(run(lines, seed, out, interactive))
