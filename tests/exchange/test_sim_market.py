"""The simulator's instruments, wallets and keys as the live API has them (issue #10 S7-S10)."""

from __future__ import annotations

import json
import pickle
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import aiohttp
import pytest
import pytest_asyncio

from bot.exchange.client import BitmexClient
from bot.matching import Clock, Engine, EngineError
from bot.sandbox.bitmex import BitmexSimulator

START = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def engine() -> Engine:
    return Engine(Clock(START))


def test_live_specs(engine: Engine) -> None:
    rows = {i.symbol: engine.instrument_row(i) for i in engine.instruments.values()}
    spec = {s: (r["lotSize"], r["tickSize"], r["multiplier"]) for s, r in rows.items()}
    assert spec["XBTUSD"] == (100, D("0.1"), -100000000)
    assert spec["ETHUSD"] == (1, D("0.01"), 100)
    assert rows["ETHUSD"]["isQuanto"] and rows["ETHUSD"]["quoteToSettleMultiplier"] == 1279
    assert spec["XBTUSDT"] == (100, D("0.1"), 1)
    assert spec["ETHUSDT"] == (1000, D("0.01"), 10)
    assert rows["ETHUSDT"]["underlyingToPositionMultiplier"] == 100000
    assert rows["ETHUSDT"]["maxOrderQty"] == 1000000000
    assert spec["SOLUSDT"][:2] == (100, D("0.01"))
    kinds = {s: (r["typ"], r["settlCurrency"]) for s, r in rows.items()}
    assert kinds["ETHXBT"] == ("FFWCSX", "XBt") and not rows["ETHXBT"]["isInverse"]
    assert kinds["XBTZ26"][0] == "FFCCSX" and rows["XBTZ26"]["expiry"]
    assert kinds["TSLAUSDT"][0] == "FFSCSX"
    assert kinds["PXBT150KZ26"][0] == "FFICSX" and rows["PXBT150KZ26"]["maxPrice"] == 100
    assert kinds["XBT_USDT"] == ("IFXXXP", "")
    for row in rows.values():
        assert "indexPrice" not in row and None not in row.values(), row["symbol"]
        # Funding belongs to perpetuals only.
        assert ("fundingRate" in row) == (row["typ"] in ("FFWCSX", "FFSCSX"))


def test_future_settles_at_expiry_and_leaves_the_active_list_a_day_later(
    engine: Engine
) -> None:
    acct = engine.add_account("k", "s", xbt=1)
    engine.set_spread("XBTZ26", D(0))
    engine.set_mark("XBTZ26", 50000)
    engine.place_order(acct.id, {"symbol": "XBTZ26", "side": "Buy", "orderQty": 1000,
                                 "ordType": "Market"})
    resting = engine.place_order(acct.id, {"symbol": "XBTZ26", "side": "Buy",
                                           "orderQty": 100, "price": 40000})
    engine.set_mark("XBTZ26", 55000)
    wallet = acct.wallet["XBt"]
    engine.clock.advance(6 * 3600)  # the future expires during the test
    inst = engine.instruments["XBTZ26"]
    assert inst.state == "Settled"
    assert engine.orders[resting["orderID"]].ord_status == "Canceled"
    [pos] = [p for p in engine.position_rows(acct.id) if p["symbol"] == "XBTZ26"]
    assert pos["currentQty"] == 0
    # 1000 USD long from 50000 to 55000: 1000 * (1/50000 - 1/55000) XBT.
    assert acct.wallet["XBt"] - wallet == round(1000 * (1 / 50000 - 1 / 55000) * 1e8)
    settled = [e for e in engine.execution_rows(acct.id) if e["execType"] == "Settlement"]
    assert len(settled) == 1 and settled[0]["lastPx"] == 55000
    assert "XBTZ26" in {i.symbol for i in engine.active_instruments()}
    with pytest.raises(EngineError, match="not open for trading"):
        engine.place_order(acct.id, {"symbol": "XBTZ26", "side": "Buy", "orderQty": 100,
                                     "ordType": "Market"})
    engine.clock.advance(24 * 3600)
    assert "XBTZ26" not in {i.symbol for i in engine.active_instruments()}


