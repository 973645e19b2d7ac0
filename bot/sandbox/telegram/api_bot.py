"""Bot API methods, presses and the command menu: answerCallbackQuery (within Telegram's
deadline), setMyCommands, getMyCommands, deleteMyCommands by scope and language.
"""

from __future__ import annotations

from .core import Files
from .errors import bad_request
from .params import Params
from .rules import CALLBACK_DEADLINE, MAX_CALLBACK_ANSWER, TOO_OLD
from .state import JSON, BotAccount


class BotApi(Params):
    """answerCallbackQuery and the command menus."""

    async def _api_answerCallbackQuery(self, account: BotAccount, p: JSON, files: Files) -> bool:
        query_id = self._opt_str(p, "callback_query_id")
        query = self._queries.get(query_id or "")
        now = self.now()
        if (query is None or query.answered or query.bot_id != account.id
                or now - query.pressed_at > CALLBACK_DEADLINE):
            if query is not None and not query.answered:
                query.late += 1
            raise bad_request(TOO_OLD)
        text = self._opt_str(p, "text")
        if text is not None and len(text) > MAX_CALLBACK_ANSWER:
            raise bad_request("MESSAGE_TOO_LONG")
        query.answered = True
        query.answered_at = now
        query.answer_text = text
        query.show_alert = self._bool(p, "show_alert")
        query.url = self._opt_str(p, "url")
        return True

    def _scope_key(self, account: BotAccount, p: JSON) -> tuple[str, str]:
        scope = self._opt_json(p, "scope", "can't parse BotCommandScope JSON object")
        language = self._opt_str(p, "language_code") or ""
        if language and (len(language) != 2 or not language.isalpha()):
            raise bad_request("invalid language code specified")
        if scope is None:
            return ("default", language)
        if not isinstance(scope, dict) or "type" not in scope:
            raise bad_request("can't parse BotCommandScope JSON object")
        kind = str(scope["type"])
        if kind in ("default", "all_private_chats", "all_group_chats", "all_chat_administrators"):
            return (kind, language)
        if kind not in ("chat", "chat_administrators", "chat_member"):
            raise bad_request("wrong BotCommandScope type specified")
        chat = self._chat(account, scope)
        key = f"{kind}:{chat.id}"
        if kind == "chat_member":
            user_id = self._opt_int(scope, "user_id")
            if user_id is None or user_id not in self._users:
                raise bad_request("user not found")
            key += f":{user_id}"
        return (key, language)

    async def _api_setMyCommands(self, account: BotAccount, p: JSON, files: Files) -> bool:
        commands = self._opt_json(p, "commands", "can't parse commands JSON object")
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON object")
        checked: list[JSON] = []
        for command in commands:
            if not isinstance(command, dict):
                raise bad_request("can't parse BotCommand JSON object")
            name = command.get("command")
            description = command.get("description")
            if (
                not isinstance(name, str)
                or not 1 <= len(name) <= 32
                or not all(c.islower() or c.isdigit() or c == "_" for c in name)
                or not name.isascii()
            ):
                raise bad_request("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise bad_request(
                    "command description is empty"
                    if not description
                    else "BOT_COMMAND_DESCRIPTION_INVALID"
                )
            checked.append({"command": name, "description": description})
        if len(checked) > 100:
            raise bad_request("too many commands specified")
        key = self._scope_key(account, p)
        if checked:
            account.commands[key] = checked
        else:
            account.commands.pop(key, None)
        return True

    async def _api_getMyCommands(self, account: BotAccount, p: JSON, files: Files) -> list[JSON]:
        return list(account.commands.get(self._scope_key(account, p), []))

    async def _api_deleteMyCommands(self, account: BotAccount, p: JSON, files: Files) -> bool:
        account.commands.pop(self._scope_key(account, p), None)
        return True
