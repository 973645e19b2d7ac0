"""How domain code talks to users without knowing about Telegram (design rule 1).

- `notifier`: the `Notifier` protocol services call (the Telegram one is
  handlers/notifier.py), its plain-data `Button`s, and the `DeliveryError`s it raises;
- `queue`: the `DeliveryQueue` that wraps any notifier: pacing, retries, settings;
- `pacing`: Telegram's limits (`DeliveryLimits`), the `TokenBucket` they are kept with, one
  chat's buckets (`ChatBuckets`, also the handlers' rate limiter's) and the `WireGate`;
- `audience`: message priorities and the person's settings (`Audience`, quiet hours).

Import from here: the names stay where they always were.
"""

from bot.notify.audience import BULK_PRIORITY, PREF_KEY, PRIORITY, Audience, AudienceLookup, Mode
from bot.notify.notifier import (
    ON_WIRE,
    REPEATED,
    Button,
    DeliveryError,
    Edited,
    Keyboard,
    Notifier,
    RetryLater,
    Sent,
    Transient,
    Unreachable,
    on_wire,
)
from bot.notify.pacing import ChatBuckets, DeliveryLimits, TokenBucket, WireGate
from bot.notify.queue import Clock, DeliveryQueue, Sleep

__all__ = [
    "BULK_PRIORITY",
    "ON_WIRE",
    "PREF_KEY",
    "PRIORITY",
    "REPEATED",
    "Audience",
    "AudienceLookup",
    "Button",
    "ChatBuckets",
    "Clock",
    "DeliveryError",
    "DeliveryLimits",
    "DeliveryQueue",
    "Edited",
    "Keyboard",
    "Mode",
    "Notifier",
    "RetryLater",
    "Sent",
    "Sleep",
    "TokenBucket",
    "Transient",
    "Unreachable",
    "WireGate",
    "on_wire",
]