def test_prediction_prices_stay_within_0_to_100_and_spot_is_refused(engine: Engine) -> None:
    acct = engine.add_account("k", "s")
    with pytest.raises(EngineError, match="Invalid price"):
        engine.place_order(acct.id, {"symbol": "PXBT150KZ26", "side": "Buy", "orderQty": 1,
                                     "price": 101})
    engine.place_order(acct.id, {"symbol": "PXBT150KZ26", "side": "Buy", "orderQty": 1,
                                 "price": 40})
    with pytest.raises(EngineError, match="Spot trading"):
        engine.place_order(acct.id, {"symbol": "XBT_USDT", "side": "Buy", "orderQty": 100,
                                     "ordType": "Market"})


def test_every_account_has_a_bmex_wallet(engine: Engine) -> None:
    acct = engine.add_account("k", "s", bmex=D("2.5"))
    rows = {m["currency"]: m for m in engine.margins(acct.id)}
    assert list(rows) == ["XBt", "USDt", "BMEx"]
    assert rows["BMEx"]["walletBalance"] == 2500000  # scale 6


def test_api_keys_list_every_key_own_row_last(engine: Engine) -> None:
    acct = engine.add_account("own-key", "s")
    rows = engine.api_key_rows(acct.id)
    assert [r["id"] == "own-key" for r in rows] == [False, True]
    assert "withdraw" in rows[0]["permissions"] and "secret" not in rows[1]
    acct.cidrs = ["203.0.113.1/32"]
    assert engine.api_key_rows(acct.id)[-1]["cidrs"] == ["203.0.113.1/32"]
    acct.hide_own_key = True
    assert [r["id"] for r in engine.api_key_rows(acct.id)] == [rows[0]["id"]]


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[BitmexSimulator]:
    simulator = BitmexSimulator()
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


async def test_wallet_assets_and_margin_currencies(sim: BitmexSimulator) -> None:
    key, secret = sim.add_account(bmex=1)
    async with aiohttp.ClientSession() as http:
        async with http.get(sim.url + "/api/v1/wallet/assets") as resp:
            assets = {a["currency"]: a["scale"] for a in json.loads(await resp.text())}
        assert assets == {"XBt": 8, "USDt": 6, "BMEx": 6, "USDc": 6, "Gwei": 9}
        client = BitmexClient(sim.url, key, secret, session=http)
        BitmexClient._assets_loaded.pop(client.origin, None)
        margins = {m.currency: m for m in await client.margins()}
        assert margins["BMEx"].show(margins["BMEx"].wallet_balance) == "1 BMEX"
        own = await client.api_key_permissions()
        assert own.key_id == key and not own.can_withdraw and own.enabled


def test_expiry_settles_only_the_future(engine: Engine) -> None:
    before = {s: i.state for s, i in engine.instruments.items()}
    engine.clock.advance(timedelta(hours=7).total_seconds())
    after = {s: i.state for s, i in engine.instruments.items()}
    assert {s for s in before if before[s] != after[s]} == {"XBTZ26"}


def test_snapshot_from_before_the_new_instruments_still_loads(engine: Engine) -> None:
    """Paper accounts are pickled between runs; one saved by the previous version must
    come back with today's instruments added and its own positions untouched."""
    acct = engine.add_account("k", "s")
    engine.set_spread("XBTUSDT", D(0))
    engine.place_order(acct.id, {"symbol": "XBTUSDT", "side": "Buy", "orderQty": 1000,
                                 "ordType": "Market"})
    state = engine.__getstate__()
    for symbol in ("SOLUSDT", "PXBT150KZ26"):  # not listed by the old version
        for table in ("instruments", "_open", "history"):
            state[table] = {k: v for k, v in state[table].items() if k != symbol}
    del acct.__dict__["other_keys"], acct.__dict__["cidrs"]
    restored = Engine.__new__(Engine)
    restored.__setstate__(pickle.loads(pickle.dumps(state)))
    assert {"SOLUSDT", "PXBT150KZ26"} <= set(restored.instruments)
    restored.place_order(acct.id, {"symbol": "SOLUSDT", "side": "Buy", "orderQty": 100,
                                   "ordType": "Market"})
    [pos] = [p for p in restored.position_rows(acct.id) if p["symbol"] == "XBTUSDT"]
    assert pos["currentQty"] == 1000
    assert restored.api_key_rows(acct.id)[-1]["cidrs"] == []
