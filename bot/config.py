"""Every setting, read once from the environment and `.env`, validated up front.

A bad value stops start-up with one line naming the variable (see `load_settings`),
because a trader restarting the bot from a phone needs the fix, not a traceback.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import itertools
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.errors import ConfigError

OFFICIAL_WS = {
    "https://www.bitmex.com": "wss://ws.bitmex.com/realtime",
    "https://testnet.bitmex.com": "wss://ws.testnet.bitmex.com/realtime",
}

_LEVELS = {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"}

# What each variable expects, said in the one line shown when it is wrong.
EXPECTS: dict[str, str] = {
    "TELEGRAM_BOT_TOKEN": "the token BotFather gave you, like 123456:ABC-DEF...",
    "TELEGRAM_API_URL": "an http(s) URL such as https://api.telegram.org",
    "BITMEX_MAINNET_URL": "an http(s) URL such as https://www.bitmex.com",
    "BITMEX_TESTNET_URL": "an http(s) URL such as https://testnet.bitmex.com",
    "DATABASE_URL": "an SQLAlchemy async URL: sqlite+aiosqlite:///./data/bot.db, or "
    "postgresql+asyncpg://user:password@host:5432/dbname (needs `pip install '.[postgres]'`)",
    "PAPER_STATE_FILE": "a file path for the paper accounts' snapshot (empty = the default)",
    "MASTER_KEY": "urlsafe base64 of 32 random bytes; create one with `python -m bot gen-key`",
    "MASTER_KEY_OLD": "a comma-separated list of earlier MASTER_KEY values",
    "ADMIN_IDS": "a comma-separated list of Telegram user ids (numbers)",
    "ALLOWED_USER_IDS": "a comma-separated list of Telegram user ids (numbers), empty = everyone",
    "LOG_LEVEL": "one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
    "WEBHOOK_URL": "the public https URL Telegram should post updates to, on port 443, 80, "
                   "88 or 8443 (the only ports Telegram calls)",
    "WEBHOOK_PORT": "a TCP port number between 1 and 65535",
    "PORT": "a TCP port number between 1 and 65535 (set by the host)",
    "MAINNET_CONFIRM_USD": "a positive USD amount (larger mainnet orders need a second confirm)",
    "METRICS_PORT": "a TCP port number between 1 and 65535 (or empty: no metrics server)",
    "METRICS_HOST": "an address to listen on, such as 127.0.0.1 or 0.0.0.0",
    "TELEGRAM_TIME_SCALE": "a positive number; 1 against the real Telegram",
    "DB_POOL_SIZE": "a number of database connections kept open (1-1000)",
    "DB_MAX_OVERFLOW": "a number of extra database connections opened under load (0-1000)",
    "LEADER_LEASE_SECONDS": "seconds a leader's lease lasts unrenewed (1-300), longer than "
                            "LEADER_STEP_DOWN_SECONDS",
    "LEADER_RENEW_SECONDS": "seconds between lease renewals (0.1-60), shorter than "
                            "LEADER_STEP_DOWN_SECONDS",
    "LEADER_STEP_DOWN_SECONDS": "seconds without a renewal before a leader stops, between "
                                "LEADER_RENEW_SECONDS and LEADER_LEASE_SECONDS",
}


def _split_ids(value: Any) -> list[int]:
    if value is None or value == "":
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list | tuple):
        return [int(v) for v in value]
    parts = [p.strip() for p in str(value).split(",") if p.strip()]
    return [int(p) for p in parts]


# 32 bytes in urlsafe base64: 43 characters and one "=" of padding (`gen-key` prints it;
# without it is accepted too). The lenient decoder would skip stray characters and accept
# "+/", so a mistyped key could silently become another key.
_MASTER_KEY_RE = re.compile(r"[A-Za-z0-9_-]{43}=?")
_MIN_DISTINCT_BYTES = 16  # 32 random bytes have ~30 distinct values; under 16 is never luck


class WeakKeyError(ValueError):
    """A well-formed MASTER_KEY that is obviously not random."""


def decode_master_key(value: str, *, strong: bool = False) -> bytes:
    """The 32 raw bytes of a MASTER_KEY, or ValueError; `strong`: WeakKeyError for a key
    that is plainly not random (old keys are only decoded: they must open what they sealed)."""
    text = value.strip()
    if not _MASTER_KEY_RE.fullmatch(text):
        raise ValueError("not urlsafe base64 of 32 bytes")
    try:
        raw = base64.urlsafe_b64decode(text.rstrip("=") + "=")
    except (binascii.Error, ValueError) as e:
        raise ValueError("not valid urlsafe base64") from e
    if len(raw) != 32 or base64.urlsafe_b64encode(raw).decode() != text.rstrip("=") + "=":
        raise ValueError("not the canonical encoding of 32 bytes")
    if strong:
        steps = {(b - a) % 256 for a, b in itertools.pairwise(raw)}
        if len(set(raw)) < _MIN_DISTINCT_BYTES or len(steps) == 1:
            raise WeakKeyError("too few distinct bytes")
        # A passphrase or a hex string encoded as the key: 32 random bytes are all typable
        # characters about once in 10^14 tries, so this refuses no real key.
        if all(0x20 <= b < 0x7F for b in raw):
            raise WeakKeyError("its bytes are all typed characters")
    return raw


# Telegram delivers webhooks only to these ports (Bot API, setWebhook).
WEBHOOK_PORTS = frozenset({443, 80, 88, 8443})


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _check_webhook_url(value: str) -> str:
    """https on a port Telegram calls; a loopback URL (tests, the sandbox) may be http on
    any port, since only a local Bot API server can reach it anyway."""
    parts = urlsplit(value)
    host = (parts.hostname or "").lower()
    port = parts.port  # ValueError for a non-numeric or out-of-range port
    if not host or parts.scheme not in ("http", "https"):
        raise ValueError("not a valid URL")
    if _loopback(host):
        return value.rstrip("/")
    if parts.scheme != "https":
        raise ValueError("Telegram posts webhooks to https URLs only")
    if (port or 443) not in WEBHOOK_PORTS:
        raise ValueError("Telegram posts webhooks only to ports 443, 80, 88 and 8443")
    return value.rstrip("/")


def _check_url(value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError("not a valid URL")
    return value.rstrip("/")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True
    )

    TELEGRAM_BOT_TOKEN: SecretStr | None = None
    TELEGRAM_API_URL: str = "https://api.telegram.org"
    BITMEX_MAINNET_URL: str = "https://www.bitmex.com"
    BITMEX_TESTNET_URL: str = "https://testnet.bitmex.com"
    DATABASE_URL: str = "sqlite+aiosqlite:///./data/bot.db"
    PAPER_STATE_FILE: str | None = None
    MASTER_KEY: SecretStr | None = None
    MASTER_KEY_OLD: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    ADMIN_IDS: Annotated[list[int], NoDecode] = Field(default_factory=list)
    ALLOWED_USER_IDS: Annotated[list[int], NoDecode] = Field(default_factory=list)
    LOG_LEVEL: str = "INFO"
    WEBHOOK_URL: str | None = None
    WEBHOOK_PORT: int = 8443
    # Set by PaaS hosts (Heroku, Render, Railway...): the port the web process must listen on.
    PORT: int | None = None
    MAINNET_CONFIRM_USD: Decimal = Decimal("10000")
    METRICS_PORT: int | None = None
    METRICS_HOST: str = "127.0.0.1"
    # How many times faster than real time the Bot API server's flood windows run: 1 for
    # Telegram; the sandbox and tests run the emulator's clock faster and pace to match.
    TELEGRAM_TIME_SCALE: float = 1.0
    # Two or more instances on one PostgreSQL database (bot/leader.py): the leader renews
    # its lease every RENEW s for LEASE s, and stops (exits) after STEP_DOWN s without a
    # renewal, before the lease can run out and a standby take over.
    LEADER_LEASE_SECONDS: float = 6.0
    LEADER_RENEW_SECONDS: float = 1.0
    LEADER_STEP_DOWN_SECONDS: float = 4.0
    # The database pool (bot/db/engine.py): connections kept open, and extra ones opened
    # while updates wait for one. Each instance on PostgreSQL may open both: together they
    # must stay under the server's max_connections (100 by default).
    DB_POOL_SIZE: int = 10
    DB_MAX_OVERFLOW: int = 30

    @field_validator("TELEGRAM_BOT_TOKEN", mode="before")
    @classmethod
    def _token(cls, v: Any) -> Any:
        if v is None or str(v).strip() == "":
            return None
        token = str(v).strip()
        head, sep, tail = token.partition(":")
        if not sep or not head.isdigit() or len(tail) < 10:
            raise ValueError("does not look like a bot token")
        return token

    @field_validator("TELEGRAM_API_URL", "BITMEX_MAINNET_URL", "BITMEX_TESTNET_URL")
    @classmethod
    def _http_url(cls, v: str) -> str:
        return _check_url(v, ("http", "https"))

    @field_validator("WEBHOOK_URL", mode="before")
    @classmethod
    def _webhook(cls, v: Any) -> Any:
        if v is None or str(v).strip() == "":
            return None
        return _check_webhook_url(str(v).strip())

    @field_validator("DATABASE_URL")
    @classmethod
    def _db(cls, v: str) -> str:
        if v.startswith("sqlite+aiosqlite://"):
            return v
        if v.startswith("postgresql+asyncpg://"):
            if len(v) <= len("postgresql+asyncpg://"):
                raise ValueError("no server in the PostgreSQL URL")
            if importlib.util.find_spec("asyncpg") is None:
                raise ValueError("postgresql+asyncpg needs the asyncpg package")
            return v
        raise ValueError("only sqlite+aiosqlite and postgresql+asyncpg URLs are supported")

    @field_validator("PAPER_STATE_FILE", mode="before")
    @classmethod
    def _paper_file(cls, v: Any) -> Any:
        return None if v is None or str(v).strip() == "" else str(v).strip()

    @field_validator("MASTER_KEY", mode="before")
    @classmethod
    def _master(cls, v: Any) -> Any:
        if v is None or str(v).strip() == "":
            return None
        decode_master_key(str(v), strong=True)
        return str(v).strip()

    @field_validator("MASTER_KEY_OLD", mode="before")
    @classmethod
    def _old_keys(cls, v: Any) -> Any:
        if v is None or v == "":
            return []
        items = v if isinstance(v, list) else [p for p in str(v).split(",") if p.strip()]
        for item in items:
            decode_master_key(str(item.get_secret_value() if isinstance(item, SecretStr) else item))
        return items

    @field_validator("ADMIN_IDS", "ALLOWED_USER_IDS", mode="before")
    @classmethod
    def _ids(cls, v: Any) -> list[int]:
        try:
            return _split_ids(v)
        except (TypeError, ValueError) as e:
            raise ValueError("not a list of numbers") from e

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _level(cls, v: Any) -> str:
        level = str(v).strip().upper()
        if level not in _LEVELS:
            raise ValueError("unknown level")
        return level

    @field_validator("PORT", mode="before")
    @classmethod
    def _host_port(cls, v: Any) -> Any:
        return None if v is None or str(v).strip() == "" else v

    @field_validator("WEBHOOK_PORT", "PORT")
    @classmethod
    def _port(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= 65535:
            raise ValueError("out of range")
        return v

    @field_validator("METRICS_PORT", mode="before")
    @classmethod
    def _metrics_port(cls, v: Any) -> Any:
        if v is None or str(v).strip() == "":
            return None
        port = int(str(v).strip())
        if not 1 <= port <= 65535:
            raise ValueError("out of range")
        return port

    @field_validator("METRICS_HOST", mode="before")
    @classmethod
    def _metrics_host(cls, v: Any) -> str:
        host = str(v).strip() or "127.0.0.1"  # the .env.example line emptied: the default
        if not re.fullmatch(r"[A-Za-z0-9.:_-]+", host):
            raise ValueError("not a host address")
        return host
    @field_validator("TELEGRAM_TIME_SCALE")
    @classmethod
    def _time_scale(cls, v: float) -> float:
        if not 0 < v <= 1000:
            raise ValueError("out of range")
        return v

    @field_validator("DB_POOL_SIZE", "DB_MAX_OVERFLOW")
    @classmethod
    def _pool(cls, v: int, info: ValidationInfo) -> int:
        if not (1 if info.field_name == "DB_POOL_SIZE" else 0) <= v <= 1000:
            raise ValueError("out of range")
        return v

    @field_validator("LEADER_LEASE_SECONDS")
    @classmethod
    def _lease(cls, v: float) -> float:
        if not 1 <= v <= 300:
            raise ValueError("out of range")
        return v

    @field_validator("LEADER_RENEW_SECONDS")
    @classmethod
    def _renew(cls, v: float) -> float:
        if not 0.1 <= v <= 60:
            raise ValueError("out of range")
        return v

    @field_validator("LEADER_STEP_DOWN_SECONDS")
    @classmethod
    def _step_down(cls, v: float, info: ValidationInfo) -> float:
        # Fencing needs renew < step down < lease: a leader that cannot renew stops while
        # its lease still holds, so no standby can lead at the same time (bot/leader.py).
        lease = info.data.get("LEADER_LEASE_SECONDS")
        renew = info.data.get("LEADER_RENEW_SECONDS")
        if lease is None or renew is None or not renew < v < lease:
            raise ValueError("not between LEADER_RENEW_SECONDS and LEADER_LEASE_SECONDS")
        return v

    @field_validator("MAINNET_CONFIRM_USD")
    @classmethod
    def _threshold(cls, v: Decimal) -> Decimal:
        if not v.is_finite() or v <= 0:
            raise ValueError("must be positive")
        return v

    # Derived values -------------------------------------------------------

    @property
    def token(self) -> str | None:
        return self.TELEGRAM_BOT_TOKEN.get_secret_value() if self.TELEGRAM_BOT_TOKEN else None

    @property
    def listen_port(self) -> int:
        """Where the webhook listener binds: the host's PORT when it sets one (the TLS
        proxy in front forwards there), else WEBHOOK_PORT."""
        return self.PORT if self.PORT is not None else self.WEBHOOK_PORT

    @property
    def master_key(self) -> bytes | None:
        return decode_master_key(self.MASTER_KEY.get_secret_value()) if self.MASTER_KEY else None

    @property
    def old_master_keys(self) -> list[bytes]:
        return [decode_master_key(k.get_secret_value()) for k in self.MASTER_KEY_OLD]

    def rest_url(self, network: str) -> str:
        """REST base (`.../api/v1`) of a BitMEX network."""
        return self.bitmex_url(network) + "/api/v1"

    def bitmex_url(self, network: str) -> str:
        if network == "mainnet":
            return self.BITMEX_MAINNET_URL
        if network == "testnet":
            return self.BITMEX_TESTNET_URL
        raise ValueError(f"unknown network {network!r}")

    def ws_url(self, network: str) -> str:
        """Official socket host for the default URLs; same host and port otherwise."""
        base = self.bitmex_url(network)
        if base in OFFICIAL_WS:
            return OFFICIAL_WS[base]
        parts = urlsplit(base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, "/realtime", "", ""))

    @property
    def database_path(self) -> Path | None:
        """The SQLite file behind DATABASE_URL (None for in-memory and for PostgreSQL)."""
        if not self.DATABASE_URL.startswith("sqlite+aiosqlite://"):
            return None
        rest = self.DATABASE_URL.split("://", 1)[1]
        if rest in ("", "/", "/:memory:"):
            return None
        return Path(rest[1:]) if rest.startswith("/") else Path(rest)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning any validation problem into one ConfigError line."""
    try:
        return Settings(**overrides)
    except ValidationError as e:
        err = e.errors()[0]
        name = str(err["loc"][0]) if err.get("loc") else "settings"
        weak = err.get("ctx", {}).get("error")
        if isinstance(weak, WeakKeyError):
            raise ConfigError(f"{name} is too weak: it is not random ({weak}). Create one "
                              "with `python -m bot gen-key`.") from None
        expects = EXPECTS.get(name, "a valid value")
        raise ConfigError(f"{name} is invalid: expected {expects}.") from None
