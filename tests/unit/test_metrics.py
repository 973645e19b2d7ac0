"""The metrics' own rules: settings, readiness answers, counting at the choke points."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from telegram.error import RetryAfter

from bot.config import load_settings
from bot.errors import ConfigError, Overloaded, RateLimited
from bot.exchange.client import BitmexClient, RetryPolicy
from bot.metrics import Metrics, Readiness, StreamState, error_kind
from bot.sandbox.bitmex.server import BitmexSimulator
from handlers.ratelimit import ChatRateLimiter

ROOT = Path(__file__).resolve().parents[2]


def value(m: Metrics, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    raise AssertionError(f"no sample {name} {labels}")


@pytest.mark.parametrize("port", ["0", "65536", "-1", "eighty", "80.5"])
def test_a_bad_metrics_port_is_one_clear_line(port: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_PORT", port)
    with pytest.raises(ConfigError) as e:
        load_settings(_env_file=None)
    assert str(e.value).startswith("METRICS_PORT is invalid: expected a TCP port number")


@pytest.mark.parametrize("host", ["127.0.0.1; rm", "a b", "http://x/"])
def test_a_bad_metrics_host_is_refused(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_HOST", host)
    with pytest.raises(ConfigError, match="METRICS_HOST is invalid"):
        load_settings(_env_file=None)


def test_metrics_are_off_by_default_and_local_when_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METRICS_PORT", raising=False)
    monkeypatch.delenv("METRICS_HOST", raising=False)
    s = load_settings(_env_file=None)
    assert s.METRICS_PORT is None and s.METRICS_HOST == "127.0.0.1"
    monkeypatch.setenv("METRICS_PORT", "")  # the .env.example line left empty
    assert load_settings(_env_file=None).METRICS_PORT is None
    monkeypatch.setenv("METRICS_HOST", "")
    assert load_settings(_env_file=None).METRICS_HOST == "127.0.0.1"
    monkeypatch.setenv("METRICS_PORT", " 9464 ")
    monkeypatch.setenv("METRICS_HOST", "0.0.0.0")
    s = load_settings(_env_file=None)
    assert (s.METRICS_PORT, s.METRICS_HOST) == (9464, "0.0.0.0")


def test_readiness_says_why_not() -> None:
    streams = [StreamState("market-mainnet", True), StreamState("market-testnet", True)]
    r = Readiness(streams=lambda: streams)
    assert r.check() == (False, {"ready": False, "reason": "starting", "leader": True,
                                 "streams": {"market-mainnet": "up", "market-testnet": "up"}})
    r.started = True
    assert r.check()[0] is True
    streams[1] = StreamState("market-testnet", False)
    ready, body = r.check()
    assert not ready and body["reason"] == "market stream down: market-testnet"
    streams[1] = StreamState("market-testnet", True)
    leading = [True]
    r.leader = lambda: leading[0]  # where a leader election plugs in
    leading[0] = False
    ready, body = r.check()
    assert not ready and body["reason"].startswith("standby") and body["leader"] is False
    leading[0] = True
    r.stopping = True
    assert r.check()[1]["reason"] == "stopping"


def test_two_bots_in_one_process_keep_their_own_counts() -> None:
    a, b = Metrics(), Metrics()  # a shared default registry would refuse the second
    a.update_handled("message", 0.2)
    a.update_handled("message", 0.3)
    b.update_handled("callback_query", 0.1)
    assert value(a, "bot_updates_handled_total", kind="message") == 2
    assert value(a, "bot_reply_latency_seconds_count") == 2
    assert value(b, "bot_reply_latency_seconds_count") == 1
    assert value(b, "bot_leader") == 1


def test_exchange_errors_are_labelled_by_kind_and_429s_counted_apart() -> None:
    m = Metrics()
    m.exchange_error(RateLimited("slow down", retry_after=1.0, status=429))
    m.exchange_error(Overloaded("busy", status=503))
    assert error_kind(RateLimited("x", retry_after=1.0)) == "rate_limited"
    assert value(m, "bot_exchange_errors_total", kind="rate_limited") == 1
    assert value(m, "bot_exchange_errors_total", kind="overloaded") == 1
    assert value(m, "bot_exchange_rate_limited_total") == 1


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_telegram_429s_are_counted_even_when_retried() -> None:
    m = Metrics()
    limiter = ChatRateLimiter(max_retries=2)
    limiter.metrics = m
    await limiter.initialize()
    calls = 0

    async def send(**_: Any) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RetryAfter(timedelta(0))
        return True

    assert await limiter.process_request(send, (), {}, "sendMessage",
                                         {"chat_id": 1}, None) is True
    assert calls == 2
    assert value(m, "bot_telegram_rate_limited_total") == 1
    await limiter.shutdown()


@pytest.fixture
async def sim() -> AsyncIterator[BitmexSimulator]:
    simulator = BitmexSimulator()
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


async def test_the_client_reports_every_failed_attempt(sim: BitmexSimulator) -> None:
    m = Metrics()
    waited: list[float] = []

    async def no_wait(seconds: float) -> None:
        waited.append(seconds)

    async with aiohttp.ClientSession() as http:
        key, secret = sim.add_account()
        client = BitmexClient(sim.url, key, secret, session=http, on_error=m.exchange_error,
                              retry=RetryPolicy(base_delay=0.01, max_delay=0.02,
                                                overload_delay=0.01))
        client.sleep = no_wait
        sim.faults.fail_next(1, status=429, route="position", method="GET")
        sim.faults.fail_next(1, status=503, route="position", method="GET")
        assert await client.positions() == []  # both waited out, the third attempt answers
    assert waited and waited[0] == 1.0  # the 429's Retry-After
    assert value(m, "bot_exchange_rate_limited_total") == 1
    assert value(m, "bot_exchange_errors_total", kind="rate_limited") == 1
    assert value(m, "bot_exchange_errors_total", kind="overloaded") == 1


def test_the_metrics_and_services_do_not_pull_in_telegram() -> None:
    code = ("import sys, bot.metrics, bot.services; "
            "sys.exit(1 if any(m == 'telegram' or m.startswith('telegram.') "
            "for m in sys.modules) else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_the_metrics_port_cannot_be_the_webhook_port() -> None:
    from bot.__main__ import cmd_run
    from bot.config import Settings
    from bot.vault import generate_key

    settings = Settings(_env_file=None, TELEGRAM_BOT_TOKEN="1:abcdefghijklmnop",
                        TELEGRAM_API_URL="http://127.0.0.1:9",  # never the internet
                        MASTER_KEY=generate_key(), WEBHOOK_URL="https://bot.example.com",
                        WEBHOOK_PORT=8443, METRICS_PORT=8443)
    with pytest.raises(ConfigError, match="METRICS_PORT and WEBHOOK_PORT are both 8443"):
        cmd_run(settings, sandbox_if_no_token=False)
