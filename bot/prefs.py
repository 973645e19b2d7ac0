"""Per-user preferences: time zone, /settings, and what the delivery queue needs to know.

`unit`, `btc` and `presets` have no columns of their own: they live in User.notify_prefs
(a JSON map of settings) under those keys, beside the notification modes per kind.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING

from bot import parse as P
from bot.buttons import PresetPick, button
from bot.db.models import PresetMenu, User
from bot.errors import UserError
from bot.notify import Audience, Button
from bot.parse.values import SizeSpec, parse_zone, zone_info

if TYPE_CHECKING:
    from sqlmodel.ext.asyncio.session import AsyncSession

    from bot.db.engine import Database
    from bot.users import UserView

NOTIFY_KINDS = ("fills", "orders", "liquidations", "alerts", "summaries", "feeds")
MODE_ICON = {"on": "🔔 on", "silent": "🔕 silent", "off": "⛔ off"}
# A size menu's buttons work this long: a menu is a question, not an order (the preview a
# press opens has its own, short expiry), so it outlives a card's minute.
PRESET_MENU_TTL = timedelta(minutes=10)


def user_zone(name: str) -> tzinfo:
    """The tzinfo of a stored zone name (`Europe/Berlin`, `UTC+03:00`); UTC if unreadable."""
    try:
        return zone_info(*parse_zone(name))
    except (UserError, ValueError, KeyError):
        return zone_info("UTC", 0)


def _hhmm(text: str | None) -> time | None:
    if not text:
        return None
    hh, mm = text.split(":")
    return time(int(hh), int(mm))


def presets_of(user: User) -> tuple[SizeSpec, ...]:
    """The user's size presets (`/settings presets`), the defaults when unset or unreadable."""
    stored = (user.notify_prefs or {}).get("presets")
    if not isinstance(stored, str) or not stored:
        return P.DEFAULT_PRESETS
    specs = [P.size_from_token(t) for t in stored.split()[:4]]
    out = tuple(s for s in specs if s is not None)
    return out or P.DEFAULT_PRESETS


def audience_of(user: User | UserView) -> Audience:
    start, end = _hhmm(user.quiet_start), _hhmm(user.quiet_end)
    quiet = (start, end) if start is not None and end is not None and start != end else None
    prefs = {k: v for k, v in (user.notify_prefs or {}).items() if k in NOTIFY_KINDS}
    return Audience(blocked=user.blocked, prefs=prefs, quiet=quiet, tz=user_zone(user.tz))


