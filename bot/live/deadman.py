"""/deadman: BitMEX's cancelAllAfter kept armed for as long as the bot lives."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from decimal import Decimal

from bot import fmt
from bot.db.models import User
from bot.errors import ExchangeError, UserError
from bot.live.base import (
    DEADMAN_WARN_AFTER,
    DeadmanState,
    LiveBase,
)

log = logging.getLogger(__name__)


class Deadman(LiveBase):
    # --- dead-man's switch --------------------------------------------------------------

    async def _trading_networks(self, user_id: int) -> list[str]:
        return [a.network for a in await self.accounts.list(user_id) if a.can_trade]

    async def set_deadman(self, user_id: int, seconds: int | None) -> str:
        """`/deadman SECONDS | off`: arm (or disarm) cancelAllAfter on every trading account."""
        networks = await self._trading_networks(user_id)
        if not networks:
            raise UserError("The dead-man's switch works on your exchange account: connect a "
                            "key with Order permission first (/connect testnet).")
        timeout = 0 if seconds is None else seconds * 1000
        done, failed = [], []
        for net in networks:
            try:
                ex = await self.accounts.exchange(user_id, net)
                await ex.cancel_all_after(timeout)
                done.append(net)
            except ExchangeError as e:
                failed.append(f"{net}: {e.message}")
        if not done:
            raise UserError("BitMEX did not accept the dead-man's switch ("
                            + html.escape("; ".join(failed)) + "). Please try again.")
        async with self.db.session() as s:
            user = await s.get(User, user_id) or User(id=user_id)
            user.deadman_seconds = seconds
            s.add(user)
            await s.commit()
        now = time.monotonic()
        for key in [k for k in self._dm_state if k[0] == user_id]:
            del self._dm_state[key]
        if seconds is None:
            self._deadman.pop(user_id, None)
            self._dm_next.pop(user_id, None)
            text = ("💀 Dead-man's switch is <b>off</b>: your open orders stay on BitMEX "
                    "even if I go down.")
        else:
            self._deadman[user_id] = seconds
            for net in done:
                self._dm_state[(user_id, net)] = DeadmanState(last_ok=now)
            self._dm_next[user_id] = now + self._period(seconds)
            text = (f"💀 Dead-man's switch is <b>on</b> ({', '.join(done)}): I refresh it every "
                    f"{fmt.num(Decimal(str(round(self._period(seconds), 1))))} s; if I can't "
                    f"for {seconds} s, BitMEX cancels your open orders.")
        if failed:
            text += "\nNot set on " + html.escape("; ".join(failed)) + "."
        self._dm_wake.set()
        return text

    def _period(self, seconds: int) -> float:
        return min(self.deadman_interval, seconds / 4)

    def set_refresh_interval(self, seconds: float) -> None:
        """The dead-man refresh period (at most SECONDS/4 per user); wakes the loop."""
        self.deadman_interval = seconds
        now = time.monotonic()
        for uid, secs in self._deadman.items():
            self._dm_next[uid] = min(self._dm_next.get(uid, now), now + self._period(secs))
        self._dm_wake.set()

    def pause_deadman(self, paused: bool = True) -> None:
        """Stop (or resume) refreshing, as if the bot had died; for tests and drills."""
        self._dm_paused = paused
        self._dm_wake.set()

    async def refresh_deadman(self, user_id: int | None = None) -> None:
        """One refresh of every armed switch (or one user's): what the loop runs when due."""
        users = [user_id] if user_id is not None else list(self._deadman)
        await asyncio.gather(*(self._refresh_user(uid) for uid in users if uid in self._deadman))

    async def _refresh_user(self, user_id: int) -> None:
        seconds = self._deadman.get(user_id)
        if seconds is None:
            return
        self._dm_next[user_id] = time.monotonic() + self._period(seconds)
        try:
            networks = await self._trading_networks(user_id)
        except Exception:
            log.exception("dead-man: could not list accounts of %s", user_id)
            return
        for net in networks:
            state = self._dm_state.setdefault((user_id, net),
                                              DeadmanState(last_ok=time.monotonic()))
            try:
                ex = await self.accounts.exchange(user_id, net)
                await ex.cancel_all_after(seconds * 1000)
            except (ExchangeError, UserError) as e:
                state.failures += 1
                log.warning("dead-man refresh failed for %s on %s (%d): %s", user_id, net,
                            state.failures, e)
                if state.failures >= DEADMAN_WARN_AFTER and not state.warned:
                    state.warned = True
                    left = max(0, round(seconds - (time.monotonic() - state.last_ok)))
                    await self._send(
                        user_id,
                        f"⚠️ The dead-man's switch could not be refreshed — your orders on "
                        f"{html.escape(net)} may be cancelled in {left} s.", "deadman")
                continue
            if state.warned:
                await self._send(user_id, f"✅ The dead-man's switch on {html.escape(net)} "
                                 "is refreshed again.", "deadman")
            state.failures, state.warned, state.last_ok = 0, False, time.monotonic()

    async def _deadman_loop(self) -> None:
        while True:
            try:
                now = time.monotonic()
                due = [uid for uid in self._deadman if self._dm_next.get(uid, now) <= now]
                if due and not self._dm_paused:
                    await asyncio.gather(*(self._refresh_user(uid) for uid in due))
                    continue
                nexts = [t for uid, t in self._dm_next.items() if uid in self._deadman]
                wait = self.deadman_interval if self._dm_paused or not nexts else max(
                    0.0, min(nexts) - time.monotonic())
                self._dm_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dm_wake.wait(), wait)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep refreshing whatever one pass ran into
                log.exception("dead-man refresh loop")
                await asyncio.sleep(1.0)
