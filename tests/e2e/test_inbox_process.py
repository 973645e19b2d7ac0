"""A real `python -m bot run` killed with SIGKILL while an update it already confirmed to
Telegram waits behind its chat's slow one: after the restart that update is handled, once
(bot/inbox.py, the update inbox).

With polling, the next getUpdates confirms a batch as soon as PTB has queued it, and a
chat's updates run one after the other: an /alert behind a /balance that waits on
BitMEX is confirmed long before it is handled. Without the inbox nothing remembers it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import TelegramEmulator
from bot.vault import generate_key
from tests.dbs import server_url, test_database_url
from tests.e2e.conftest import E2E_TIME_SCALE
from tests.procs import Chatter, Instance, bot_env, logs, until

SYM = "XBTUSD"
# PostgreSQL runs the lease: a killed leader's lease must run out before the restart leads.
LEASE = {"LEADER_LEASE_SECONDS": "2", "LEADER_RENEW_SECONDS": "0.3",
         "LEADER_STEP_DOWN_SECONDS": "1.5"}
SLOW = 60.0  # seconds BitMEX takes to answer /balance: far longer than the test


@pytest.fixture
def calm_exchange(world_sim: BitmexSimulator) -> Any:
    world_sim.faults.clear()
    world_sim.reset_rate_limits()
    yield
    world_sim.faults.clear()


async def test_a_command_confirmed_to_telegram_but_not_yet_handled_survives_sigkill(
        world_emu: TelegramEmulator, world_sim: BitmexSimulator, tmp_path: Path,
        calm_exchange: None) -> None:
    emu, sim, engine = world_emu, world_sim, world_sim.engine
    token, name = "515151:inbox-kill-token-abcdefghijklmnopqrstuvwxyz", "InboxKillBot"
    emu.add_bot(token, name, "Inbox")
    master = generate_key()
    url = test_database_url(tmp_path)
    env = bot_env(emu, sim, token, url, master, TELEGRAM_TIME_SCALE=str(E2E_TIME_SCALE),
                  **(LEASE if server_url() else {}))
    bot = Instance("bot", env, tmp_path / "bot")
    user = emu.user(first_name="Ines")
    ines = Chatter(emu, name, user, emu.private_chat(user, bot=name))
    key, secret = sim.add_account()
    try:
        await bot.start()
        ines.send(f"/connect testnet {key} {secret}")
        await ines.wait("Connected", timeout=60)
        p0 = engine.instrument(SYM).mark

        # BitMEX turns slow: /balance waits on it, and the next command waits behind it
        # (one chat's updates run in order).
        sim.faults.latency = SLOW
        ines.send("/balance")
        alert = ines.send(f"/alert xbtusd above {p0 + 5000} inbox")["update_id"]
        # The bot fetched the command and its next getUpdates confirmed it: Telegram has
        # forgotten it, and the bot has not handled it (BitMEX is still silent).
        await until(lambda: all(u["update_id"] != alert for u in emu.pending_updates(name)),
                    20, "the command confirmed by the bot's next getUpdates")
        assert ines.count("Alert set") == 0
        bot.kill()
        await bot.proc.wait()  # type: ignore[union-attr]
        sim.faults.latency = 0.0

        await bot.start()
        # Handled in order in one chat: once /help is answered, the command before it was.
        ines.send("/help")
        await ines.wait("/price", timeout=60)
        assert ines.count("Alert set") == 1, ines.transcript()
        # /balance had started when the bot died: it is not run again (it might have
        # been a trade), and the command is not handled twice.
        assert ines.count("Balance · testnet") == 0, ines.transcript()
        ines.send("/alerts")
        await ines.wait("inbox", n=2)
        assert [t for t in ines.texts() if "inbox" in t and "above" in t][-1].count(
            "inbox") == 1, ines.transcript()
        assert await bot.stop() == 0
    except AssertionError as e:
        raise AssertionError(f"{e}\n{logs(bot)}") from None
    finally:
        bot.reap()
    assert "Traceback" not in bot.text(), bot.text()[-5000:]
    assert secret not in bot.text()
