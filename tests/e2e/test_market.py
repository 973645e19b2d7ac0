"""BitMEX as it really lists keys, wallets and instruments (issue #10 S7-S10, C5, C8, C9)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlmodel import select

from bot.db.models import ApiCredential
from bot.exchange.client import BitmexClient
from bot.exchange.types import CURRENCY_SCALE
from bot.matching import Instrument
from tests.e2e.harness import Harness


def _db_bytes(h: Harness) -> bytes:
    """The database and its WAL, as a thief with the files would read them."""
    folder = Path(h.folder)
    return b"".join(p.read_bytes() for p in folder.glob("bot.db*"))


# --- C5: a key is judged by its own row -----------------------------------------------


async def test_own_row_second_with_withdraw_is_refused(h: Harness) -> None:
    alice = h.person("Alice")
    key, secret = h.exchange_account(permissions=("order", "orderCancel", "withdraw"))
    acct = h.sim.account(key)
    # The older key listed first is a harmless read-only one: only the own row counts.
    acct.other_keys = [dict(acct.other_keys[0], permissions=[])]
    await alice.send(f"/connect testnet {key} {secret}")
    assert "withdraw" in alice.last_text.lower() and "won't store" in alice.last_text
    assert await h.svc.accounts.list(alice.id) == []
    assert secret.encode() not in _db_bytes(h) and key.encode() not in _db_bytes(h)


async def test_first_row_with_withdraw_does_not_taint_a_trade_only_key(h: Harness) -> None:
    alice = h.person("Alice")
    key, secret = h.exchange_account()
    # The simulator lists an older withdraw key first, as a live account may.
    assert "withdraw" in h.sim.account(key).other_keys[0]["permissions"]
    await alice.send(f"/connect testnet {key} {secret}")
    assert "Connected" in alice.last_text, alice.transcript
    [acc] = await h.svc.accounts.list(alice.id)
    assert acc.permissions == ("order", "orderCancel")
    assert secret.encode() not in _db_bytes(h)


async def test_own_row_missing_is_refused(h: Harness) -> None:
    alice = h.person("Alice")
    key, secret = h.exchange_account()
    h.sim.account(key).hide_own_key = True
    await alice.send(f"/connect testnet {key} {secret}")
    text = alice.last_text
    assert "did not show this key's own details" in text and "Nothing was stored" in text
    assert "could not reach" not in text.lower()
    assert await h.svc.accounts.list(alice.id) == []
    assert secret.encode() not in _db_bytes(h)


async def test_empty_key_list_is_a_clear_refusal(h: Harness) -> None:
    alice = h.person("Alice")
    key, secret = h.exchange_account()
    acct = h.sim.account(key)
    acct.hide_own_key, acct.other_keys = True, []
    await alice.send(f"/connect testnet {key} {secret}")
    assert "listed no API keys" in alice.last_text
    assert "could not reach" not in alice.last_text.lower()
    assert await h.svc.accounts.list(alice.id) == []


async def test_own_row_without_enabled_is_refused(h: Harness) -> None:
    alice = h.person("Alice")
    key, secret = h.exchange_account()
    acct = h.sim.account(key)
    acct.hide_own_key = True
    own = {"id": key, "name": "api", "nonce": 0, "cidr": "", "cidrs": [],
           "permissions": ["order"], "userId": acct.id}  # no "enabled"
    acct.other_keys.append(own)
    await alice.send(f"/connect testnet {key} {secret}")
    assert "does not report this key as enabled" in alice.last_text
    assert await h.svc.accounts.list(alice.id) == []


async def test_accounts_show_ip_binding_and_warn_unbound_mainnet(h: Harness) -> None:
    alice = h.person("Alice")
    key, secret = h.exchange_account()
    await alice.send(f"/connect mainnet {key} {secret}")
    assert "not bound to an IP address" in alice.last_text
    assert "manipulative trades" in alice.last_text
    await alice.send("/accounts")
    assert "any IP" in alice.last_text and "manipulative trades" in alice.last_text

    bound, bound_secret = h.exchange_account()
    h.sim.account(bound).cidrs = ["203.0.113.7/32"]
    await alice.send(f"/connect testnet {bound} {bound_secret}")
    await alice.send("/accounts")
    lines = alice.last_text.splitlines()
    testnet = next(line for line in lines if "testnet" in line)
    assert "IP 203.0.113.7/32" in testnet
    # The warning is about the mainnet key only, and said once.
    assert alice.last_text.count("manipulative trades") == 1


async def test_bound_mainnet_key_gets_no_warning(h: Harness) -> None:
    alice = h.person("Alice")
    key, secret = h.exchange_account()
    h.sim.account(key).cidrs = ["198.51.100.0/24"]
    await alice.send(f"/connect mainnet {key} {secret}")
    assert "Connected" in alice.last_text and "manipulative" not in alice.last_text
    await alice.send("/accounts")
    assert "IP 198.51.100.0/24" in alice.last_text and "manipulative" not in alice.last_text


# --- S7 / C9: real specs, and only what the bot can trade -------------------------------


async def test_solusdt_sized_by_its_live_spec(h: Harness) -> None:
    h.sim.engine.set_spread("SOLUSDT", Decimal(0))
    h.sim.engine.set_mark("SOLUSDT", Decimal(150))
    alice, key = await h.connected("Alice")
    # 1 contract = 0.0001 SOL (underlyingToPositionMultiplier 10000), lot 100.
    await alice.send("/buy 1sol solusdt")
    assert alice.last_text.startswith("BUY 10,000 SOLUSDT · Market"), alice.last_text
    # $150 at 150 USDT = 1 SOL; $100.50 is 6,700 contracts, not rounded up past the lot.
    await alice.send("/buy $100.5 solusdt")
    assert alice.last_text.startswith("BUY 6,700 SOLUSDT"), alice.last_text
    await alice.send("/buy 150 solusdt")  # contracts, rounded down to the lot of 100
    assert alice.last_text.startswith("BUY 100 SOLUSDT"), alice.last_text
    await alice.send("/buy 1sol solusdt")
    card = alice.find_button("✅ Confirm")
    await alice.press("✅ Confirm", card)
    rows = {r["symbol"]: r for r in h.sim.engine.position_rows(h.sim.account(key).id)}
    assert rows["SOLUSDT"]["currentQty"] == 10000
    assert rows["SOLUSDT"]["homeNotional"] == 1  # exactly one SOL


async def test_prediction_market_and_spot_pair_refused_with_a_reason(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/buy 10 PXBT150KZ26")
    assert alice.last_text.startswith("PXBT150KZ26 is a prediction market"), alice.last_text
    assert alice.last.buttons == []
    await alice.send("/buy 100 xbt_usdt")
    assert alice.last_text.startswith("XBT_USDT is a spot pair"), alice.last_text
    await alice.send("/price XBT_USDT")
    assert "spot pair" in alice.last_text
    # The perpetual of the same pair is still XBTUSDT, spelt any way people write it.
    await alice.send("/buy 100 xbt/usdt")
    assert alice.last_text.startswith("BUY 100 XBTUSDT"), alice.last_text
    assert h.sim.engine.order_rows(h.sim.account(key).id) == []


async def test_expired_future_refused_with_a_reason(h: Harness) -> None:
    engine = h.sim.engine
    symbol = f"XBTH{len(engine.instruments) + 10}"
    future = Instrument(
        symbol, "XBT", "USD", "XBt", True, False, Decimal(-100000000), 100, Decimal("0.5"),
        10000000, Decimal("0.01"), Decimal("0.005"), Decimal(60000), typ="FFCCSX",
        funding_rate=Decimal(0), expires_in=timedelta(seconds=30),
    )
    engine.add_instrument(future)
    alice, key = await h.connected("Alice")
    await alice.send(f"/buy 100 {symbol.lower()}")
    assert alice.last_text.startswith(f"BUY 100 {symbol}"), alice.last_text
    engine.clock.advance(31)  # the future expires during the test
    assert future.state == "Settled"
    # The next command reads the network's instrument list afresh (one list, shared by
    # every client of the network).
    catalog = h.svc.market("testnet").catalog
    catalog.ttl = 0
    try:
        await alice.send(f"/buy 100 {symbol.lower()}")
    finally:
        catalog.ttl = 60.0
    assert alice.last_text.startswith(f"{symbol} is a future that has expired"), alice.last_text
    assert engine.order_rows(h.sim.account(key).id) == []


# --- S8 / C8: any currency at its real scale --------------------------------------------


async def test_bmex_wallet_shows_at_its_real_scale(h: Harness,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The scale must come from GET /wallet/assets, not from an earlier test's visit.
    monkeypatch.delitem(CURRENCY_SCALE, "BMEx", raising=False)
    monkeypatch.setattr(BitmexClient, "_assets_loaded", {})
    alice = h.person("Alice")
    key, secret = h.sim.add_account(bmex=Decimal("12.5"))
    await alice.send(f"/connect testnet {key} {secret}")
    await alice.send("/balance")
    text = alice.last_text
    assert "wallet 12.5000 BMEX" in text, text
    assert "12500000" not in text.replace(",", "")


async def test_empty_bmex_wallet_is_not_listed(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    await alice.send("/balance")
    assert "XBT" in alice.last_text and "USDT" in alice.last_text
    assert "BMEX" not in alice.last_text


async def test_unknown_currency_is_shown_in_raw_units(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    h.sim.account(key).wallet["FOOx"] = 1234567  # a currency /wallet/assets does not list
    await alice.send("/balance")
    assert "wallet 1,234,567 FOOx (raw units)" in alice.last_text, alice.last_text


async def test_xbt_settled_linear_perpetual_is_sized_in_xbt(h: Harness) -> None:
    engine = h.sim.engine
    engine.set_spread("ETHXBT", Decimal(0))
    engine.set_mark("ETHXBT", Decimal("0.05"))
    engine.set_spread("XBTUSD", Decimal(0))
    engine.set_mark("XBTUSD", Decimal(60000))
    alice, _ = await h.connected("Alice")
    # 1 contract = 0.01 ETH (underlyingToPositionMultiplier 100).
    await alice.send("/buy 1eth ethxbt")
    assert alice.last_text.startswith("BUY 100 ETHXBT · Market"), alice.last_text
    # $300 at XBT 60,000 is 0.005 XBT; a contract is 0.01 ETH * 0.05 = 0.0005 XBT.
    await alice.send("/buy $300 ethxbt")
    assert alice.last_text.startswith("BUY 10 ETHXBT"), alice.last_text
    assert "XBT" in alice.last_text.splitlines()[1]


async def test_key_stored_before_the_binding_was_read_says_so(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    async with h.svc.db.session() as s:
        row = (await s.exec(select(ApiCredential).where(
            ApiCredential.user_id == alice.id))).one()
        row.ip_binding = None  # as migration 0009 leaves keys verified before it
        s.add(row)
        await s.commit()
    await alice.send("/accounts")
    assert "IP binding not checked" in alice.last_text
