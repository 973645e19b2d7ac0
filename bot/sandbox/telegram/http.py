"""The HTTP side: the aiohttp server, one route for every Bot API method (`/bot<token>/<method>`)
with Telegram's answer envelope, refusals injected by tests, and the call log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from .core import EmulatorCore, Files
from .errors import ApiError, bad_request, not_found, unauthorized
from .state import JSON, ApiCall, BotAccount

log = logging.getLogger(__name__)


class HttpServer(EmulatorCore):
    """Start, stop, and the request path every method call takes."""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._handle_file)
        self._closing = False
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1] if sockets else port
        self._host = host

    async def stop(self) -> None:
        self._closing = True
        self._notify()
        for task in self._webhook_tasks.values():
            task.cancel()
        for task in self._webhook_tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._webhook_tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return f"http://{self._host}:{self._port}"

    async def _handle(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        method_name = request.match_info["method"]
        account = self._bots.get(token)
        if account is None:
            return self._reply(unauthorized().payload(), 401)
        entry = self._methods.get(method_name.lower())
        if entry is None:
            self._log(account, method_name, {}, 404, "Not Found")
            return self._reply(not_found().payload(), 404)
        canonical, handler = entry
        polling = canonical == "getUpdates"
        if not polling:
            self._inflight += 1
            self._touch()
        params: JSON = {}
        try:
            params, files = await self._read_params(request)
            refusal = self._take_refusal(account, canonical, params)
            if refusal is not None:
                raise refusal
            result = await handler(account, params, files)
            body: JSON = {"ok": True, "result": result}
            status, description = 200, None
            if not polling or result:
                self._touch()
        except ApiError as exc:
            body, status, description = exc.payload(), exc.code, exc.description
        except ConnectionResetError:
            # The client hung up mid-request (a bot stopping): nobody is left to answer.
            body, status, description = {"ok": False}, 499, "client went away"
        except Exception as exc:  # a bug here must not look like a server outage to the bot
            log.exception("emulator failed on %s", canonical)
            self.internal_errors.append(exc)
            err = bad_request(f"emulator error: {exc!r}")
            body, status, description = err.payload(), err.code, err.description
        finally:
            if not polling:
                self._inflight -= 1
                self._touch()
        self._log(account, canonical, params, status, description)
        self._notify()
        if self.latency and not polling:
            # Logged (and in the chat) at once, answered late: `ApiCall.at` is the effect's
            # moment, so a kill during the wait finds the request "in flight".
            await asyncio.sleep(self.latency)
        return self._reply(body, status)

    def _take_refusal(self, account: BotAccount, method: str,
                      params: JSON) -> ApiError | None:
        for refusal in self._refusals:
            if refusal.bot_id != account.id or refusal.method != method.lower():
                continue
            if refusal.chat_id is not None and str(params.get("chat_id")) != str(refusal.chat_id):
                continue
            refusal.left -= 1
            if refusal.left <= 0:
                self._refusals.remove(refusal)
            return refusal.error
        return None

    def _log(
        self,
        account: BotAccount,
        method: str,
        params: JSON,
        status: int,
        description: str | None,
    ) -> None:
        self.calls.append(ApiCall(account.username, method, params, status, description))

    @staticmethod
    def _reply(body: JSON, status: int) -> web.Response:
        return web.json_response(body, status=status)

    @staticmethod
    async def _read_params(request: web.Request) -> tuple[JSON, Files]:
        params: JSON = dict(request.query)
        files: Files = {}
        if not request.body_exists:
            return params, files
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise bad_request("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise bad_request("JSON object expected")
            params.update(body)
            return params, files
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = (value.filename, value.file.read(), value.content_type)
                params[key] = f"<file {value.filename}>"
            else:
                params[key] = value
        return params, files

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] not in self._bots:
            return self._reply(unauthorized().payload(), 401)
        path = request.match_info["path"]
        for stored in self._files.values():
            if stored.file_path == path:
                return web.Response(body=stored.data, content_type="application/octet-stream")
        return self._reply(not_found().payload(), 404)
