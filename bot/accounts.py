"""API keys in, verified; per-user exchange sessions out.

The only place that turns a stored ciphertext back into a working client. Keys
with withdraw permission are refused: the bot must never be able to move funds
off the exchange, whatever else goes wrong.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import select

from bot.db.cache import RowCache
from bot.db.engine import Database
from bot.db.models import ApiCredential, AuditLog, User
from bot.errors import (
    AuthError,
    ExchangeError,
    NotFound,
    PermissionDenied,
    Rejected,
    UserError,
)
from bot.exchange.types import Exchange, Margin
from bot.keyshape import looks_like_key_id, looks_like_secret
from bot.logs import register_secret
from bot.ratelimit import SlidingLimit
from bot.vault import Vault

log = logging.getLogger(__name__)

Network = str
ClientFactory = Callable[[Network, str | None, str | None], Exchange]
PaperFactory = Callable[[int], Exchange]
# (event, user_id, network): "connect" | "disconnect"; live updates follow the accounts.
AccountListener = Callable[[str, int, Network], Awaitable[None]]
Watched = list[tuple[int, Network]]

VERIFY_PER_USER = 3
# One key check a second on average for everyone together: it bounds what a swarm of new
# accounts can make the bot send from its address, while a launch day (or a restart test
# reconnecting 200 accounts) still gets through.
VERIFY_TOTAL = 600
VERIFY_WINDOW = 600.0


def _minutes(seconds: float) -> str:
    m = max(1, math.ceil(seconds / 60))
    return f"{m} minute" + ("s" if m != 1 else "")


NETWORK_NAMES = {"testnet": "testnet", "mainnet": "mainnet", "paper": "paper"}
PAPER_KEY_ID = "paper"


def mask_key(key_id: str) -> str:
    """`LAqU…yu3qn`: enough to recognise a key, not enough to use it."""
    if len(key_id) <= 8:
        return key_id[:2] + "…"
    return f"{key_id[:4]}…{key_id[-4:]}"


@dataclass(frozen=True)
class AccountInfo:
    network: Network
    key_id: str
    permissions: tuple[str, ...]
    active: bool
    verified_at: datetime | None
    ip_binding: tuple[str, ...] | None = None  # None: not read when the key was stored

    @property
    def unbound_mainnet(self) -> bool:
        """A mainnet key usable from any IP: if it leaks, it can be used to drain the
        account through manipulative trades even without withdraw permission."""
        return self.network == "mainnet" and self.ip_binding == ()

    @property
    def masked(self) -> str:
        return "simulated account" if self.network == "paper" else mask_key(self.key_id)

    @property
    def can_trade(self) -> bool:
        return "order" in self.permissions

    @property
    def read_only(self) -> bool:
        return not self.can_trade


@dataclass(frozen=True)
class Connected:
    account: AccountInfo
    margins: list[Margin]


class Accounts:
    def __init__(
        self, db: Database, vault: Vault, make_client: ClientFactory, make_paper: PaperFactory
    ) -> None:
        self.db = db
        self.vault = vault
        self.make_client = make_client
        self.make_paper = make_paper
        self._sessions: dict[tuple[int, Network], Exchange] = {}
        self._lock = asyncio.Lock()
        # Each user's accounts, read on nearly every update (/balance, /start, a trade):
        # dropped on any commit to their credentials or their row (/use, /connect).
        self._listed: RowCache[int, tuple[AccountInfo, ...]] = RowCache()
        db.on_commit(ApiCredential, self._listed.invalidate, key=lambda c: c.user_id)
        db.on_commit(User, self._listed.invalidate)
        self.listeners: list[AccountListener] = []
        # About 3 key checks per user per 10 minutes, and a ceiling for everyone together.
        self.verify_per_user = SlidingLimit(VERIFY_PER_USER, VERIFY_WINDOW)
        self.verify_total = SlidingLimit(VERIFY_TOTAL, VERIFY_WINDOW)

    async def _changed(self, event: str, user_id: int, network: Network) -> None:
        for listener in self.listeners:
            try:
                await listener(event, user_id, network)
            except Exception:  # a listener's trouble must not undo a stored key
                log.exception("account listener failed on %s", event)

    # --- connecting -----------------------------------------------------------

    async def connect(self, user_id: int, network: Network, key_id: str, secret: str) -> Connected:
        """Verify a key against the exchange and store it encrypted; refuse withdraw keys.

        Verifications are rationed (each costs an exchange call from the bot's address), and a
        key that was not stored leaves no per-key state behind.
        """
        tried: list[Exchange] = []
        try:
            return await self._connect(user_id, network, key_id, secret, tried)
        except Exception:
            for client in tried:
                self._forget(client)
            raise

    def _ration(self, user_id: int) -> None:
        mine = self.verify_per_user.take(user_id)
        if mine:
            raise UserError(f"That is a lot of key checks: please wait {_minutes(mine)} before "
                            "trying another key. Nothing was stored.")
        total = self.verify_total.take("all")
        if total:
            self.verify_per_user.give_back(user_id)
            raise UserError("Many people are connecting keys right now: please try again in "
                            f"{_minutes(total)}. Nothing was stored.")

    def _forget(self, client: Exchange) -> None:
        key = getattr(client, "key", None)
        if any(getattr(s, "key", None) == key for s in self._sessions.values()):
            return  # another session uses the same key: its budget is real
        forget = getattr(client, "forget_rate_state", None)
        if forget is not None:
            forget()

    async def _connect(self, user_id: int, network: Network, key_id: str, secret: str,
                       tried: list[Exchange]) -> Connected:
        register_secret(secret)
        if network == "paper":
            return await self.connect_paper(user_id)
        key_id, secret = key_id.strip(), secret.strip()
        if not looks_like_key_id(key_id) or not looks_like_secret(secret):
            raise UserError(
                "That does not look like a BitMEX API key: the key id is about 24 characters "
                "and the secret about 48. Copy both from the API Keys page and try again."
            )
        self._ration(user_id)
        client = self.make_client(network, key_id, secret)
        tried.append(client)
        try:
            info = await client.api_key_permissions()
            margins = await client.margins()
        except AuthError as e:
            raise UserError(f"BitMEX {network} refused this key: {e.message} "
                            "Check that it was created on the right network and is enabled.") from e
        except PermissionDenied as e:
            raise UserError(f"BitMEX {network} refused to show this key's details "
                            f"({e.message}).") from e
        except (NotFound, Rejected) as e:
            # BitMEX answered, but not about this key: its permissions are unknown, and an
            # unknown key is refused, never assumed harmless.
            raise UserError(f"BitMEX {network} did not show this key's own details "
                            f"({e.message}), so I can't check its permissions. Nothing was "
                            "stored. Check the key id, or create a new key and try again."
                            ) from e
        except ExchangeError as e:
            raise UserError(f"Could not reach BitMEX {network} to check the key ({e.message}). "
                            "Nothing was stored; please try again in a minute.") from e
        if info.can_withdraw:
            await self._audit(user_id, "connect_refused", network=network, reason="withdraw")
            raise UserError(
                "This key has <b>withdraw</b> permission, so I won't store it: anyone who got "
                "hold of it could move your funds off BitMEX. Create a key with only "
                "Order (and optionally Order Cancel) permission and connect that one."
            )
        if not info.enabled:
            raise UserError("BitMEX does not report this key as enabled. Enable it or create "
                            "a new one.")
        perms = tuple(p for p in info.permissions if p)
        now = datetime.now(UTC)
        async with self.db.session() as s:
            user = await s.get(User, user_id) or User(id=user_id)
            row = (await s.exec(select(ApiCredential).where(
                ApiCredential.user_id == user_id, ApiCredential.network == network))).first()
            if row is None:
                row = ApiCredential(user_id=user_id, network=network, key_id=key_id,
                                    secret_enc=b"")
            row.key_id = key_id
            row.secret_enc = self.vault.encrypt(secret, user_id=user_id, network=network)
            row.permissions = list(perms)
            row.ip_binding = list(info.ip_binding)
            row.verified_at = now
            user.active_network = network
            s.add(user)
            s.add(row)
            s.add(AuditLog(user_id=user_id, action="connect",
                           detail={"network": network, "key": mask_key(key_id),
                                   "permissions": ",".join(perms)}))
            await s.commit()
        self._sessions[(user_id, network)] = client
        await self._changed("connect", user_id, network)
        return Connected(AccountInfo(network, key_id, perms, True, now, info.ip_binding),
                         margins)

    async def connect_paper(self, user_id: int) -> Connected:
        now = datetime.now(UTC)
        async with self.db.session() as s:
            user = await s.get(User, user_id) or User(id=user_id)
            row = (await s.exec(select(ApiCredential).where(
                ApiCredential.user_id == user_id, ApiCredential.network == "paper"))).first()
            if row is None:
                row = ApiCredential(user_id=user_id, network="paper", key_id=PAPER_KEY_ID,
                                    secret_enc=b"", permissions=["order", "orderCancel"],
                                    verified_at=now)
                s.add(row)
            user.active_network = "paper"
            s.add(user)
            s.add(AuditLog(user_id=user_id, action="connect", detail={"network": "paper"}))
            await s.commit()
        exchange = await self.exchange(user_id, "paper")
        margins = await exchange.margins()
        await self._changed("connect", user_id, "paper")
        return Connected(AccountInfo("paper", PAPER_KEY_ID, ("order", "orderCancel"), True, now),
                         margins)

    # --- reading (read sessions: on SQLite they do not take the writer's turn) -------

    async def list(self, user_id: int) -> list[AccountInfo]:
        found, cached = self._listed.get(user_id)
        if found and cached is not None:
            return list(cached)
        generation = self._listed.generation
        listed = await self._read_list(user_id)
        self._listed.put(user_id, listed, generation)
        return list(listed)

    async def _read_list(self, user_id: int) -> tuple[AccountInfo, ...]:
        async with self.db.read() as s:
            user = await s.get(User, user_id)
            rows = (await s.exec(select(ApiCredential).where(
                ApiCredential.user_id == user_id))).all()
        active = user.active_network if user else None
        order = {"mainnet": 0, "testnet": 1, "paper": 2}
        return tuple(sorted(
            (AccountInfo(r.network, r.key_id, tuple(r.permissions), r.network == active,
                         r.verified_at,
                         None if r.ip_binding is None else tuple(r.ip_binding))
             for r in rows),
            key=lambda a: order.get(a.network, 9),
        ))

    async def active(self, user_id: int) -> AccountInfo | None:
        for acc in await self.list(user_id):
            if acc.active:
                return acc
        return None

    async def require_active(self, user_id: int, *, trading: bool = False) -> AccountInfo:
        acc = await self.active(user_id)
        if acc is None:
            raise UserError("No account connected yet. Use /connect testnet to add a BitMEX "
                            "API key, or /connect paper to practise with a simulated account.")
        if trading and acc.read_only:
            raise UserError(
                f"Your {acc.network} key is read-only (no Order permission), so I can show "
                "your account but not trade. Create a key with Order permission and /connect it."
            )
        return acc

    # --- switching ------------------------------------------------------------

    async def use(self, user_id: int, network: Network) -> AccountInfo:
        accounts = {a.network: a for a in await self.list(user_id)}
        if network not in accounts:
            if network == "paper":
                return (await self.connect_paper(user_id)).account
            raise UserError(f"No {network} key connected. Use /connect {network} first.")
        async with self.db.session() as s:
            user = await s.get(User, user_id) or User(id=user_id)
            user.active_network = network
            s.add(user)
            await s.commit()
        acc = accounts[network]
        return AccountInfo(acc.network, acc.key_id, acc.permissions, True, acc.verified_at,
                           acc.ip_binding)

    async def disconnect(self, user_id: int, network: Network) -> None:
        """Delete the ciphertext row; the next account (if any) becomes active."""
        async with self.db.session() as s:
            row = (await s.exec(select(ApiCredential).where(
                ApiCredential.user_id == user_id, ApiCredential.network == network))).first()
            if row is None:
                raise UserError(f"No {network} account is connected.")
            await s.delete(row)
            user = await s.get(User, user_id)
            if user is not None and user.active_network == network:
                rest = (await s.exec(select(ApiCredential.network).where(
                    ApiCredential.user_id == user_id, ApiCredential.network != network))).all()
                user.active_network = rest[0] if rest else None
                s.add(user)
            s.add(AuditLog(user_id=user_id, action="disconnect", detail={"network": network}))
            await s.commit()
        self._sessions.pop((user_id, network), None)
        await self._changed("disconnect", user_id, network)

    # --- sessions -------------------------------------------------------------

    async def exchange(self, user_id: int, network: Network | None = None) -> Exchange:
        """The user's client for `network` (default: the active one), built once and cached."""
        if network is None:
            network = (await self.require_active(user_id)).network
        key = (user_id, network)
        cached = self._sessions.get(key)
        if cached is not None:
            return cached
        async with self._lock:
            cached = self._sessions.get(key)
            if cached is not None:
                return cached
            if network == "paper":
                client = self.make_paper(user_id)
            else:
                async with self.db.read() as s:
                    row = (await s.exec(select(ApiCredential).where(
                        ApiCredential.user_id == user_id,
                        ApiCredential.network == network))).first()
                if row is None:
                    raise UserError(f"No {network} key connected. Use /connect {network}.")
                secret = self.vault.decrypt(row.secret_enc, user_id=user_id, network=network)
                client = self.make_client(network, row.key_id, secret)
            self._sessions[key] = client
            return client

    async def credentials(self, user_id: int, network: Network) -> tuple[str, str]:
        """Key id and decrypted secret, for the private socket's login; never log them."""
        async with self.db.read() as s:
            row = (await s.exec(select(ApiCredential).where(
                ApiCredential.user_id == user_id, ApiCredential.network == network))).first()
        if row is None or network == "paper":
            raise UserError(f"No {network} key connected. Use /connect {network}.")
        secret = self.vault.decrypt(row.secret_enc, user_id=user_id, network=network)
        register_secret(secret)
        return row.key_id, secret

    async def watched(self) -> Watched:
        """Every (user, network) with a verified key or a paper account."""
        async with self.db.read() as s:
            rows = (await s.exec(select(ApiCredential.user_id, ApiCredential.network,
                                        ApiCredential.verified_at))).all()
        return [(uid, net) for uid, net, verified in rows
                if net == "paper" or verified is not None]

    async def _audit(self, user_id: int, action: str, **detail: str) -> None:
        async with self.db.session() as s:
            s.add(AuditLog(user_id=user_id, action=action, detail=dict(detail)))
            await s.commit()