class Preferences:
    def __init__(self, db: Database, *,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.now = now

    async def audience(self, chat_id: int) -> Audience | None:
        """For the delivery queue: a private chat's owner, None for groups and strangers."""
        if chat_id <= 0:
            return None
        async with self.db.read() as s:
            user = await s.get(User, chat_id)
        return None if user is None else audience_of(user)

    async def _user(self, s: AsyncSession, user_id: int) -> User:
        user = await s.get(User, user_id)
        if user is None:
            raise UserError("Send /start first.")
        return user

    async def set_tz(self, user_id: int, intent: P.Tz) -> str:
        async with self.db.session() as s:
            user = await self._user(s, user_id)
            user.tz = intent.zone
            s.add(user)
            await s.commit()
        local = datetime.now(UTC).astimezone(intent.tzinfo())
        return (f"🕓 Time zone set to <b>{html.escape(intent.zone)}</b> "
                f"(now {local:%H:%M} there). Summaries and quiet hours follow it.")

    async def apply(self, user_id: int, key: str, value: str) -> None:
        """Change one setting; `key`/`value` were validated by the parser."""
        async with self.db.session() as s:
            user = await self._user(s, user_id)
            prefs = dict(user.notify_prefs or {})
            if key == "symbol":
                user.default_symbol = value
            elif key in ("btc", "unit"):
                prefs[key] = value
            elif key == "presets":
                if value == "default":
                    prefs.pop("presets", None)
                else:
                    prefs["presets"] = value  # tokens, space-separated (a str map)
            elif key == "confirm":
                user.confirm_timeout = int(value)
            elif key == "quiet":
                if value == "off":
                    user.quiet_start = user.quiet_end = None
                else:
                    start, end = value.split("-")
                    if start == end:
                        raise UserError("Quiet hours must start and end at different times.")
                    user.quiet_start, user.quiet_end = start, end
            elif key == "notify":
                kind, mode = value.split()
                if kind not in NOTIFY_KINDS or mode not in MODE_ICON:
                    raise UserError("Write notify KIND on|off|silent.")
                prefs[kind] = mode
            else:
                raise UserError(f"Unknown setting {html.escape(key)}.")
            user.notify_prefs = prefs  # a new dict, so SQLAlchemy sees the JSON change
            s.add(user)
            await s.commit()

    async def show(self, user_id: int) -> str:
        async with self.db.read() as s:
            user = await self._user(s, user_id)
        prefs = user.notify_prefs or {}
        quiet = (f"{user.quiet_start}–{user.quiet_end}" if user.quiet_start and user.quiet_end
                 else "off")
        lines = [
            "<b>⚙️ Settings</b>",
            f"symbol: <b>{html.escape(user.default_symbol)}</b>",
            f"btc: <b>{html.escape(str(prefs.get('btc') or 'XBTUSD'))}</b>",
            f"unit: <b>{html.escape(str(prefs.get('unit') or 'contracts'))}</b>",
            f"confirm: <b>{user.confirm_timeout} s</b>",
            "presets: <b>" + html.escape(" · ".join(P.preset_label(p) for p in presets_of(user)))
            + "</b>",
            f"quiet: <b>{quiet}</b> ({html.escape(user.tz)}"
            + ("; messages arrive silently then)" if quiet != "off" else ")"),
            "notify:",
        ]
        lines += [f"  {k}: {MODE_ICON.get(str(prefs.get(k, 'on')), '🔔 on')}"
                  for k in NOTIFY_KINDS]
        lines.append("\nChange one: <code>/settings confirm 30</code>, "
                     "<code>/settings quiet 23:00-07:00</code>, "
                     "<code>/settings notify alerts silent</code>")
        return "\n".join(lines)

    async def pick_size(self, user_id: int, chat_id: int, intent: P.PickSize
                        ) -> tuple[str, list[list[Button]]]:
        """An order typed without a size: the presets as buttons (issue #14 item 5).

        Everything else that was typed (a limit price, sl, tp, trail, flags) is stored as
        a PresetMenu row and each button carries that row's id and its size, not an index
        into the presets: a press opens exactly what was typed with the size its label
        says, also after /settings presets changed them, and only opens a preview (nothing
        is placed without Confirm). The risk preset needs a stop: with `sl` in the command
        it is ready; without, its label says so and a press answers with the command to
        type (one line, nothing opened).
        """
        async with self.db.session() as s:
            user = await self._user(s, user_id)
            symbol = (intent.symbol or user.default_symbol).upper()
            now = self.now()
            menu = PresetMenu(user_id=user_id, chat_id=chat_id,
                              order=P.order_to_json(dataclasses.replace(intent.order,
                                                                        symbol=symbol)),
                              created_at=now, expires_at=now + PRESET_MENU_TTL)
            s.add(menu)
            await s.commit()
            await s.refresh(menu)
        assert menu.id is not None
        presets = presets_of(user)
        word = "buy" if intent.side == "Buy" else "sell"
        rows: list[list[Button]] = []
        for spec in presets:
            label = P.preset_label(spec)
            if spec.kind == "risk" and not intent.has_stop:
                label += " · needs sl"
            rows.append([button(label, PresetPick(menu.id, P.preset_token(spec)))])
        head = f"<b>{intent.side.upper()} {html.escape(symbol)} · how much?</b>"
        lines = [head, "Pick a size; the preview with Confirm comes next."]
        o = intent.order
        if o.sl is not None:
            lines.append(f"Stop-loss {html.escape(format(o.sl, 'f'))} goes with it.")
        elif o.sl_pct is not None:
            lines.append(f"Stop-loss {html.escape(P.fmt_pct(o.sl_pct))} from entry goes with "
                         "it.")
        elif any(s.kind == "risk" for s in presets):
            lines.append(f"Risk presets size from a stop: /{word} {html.escape(symbol.lower())} "
                         "sl PRICE shows them ready.")
        lines.append("Change these: /settings presets $50 $200 2% risk 10%")
        return "\n".join(lines), rows

    async def preset_order(self, user_id: int, press: PresetPick) -> P.Order:
        """The order a preset press asks for: the stored typed order with the preset's
        size. A press on a menu that expired, was purged, or is someone else's (a forged
        id) answers one line and opens nothing."""
        async with self.db.read() as s:
            menu = await s.get(PresetMenu, press.menu_id)
        if menu is None or menu.user_id != user_id:
            raise UserError("That button is out of date; send the order again.")
        if menu.expires_at <= self.now():
            raise UserError("This size menu has expired; send the order again.")
        try:
            typed = P.order_from_json(menu.order)
        except ValueError as e:
            raise UserError("That button is out of date; send the order again.") from e
        return P.preset_order(typed.side, typed.symbol or "", press.size, typed.sl, typed)
