"""The update inbox (bot/inbox.py) through the real PTB application: each fetched batch is
kept before Telegram hears it confirmed, a batch that cannot be kept is fetched again, the
rows go with the claims, and what a dead process left is handled at the next start, once.

The bots here keep updates as `python -m bot run` does (`keep_updates=True`); SQLite, or
PostgreSQL with TEST_DATABASE_URL. The SIGKILL drill with a real process is in
tests/e2e/test_inbox_process.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.exc import OperationalError
from sqlmodel import col, select

from bot.db.engine import Database
from bot.db.models import HandledUpdate
from bot.inbox import UpdateInbox
from bot.leader import bot_id_of
from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import TelegramEmulator
from bot.vault import Vault
from handlers.app import deliver_to
from tests.e2e.harness import Harness

HELP = "Commands (send /help COMMAND"  # how /help's answer begins


@pytest_asyncio.fixture
async def kept(world_sim: BitmexSimulator, world_emu: TelegramEmulator,
               tmp_path: Path) -> AsyncIterator[Harness]:
    world_sim.faults.clear()
    world_sim.reset_rate_limits()
    harness = Harness(world_sim, world_emu, tmp_path, keep_updates=True)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


def inbox_of(h: Harness) -> UpdateInbox:
    inbox = h.app.bot_data.update_inbox
    assert isinstance(inbox, UpdateInbox)
    return inbox


def database_bytes(folder: Path) -> bytes:
    """The SQLite file, its WAL and its shared memory, as they are on disk."""
    return b"".join(p.read_bytes() for p in sorted(folder.glob("bot.db*")))


def pending_ids(h: Harness) -> list[int]:
    return [int(u["update_id"]) for u in h.emu.pending_updates(h.bot_username)]


async def handled_ids(h: Harness) -> list[int]:
    async with h.svc.db.session() as s:
        rows = (await s.exec(select(col(HandledUpdate.update_id)).where(
            col(HandledUpdate.bot_id) == bot_id_of(h.token)))).all()
    return sorted(int(r) for r in rows)


async def test_a_batch_is_kept_before_telegram_hears_it_confirmed(kept: Harness) -> None:
    h, inbox = kept, inbox_of(kept)
    alice = h.person("Alice")
    store, arrived, go = inbox.store, asyncio.Event(), asyncio.Event()
    seen: list[list[int]] = []

    async def slow_store(updates: Sequence[dict[str, Any]]) -> None:
        seen.append([int(u["update_id"]) for u in updates])
        arrived.set()
        await go.wait()
        await store(updates)

    inbox.store = slow_store  # type: ignore[method-assign]
    h.emu.send_text(alice.user, alice.chat, "/help", bot=h.bot_username)
    update_id = pending_ids(h)[-1]
    try:
        await asyncio.wait_for(arrived.wait(), 10)
        # While the batch is being stored nothing else happens: no next getUpdates
        # confirms it, and no handler runs (however many turns the loop takes meanwhile).
        polls = len(h.emu.calls_to("getUpdates"))
        for _ in range(200):
            await asyncio.sleep(0)
        assert len(h.emu.calls_to("getUpdates")) == polls
        assert seen == [[update_id]]
        assert update_id in pending_ids(h)
        assert not alice.bot_texts
    finally:
        go.set()
    await h.settle()
    assert HELP in alice.last_text  # /help answered
    assert update_id not in pending_ids(h)  # confirmed only after it was kept
    # The claim took the row with it: nothing left to replay.
    assert await inbox.count() == 0
    assert update_id in await handled_ids(h)


async def test_a_batch_that_cannot_be_kept_is_not_confirmed_and_comes_again(
        kept: Harness) -> None:
    h, inbox = kept, inbox_of(kept)
    bob = h.person("Bob")
    store = inbox.store
    batches: list[list[int]] = []

    async def failing_once(updates: Sequence[dict[str, Any]]) -> None:
        batches.append([int(u["update_id"]) for u in updates])
        if len(batches) == 1:  # the database is down for this one
            raise OperationalError("INSERT INTO update_inbox ...", None,
                                   Exception("database is locked"))
        await store(updates)

    inbox.store = failing_once  # type: ignore[method-assign]
    polls_before = len(h.emu.calls_to("getUpdates"))
    await bob.send("/help")
    assert bob.bot_texts and HELP in bob.last_text
    assert len(bob.bot_texts) == 1  # answered once
    [first, again, *_] = batches
    # Telegram sent the same batch again: the failed store let nothing confirm it. The
    # emulator saw no getUpdates past it until the second store.
    assert first == again and len(first) == 1
    fetched = first[0]
    offsets = [int(c.params.get("offset") or 0)
               for c in h.emu.calls_to("getUpdates")[polls_before:]]
    assert len(offsets) >= 2 and all(o <= fetched for o in offsets[:2]), offsets
    assert fetched not in pending_ids(h)  # confirmed once it was kept
    assert await inbox.count() == 0
    assert (await handled_ids(h)).count(fetched) == 1


async def test_what_a_killed_process_kept_is_handled_at_the_next_start_once(
        kept: Harness) -> None:
    """Two updates a dead process had stored but not claimed: one Telegram forgot (it was
    confirmed), one it still holds (the process died before confirming it) and sends again."""
    h = kept
    cleo = h.person("Cleo")
    await cleo.send("/start")
    await h.stop()
    emu, name = h.emu, h.bot_username
    emu.send_text(cleo.user, cleo.chat, "/tz Europe/Berlin", bot=name)
    emu.send_text(cleo.user, cleo.chat, "/help", bot=name)
    tz, help_ = (dict(u) for u in emu.pending_updates(name)[-2:])
    emu.bot(name).updates.remove(next(u for u in emu.pending_updates(name)
                                      if u["update_id"] == tz["update_id"]))
    db = Database(h.settings.DATABASE_URL)
    assert h.settings.master_key is not None
    vault = Vault(h.settings.master_key)
    await UpdateInbox(db, vault, bot_id_of(h.token)).store([tz, help_])
    await db.dispose()

    await h.restart()
    assert h.replayed == 2
    proc = h.app.update_processor
    await proc.wait_completed(3, timeout=10)  # both kept, and /help again from Telegram
    await emu.idle(timeout=5, quiet=0.05)
    texts = cleo.bot_texts
    assert sum("Europe/Berlin" in t for t in texts) == 1, cleo.transcript
    assert sum(HELP in t for t in texts) == 1, cleo.transcript  # /help once
    assert h.app.bot_data.update_log.skipped == 1
    # In the order they were sent: the time zone answered before the help.
    assert [i for i, t in enumerate(texts) if "Europe/Berlin" in t] < [
        i for i, t in enumerate(texts) if HELP in t]
    assert await inbox_of(h).count() == 0
    handled = await handled_ids(h)
    assert tz["update_id"] in handled and help_["update_id"] in handled


async def test_no_secret_of_a_connect_reaches_the_database_file(kept: Harness,
                                                                tmp_path: Path) -> None:
    h = kept
    dana = h.person("Dana")
    key, secret = h.exchange_account()
    await dana.send(f"/connect testnet {key} {secret}")
    assert "Connected" in dana.bot_texts[0]
    assert inbox_of(h).stored >= 1  # it went through the inbox
    assert await inbox_of(h).count() == 0
    if not h.settings.DATABASE_URL.startswith("sqlite"):
        pytest.skip("the database file is PostgreSQL's: tests/test_inbox.py reads its rows")
    assert secret.encode() not in database_bytes(tmp_path)


async def test_a_webhook_update_is_kept_before_telegram_hears_200(kept: Harness) -> None:
    h, inbox = kept, inbox_of(kept)
    erin = h.person("Erin")
    h.emu.send_text(erin.user, erin.chat, "/help", bot=h.bot_username)
    update = dict(h.emu.pending_updates(h.bot_username)[-1])
    h.emu.bot(h.bot_username).updates.clear()  # as if posted to us, not polled
    store = inbox.store
    kept_first: list[bool] = []

    async def store_then_check(updates: Sequence[dict[str, Any]]) -> None:
        await store(updates)
        kept_first.append(await inbox.count() == 1)

    inbox.store = store_then_check  # type: ignore[method-assign]
    await deliver_to(h.app)(update)  # what the listener awaits before its 200
    assert kept_first == [True]
    await h.app.update_processor.wait_completed(1, timeout=10)
    await h.emu.idle(timeout=5, quiet=0.05)
    assert HELP in erin.last_text
    assert await inbox.count() == 0

    async def down(updates: Sequence[dict[str, Any]]) -> None:
        raise OperationalError("INSERT", None, Exception("no database"))

    inbox.store = down  # type: ignore[method-assign]
    with pytest.raises(OperationalError):  # the listener answers 503: Telegram posts again
        await deliver_to(h.app)({**update, "update_id": update["update_id"] + 1})



async def test_the_webhook_answers_503_when_the_update_cannot_be_kept() -> None:
    """Anything but a 2xx and Telegram posts the update again: an update the inbox could
    not keep is never acknowledged."""
    import aiohttp

    from bot.webhook import SECRET_HEADER, WebhookListener

    taken: list[int] = []

    async def deliver(data: dict[str, Any]) -> None:
        if data["update_id"] == 2:
            raise OperationalError("INSERT", None, Exception("no database"))
        taken.append(data["update_id"])

    listener = WebhookListener("telegram", "s3cret", deliver)
    port = await listener.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            codes = []
            for update_id in (1, 2):
                async with http.post(f"http://127.0.0.1:{port}/telegram",
                                     json={"update_id": update_id},
                                     headers={SECRET_HEADER: "s3cret"}) as resp:
                    codes.append(resp.status)
    finally:
        await listener.stop()
    assert codes == [200, 503] and taken == [1]
