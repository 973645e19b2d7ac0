"""`python -m bot run` as a real process: polling, webhook mode, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import TelegramEmulator
from bot.vault import generate_key
from handlers.app import webhook_secret
from tests.procs import ROOT, free_port

TOKEN = "424242:process-test-token-abcdefghijklmnopqrstuvwxyz"


async def run_bot(emu: TelegramEmulator, sim: BitmexSimulator, tmp: Path, username: str,
                  token: str, *, register: bool = True,
                  **extra: str) -> asyncio.subprocess.Process:
    if register:
        emu.add_bot(token, username, "Proc")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TELEGRAM_", "MASTER_", "WEBHOOK_", "BITMEX_", "DATABASE_",
                                "METRICS_"))}
    env.update(
        PYTHONPATH=str(ROOT), TELEGRAM_BOT_TOKEN=token, TELEGRAM_API_URL=emu.url,
        BITMEX_TESTNET_URL=sim.url, BITMEX_MAINNET_URL=sim.url, MASTER_KEY=generate_key(),
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp / 'bot.db'}", LOG_LEVEL="INFO",
    )
    env.update(extra)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=tmp, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def converse(emu: TelegramEmulator, username: str) -> str:
    user = emu.user(first_name="Pat")
    chat = emu.private_chat(user, bot=username)
    # The process needs a moment to boot; the update waits in the emulator meanwhile.
    emu.send_text(user, chat, "/start", bot=username)
    msg = await emu.wait_bot_message(chat, timeout=60, bot=username)
    return msg.content or ""


async def stop(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, err.decode()


async def test_polling_process_answers_and_stops_on_sigterm(
    world_emu: TelegramEmulator, world_sim: BitmexSimulator, tmp_path: Path
) -> None:
    proc = await run_bot(world_emu, world_sim, tmp_path, "ProcPollBot", TOKEN)
    try:
        text = await converse(world_emu, "ProcPollBot")
    finally:
        rc, err = await stop(proc)
        world_emu.allow_loopback_http_webhooks = False
    assert "Hi Pat" in text
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err
    assert TOKEN not in err  # the log filter keeps the token out
    assert (tmp_path / "bot.db").exists()


async def test_webhook_mode_receives_pushed_updates(
    world_emu: TelegramEmulator, world_sim: BitmexSimulator, tmp_path: Path
) -> None:
    port = free_port()
    token = "434343:webhook-test-token-abcdefghijklmnopqrstuvwxyz"
    # Telegram takes https on 443/80/88/8443 only; a loopback http URL is the emulator's
    # named test allowance, switched on here on purpose.
    world_emu.allow_loopback_http_webhooks = True
    proc = await run_bot(world_emu, world_sim, tmp_path, "ProcHookBot", token,
                         WEBHOOK_URL=f"http://127.0.0.1:{port}", WEBHOOK_PORT=str(port))
    try:
        await world_emu.wait_for(lambda: world_emu.bot("ProcHookBot").webhook_url, timeout=60)
        assert world_emu.bot("ProcHookBot").webhook_url == f"http://127.0.0.1:{port}/telegram"
        text = await converse(world_emu, "ProcHookBot")
        # Someone who learns the URL cannot post updates in a user's name.
        forged = {"update_id": 999999, "message": {
            "message_id": 1, "date": 1700000000, "text": "/start",
            "chat": {"id": 777, "type": "private", "first_name": "Eve"},
            "from": {"id": 777, "is_bot": False, "first_name": "Eve"}}}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{port}/telegram", json=forged) as resp:
                forged_status = resp.status
            async with http.post(f"http://127.0.0.1:{port}/telegram", json=forged,
                                 headers={"X-Telegram-Bot-Api-Secret-Token": "guess"}) as resp:
                guessed_status = resp.status
    finally:
        rc, err = await stop(proc)
        world_emu.allow_loopback_http_webhooks = False
    assert "Hi Pat" in text
    assert world_emu.bot("ProcHookBot").webhook_secret == webhook_secret(token)
    assert forged_status == 403 and guessed_status == 403
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err


async def test_sigterm_lets_an_update_in_flight_finish(
    world_emu: TelegramEmulator, world_sim: BitmexSimulator, tmp_path: Path
) -> None:
    token = "454545:inflight-test-token-abcdefghijklmnopqrstuvwxyz"
    name = "ProcInflightBot"
    proc = await run_bot(world_emu, world_sim, tmp_path, name, token)
    user = world_emu.user(first_name="Quinn")
    chat = world_emu.private_chat(user, bot=name)
    key, secret = world_sim.add_account()
    try:
        world_emu.send_text(user, chat, f"/connect testnet {key} {secret}", bot=name)
        await world_emu.wait_for(
            lambda: any("Connected" in (m.content or "")
                        for m in world_emu.bot_messages(chat, bot=name)), timeout=60)
        world_sim.faults.latency = 1.5  # the exchange is slow: /balance is in flight a while
        world_emu.send_text(user, chat, "/balance", bot=name)
        # Once the bot has taken the update (confirmed it), stop the process.
        await world_emu.wait_for(lambda: not world_emu.pending_updates(name), timeout=30)
        await asyncio.sleep(0.3)
        rc, err = await stop(proc)
    finally:
        world_sim.faults.latency = 0.0
        if proc.returncode is None:
            proc.kill()
    assert rc == 0, err[-3000:]
    texts = [m.content or "" for m in world_emu.bot_messages(chat, bot=name)]
    assert any("Balance · testnet" in t for t in texts), texts



async def test_a_wrong_token_or_no_telegram_is_explained_not_a_traceback(
    world_emu: TelegramEmulator, world_sim: BitmexSimulator, tmp_path: Path
) -> None:
    token = "464646:revoked-test-token-abcdefghijklmnopqrstuvwxyz"
    proc = await run_bot(world_emu, world_sim, tmp_path, "ProcRevokedBot", token, register=False)
    _, err_b = await asyncio.wait_for(proc.communicate(), 60)
    err = err_b.decode()
    assert proc.returncode == 2, err[-3000:]
    assert "Telegram refused TELEGRAM_BOT_TOKEN" in err and "@BotFather" in err
    assert "Traceback" not in err and token not in err

    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens: "no internet"
    proc = await run_bot(world_emu, world_sim, tmp_path, "ProcOfflineBot", token,
                         register=False, TELEGRAM_API_URL=nowhere)
    _, err_b = await asyncio.wait_for(proc.communicate(), 60)
    err = err_b.decode()
    assert proc.returncode == 2, err[-3000:]
    assert f"cannot reach Telegram at {nowhere}" in err
    assert "Traceback" not in err and token not in err
