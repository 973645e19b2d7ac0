"""Settings: every bad value stops start-up with one clear line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError
from bot.vault import generate_key

ROOT = Path(__file__).resolve().parents[2]

BAD = [
    ("TELEGRAM_BOT_TOKEN", "not-a-token", "the token BotFather gave you"),
    ("TELEGRAM_API_URL", "ftp://example", "http(s) URL"),
    ("BITMEX_MAINNET_URL", "bitmex.com", "http(s) URL"),
    ("BITMEX_TESTNET_URL", "://", "http(s) URL"),
    ("DATABASE_URL", "postgresql://x/y", "sqlite+aiosqlite"),
    ("MASTER_KEY", "short", "gen-key"),
    ("MASTER_KEY_OLD", "abc,def", "comma-separated"),
    ("ADMIN_IDS", "12,abc", "Telegram user ids"),
    ("ALLOWED_USER_IDS", "1;2", "Telegram user ids"),
    ("LOG_LEVEL", "LOUD", "DEBUG, INFO"),
    ("WEBHOOK_URL", "nope", "https URL"),
    ("WEBHOOK_URL", "http://bot.example.com/hook", "https URL"),
    ("WEBHOOK_URL", "https://bot.example.com:8080", "port 443, 80, 88 or 8443"),
    ("PORT", "99999", "set by the host"),
    ("WEBHOOK_PORT", "70000", "port number"),
    ("WEBHOOK_PORT", "eighty", "port number"),
    ("MAINNET_CONFIRM_USD", "-5", "positive USD amount"),
]


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME")}
    env.update(extra)
    return env


@pytest.mark.parametrize(("name", "value", "hint"), BAD)
def test_bad_value_gives_one_clear_line(
    name: str, value: str, hint: str, tmp_path: Path
) -> None:
    env = _clean_env(tmp_path, **{name: value})
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "migrate"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert name in lines[0] and hint in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    if name in ("TELEGRAM_BOT_TOKEN", "MASTER_KEY", "MASTER_KEY_OLD"):
        assert value not in lines[0]  # a bad secret is not echoed back


def test_defaults_and_derived_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("BITMEX_TESTNET_URL", "BITMEX_MAINNET_URL", "TELEGRAM_BOT_TOKEN", "MASTER_KEY"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings(_env_file=None)
    assert s.TELEGRAM_API_URL == "https://api.telegram.org"
    assert s.rest_url("testnet") == "https://testnet.bitmex.com/api/v1"
    assert s.ws_url("testnet") == "wss://ws.testnet.bitmex.com/realtime"
    assert s.ws_url("mainnet") == "wss://ws.bitmex.com/realtime"
    assert s.DATABASE_URL == "sqlite+aiosqlite:///./data/bot.db"
    assert s.ALLOWED_USER_IDS == [] and s.token is None


def test_overridden_bitmex_url_keeps_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITMEX_TESTNET_URL", "http://127.0.0.1:8123/")
    monkeypatch.setenv("BITMEX_MAINNET_URL", "https://bitmex.example:9443")
    s = load_settings(_env_file=None)
    assert s.rest_url("testnet") == "http://127.0.0.1:8123/api/v1"
    assert s.ws_url("testnet") == "ws://127.0.0.1:8123/realtime"
    assert s.ws_url("mainnet") == "wss://bitmex.example:9443/realtime"


def test_lists_and_keys_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    key, old = generate_key(), generate_key()
    monkeypatch.setenv("ADMIN_IDS", "1, 22 ,333")
    monkeypatch.setenv("ALLOWED_USER_IDS", "")
    monkeypatch.setenv("MASTER_KEY", key)
    monkeypatch.setenv("MASTER_KEY_OLD", f"{old}")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:" + "A" * 35)
    s = load_settings(_env_file=None)
    assert s.ADMIN_IDS == [1, 22, 333]
    assert s.ALLOWED_USER_IDS == []
    assert s.master_key is not None and len(s.master_key) == 32
    assert len(s.old_master_keys) == 1
    assert s.token == "123456:" + "A" * 35
    assert "AAAA" not in repr(s)  # secrets stay hidden in reprs


@pytest.mark.parametrize("url", ["https://bot.example.com", "https://bot.example.com:8443/x",
                                 "https://bot.example.com:88", "http://127.0.0.1:5000"])
def test_webhook_urls_telegram_accepts(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORT", raising=False)
    s = load_settings(_env_file=None, WEBHOOK_URL=url, WEBHOOK_PORT=8443)
    assert s.WEBHOOK_URL == url.rstrip("/") and s.listen_port == 8443


def test_listener_uses_the_hosts_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "5123")
    s = load_settings(_env_file=None, WEBHOOK_URL="https://bot.example.com")
    assert s.listen_port == 5123
    monkeypatch.setenv("PORT", "")
    assert load_settings(_env_file=None).listen_port == 8443


def test_in_process_error_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_PORT", "0")
    with pytest.raises(ConfigError, match="WEBHOOK_PORT"):
        load_settings(_env_file=None)


def test_run_without_token_says_how_to_get_one(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        cwd=tmp_path,
        env={**_clean_env(tmp_path), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "BotFather" in proc.stderr and "python -m bot sandbox" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_without_master_key_points_to_gen_key(tmp_path: Path) -> None:
    env = {**_clean_env(tmp_path), "PYTHONPATH": str(ROOT)}
    env["TELEGRAM_BOT_TOKEN"] = "123456:" + "B" * 35
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "MASTER_KEY" in proc.stderr and "gen-key" in proc.stderr
    assert "B" * 35 not in proc.stderr


@pytest.mark.parametrize("sub", ["run", "sandbox", "migrate", "migrate-db", "gen-key",
                                 "rotate-key"])
def test_every_subcommand_has_help(sub: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bot", sub, "--help"], cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0
    assert "usage: bitmex-bot " + sub in proc.stdout
    assert len(proc.stdout.splitlines()) >= 3


def test_gen_key_prints_a_usable_key() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "gen-key"], cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )
    key = proc.stdout.strip()
    from bot.config import decode_master_key

    assert len(decode_master_key(key, strong=True)) == 32


def _b64(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).decode()


_KEY = generate_key()
MALFORMED_KEYS = [
    f"{_KEY[:10]}.{_KEY[10:]}",  # a stray character the lenient decoder skipped
    f"{_KEY[:10]} {_KEY[10:]}",
    "+" + _KEY[1:],  # standard-alphabet characters are not urlsafe base64
    _KEY + "A",
    _b64(bytes(range(31))),  # 31 bytes
    _b64(bytes(range(33))),  # 33 bytes
    _KEY[:42] + ("B" if _KEY[42] != "B" else "C") + "=",  # non-canonical last character
]


@pytest.mark.parametrize("value", MALFORMED_KEYS)
def test_master_key_is_decoded_strictly(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.config import decode_master_key

    with pytest.raises(ValueError):
        decode_master_key(value)
    monkeypatch.setenv("MASTER_KEY", value)
    with pytest.raises(ConfigError, match="MASTER_KEY is invalid") as e:
        load_settings(_env_file=None)
    assert value not in str(e.value)


@pytest.mark.parametrize("raw", [
    bytes(32),  # all one byte
    b"\xab" * 32,
    b"hunter2!" * 4,  # few distinct bytes
    bytes(range(32)),  # a counter
    bytes(range(0, 256, 8)),
])
def test_an_obviously_weak_master_key_is_refused(raw: bytes,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASTER_KEY", _b64(raw))
    with pytest.raises(ConfigError, match="MASTER_KEY is too weak") as e:
        load_settings(_env_file=None)
    assert _b64(raw) not in str(e.value) and "gen-key" in str(e.value)
    # an old key is only decoded: rotating away from a weak key must stay possible
    monkeypatch.setenv("MASTER_KEY", generate_key())
    monkeypatch.setenv("MASTER_KEY_OLD", _b64(raw))
    assert load_settings(_env_file=None).old_master_keys == [raw]


@pytest.mark.parametrize("raw", [
    b"correct horse battery staple 42!",  # a passphrase, base64-encoded as the key
    b"0123456789abcdef0123456789ABCDEF",  # a hex string
    b"Tr0ub4dor&3-My$ecretMasterKey#99",
])
def test_a_typed_passphrase_as_master_key_is_refused(raw: bytes,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Well formed, 32 bytes, many distinct ones, but every byte a typed character: text
    someone encoded, not a random key (the distinct-bytes check let these through)."""
    assert len(raw) == 32 and len(set(raw)) >= 16
    monkeypatch.setenv("MASTER_KEY", _b64(raw))
    with pytest.raises(ConfigError, match="MASTER_KEY is too weak: it is not random "
                                          r"\(its bytes are all typed characters\)") as e:
        load_settings(_env_file=None)
    assert _b64(raw) not in str(e.value)


