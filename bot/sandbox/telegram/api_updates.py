"""Bot API methods, the bot and its updates: getMe, logOut, close, getUpdates (long polling) and
the webhook (setWebhook, deleteWebhook, getWebhookInfo, and the deliveries it makes).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

import aiohttp

from .core import Files
from .errors import bad_request, conflict
from .params import Params
from .rules import SECRET_TOKEN_RE, WEBHOOK_PORTS
from .state import JSON, BotAccount


class UpdatesApi(Params):
    """getMe, logOut, close, getUpdates and the webhook."""

    async def _api_getMe(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        data = account.user.to_api()
        data.update(
            can_join_groups=account.can_join_groups,
            can_read_all_group_messages=not account.privacy_mode,
            supports_inline_queries=False,
            can_connect_to_business=False,
            has_main_web_app=False,
        )
        return data

    async def _api_logOut(self, account: BotAccount, p: JSON, files: Files) -> bool:
        return True

    async def _api_close(self, account: BotAccount, p: JSON, files: Files) -> bool:
        return True

    async def _api_getUpdates(self, account: BotAccount, p: JSON, files: Files) -> list[JSON]:
        if account.webhook_url:
            raise conflict(
                "can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first"
            )
        offset = self._opt_int(p, "offset")
        limit = min(max(self._opt_int(p, "limit") or 100, 1), 100)
        timeout = min(max(self._opt_float(p, "timeout") or 0.0, 0.0), self.max_long_poll)
        allowed = self._opt_json(p, "allowed_updates", "can't parse allowed updates")
        if allowed is not None:
            if not isinstance(allowed, list):
                raise bad_request("can't parse allowed updates")
            # The choice sticks until changed, as on the real server; [] means the defaults.
            account.allowed_updates = [str(a) for a in allowed] or None
        account.polled = True
        if offset is not None:
            if offset < 0:
                account.updates = account.updates[offset:]
            else:
                account.updates = [u for u in account.updates if u["update_id"] >= offset]
        account.poll_generation += 1
        generation = account.poll_generation
        self._notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if generation != account.poll_generation:
                raise conflict(
                    "terminated by other getUpdates request; "
                    "make sure that only one bot instance is running"
                )
            if account.updates or self._closing:
                return account.updates[:limit]
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    async def _api_setWebhook(self, account: BotAccount, p: JSON, files: Files) -> bool:
        url = self._opt_str(p, "url") or ""
        if url:
            self._check_webhook_url(url)
        secret = self._opt_str(p, "secret_token")
        if secret is not None and not SECRET_TOKEN_RE.fullmatch(secret):
            raise bad_request("secret token contains unallowed characters"
                              if 1 <= len(secret) <= 256 else "secret token is invalid")
        max_connections = self._opt_int(p, "max_connections")
        if max_connections is not None and not 1 <= max_connections <= 100:
            raise bad_request("bad webhook: max_connections must be between 1 and 100")
        if self._bool(p, "drop_pending_updates"):
            account.updates.clear()
        allowed = self._opt_json(p, "allowed_updates", "can't parse allowed updates")
        if isinstance(allowed, list):
            account.allowed_updates = [str(a) for a in allowed] or None
        if not url:
            account.webhook_url = None
            self._stop_webhook(account)
            return True
        account.webhook_url = url
        account.webhook_secret = secret
        account.webhook_max_connections = max_connections or 40
        account.webhook_last_error = None
        self._stop_webhook(account)
        # Only loopback URLs are ever called: nothing here may reach the internet.
        if _loopback(url):
            self._webhook_tasks[account.token] = asyncio.create_task(self._push(account))
        return True

    def _check_webhook_url(self, url: str) -> None:
        """Telegram's rules: https only, on port 443, 80, 88 or 8443. The emulator's explicit
        test allowance lets an http URL on a loopback address through, on any port."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise bad_request("bad webhook: Failed to parse port number") from None
        if not parts.hostname:
            raise bad_request("can't parse URL")
        if self.allow_loopback_http_webhooks and parts.scheme == "http" and _loopback(url):
            return
        if parts.scheme != "https":
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if (port or 443) not in WEBHOOK_PORTS:
            raise bad_request(
                "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")

    async def _api_deleteWebhook(self, account: BotAccount, p: JSON, files: Files) -> bool:
        account.webhook_url = None
        self._stop_webhook(account)
        if self._bool(p, "drop_pending_updates"):
            account.updates.clear()
        return True

    async def _api_getWebhookInfo(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        info: JSON = {
            "url": account.webhook_url or "",
            "has_custom_certificate": False,
            "pending_update_count": len(account.updates),
        }
        if account.webhook_url:
            info["max_connections"] = account.webhook_max_connections
        if account.webhook_last_error is not None:
            info["last_error_date"], info["last_error_message"] = account.webhook_last_error
        if account.allowed_updates:
            info["allowed_updates"] = account.allowed_updates
        return info

    def _stop_webhook(self, account: BotAccount) -> None:
        task = self._webhook_tasks.pop(account.token, None)
        if task is not None:
            task.cancel()

    async def _push(self, account: BotAccount) -> None:
        """Deliver updates to the webhook as Telegram does: up to `max_connections` posts at
        once (so they can arrive out of order: `update_id` tells the order), each retried
        until the bot answers 2xx; an update leaves the queue only once delivered."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        in_flight: set[int] = set()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not self._closing and account.webhook_url:
                free = account.webhook_max_connections - len(in_flight)
                batch = [u for u in account.updates if u["update_id"] not in in_flight][:free]
                if not batch:
                    event = self._changed
                    await event.wait()
                    continue
                self._webhook_random.shuffle(batch)
                for update in batch:
                    in_flight.add(update["update_id"])
                    task = asyncio.create_task(self._post_update(account, update, in_flight))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                await asyncio.sleep(0)  # let the posts start before looking again
        finally:
            for task in list(tasks):
                task.cancel()

    async def _post_update(self, account: BotAccount, update: JSON, in_flight: set[int]) -> None:
        assert self._session is not None
        url = account.webhook_url
        headers = {}
        if account.webhook_secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = account.webhook_secret
        error: str | None = None
        self.webhook_posts.append(update["update_id"])
        try:
            if url is None:
                return
            async with self._session.post(url, json=update, headers=headers) as response:
                if not 200 <= response.status < 300:
                    error = f"Wrong response from the webhook: {response.status} {response.reason}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"Connection failed: {exc.__class__.__name__}"
        if error is None:
            if update in account.updates:
                account.updates.remove(update)
            account.webhook_last_error = None
        else:
            account.webhook_last_error = (int(time.time()), error)
            # Telegram retries a failed update later, not at once; it stays pending meanwhile.
            await asyncio.sleep(0.1)
        in_flight.discard(update["update_id"])
        self._touch()
        self._notify()


def _loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")
