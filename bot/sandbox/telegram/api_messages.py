"""Bot API methods, messages: send (text, photo, document), edit, delete, chat actions."""

from __future__ import annotations

import time
from collections.abc import Callable

from .core import Files
from .errors import bad_request
from .files import FileStore
from .params import Params
from .rules import CHAT_ACTIONS, DELETE_WINDOW, NOT_MODIFIED
from .state import JSON, BotAccount, StoredFile

# A send method's own parameters, read and checked: what stores the message's content.
Content = Callable[[], JSON]


class MessagesApi(Params, FileStore):
    """sendMessage, sendPhoto, sendDocument, edit*, deleteMessage, sendChatAction."""

    async def _api_sendMessage(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        def read() -> Content:
            text, entities = self._text(p)
            return lambda: {"text": text, "entities": entities}

        return self._send(account, p, "text messages", read)

    async def _api_sendPhoto(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        def read() -> Content:
            upload = self._upload(p, files, "photo")
            caption, caption_entities = self._caption(p)

            def content() -> JSON:
                data = upload.data if isinstance(upload, StoredFile) else upload[1]
                stored, sizes = self._store_photo(data)
                return {"photo": sizes, "file": stored, "caption": caption,
                        "caption_entities": caption_entities}
            return content

        return self._send(account, p, "photos", read)

    async def _api_sendDocument(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        def read() -> Content:
            upload = self._upload(p, files, "document")
            caption, caption_entities = self._caption(p)

            def content() -> JSON:
                if isinstance(upload, StoredFile):
                    name, data, mime = (upload.file_name or "file", upload.data,
                                        upload.mime_type or "")
                else:
                    name, data, mime = upload
                stored, document = self._store_document(
                    data, name or "file", mime or "application/octet-stream")
                return {"document": document, "file": stored, "caption": caption,
                        "caption_entities": caption_entities}
            return content

        return self._send(account, p, "documents", read)

    def _send(self, account: BotAccount, p: JSON, what: str, read: Callable[[], Content]) -> JSON:
        """What every send* does, in the order Telegram checks it: the chat and the right
        to send `what` there, the method's own parameters (`read`), the keyboard, the
        reply and the topic, then the content is stored (`read`'s result: a file only once
        every parameter is valid), the flood limits are counted and the message is made."""
        chat = self._chat(account, p)
        self._check_can_send(account, chat, what)
        content = read()
        inline, other = self._markup(p)
        reply_to = self._reply_target(account, chat, p)
        thread = self._thread(chat, p, reply_to)
        fields = content()
        self._flood(account, chat)
        message = self._store(
            account,
            chat,
            account.user,
            **fields,
            reply_markup=inline,
            reply_keyboard=other,
            reply_to=reply_to,
            disable_notification=self._bool(p, "disable_notification"),
            thread_id=thread,
        )
        return message.to_api()

    async def _api_editMessageText(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        message = self._target(account, p, "message to edit not found")
        if message.sender is not account.user:
            raise bad_request("message can't be edited")
        if message.text is None:
            raise bad_request("there is no text in the message to edit")
        text, entities = self._text(p)
        inline, _ = self._markup(p, inline_only=True)
        # Like the real server, an edit without reply_markup drops the keyboard.
        if (text, entities, inline) == (message.text, message.entities, message.reply_markup):
            raise bad_request(NOT_MODIFIED)
        self._flood(account, message.chat, edit=True)
        message.history.append(message.text)
        message.text, message.entities, message.reply_markup = text, entities, inline
        return self._apply_edit(message)

    async def _api_editMessageCaption(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        message = self._target(account, p, "message to edit not found")
        if message.sender is not account.user:
            raise bad_request("message can't be edited")
        if message.file is None:
            raise bad_request("there is no caption in the message to edit")
        caption, entities = self._caption(p)
        inline, _ = self._markup(p, inline_only=True)
        current = (message.caption, message.caption_entities, message.reply_markup)
        if (caption, entities, inline) == current:
            raise bad_request(NOT_MODIFIED)
        self._flood(account, message.chat, edit=True)
        message.history.append(message.caption)
        message.caption, message.caption_entities, message.reply_markup = caption, entities, inline
        return self._apply_edit(message)

    async def _api_editMessageReplyMarkup(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        message = self._target(account, p, "message to edit not found")
        if message.sender is not account.user:
            raise bad_request("message can't be edited")
        inline, _ = self._markup(p, inline_only=True)
        if inline == message.reply_markup:
            raise bad_request(NOT_MODIFIED)
        self._flood(account, message.chat, edit=True)
        message.reply_markup = inline
        return self._apply_edit(message)

    async def _api_deleteMessage(self, account: BotAccount, p: JSON, files: Files) -> bool:
        message = self._target(account, p, "message to delete not found")
        chat = message.chat
        own = message.sender is account.user
        # Bot API deleteMessage: only messages under 48 h old; others' messages in a group
        # need the bot to be an admin, and in a supergroup to hold can_delete_messages.
        if time.time() - message.date >= DELETE_WINDOW:
            raise bad_request("message can't be deleted")
        if chat.is_group and not own:
            allowed = (chat.can(account.id, "can_delete_messages") if chat.type == "supergroup"
                       else chat.is_admin(account.id))
            if not allowed:
                raise bad_request("message can't be deleted")
        message.deleted = True
        message.version += 1
        self._notify()
        return True

    async def _api_sendChatAction(self, account: BotAccount, p: JSON, files: Files) -> bool:
        chat = self._chat(account, p)
        self._check_can_send(account, chat)
        action = self._opt_str(p, "action")
        if action not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        account.actions.append((chat.id, action))
        return True
