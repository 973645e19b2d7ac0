"""The leader lease on a real PostgreSQL server, the SQLite single-instance lock and the
log of handled updates (bot/leader.py). The two-process drills are in tests/e2e/test_failover.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.db.engine import Database
from bot.errors import ConfigError
from bot.leader import Lease, LeaseTimes, UpdateLog, lock_database_file
from tests.dbs import test_database_url
from tests.pg import CutProxy, throwaway_database

FAST = LeaseTimes(lease=1.5, renew=0.2, step_down=0.8)


class Lost:
    """Records when (monotonic) a lease's holder was told it must stop."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.reason = ""

    def __call__(self, reason: str) -> None:  # called from the watchdog thread
        self.at, self.reason = time.monotonic(), reason


async def crash(lease: Lease) -> None:
    """What SIGKILL does to a leader: no more renewals, no release."""
    lease._stop.set()
    if lease._renewer is not None:
        lease._renewer.cancel()
    await lease._drop_connection()


async def test_one_leads_the_other_waits_and_takes_over_when_it_is_released() -> None:
    async with throwaway_database() as url:
        a, b = Lease(url, FAST, on_lost=Lost()), Lease(url, FAST, on_lost=Lost())
        await a.prepare()
        await a.wait_until_leader()
        waiting = asyncio.create_task(b.wait_until_leader())
        await asyncio.sleep(FAST.lease + 0.5)  # far past a lease: renewals keep it A's
        assert a.is_leader() and not b.is_leader() and not waiting.done()
        released = time.monotonic()
        await a.release()
        await asyncio.wait_for(waiting, FAST.renew * 3)
        assert b.is_leader() and time.monotonic() - released < FAST.renew * 3
        assert b.epoch == 2  # a new holder: the epoch moved on
        await b.release()


async def test_a_crashed_leader_is_replaced_once_its_lease_ran_out_not_before() -> None:
    async with throwaway_database() as url:
        a, b = Lease(url, FAST, on_lost=Lost()), Lease(url, FAST, on_lost=Lost())
        await a.prepare()
        await a.wait_until_leader()
        await crash(a)
        crashed = time.monotonic()
        await asyncio.wait_for(b.wait_until_leader(), FAST.lease + FAST.renew * 3)
        took = time.monotonic() - crashed
        # Not before the old lease ran out (its last renewal was < renew before the crash).
        assert FAST.lease - FAST.renew - 0.1 <= took <= FAST.lease + FAST.renew * 2, took
        await b.release()


async def test_a_leader_cut_off_from_the_database_stops_before_anyone_can_take_over() -> None:
    async with throwaway_database() as url:
        host_port = url.split("@", 1)[1].split("/", 1)[0]
        host, _, port = host_port.partition(":")
        proxy = CutProxy(host, int(port or 5432))
        await proxy.start()
        lost = Lost()
        a = Lease(proxy.url(url), FAST, on_lost=lost)
        b = Lease(url, FAST, on_lost=Lost())
        try:
            await b.prepare()
            await a.wait_until_leader()
            await asyncio.sleep(FAST.renew * 2)
            proxy.cut()
            cut = time.monotonic()
            await asyncio.wait_for(b.wait_until_leader(), FAST.lease + FAST.renew * 4)
            took = time.monotonic()
            assert lost.at is not None, "the cut-off leader never stepped down"
            assert not a.is_leader()
            assert "not renewed" in lost.reason
            # A stopped first, with the margin the lease times promise (lease - step_down),
            # less the renewal period it may have spent before the cut.
            assert lost.at - cut <= FAST.step_down + 0.3
            assert took - lost.at >= FAST.lease - FAST.step_down - FAST.renew - 0.1, (
                took - lost.at)
        finally:
            await b.release()
            await a.release()
            await proxy.close()


async def test_a_leader_whose_backend_is_terminated_keeps_leading_on_a_new_connection() -> None:
    # pg_terminate_backend frees nothing that matters to a lease: the leader reconnects at
    # its next renewal, and a standby still waits.
    async with throwaway_database() as url:
        a, b = Lease(url, FAST, on_lost=Lost()), Lease(url, FAST, on_lost=Lost())
        await a.prepare()
        await a.wait_until_leader()
        waiting = asyncio.create_task(b.wait_until_leader())
        pid = a._conn.get_server_pid()
        from tests.pg import admin

        await admin(url, f"SELECT pg_terminate_backend({pid})")
        await asyncio.sleep(FAST.lease + 0.5)
        assert a.is_leader() and not waiting.done()
        assert a._conn.get_server_pid() != pid
        await a.release()
        await asyncio.wait_for(waiting, 2)
        await b.release()


