"""BitMEX trading from a Telegram chat: the domain side (no Telegram imports here)."""

__version__ = "0.1.0"