def test_a_weak_master_key_stops_start_up_with_one_line(tmp_path: Path) -> None:
    weak = _b64(b"\x07" * 32)
    env = {**_clean_env(tmp_path), "PYTHONPATH": str(ROOT), "MASTER_KEY": weak}
    proc = subprocess.run([sys.executable, "-m", "bot", "migrate"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["error: MASTER_KEY is too weak: it is not random (too few distinct bytes). "
                     "Create one with `python -m bot gen-key`."]
    assert weak not in proc.stderr + proc.stdout


def test_many_gen_keys_all_pass_the_strict_check() -> None:
    from bot.config import decode_master_key

    for _ in range(500):
        assert len(decode_master_key(generate_key(), strong=True)) == 32


def test_postgresql_urls_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+asyncpg://bot:s3cret@db.example:5432/bitmexbot"
    monkeypatch.setenv("DATABASE_URL", url)
    s = load_settings(_env_file=None)
    assert s.DATABASE_URL == url and s.database_path is None
    for bad in ("postgresql://db/x", "postgresql+psycopg2://db/x", "postgresql+asyncpg://"):
        monkeypatch.setenv("DATABASE_URL", bad)
        with pytest.raises(ConfigError, match="postgresql\\+asyncpg://user:password@host"):
            load_settings(_env_file=None)
