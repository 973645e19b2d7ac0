"""What the real Bot API allows, as the emulator enforces it: sizes, deadlines, windows, ports,
and the fixed senders Telegram itself uses.
"""

from __future__ import annotations

import re

from .state import SERVICE_USER_ID, User

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64
MAX_CALLBACK_ANSWER = 200
# Telegram drops a callback query about 15 s after the press; answering later fails.
CALLBACK_DEADLINE = 15.0
TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
# A message to a chat where someone wrote this recently (emulated seconds) is a reply;
# others are bulk notifications, held to the ~30/s overall.
REPLY_WINDOW = 60.0
# Sent unless a bot asks for them by name, as on the real server.
OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
INLINE_BUTTON_ACTIONS = (
    "callback_data",
    "url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "login_url",
    "web_app",
    "copy_text",
    "callback_game",
    "pay",
)
COUNTED = frozenset({"sendMessage", "sendPhoto", "sendDocument"})
EDITS = frozenset({"editMessageText", "editMessageCaption", "editMessageReplyMarkup"})
PHOTO_SIDES = (90, 320, 800, 1280)
MISSING_MESSAGE_ID = "message identifier is not specified"
# deleteMessage works only on messages younger than this (Bot API docs).
DELETE_WINDOW = 48 * 3600
WEBHOOK_PORTS = frozenset({80, 88, 443, 8443})
SECRET_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
WHAT = {"sendMessage": "text messages", "sendPhoto": "photos", "sendDocument": "documents"}
# Telegram's stand-in sender for anonymous group admins (the same id on the real server).
GROUP_ANONYMOUS_BOT = User(1087968824, "Group", "GroupAnonymousBot", is_bot=True,
                           language_code=None)
# Telegram's sender of posts auto-forwarded from a channel into its discussion group.
TELEGRAM_SERVICE = User(SERVICE_USER_ID, "Telegram", language_code=None)
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
