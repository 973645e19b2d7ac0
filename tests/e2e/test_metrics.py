"""Health and metrics end to end: what an orchestrator and Prometheus see on METRICS_PORT."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from bot.config import Settings
from bot.sandbox.bitmex import BitmexSimulator, RateLimitConfig
from bot.sandbox.telegram import FloodLimits, TelegramEmulator
from bot.services import build_services
from bot.vault import generate_key
from tests.e2e.harness import Harness
from tests.e2e.test_live import wait_text
from tests.e2e.test_process import converse, free_port, run_bot, stop

SYM = "XBTUSD"


async def get(port: int, path: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}{path}") as resp:
            return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def get_json(port: int, path: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}{path}") as resp:
            return resp.status, await resp.json()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page, keyed by (name, sorted labels)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(v for (n, ls), v in found.items()
               if n == name and set(labels.items()) <= set(ls))


async def until(predicate: Any, timeout: float = 10.0) -> Any:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := await predicate()):
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)
    return value


@pytest_asyncio.fixture
async def mh(world_sim: BitmexSimulator, world_emu: TelegramEmulator,
             tmp_path: Path) -> AsyncIterator[tuple[Harness, int]]:
    """A bot with its metrics server on a free port."""
    world_sim.faults.clear()
    port = free_port()
    h = Harness(world_sim, world_emu, tmp_path, METRICS_PORT=port)
    await h.start()
    try:
        yield h, port
    finally:
        await h.stop()


async def test_metrics_count_a_scripted_session(mh: tuple[Harness, int]) -> None:
    h, port = mh
    alice = h.person("Alice")
    await alice.send("/start")
    await alice.send("/price btc")
    assert "XBTUSD" in alice.last_text, alice.transcript
    key, secret = h.exchange_account()
    await alice.send(f"/connect testnet {key} {secret}")
    assert "Connected" in alice.last_text
    await alice.send("/buy 100 xbtusd")
    h.sim.faults.fail_next(1, status=503)  # BitMEX sheds the first attempt; the retry lands
    await alice.press("✅ Confirm")
    # The card is edited to the outcome; the fill message comes from the private stream,
    # before or after the press's handling ends.
    await wait_text(h, alice, "Order filled")
    assert any("✅ Filled" in t for t in alice.bot_texts), alice.transcript
    await alice.send("/alert xbtusd above 1000000")
    assert "Alert set" in alice.last_text, alice.transcript

    status, ctype, text = await get(port, "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    found = samples(text)
    assert total(found, "bot_updates_handled_total", kind="message") >= 5
    assert total(found, "bot_updates_handled_total", kind="callback_query") == 1
    assert total(found, "bot_reply_latency_seconds_count") >= 6
    assert total(found, "bot_reply_latency_seconds_sum") > 0
    assert total(found, "bot_orders_total", kind="order", outcome="placed") == 1
    assert total(found, "bot_orders_total", outcome="rejected") == 0
    assert total(found, "bot_exchange_errors_total", kind="overloaded") == 1
    assert total(found, "bot_exchange_rate_limited_total") == 0
    assert total(found, "bot_telegram_rate_limited_total") == 0
    assert total(found, "bot_alerts_registered") == 1
    assert total(found, "bot_alerts_fired_total") == 0
    assert total(found, "bot_connected_accounts") == 1
    assert total(found, "bot_leader") == 1
    assert total(found, "bot_delivery_queue_depth") == 0
    assert total(found, "bot_update_errors_total") == 0

    # the alert fires once: counted, and no longer registered
    await h.svc.market_hub.wait_ready("mainnet")
    await h.svc.alerts.on_tick(SYM, Decimal(1000001))
    await h.svc.alerts.drain()
    found = samples((await get(port, "/metrics"))[2])
    assert total(found, "bot_alerts_fired_total") == 1
    assert total(found, "bot_alerts_registered") == 0
    assert total(found, "bot_market_stream_up", stream="market-mainnet") == 1

    status, body = await get_json(port, "/healthz")
    assert status == 200 and body == {"alive": True}
    status, body = await get_json(port, "/readyz")
    assert status == 200 and body["ready"] is True
    assert body["streams"] == {"market-mainnet": "up"}


async def test_readyz_is_503_while_the_market_stream_is_down(
    world_emu: TelegramEmulator, tmp_path: Path
) -> None:
    # An exchange of its own, so it can go away without taking the others' with it.
    sim_port = free_port()
    limits = RateLimitConfig(per_minute=100000, unauthenticated_per_minute=100000)
    sim = BitmexSimulator(rate_limit=limits)
    await sim.start(port=sim_port)
    port = free_port()
    h = Harness(sim, world_emu, tmp_path, METRICS_PORT=port)
    await h.start()
    try:
        status, body = await get_json(port, "/readyz")
        assert status == 200 and body["streams"] == {}  # nothing watched: nothing to wait for
        alice = h.person("Alice")
        await alice.send("/alert xbtusd above 1000000")
        assert "Alert set" in alice.last_text, alice.transcript
        hub = h.svc.market_hub
        assert hub is not None
        await hub.wait_ready("mainnet")
        stream = hub.stream("mainnet")
        stream.backoff_base = stream.backoff_max = 0.05  # reconnect attempts in test time
        assert (await get_json(port, "/readyz"))[0] == 200

        await sim.stop()  # BitMEX is gone: the socket drops and reconnects are refused
        await until(lambda: _status_is(port, 503))
        status, body = await get_json(port, "/readyz")
        assert status == 503 and body["ready"] is False
        assert body["reason"] == "market stream down: market-mainnet"
        assert body["streams"] == {"market-mainnet": "down"}
        found = samples((await get(port, "/metrics"))[2])
        assert total(found, "bot_market_stream_up", stream="market-mainnet") == 0
        assert total(found, "bot_ready") == 0
        assert (await get_json(port, "/healthz"))[0] == 200  # alive all along

        sim = BitmexSimulator(rate_limit=limits)
        await sim.start(port=sim_port)  # back, on the same address
        await until(lambda: _status_is(port, 200))
        assert (await get_json(port, "/readyz"))[1]["streams"] == {"market-mainnet": "up"}
    finally:
        await h.stop()
        await sim.stop()


async def _status_is(port: int, status: int) -> bool:
    return (await get_json(port, "/readyz"))[0] == status


async def test_readyz_is_503_before_the_bot_has_started_and_all_stops_with_it(
    world_sim: BitmexSimulator, world_emu: TelegramEmulator, tmp_path: Path
) -> None:
    port = free_port()
    settings = Settings(_env_file=None, TELEGRAM_BOT_TOKEN="1:abcdefghijklmnop",
                        TELEGRAM_API_URL=world_emu.url, BITMEX_MAINNET_URL=world_sim.url,
                        BITMEX_TESTNET_URL=world_sim.url, MASTER_KEY=generate_key(),
                        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
                        METRICS_PORT=port)
    services = await build_services(settings)
    try:
        assert (await get_json(port, "/healthz"))[0] == 200
        status, body = await get_json(port, "/readyz")
        assert status == 503 and body["reason"] == "starting" and body["ready"] is False
        found = samples((await get(port, "/metrics"))[2])
        assert total(found, "bot_ready") == 0 and total(found, "bot_leader") == 1
        services.readiness.started = True  # what run_forever's post_init does last
        assert (await get_json(port, "/readyz"))[0] == 200
    finally:
        await services.close()
    try:
        await get(port, "/healthz")
    except aiohttp.ClientConnectionError:
        pass
    else:
        raise AssertionError("the metrics server outlived the bot")


async def test_without_metrics_port_nothing_listens(h: Harness) -> None:
    assert h.settings.METRICS_PORT is None
    assert h.svc.metrics_server is None


async def test_a_bot_process_with_metrics_port_answers_health_checks(
    world_emu: TelegramEmulator, world_sim: BitmexSimulator, tmp_path: Path
) -> None:
    port = free_port()
    name = "ProcMetricsBot"
    proc = await run_bot(world_emu, world_sim, tmp_path, name,
                         "474747:metrics-test-token-abcdefghijklmnopqrstuvwxyz",
                         METRICS_PORT=str(port))
    try:
        async def alive() -> bool:
            try:
                return (await get_json(port, "/healthz"))[0] == 200
            except aiohttp.ClientConnectionError:
                return False

        await until(alive, timeout=60)
        text = await converse(world_emu, name)
        await until(lambda: _status_is(port, 200), timeout=30)
        found = samples((await get(port, "/metrics"))[2])
    finally:
        rc, err = await stop(proc)
    assert "Hi Pat" in text
    assert total(found, "bot_updates_handled_total", kind="message") >= 1
    assert total(found, "bot_ready") == 1
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err


async def test_a_metrics_port_in_use_stops_start_up_with_one_line(
    world_emu: TelegramEmulator, world_sim: BitmexSimulator, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        token = "484848:metrics-busy-token-abcdefghijklmnopqrstuvwxyz"
        proc = await run_bot(world_emu, world_sim, tmp_path, "ProcBusyMetricsBot", token,
                             METRICS_PORT=str(port))
        _, err_b = await asyncio.wait_for(proc.communicate(), 60)
    err = err_b.decode()
    assert proc.returncode == 2, err[-3000:]
    assert f"cannot listen on 127.0.0.1:{port} for METRICS_PORT" in err
    assert "Traceback" not in err and token not in err


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_telegram_429s_are_counted_as_telegram_sends_them(
    world_sim: BitmexSimulator, tmp_path: Path
) -> None:
    # Telegram's real per-chat limit (1 a second, a burst of 3), five times faster.
    emu = TelegramEmulator(FloodLimits(time_scale=5.0))
    await emu.start()
    port = free_port()
    h = Harness(world_sim, emu, tmp_path, METRICS_PORT=port)
    await h.start()
    try:
        alice = h.person("Alice")
        # The bot paces a private chat under Telegram's limit, so it rarely meets a 429 by
        # itself; Telegram also throttles below the nominal rate when it chooses to (its
        # limits are not published exactly), which the emulator does on request here.
        emu.refuse_next("sendMessage", "Too Many Requests: retry after 1", times=2,
                        bot=h.bot_username, chat=alice.chat, retry_after=0.2)
        for _ in range(6):  # typed faster than one chat may be answered
            emu.send_text(alice.user, alice.chat, "/help", bot=h.bot_username)
        await h.settle(timeout=30)
        assert len([t for t in alice.bot_texts if t]) == 6  # all answered, after waiting
        refused = emu.count(status=429)
        found = samples((await get(port, "/metrics"))[2])
    finally:
        await h.stop()
        await emu.stop()
    assert refused >= 2
    assert total(found, "bot_telegram_rate_limited_total") == refused
