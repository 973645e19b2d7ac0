"""/pnl, /chart, /price, /summary, /tz and /settings, as a person uses them."""

from __future__ import annotations

import asyncio
import struct
from datetime import UTC, datetime, time

import pytest
from sqlmodel import select

from bot.db.models import Schedule, User
from bot.scheduler import next_run
from bot.services import Services
from tests.e2e.harness import Harness, Person

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def svc(h: Harness) -> Services:
    assert h.services is not None
    return h.services


async def user_row(h: Harness, p: Person) -> User:
    user = await svc(h).get_user(p.id)
    assert user is not None
    return user


async def trade(h: Harness, p: Person, text: str) -> None:
    await p.send(text)
    card = p.last
    await p.press("✅ Confirm", card)
    assert "Filled" in (card.content or ""), p.transcript


async def test_pnl_after_a_round_trip_shows_realised_numbers_and_a_chart(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    engine = h.sim.engine
    start = engine.instrument("XBTUSD").mark
    await trade(h, alice, "/buy 1000 xbtusd")
    engine.set_mark("XBTUSD", start * 2)
    await trade(h, alice, "/sell 1000 xbtusd")
    account = h.sim.account(key)
    rows = [r for r in engine.trade_history(account.id) if r["execType"] == "Trade"]
    net = sum(r["realisedPnl"] for r in rows)
    fees = sum(r["execComm"] for r in rows)
    assert net > 0

    await alice.send("/pnl 1d")
    msg = alice.last
    assert msg.photo is not None and msg.file is not None, alice.transcript
    caption = msg.content or ""
    assert "PnL · 1d · testnet" in caption
    from bot import fmt

    assert f"realised +{fmt.money(net, 'XBt')}" in caption
    assert f"fees −{fmt.money(fees, 'XBt')}" in caption
    assert "fills 2 · closing 1 · win rate 100 %" in caption
    assert "No open positions." in caption
    w, h_ = png_size(msg.file.data)
    assert (w, h_) == (1000, 640) and len(msg.file.data) < 200_000


async def test_chart_and_price_from_the_market(h: Harness) -> None:
    bob = h.person("Bob")
    await bob.send("/start")
    engine = h.sim.engine
    base = engine.instrument("ETHUSD").mark
    for i in range(30):
        engine.set_mark("ETHUSD", base + i % 7, trade_size=10)
        engine.clock.advance(60)
    await bob.send("/chart eth 1m 20")
    msg = bob.last
    assert msg.file is not None, bob.transcript
    assert "ETHUSD" in (msg.content or "") and "1m" in (msg.content or "")
    assert png_size(msg.file.data) == (1000, 640)
    await bob.send("/price eth xbtusd")
    text = bob.last_text
    assert "ETHUSD" in text and "XBTUSD" in text and "mark" in text and "funding" in text
    await bob.send("/chart nosuchcoin")
    assert "Unknown symbol" in bob.last_text


async def test_tz_and_settings_refuse_bad_input_and_change_nothing(h: Harness) -> None:
    carol = h.person("Carol")
    await carol.send("/start")
    before = await user_row(h, carol)
    for bad in ("/tz Mars/Olympus", "/tz UTC+15", "/tz",
                "/settings confirm 5", "/settings quiet 25:00-07:00", "/settings colour red",
                "/settings notify alerts loud", "/settings unit bananas"):
        n = len(carol.bot_texts)
        await carol.send(bad)
        assert len(carol.bot_texts) == n + 1, f"{bad!r} got no answer"
        assert "✅" not in carol.last_text and "Time zone set" not in carol.last_text, bad
    after = await user_row(h, carol)
    assert (after.tz, after.confirm_timeout, after.quiet_start, after.notify_prefs) == (
        before.tz, before.confirm_timeout, before.quiet_start, before.notify_prefs)

    await carol.send("/tz Europe/Berlin")
    assert "Europe/Berlin" in carol.last_text
    await carol.send("/settings confirm 30")
    await carol.send("/settings quiet 23:00-07:00")
    await carol.send("/settings notify alerts silent")
    shown = carol.last_text
    assert "confirm: 30 s" in shown and "quiet: 23:00–07:00" in shown
    assert "alerts: 🔕 silent" in shown
    row = await user_row(h, carol)
    assert (row.tz, row.confirm_timeout, row.quiet_start, row.quiet_end) == (
        "Europe/Berlin", 30, "23:00", "07:00")
    assert row.notify_prefs["alerts"] == "silent"


async def test_summary_is_scheduled_in_local_time_and_its_job_sends_a_photo(
        h: Harness) -> None:
    from handlers import jobs

    dave, _ = await h.connected("Dave")
    await dave.send("/tz America/New_York")
    await dave.send("/summary daily 09:30")
    assert "daily at 09:30" in dave.last_text, dave.transcript
    async with svc(h).db.session() as s:
        sched = (await s.exec(select(Schedule).where(Schedule.user_id == dave.id))).one()
    assert sched.id is not None
    queued = h.app.job_queue.get_jobs_by_name(f"summary:{sched.id}")
    assert len(queued) == 1
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    when = queued[0].next_t
    assert when is not None and when.astimezone(ny).time() == time(9, 30)
    assert when == next_run("daily", time(9, 30), None, ny, datetime.now(UTC))

    # Fire the job now instead of waiting for 09:30 in New York.
    n = len(dave.messages)
    await queued[0].run(h.app)
    await h.emu.wait_for(lambda: len(dave.messages) > n, timeout=5)
    msg = dave.messages[-1]
    assert msg.file is not None and "Summary · 1d · testnet" in (msg.content or "")
    # The run re-registered itself for the next local 09:30, one job only.
    again = h.app.job_queue.get_jobs_by_name(f"summary:{sched.id}")
    assert len([j for j in again if not j.removed]) >= 1
    # A restart registers stored schedules again (JobQueue jobs live in memory).
    await h.restart()
    # What post_init does in production (the sandbox runner does not call it yet).
    live_svc = svc(h)
    assert await jobs.start(h.app, live_svc.trading, live_svc.notifier, live_svc.schedules) == 1
    assert h.app.job_queue.get_jobs_by_name(f"summary:{sched.id}")

    await dave.send("/summary off")
    assert "off" in dave.last_text
    async with svc(h).db.session() as s:
        assert (await s.get(Schedule, sched.id)).enabled is False  # type: ignore[union-attr]
    assert not [j for j in h.app.job_queue.get_jobs_by_name(f"summary:{sched.id}")
                if not j.removed]


@pytest.mark.parametrize("text", ["/summary weekly 09:00", "/summary daily 25:00"])
async def test_summary_bad_input_schedules_nothing(h: Harness, text: str) -> None:
    erin = h.person("Erin")
    await erin.send("/start")
    await erin.send(text)
    async with svc(h).db.session() as s:
        assert (await s.exec(select(Schedule))).all() == []


async def test_tz_change_moves_the_registered_summary_to_the_new_zone(h: Harness) -> None:
    from zoneinfo import ZoneInfo

    fay = h.person("Fay")
    await fay.send("/start")
    await fay.send("/tz America/New_York")
    await fay.send("/summary daily 09:30")
    async with svc(h).db.session() as s:
        sched = (await s.exec(select(Schedule).where(Schedule.user_id == fay.id))).one()

    def live_jobs() -> list:  # type: ignore[type-arg]
        return [j for j in h.app.job_queue.get_jobs_by_name(f"summary:{sched.id}")
                if not j.removed]

    assert live_jobs()[0].next_t.astimezone(ZoneInfo("America/New_York")).time() == time(9, 30)
    await fay.send("/tz Asia/Tokyo")
    queued = live_jobs()
    assert len(queued) == 1, queued
    tokyo = ZoneInfo("Asia/Tokyo")
    # 09:30 in Tokyo, not 09:30 New York time seen from Tokyo (22:30 or 23:30).
    assert queued[0].next_t.astimezone(tokyo).time() == time(9, 30)
    assert queued[0].next_t == next_run("daily", time(9, 30), None, tokyo, datetime.now(UTC))


async def test_a_summary_without_an_account_says_why_and_stays_scheduled(h: Harness) -> None:
    gus = h.person("Gus")
    await gus.send("/start")
    await gus.send("/summary weekly monday 08:00")
    assert "weekly on Monday at 08:00" in gus.last_text, gus.transcript
    async with svc(h).db.session() as s:
        sched = (await s.exec(select(Schedule).where(Schedule.user_id == gus.id))).one()
    queued = h.app.job_queue.get_jobs_by_name(f"summary:{sched.id}")
    n = len(gus.messages)
    await queued[0].run(h.app)
    await h.emu.wait_for(lambda: len(gus.messages) > n, timeout=5)
    assert "could not be made" in gus.last_text and "/connect" in gus.last_text
    assert [j for j in h.app.job_queue.get_jobs_by_name(f"summary:{sched.id}")
            if not j.removed]


async def test_price_is_fresh_not_the_minute_old_instrument_cache(h: Harness) -> None:
    from decimal import Decimal

    engine = h.sim.engine
    start = engine.instrument("XBTUSD").mark
    try:
        engine.set_spread("XBTUSD", Decimal(0))
        engine.set_mark("XBTUSD", Decimal(60000))
        alice = h.person("Alice")
        await alice.send("/price btc")
        assert "XBTUSD 60,000.0" in alice.last_text and "24h" in alice.last_text
        engine.set_mark("XBTUSD", Decimal(61000))
        hub = h.svc.market_hub
        assert hub is not None
        for _ in range(500):  # the socket's update, not an emulator event: poll briefly
            live = hub.instrument("mainnet", "XBTUSD")
            if live is not None and live.last_price == Decimal(61000):
                break
            await asyncio.sleep(0.01)
        await alice.send("/price btc")
        assert "XBTUSD 61,000.0" in alice.last_text
        assert "24h —" not in alice.last_text  # the reference price came with the row
    finally:
        engine.set_mark("XBTUSD", start)
