"""The webhook cannot be flooded: the secret and the size are checked before the body is
read (issue #16, item 11), in-process and against `python -m bot run` in webhook mode."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import TelegramEmulator
from bot.webhook import MAX_BODY, SECRET_HEADER, WebhookListener
from handlers.app import deliver_to, webhook_secret
from tests.e2e.harness import Harness
from tests.e2e.test_process import free_port, run_bot, stop

SECRET = webhook_secret("123:webhook-limits")
HUGE = 95 * 1024 * 1024


def rss_kb(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def post_raw(port: int, *, secret: str | None, declared: int | None,
                   body_size: int, body: bytes | None = None) -> tuple[int | None, int]:
    """POST like a hostile client: headers first, then as much body as the server takes.
    (status or None, body bytes the server let through before closing)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = ["POST /telegram HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if secret is not None:
        head.append(f"{SECRET_HEADER}: {secret}")
    head.append(f"Content-Length: {declared}" if declared is not None
                else "Transfer-Encoding: chunked")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())

    async def status_line() -> int | None:
        # Read while writing: a server that refuses early answers, then resets the
        # connection, and a reset can discard an answer not read yet.
        try:
            line = await asyncio.wait_for(reader.readline(), 30)
            return int(line.split()[1]) if line else None
        except (ConnectionError, TimeoutError, IndexError, ValueError):
            return None

    answer = asyncio.create_task(status_line())
    sent = 0
    chunk = body or b"x" * (1024 * 1024)
    try:
        while sent < body_size and not answer.done():
            piece = chunk[: body_size - sent]
            writer.write(piece if declared is not None
                         else f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await asyncio.wait_for(writer.drain(), 5)
            sent += len(piece)
        if declared is None and not answer.done():
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (ConnectionError, TimeoutError):
        pass
    status = await answer
    writer.close()
    return status, sent


@pytest_asyncio.fixture
async def listener() -> Any:
    got: list[dict[str, Any]] = []

    async def deliver(data: dict[str, Any]) -> None:
        got.append(data)

    lst = WebhookListener("telegram", SECRET, deliver)
    await lst.start("127.0.0.1", 0)
    lst.got = got  # type: ignore[attr-defined]
    try:
        yield lst
    finally:
        await lst.stop()


async def test_huge_unauthenticated_posts_are_refused_unread_and_memory_stays_flat(
        listener: WebhookListener) -> None:
    before = rss_kb()
    results = await asyncio.gather(*(
        post_raw(listener.port, secret=s, declared=HUGE, body_size=HUGE)
        for s in (None, "guess", SECRET[:-1] + "0", "")))
    grown = rss_kb() - before
    assert all(status == 403 for status, _ in results), results
    # The server read none of it: what got through sits in socket buffers, not in the bot.
    assert all(sent < 16 * 1024 * 1024 for _, sent in results), results
    assert grown < 30 * 1024, f"memory grew by {grown} kB"
    assert listener.refused == 4 and listener.got == []  # type: ignore[attr-defined]


async def test_authenticated_posts_over_a_megabyte_are_refused_declared_or_streamed(
        listener: WebhookListener) -> None:
    status, sent = await post_raw(listener.port, secret=SECRET, declared=2 * MAX_BODY,
                                  body_size=2 * MAX_BODY)
    assert status == 413
    status, sent = await post_raw(listener.port, secret=SECRET, declared=None,
                                  body_size=HUGE)  # chunked: no size to judge up front
    assert status == 413 and sent < 16 * 1024 * 1024
    assert listener.got == []  # type: ignore[attr-defined]


async def test_the_secret_is_checked_before_the_body_is_parsed(
        listener: WebhookListener) -> None:
    bad = b"{not json"
    assert (await post_raw(listener.port, secret="wrong", declared=len(bad),
                           body_size=len(bad), body=bad))[0] == 403
    assert (await post_raw(listener.port, secret=SECRET, declared=len(bad),
                           body_size=len(bad), body=bad))[0] == 400
    update = json.dumps({"update_id": 5, "message": {"text": "hi"}}).encode()
    assert (await post_raw(listener.port, secret=SECRET.upper(), declared=len(update),
                           body_size=len(update), body=update))[0] == 403
    assert (await post_raw(listener.port, secret=SECRET, declared=len(update),
                           body_size=len(update), body=update))[0] == 200
    assert listener.got == [{"update_id": 5, "message": {"text": "hi"}}]  # type: ignore[attr-defined]


async def test_an_accepted_post_reaches_the_bot_and_is_answered(h: Harness) -> None:
    lst = WebhookListener("telegram", SECRET, deliver_to(h.app))
    await lst.start("127.0.0.1", 0)
    try:
        alice = h.person("Alice")
        update = json.dumps({"update_id": 10**9, "message": {
            "message_id": 1, "date": 1_800_000_000, "text": "/help",
            "chat": {"id": alice.chat.id, "type": "private", "first_name": "Alice"},
            "from": {"id": alice.id, "is_bot": False, "first_name": "Alice"}}}).encode()
        proc = h.app.update_processor
        done = proc.completed
        status, _ = await post_raw(lst.port, secret=SECRET, declared=len(update),
                                   body_size=len(update), body=update)
        assert status == 200
        await proc.wait_completed(done + 1)
        await h.emu.idle(timeout=10, quiet=0.01)
        assert "Commands" in alice.last_text
    finally:
        await lst.stop()


async def test_the_webhook_process_refuses_four_huge_posts_with_memory_flat(
        world_emu: TelegramEmulator, world_sim: BitmexSimulator, tmp_path: Path) -> None:
    port = free_port()
    token = "464646:webhook-flood-token-abcdefghijklmnopqrstuvwxyz"
    # Telegram takes only https webhooks; the emulator's named test-only allowance lets a
    # loopback http listener stand in for the TLS proxy.
    world_emu.allow_loopback_http_webhooks = True
    proc = await run_bot(world_emu, world_sim, tmp_path, "ProcFloodBot", token,
                         WEBHOOK_URL=f"http://127.0.0.1:{port}", WEBHOOK_PORT=str(port))
    try:
        await world_emu.wait_for(lambda: world_emu.bot("ProcFloodBot").webhook_url, timeout=60)
        before = rss_kb(proc.pid)
        results = await asyncio.gather(*(
            post_raw(port, secret=None, declared=HUGE, body_size=HUGE) for _ in range(4)))
        grown = rss_kb(proc.pid) - before
        user = world_emu.user(first_name="Pat")
        chat = world_emu.private_chat(user, bot="ProcFloodBot")
        world_emu.send_text(user, chat, "/start", bot="ProcFloodBot")
        answer = await world_emu.wait_bot_message(chat, timeout=60, bot="ProcFloodBot")
    finally:
        rc, err = await stop(proc)
        world_emu.allow_loopback_http_webhooks = False
    assert all(sent < 16 * 1024 * 1024 for _, sent in results), results
    assert grown < 30 * 1024, f"the bot's memory grew by {grown} kB"
    assert "Hi Pat" in (answer.content or "")  # and it still serves Telegram
    assert rc == 0, err[-3000:]
    print(f"4 x 95 MB unauthenticated posts: bot RSS {before} kB -> +{grown} kB, "
          f"bytes let through {[s for _, s in results]}")


async def test_a_busy_webhook_port_is_explained_in_one_line(
        world_emu: TelegramEmulator, tmp_path: Path) -> None:
    import socket

    from bot.config import Settings
    from bot.errors import ConfigError
    from bot.vault import generate_key
    from handlers.app import build_application, serve_webhook

    token = "474747:webhook-port-token-abcdefghijklmnopqrstuvwxyz"
    world_emu.add_bot(token, "PortBusyBot", "Proc")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = Settings(_env_file=None, TELEGRAM_BOT_TOKEN=token,
                            TELEGRAM_API_URL=world_emu.url, MASTER_KEY=generate_key(),
                            DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
                            WEBHOOK_URL=f"http://127.0.0.1:{port}", WEBHOOK_PORT=port)
        app = build_application(settings, None)
        with pytest.raises(ConfigError, match=f"WEBHOOK_PORT {port}"):
            await serve_webhook(app, settings, host="127.0.0.1")
    assert not app.running


async def test_an_unreadable_update_is_dropped_not_retried_forever(
        h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    lst = WebhookListener("telegram", SECRET, deliver_to(h.app))
    await lst.start("127.0.0.1", 0)
    try:
        odd = json.dumps({"update_id": 7, "message": {"date": "soon", "chat": 5,
                                                      "text": "my secret words"}}).encode()
        status, _ = await post_raw(lst.port, secret=SECRET, declared=len(odd),
                                   body_size=len(odd), body=odd)
    finally:
        await lst.stop()
    assert status == 200  # accepted, or Telegram would post it again and again
    assert "dropped webhook update 7" in caplog.text
    assert "secret words" not in caplog.text
