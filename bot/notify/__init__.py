"""How domain code talks to users without knowing about Telegram (design rule 1).

- `notifier`: the `Notifier` protocol services call (the Telegram one is
  handlers/notifier.py), its plain-data `Button`s, and the `DeliveryError`s it raises;
- `queue`: the `DeliveryQueue` that wraps any notifier: pacing, retries, settings;
- `pacing`: Telegram's limits (`DeliveryLimits`) and the `TokenBucket` they are kept with;
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
from bot.notify.pacing import DeliveryLimits, TokenBucket
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
    "on_wire",
]
