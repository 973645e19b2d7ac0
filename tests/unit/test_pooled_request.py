"""Bot API requests queue for a connection in asyncio, never in httpcore's pool (whose
queue costs quadratic CPU: handlers/request.py), and the pool timeout still holds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from telegram.error import TimedOut

from handlers.request import PooledRequest


async def slow_server(release: asyncio.Event, seen: list[int],
                      arrived: asyncio.Condition | None = None) -> tuple[web.AppRunner, str]:
    live = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal live
        live += 1
        seen.append(live)
        if arrived is not None:
            async with arrived:
                arrived.notify_all()
        await release.wait()
        live -= 1
        return web.json_response({"ok": True, "result": True})

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/bot"


def queued_in_httpcore(request: PooledRequest) -> int:
    pools: list[Any] = [lane._client._transport._pool  # type: ignore[attr-defined]
                        for lane in request._lanes]
    return sum(1 for pool in pools for r in pool._requests if r.is_queued())


def connections_open(request: PooledRequest) -> int:
    pools: list[Any] = [lane._client._transport._pool  # type: ignore[attr-defined]
                        for lane in request._lanes]
    return sum(len(pool.connections) for pool in pools)


async def test_requests_wait_outside_httpcore_and_never_exceed_the_pool() -> None:
    release, seen = asyncio.Event(), []
    runner, url = await slow_server(release, seen)
    request = PooledRequest(2, pool_timeout=5.0)
    await request.initialize()
    try:
        calls = [asyncio.create_task(request.post(f"{url}/sendMessage")) for _ in range(10)]
        for _ in range(50):
            await asyncio.sleep(0.01)
            assert queued_in_httpcore(request) == 0
        assert max(seen) == 2
        release.set()
        assert await asyncio.gather(*calls) == [True] * 10
    finally:
        await request.shutdown()
        await runner.cleanup()


async def test_a_request_that_waits_past_the_pool_timeout_is_not_sent() -> None:
    release, seen = asyncio.Event(), []
    runner, url = await slow_server(release, seen)
    request = PooledRequest(1, pool_timeout=0.05)
    await request.initialize()
    try:
        first = asyncio.create_task(request.post(f"{url}/sendMessage"))
        await asyncio.sleep(0.05)
        with pytest.raises(TimedOut, match="Pool timeout"):
            await request.post(f"{url}/sendMessage")
        release.set()
        assert await first is True
        assert len(seen) == 1
    finally:
        await request.shutdown()
        await runner.cleanup()


async def test_connections_are_opened_on_demand_and_each_scan_is_of_one() -> None:
    # One request at a time (a quiet bot) keeps one connection open, not the pool's size:
    # httpcore checks every open connection of its pool on each request.
    release, seen, arrived = asyncio.Event(), [], asyncio.Condition()
    release.set()
    runner, url = await slow_server(release, seen, arrived)
    request = PooledRequest(8, pool_timeout=5.0)
    await request.initialize()
    try:
        for _ in range(5):
            assert await request.post(f"{url}/sendMessage") is True
        assert request.lanes_open == 1 and connections_open(request) == 1
        release.clear()
        calls = [asyncio.create_task(request.post(f"{url}/sendMessage")) for _ in range(3)]
        async with arrived:
            await arrived.wait_for(lambda: len(seen) >= 8)
        assert request.lanes_open == 3
        assert all(len(lane._client._transport._pool.connections) <= 1  # type: ignore
                   for lane in request._lanes)
        release.set()
        assert await asyncio.gather(*calls) == [True] * 3
    finally:
        await request.shutdown()
        await runner.cleanup()


async def test_a_press_answer_never_waits_behind_ordinary_sends() -> None:
    release, seen, arrived = asyncio.Event(), [], asyncio.Condition()
    runner, url = await slow_server(release, seen, arrived)
    request = PooledRequest(3, reserved=1, pool_timeout=5.0)
    await request.initialize()
    try:
        bulk = [asyncio.create_task(request.post(f"{url}/sendMessage")) for _ in range(6)]
        async with arrived:
            await arrived.wait_for(lambda: len(seen) >= 2)
        # Both ordinary slots are taken and four sends wait: the answer still goes out.
        answer = asyncio.create_task(request.post(f"{url}/answerCallbackQuery"))
        async with arrived:
            await arrived.wait_for(lambda: len(seen) >= 3)
        assert max(seen) == 3 and not answer.done()  # on the wire next to the two sends
        # ...while another ordinary send still waits for one of the two ordinary slots.
        with pytest.raises(TimedOut, match="Pool timeout"):
            await request.post(f"{url}/sendMessage", pool_timeout=0.1)
        release.set()
        assert await answer is True
        assert await asyncio.gather(*bulk) == [True] * 6
    finally:
        await request.shutdown()
        await runner.cleanup()


def test_the_reserve_leaves_a_slot_for_ordinary_requests() -> None:
    with pytest.raises(ValueError):
        PooledRequest(2, reserved=2, pool_timeout=1.0)
