"""Parameter decoding and the checks every Bot API method shares: typed parameters, the target
chat and the bot's membership and rights in it, text and entities, reply markup, threads,
reply targets, edits, and flood control.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .entities import EntityParseError, parse_html, strip_text, utf16_len
from .errors import bad_request, forbidden, too_many_requests
from .rules import (
    INLINE_BUTTON_ACTIONS,
    MAX_CALLBACK_DATA,
    MAX_CAPTION,
    MAX_TEXT,
    MISSING_MESSAGE_ID,
    REPLY_WINDOW,
)
from .state import JSON, KICKED, LEFT, RESTRICTED, BotAccount, Chat, Message
from .world import World


class Params(World):
    """Decoding and checking what a method was sent."""

    @staticmethod
    def _opt_str(p: JSON, name: str) -> str | None:
        value = p.get(name)
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value)

    @staticmethod
    def _opt_int(p: JSON, name: str) -> int | None:
        value = p.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            raise bad_request(f'field "{name}" must be of type Integer')
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad_request(f'field "{name}" must be of type Integer') from None

    @staticmethod
    def _opt_float(p: JSON, name: str) -> float | None:
        value = p.get(name)
        if value is None or value == "":
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad_request(f'field "{name}" must be of type Number') from None

    @staticmethod
    def _bool(p: JSON, name: str) -> bool:
        value = p.get(name)
        return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))

    @staticmethod
    def _opt_json(p: JSON, name: str, error: str) -> Any:
        value = p.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(error) from None
        return value

    def _chat(self, account: BotAccount, p: JSON, *, name: str = "chat_id") -> Chat:
        """The chat a request names, if this bot can know it (else "chat not found")."""
        raw = p.get(name)
        if raw is None or raw == "":
            raise bad_request(f"{name} is empty")
        chat: Chat | None = None
        if isinstance(raw, str) and raw.startswith("@"):
            wanted = raw[1:].lower()
            chat = next(
                (
                    c
                    for c in self._chats.values()
                    if (c.username or "").lower() == wanted and c.is_group
                ),
                None,
            )
        else:
            try:
                chat = self._chats.get(int(raw))
            except (TypeError, ValueError):
                chat = None
            user = self._users.get(int(raw)) if chat is None and str(raw).isdigit() else None
            if user is not None and not user.is_bot:
                # A user the bot knows (from a group) but who never opened a chat with it:
                # the chat exists, the send is refused ("can't initiate conversation").
                chat = self.private_chat(user, bot=account, started=False)
        if chat is None:
            raise bad_request("chat not found")
        if (chat.is_group or chat.type == "channel") and account.id not in chat.members:
            raise bad_request("chat not found")
        return chat

    def _check_member(self, account: BotAccount, chat: Chat) -> None:
        if chat.migrated_to is not None:
            raise bad_request(
                "group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": chat.migrated_to},
            )
        if not chat.is_group and chat.type != "channel":
            return
        kind = {"supergroup": "supergroup chat", "channel": "channel chat"}.get(
            chat.type, "group chat")
        status = chat.status(account.id)
        if status == KICKED:
            raise forbidden(f"bot was kicked from the {kind}")
        if status == LEFT:
            raise forbidden(f"bot is not a member of the {kind}")

    def _check_can_send(self, account: BotAccount, chat: Chat,
                        what: str = "text messages") -> None:
        self._check_member(account, chat)
        if chat.is_group:
            if chat.status(account.id) == RESTRICTED:
                raise bad_request(f"not enough rights to send {what} to the chat")
            return
        if chat.type == "channel":
            if not chat.is_admin(account.id):
                raise bad_request("need administrator rights in the channel chat")
            return
        if chat.user is not None and chat.user.deactivated:
            raise forbidden("user is deactivated")
        if chat.id in account.blocked_by:
            raise forbidden("bot was blocked by the user")
        if chat.user is not None and chat.user.is_bot:
            raise forbidden("bot can't send messages to bots")
        if chat.id not in account.started:
            raise forbidden("bot can't initiate conversation with a user")

    def _format(
        self, raw: Any, parse_mode: str | None, entities_raw: Any, *, caption: bool = False
    ) -> tuple[str, list[JSON]]:
        text = raw if isinstance(raw, str) else json.dumps(raw)
        mode = (parse_mode or "").lower()
        entities: list[JSON]
        if mode == "html":
            try:
                text, entities = parse_html(text)
            except EntityParseError as exc:
                raise bad_request(f"can't parse entities: {exc}") from None
        elif mode in ("", "markdown", "markdownv2"):
            # Markdown modes are passed through unchecked: the bot formats with HTML.
            entities = []
            if entities_raw is not None and not mode:
                field = "caption_entities" if caption else "entities"
                parsed = entities_raw
                if isinstance(parsed, str):
                    try:
                        parsed = json.loads(parsed)
                    except ValueError:
                        raise bad_request(f"can't parse {field} JSON object") from None
                if not isinstance(parsed, list) or not all(isinstance(e, dict) for e in parsed):
                    raise bad_request(f'field "{field}" must be of type Array')
                entities = parsed
        else:
            raise bad_request(f"unsupported parse_mode {parse_mode!r}")
        return strip_text(text, entities)

    def _text(self, p: JSON) -> tuple[str, list[JSON]]:
        raw = p.get("text")
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise bad_request("message text is empty")
        text, entities = self._format(raw, self._opt_str(p, "parse_mode"), p.get("entities"))
        if not text:
            raise bad_request("message text is empty")
        # Telegram counts UTF-16 code units: an emoji outside the BMP counts twice.
        if utf16_len(text) > MAX_TEXT:
            raise bad_request("message is too long")
        return text, entities

    def _caption(self, p: JSON) -> tuple[str | None, list[JSON]]:
        raw = p.get("caption")
        if raw is None:
            return None, []
        text, entities = self._format(
            raw, self._opt_str(p, "parse_mode"), p.get("caption_entities"), caption=True
        )
        if utf16_len(text) > MAX_CAPTION:
            raise bad_request("message caption is too long")
        return (text or None), entities

    def _markup(self, p: JSON, *, inline_only: bool = False) -> tuple[JSON | None, JSON | None]:
        """(inline keyboard, other reply markup) from `reply_markup`, validated."""
        markup = self._opt_json(p, "reply_markup", "can't parse reply keyboard markup JSON object")
        if markup is None:
            return None, None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            if inline_only:
                raise bad_request("inline keyboard expected")
            if not any(k in markup for k in ("keyboard", "remove_keyboard", "force_reply")):
                raise bad_request("can't parse reply keyboard markup JSON object")
            return None, markup
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad_request('field "inline_keyboard" must be of type Array')
        for row in rows:
            for button in row:
                self._check_button(button)
        return {"inline_keyboard": rows}, None

    @staticmethod
    def _check_button(button: Any) -> None:
        if not isinstance(button, dict):
            raise bad_request(
                "can't parse inline keyboard button: InlineKeyboardButton must be an Object"
            )
        if not isinstance(button.get("text"), str):
            raise bad_request(
                'can\'t parse inline keyboard button: Field "text" must be of type String'
            )
        if not any(k in button for k in INLINE_BUTTON_ACTIONS):
            raise bad_request(
                "can't parse inline keyboard button: Text buttons are "
                "unallowed in the inline keyboard"
            )
        if "callback_data" in button:
            data = button["callback_data"]
            if not isinstance(data, str) or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA:
                raise bad_request("BUTTON_DATA_INVALID")
        if "url" in button:
            url = button["url"]
            if not isinstance(url, str) or not url.lower().startswith(
                ("http://", "https://", "tg://")
            ):
                raise bad_request(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")

    def _thread(self, chat: Chat, p: JSON, reply_to: Message | None) -> int | None:
        """Where a bot's message lands in a forum: the topic asked for, else the replied
        message's topic, else General; a closed topic refuses it."""
        thread = self._opt_int(p, "message_thread_id")
        if not chat.is_forum:
            return None
        if thread is None and reply_to is not None:
            thread = reply_to.thread_id
        if thread is None:
            if chat.general_closed:
                raise bad_request("TOPIC_CLOSED")
            return None
        topic = chat.topics.get(thread)
        if topic is None:
            raise bad_request("message thread not found")
        if topic.closed:
            raise bad_request("TOPIC_CLOSED")
        return thread

    def _reply_target(self, account: BotAccount, chat: Chat, p: JSON) -> Message | None:
        params = self._opt_json(p, "reply_parameters", "can't parse reply parameters JSON object")
        allow_missing = self._bool(p, "allow_sending_without_reply")
        message_id: int | None
        if isinstance(params, dict):
            message_id = self._opt_int(params, "message_id")
            allow_missing = allow_missing or bool(params.get("allow_sending_without_reply"))
        else:
            message_id = self._opt_int(p, "reply_to_message_id")
        if message_id is None:
            return None
        target = self._find(account, chat, message_id)
        if target is None and not allow_missing:
            raise bad_request("message to be replied not found")
        return target

    def _find(self, account: BotAccount, chat: Chat, message_id: int) -> Message | None:
        for message in self._dialogs.get(self._dialog_key(chat, account), []):
            if message.message_id == message_id:
                return None if message.deleted else message
        return None

    def _flood(self, account: BotAccount, chat: Chat, *, edit: bool = False) -> None:
        # Answers to people who just wrote are not held to the bulk 30/s (TELEGRAM.md).
        bulk = self.now() - self._wrote.get(chat.id, float("-inf")) > REPLY_WINDOW
        retry_after = self._limiter.acquire(account.id, chat.id, group=chat.is_group, edit=edit,
                                            bulk=bulk)
        if retry_after:
            raise too_many_requests(retry_after)

    def _target(self, account: BotAccount, p: JSON, missing: str) -> Message:
        if p.get("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")
        chat = self._chat(account, p)
        self._check_member(account, chat)
        message_id = self._opt_int(p, "message_id")
        if message_id is None:
            raise bad_request(MISSING_MESSAGE_ID)
        message = self._find(account, chat, message_id)
        if message is None:
            raise bad_request(missing)
        return message

    def _apply_edit(self, message: Message) -> JSON:
        message.edit_date = int(time.time())
        message.version += 1
        self._notify()
        return message.to_api()
