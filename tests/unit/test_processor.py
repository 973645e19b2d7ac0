"""The per-chat update processor: chats run side by side, one chat's updates in order,
and a chat flooding the bot cannot take every slot from the others."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from telegram import Chat, Message, Update

from handlers.processor import PerChatUpdateProcessor


def update(n: int, chat_id: int) -> Update:
    chat = Chat(id=chat_id, type="private")
    return Update(update_id=n, message=Message(message_id=n, date=datetime.now(UTC), chat=chat))


async def test_one_chat_in_order_and_a_flooding_chat_does_not_block_others() -> None:
    proc = PerChatUpdateProcessor(max_concurrent_updates=4)
    release = asyncio.Event()
    order: list[int] = []

    async def slow(n: int) -> None:
        await release.wait()
        order.append(n)

    async def quick() -> None:
        order.append(-1)

    # Chat 1 floods: ten updates, far more than the four slots, all stuck behind the first.
    flood = [asyncio.create_task(proc.process_update(update(n, 1), slow(n))) for n in range(10)]
    await asyncio.sleep(0)
    other = asyncio.create_task(proc.process_update(update(99, 2), quick()))
    await asyncio.wait_for(other, 1)  # answered while chat 1 is still stuck
    assert order == [-1]
    release.set()
    await asyncio.wait_for(asyncio.gather(*flood), 1)
    assert order[1:] == list(range(10))
    assert proc.completed == 11
    assert not proc._locks  # idle chats are forgotten


async def test_slots_still_bound_concurrency_across_chats() -> None:
    proc = PerChatUpdateProcessor(max_concurrent_updates=2)
    running = 0
    peak = 0

    async def work() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    await asyncio.gather(*(proc.process_update(update(n, n), work()) for n in range(8)))
    assert peak == 2


async def test_reordering_admits_updates_by_id_and_gives_up_on_a_lost_one() -> None:
    proc = PerChatUpdateProcessor(8, reorder_window=0.2)
    order: list[int] = []

    async def record(n: int) -> None:
        order.append(n)

    def go(n: int) -> asyncio.Task[None]:
        return asyncio.create_task(proc.process_update(update(n, 1), record(n)))

    # Webhook deliveries arrive as 12, 10, 11: the chat still sees 10, 11, 12.
    first = [go(12), go(10), go(11)]
    await asyncio.wait_for(asyncio.gather(*first), 2)
    assert order == [10, 11, 12]
    # 13 is lost on the way: 15 and 14 wait for it no longer than the window, in order.
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(asyncio.gather(go(15), go(14)), 2)
    assert order == [10, 11, 12, 14, 15]
    assert 0.15 < loop.time() - started < 1.0
    # Once the gap is given up, 13 arriving late still runs (rather than never).
    await asyncio.wait_for(go(13), 1)
    assert order[-1] == 13 and proc.completed == 6