def test_lease_times_must_leave_the_leader_time_to_stop(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LEADER_STEP_DOWN_SECONDS is invalid"):
        load_settings(_env_file=None, LEADER_LEASE_SECONDS=5, LEADER_STEP_DOWN_SECONDS=6)
    with pytest.raises(ConfigError, match="LEADER_STEP_DOWN_SECONDS is invalid"):
        load_settings(_env_file=None, LEADER_RENEW_SECONDS=3, LEADER_STEP_DOWN_SECONDS=2)
    s = load_settings(_env_file=None)
    assert LeaseTimes.of(s) == LeaseTimes(6.0, 1.0, 4.0)


def test_a_second_instance_on_one_sqlite_file_is_refused_in_one_line(tmp_path: Path) -> None:
    s = load_settings(_env_file=None, DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    fd = lock_database_file(s)
    assert fd is not None
    try:
        with pytest.raises(ConfigError) as e:
            lock_database_file(s)
        text = str(e.value)
        assert "\n" not in text and "another bot is already running" in text
        assert str(tmp_path / "bot.db") in text and "PostgreSQL" in text
    finally:
        import os

        os.close(fd)
    # The lock dies with its holder: the next start takes it.
    fd = lock_database_file(s)
    assert fd is not None


async def test_an_update_delivered_twice_is_claimed_once(tmp_path: Path) -> None:
    db = Database(test_database_url(tmp_path))
    await db.migrate()
    try:
        first, again = UpdateLog(db, 42), UpdateLog(db, 42)  # two instances, one database
        other_bot = UpdateLog(db, 43)
        assert await first.claim(1000) is True
        assert await again.claim(1000) is False
        assert await other_bot.claim(1000) is True  # update ids are per bot
        assert await again.claim(1001) is True
        assert again.skipped == 1
    finally:
        await db.dispose()


async def test_claims_made_together_go_out_in_one_statement(tmp_path: Path) -> None:
    """A getUpdates batch's claims share one INSERT; each caller still learns whether its
    update was the first delivery, a repeat in the same batch included."""
    db = Database(test_database_url(tmp_path))
    await db.migrate()
    try:
        earlier, log = UpdateLog(db, 42), UpdateLog(db, 42)
        assert await earlier.claim(7) is True  # taken by the instance before
        ids = [5, 6, 7, 8, 9, 6]  # 7 was taken; 6 delivered twice (a webhook retry)
        got = await asyncio.gather(*(log.claim(u) for u in ids))
        assert got == [True, True, False, True, True, False]
        assert log.statements == 1 and log.skipped == 2
        # Claims arriving while a statement is out wait for it and then go out together.
        first = asyncio.ensure_future(log.claim(10))
        await asyncio.sleep(0)  # the statement for 10 is being sent
        later = [asyncio.ensure_future(log.claim(u)) for u in (11, 12, 13)]
        assert await first is True and await asyncio.gather(*later) == [True] * 3
        assert log.statements == 3
        assert [await earlier.claim(u) for u in (5, 10, 13, 14)] == [False] * 3 + [True]
    finally:
        await db.dispose()


async def test_a_claim_given_up_before_its_statement_takes_nothing(tmp_path: Path) -> None:
    """An update whose handling was cancelled before its claim went out (the application
    stopping) has no row: the next leader, which receives it again, handles it."""
    db = Database(test_database_url(tmp_path))
    await db.migrate()
    try:
        log = UpdateLog(db, 42)
        gone = asyncio.ensure_future(log.claim(1))
        kept = asyncio.ensure_future(log.claim(2))
        await asyncio.sleep(0)  # both queued, the statement not yet sent
        gone.cancel()
        assert await kept is True
        with pytest.raises(asyncio.CancelledError):
            await gone
        next_leader = UpdateLog(db, 42)
        assert await asyncio.gather(next_leader.claim(1), next_leader.claim(2)) == [True, False]
    finally:
        await db.dispose()


async def test_a_standby_health_server_says_alive_not_ready_and_not_leader() -> None:
    import aiohttp

    from bot.leader import Standby
    from tests.e2e.test_process import free_port

    port = free_port()
    standby = Standby(load_settings(_env_file=None, METRICS_PORT=port))
    await standby.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                body = await resp.json(content_type=None)
                assert resp.status == 503 and body["reason"].startswith("standby")
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                lines = (await resp.text()).splitlines()
                assert "bot_leader 0.0" in lines and "bot_ready 0.0" in lines
    finally:
        await standby.close()
