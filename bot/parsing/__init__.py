"""The chat-language parser, split by concern; import from `bot.parse`."""
