"""Two real `python -m bot run` processes on one PostgreSQL database: one leads, one stands
by, and the standby takes over when the leader is killed or cut off from the database
(bot/leader.py). Plus the SQLite rule: one instance per database file.

The lease times are shortened through settings (LEADER_*), so a takeover takes a few
seconds; what is asserted is what a user and an operator would notice: the chat, the
exchange, the database rows, /readyz and /metrics, and the processes' exit codes.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import TelegramEmulator
from bot.vault import generate_key
from tests.e2e.conftest import E2E_TIME_SCALE
from tests.pg import CutProxy, admin, throwaway_database
from tests.procs import Chatter, Instance, bot_env, free_port, logs, until

SYM = "XBTUSD"
# Fast lease times for the drills: a crashed leader's lease runs out 4 s after its last
# renewal, and a leader steps down only after 3 s without one (a loaded test machine can
# be slow to answer).
LEASE = {"LEADER_LEASE_SECONDS": "4", "LEADER_RENEW_SECONDS": "0.5",
         "LEADER_STEP_DOWN_SECONDS": "3"}
TAKEOVER_LIMIT = 10.0  # seconds from the leader's death to the standby being ready


async def status(inst: Instance) -> int | None:
    return (await inst.ready())[0]


def env_for(emu: TelegramEmulator, sim: BitmexSimulator, token: str, url: str,
            master: str) -> dict[str, str]:
    return bot_env(emu, sim, token, url, master, TELEGRAM_TIME_SCALE=str(E2E_TIME_SCALE),
                   **LEASE)


async def scalar(url: str, sql: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def leader_and_standby(a: Instance, b: Instance) -> tuple[Instance, Instance]:
    """Wait until one of the two is ready (leads) and the other says it stands by."""
    async def settled() -> tuple[Instance, Instance] | None:
        (sa, ba), (sb, bb) = await a.ready(), await b.ready()
        if sa == 200 and sb == 503 and "standby" in bb.get("reason", ""):
            return a, b
        if sb == 200 and sa == 503 and "standby" in ba.get("reason", ""):
            return b, a
        return None
    found: tuple[Instance, Instance] = await until(
        settled, 60, f"one leader, one standby\n--- {a.name}\n{a.text()[-3000:]}\n--- "
        f"{b.name}\n{b.text()[-3000:]}")
    return found


@pytest.fixture
def restore_world(world_sim: BitmexSimulator) -> Any:
    engine = world_sim.engine
    saved = {s: (i.mark, i.last) for s, i in engine.instruments.items()}
    world_sim.faults.clear()
    world_sim.ws_limit.reset()
    world_sim.reset_rate_limits()
    yield
    for symbol, (mark, last) in saved.items():
        engine.set_mark(symbol, mark, last=last)


async def test_the_standby_takes_over_a_killed_leader_and_nothing_is_lost_or_repeated(
        world_emu: TelegramEmulator, world_sim: BitmexSimulator, tmp_path: Path,
        restore_world: None) -> None:
    emu, sim, engine = world_emu, world_sim, world_sim.engine
    token, name = "474747:failover-test-token-abcdefghijklmnopqrstuvwxyz", "FailoverBot"
    emu.add_bot(token, name, "Failover")
    async with throwaway_database() as url:
        env = env_for(emu, sim, token, url, generate_key())
        # Started together: they also take turns migrating the empty database.
        one, two = Instance("one", env, tmp_path / "one"), Instance("two", env, tmp_path / "two")
        await asyncio.gather(one.start(), two.start())
        try:
            leader, standby = await leader_and_standby(one, two)
            assert await leader.metric("bot_leader") == 1
            assert await standby.metric("bot_leader") == 0
            assert await standby.metric("bot_ready") == 0

            user = emu.user(first_name="Alice")
            alice = Chatter(emu, name, user, emu.private_chat(user, bot=name))
            key, secret = sim.add_account()
            account = sim.account(key)
            alice.send(f"/connect testnet {key} {secret}")
            await alice.wait("Connected")
            alice.send("/deadman 15")
            await alice.wait("Dead-man's switch is on")
            p0 = engine.instrument(SYM).mark
            alice.send(f"/buy 300 xbtusd limit {p0 - 1000}")
            await until(lambda: alice.buttons("✅ Confirm") == 1, 20, "the card")
            confirm = alice.press("✅ Confirm")
            await until(lambda: len(engine.open_order_rows(account.id)) == 1, 20,
                        "the confirmed card's order on the exchange")
            [order] = engine.open_order_rows(account.id)
            await alice.wait("✅ Placed")
            alice.send(f"/alert xbtusd above {p0 + 1000} failover")
            await alice.wait("Alert set")
            set_alert = alice.send(f"/alert xbtusd below {p0 - 5000} far away")
            await alice.wait("Alert set", n=2)
            alice.send(f"/buy 100 xbtusd limit {p0 - 1200}")  # a card left open
            await until(lambda: alice.buttons("✅ Confirm") == 1 and not emu.pending_updates(name),
                        20, "the second card")
            armed_at = account.cancel_at
            assert armed_at is not None
            # A third card is confirmed, BitMEX takes the order but its answer never comes:
            # the card is in flight when the leader dies.
            alice.send(f"/buy 200 xbtusd limit {p0 - 1100}")
            await until(lambda: alice.buttons("✅ Confirm") == 2, 20, "the third card")
            sim.faults.drop_after_accept(1, mode="hang")
            alice.press("✅ Confirm")
            in_flight = "SELECT cl_ord_id FROM order_intents WHERE state = 'confirmed'"
            flying = await until(lambda: scalar(url, in_flight), 20, "the third card sending")
            await until(lambda: len(engine.open_order_rows(account.id)) == 2, 20,
                        "the third card's order on the exchange")

            # -- the leader dies mid-session --------------------------------------------------
            leader.kill()
            killed = time.monotonic()
            await leader.proc.wait()  # type: ignore[union-attr]
            # Killed before its next getUpdates confirmed them, Telegram would hand its last
            # updates to the next leader again: as it does here, with these two.
            account_updates = emu.bot(name).updates
            account_updates[:0] = [set_alert, confirm]
            # Meanwhile: the alert's price is crossed, the order partly fills, Alice asks
            # for her balance, and BitMEX's clock runs on.
            engine.set_mark(SYM, p0 + Decimal("1000.5"))
            engine.fill_order(str(order["orderID"]), 100)
            alice.send("/balance")
            engine.clock.advance(10)

            await until(lambda: standby_ready(standby), TAKEOVER_LIMIT + 5, "the standby ready")
            took = time.monotonic() - killed
            print(f"takeover after SIGKILL: {took:.1f} s")
            assert took <= TAKEOVER_LIMIT, f"the standby took {took:.1f} s"

            await alice.wait("🔔 XBTUSD above")
            await alice.wait("Filled 100/300")
            await alice.wait("Balance · testnet")
            # The card in flight is settled by its clOrdID: placed once, and it says so.
            await alice.wait("✅ Placed", n=2)
            assert [str(o["clOrdID"]) for o in engine.open_order_rows(account.id)].count(
                flying) == 1
            # The dead-man's switch: refreshed by the new leader on BitMEX's clock ...
            await until(lambda: account.cancel_at is not None and account.cancel_at > armed_at,
                        10, "the new leader's dead-man refresh")
            engine.clock.advance(10)  # 20 s after the old leader's last refresh: past its 15 s
            assert len(engine.open_order_rows(account.id)) == 2, "cancelAllAfter fired"

            # The card left open is confirmed through the new leader, once.
            alice.press("✅ Confirm")
            await until(lambda: len(engine.open_order_rows(account.id)) == 3, 20,
                        "the second card's order")
            await asyncio.sleep(1.5)  # let anything repeated show itself
            assert alice.count("🔔 XBTUSD above") == 1, alice.transcript()
            assert alice.count("Filled 100/300") == 1, alice.transcript()
            assert alice.count("Alert set") == 2, alice.transcript()
            assert alice.count("Balance · testnet") == 1, alice.transcript()
            assert alice.count("✅ Placed") == 3, alice.transcript()
            placed = "SELECT count(*) FROM order_intents WHERE state = 'placed'"
            assert await scalar(url, placed) == 3
            cl_ids = [str(o["clOrdID"]) for o in engine.open_order_rows(account.id)]
            assert cl_ids.count(str(order["clOrdID"])) == 1
            assert await scalar(url, "SELECT count(*) FROM alerts WHERE state = 'active'") == 1
            assert await scalar(url, "SELECT count(*) FROM alerts WHERE state = 'sent'") == 1
            assert "update" in standby.text() and "already handled" in standby.text()

            # -- the killed one comes back: it stands by ----------------------------------------
            await leader.start()
            await until(lambda: standby_says(leader), 60, "the restarted one standing by")
            assert await leader.metric("bot_leader") == 0
            assert await standby.metric("bot_leader") == 1
            assert await status(standby) == 200

            assert await standby.stop() == 0
            # A clean stop hands the lease over at once: the other leads.
            await until(lambda: standby_ready(leader), TAKEOVER_LIMIT, "the lease handed over")
            assert await leader.stop() == 0
        except AssertionError as e:
            raise AssertionError(f"{e}\n{logs(one, two)}") from None
        finally:
            one.reap()
            two.reap()
        for inst in (one, two):
            assert "Traceback" not in inst.text(), inst.text()[-5000:]
            assert token not in inst.text()


async def standby_ready(inst: Instance) -> bool:
    return await status(inst) == 200


async def standby_says(inst: Instance) -> bool:
    code, body = await inst.ready()
    return code == 503 and "standby" in body.get("reason", "")


async def test_a_leader_cut_off_from_the_database_stops_and_the_other_leads(
        world_emu: TelegramEmulator, world_sim: BitmexSimulator, tmp_path: Path,
        restore_world: None) -> None:
    emu, sim = world_emu, world_sim
    token, name = "484848:cutoff-test-token-abcdefghijklmnopqrstuvwxyz", "CutoffBot"
    emu.add_bot(token, name, "Cutoff")
    async with throwaway_database() as url:
        host, _, port = url.split("@", 1)[1].split("/", 1)[0].partition(":")
        proxy = CutProxy(host, int(port or 5432))
        await proxy.start()
        master = generate_key()
        cut_env = env_for(emu, sim, token, proxy.url(url), master)
        one = Instance("one", cut_env, tmp_path / "one")
        two = Instance("two", env_for(emu, sim, token, url, master), tmp_path / "two")
        try:
            await one.start()
            await until(lambda: standby_ready(one), 60, f"one leading\n{one.text()[-3000:]}")
            await two.start()
            await until(lambda: standby_says(two), 60, f"two standing by\n{two.text()[-3000:]}")
            user = emu.user(first_name="Bob")
            bob = Chatter(emu, name, user, emu.private_chat(user, bot=name))
            bob.send("/start")
            await bob.wait("Hi Bob")

            proxy.cut()
            cut = time.monotonic()
            # Sent just after the cut: the cut-off leader fetches it, but cannot keep it
            # (bot/inbox.py), so it never confirms it to Telegram, and the next leader
            # gets it. (Before the inbox it was confirmed, its claim failed: lost.)
            bob.send("/help")
            rc = await asyncio.wait_for(one.proc.wait(), 30)  # type: ignore[union-attr]
            stopped = time.monotonic()
            await until(lambda: standby_ready(two), TAKEOVER_LIMIT, "two leading")
            led = time.monotonic()
            assert rc == 75, one.text()[-3000:]  # EX_TEMPFAIL: "restart me"
            assert "stepping down" in one.text()
            # It stopped within its step-down time, and before the other could take over.
            assert stopped - cut <= float(LEASE["LEADER_STEP_DOWN_SECONDS"]) + 1.0
            assert stopped < led
            await bob.wait("Commands (send /help")
            assert bob.count("Commands (send /help") == 1, bob.transcript()
            bob.send("/start")
            await bob.wait("Hi Bob", n=2)
            # Restarted (its link repaired), it stands by; SIGTERM ends it cleanly there.
            one.env = two.env
            await one.start()
            await until(lambda: "standing by" in one.text(), 30, "one standing by again")
            assert await standby_says(one)
            assert await one.stop() == 0
            assert await two.stop() == 0
        except AssertionError as e:
            raise AssertionError(f"{e}\n{logs(one, two)}") from None
        finally:
            one.reap()
            two.reap()
            await proxy.close()
        await admin(url, "SELECT 1")  # the server itself was never down
        for inst in (one, two):
            assert "Traceback" not in inst.text(), inst.text()[-5000:]
            assert "destroyed but it is pending" not in inst.text(), inst.text()[-5000:]


async def test_a_second_instance_on_one_sqlite_database_is_refused_in_one_line(
        world_emu: TelegramEmulator, world_sim: BitmexSimulator, tmp_path: Path) -> None:
    token, name = "494949:sqlite-lock-token-abcdefghijklmnopqrstuvwxyz", "SqliteLockBot"
    world_emu.add_bot(token, name, "Lock")
    db = tmp_path / "bot.db"
    env = env_for(world_emu, world_sim, token, f"sqlite+aiosqlite:///{db}", generate_key())
    first = Instance("first", env, tmp_path / "first")
    second = Instance("second", env, tmp_path / "second")
    try:
        await first.start()
        await until(lambda: standby_ready(first), 60, f"first ready\n{first.text()[-3000:]}")
        await second.start()
        rc = await asyncio.wait_for(second.proc.wait(), 60)  # type: ignore[union-attr]
        assert await status(first) == 200
        assert await first.stop() == 0
    except AssertionError as e:
        raise AssertionError(f"{e}\n{logs(first, second)}") from None
    finally:
        first.reap()
        second.reap()
    lines = second.text().strip().splitlines()
    assert rc == 2
    assert lines == [f"error: another bot is already running on {db} (pid {first.proc.pid}): "  # type: ignore[union-attr]
                     "stop it first. SQLite serves one instance; two instances (failover) "
                     "need PostgreSQL, see README \"Running at scale\"."], lines


async def test_webhook_mode_a_standby_stops_on_sigterm_and_a_new_leader_takes_the_webhook(
        world_emu: TelegramEmulator, world_sim: BitmexSimulator, tmp_path: Path,
        restore_world: None) -> None:
    emu, sim = world_emu, world_sim
    token, name = "505050:hookfail-test-token-abcdefghijklmnopqrstuvwxyz", "HookFailBot"
    emu.add_bot(token, name, "HookFail")
    # Telegram posts to https on 443/80/88/8443 only; a loopback http URL is the emulator's
    # named test allowance, switched on here on purpose.
    emu.allow_loopback_http_webhooks = True
    async with throwaway_database() as url:
        env = env_for(emu, sim, token, url, generate_key())

        def hooked(label: str) -> Instance:
            # Each behind its own address, as behind a load balancer that asks /readyz.
            port = free_port()
            return Instance(label, {**env, "WEBHOOK_URL": f"http://127.0.0.1:{port}",
                                    "WEBHOOK_PORT": str(port)}, tmp_path / label)

        one, two = hooked("one"), hooked("two")
        user = emu.user(first_name="Cleo")
        cleo = Chatter(emu, name, user, emu.private_chat(user, bot=name))
        try:
            await one.start()
            await until(lambda: standby_ready(one), 60, f"one leading\n{one.text()[-3000:]}")
            await two.start()
            await until(lambda: standby_says(two), 60, f"two standing by\n{two.text()[-3000:]}")
            await until(lambda: "standing by" in two.text(), 30, "two waiting for the lease")
            assert await two.stop() == 0  # SIGTERM while it waits: a clean, quick exit
            assert one.env["WEBHOOK_PORT"] in (emu.bot(name).webhook_url or "")
            cleo.send("/start")
            await cleo.wait("Hi Cleo")

            one.kill()
            await one.proc.wait()  # type: ignore[union-attr]
            await two.start()
            await until(lambda: standby_ready(two), 30, f"two leading\n{two.text()[-3000:]}")
            assert two.env["WEBHOOK_PORT"] in (emu.bot(name).webhook_url or "")
            cleo.send("/start")
            await cleo.wait("Hi Cleo", n=2)
            assert await two.stop() == 0
        finally:
            emu.allow_loopback_http_webhooks = False
            one.reap()
            two.reap()
        assert "Traceback" not in two.text(), two.text()[-5000:]
