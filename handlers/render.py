"""HTML rendering of service results and the conversion of plain buttons to Telegram's."""

from __future__ import annotations

import html
from decimal import Decimal

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import fmt
from bot.accounts import AccountInfo
from bot.exchange.types import Instrument, Margin, Order, Position, display_currency
from bot.notify import Keyboard
from bot.trading import Trading


def markup(buttons: Keyboard | None) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(b.label, callback_data=b.data) for b in row] for row in buttons]
    )


def account_line(acc: AccountInfo) -> str:
    perms = ", ".join(acc.permissions) or "none"
    mode = " · <b>read-only</b>" if acc.read_only else ""
    star = "▶️ " if acc.active else "   "
    line = f"{star}<b>{acc.network}</b> · key {html.escape(acc.masked)} · {perms}{mode}"
    if acc.network == "paper":
        return line
    if acc.ip_binding:
        line += f" · IP {html.escape(', '.join(acc.ip_binding))}"
    elif acc.ip_binding is None:
        line += " · IP binding not checked (/connect again to check)"
    else:
        line += " · any IP"
    if acc.unbound_mainnet:
        line += "\n" + UNBOUND_WARNING
    return line


UNBOUND_WARNING = (
    "⚠️ This mainnet key is not bound to an IP address. BitMEX warns that stolen "
    "trade-only keys are abused to drain accounts through manipulative trades; bind the "
    "key to the bot's IP on the API Keys page."
)


def balances(margins: list[Margin]) -> str:
    if not margins:
        return "No balances."
    lines = []
    for m in margins:
        c = m.currency
        if c not in ("XBt", "USDt") and not (m.wallet_balance or m.margin_balance
                                             or m.available_margin or m.unrealised_pnl):
            continue  # every account has an (empty) BMEx wallet; only XBT/USDT always show
        lines.append(
            f"<b>{html.escape(display_currency(c))}</b>\n"
            f"  wallet {fmt.money(m.wallet_balance, c)}\n"
            f"  margin balance {fmt.money(m.margin_balance, c)}\n"
            f"  available {fmt.money(m.available_margin, c)}\n"
            f"  uPnL {fmt.money(m.unrealised_pnl, c)}"
        )
    return "\n".join(lines)


def position_block(p: Position, inst: Instrument | None) -> str:
    px = fmt.price
    lines = [f"<b>{p.symbol}</b> {p.side} {fmt.num(abs(p.current_qty))} · "
             f"{'cross' if p.cross_margin else fmt.num(p.leverage) + 'x'}"]
    lines.append(f"  entry {px(inst, p.avg_entry_price)} · mark {px(inst, p.mark_price)}")
    if p.liquidation_price and p.mark_price:
        dist = (p.liquidation_price - p.mark_price) / p.mark_price * 100
        lines.append(f"  liquidation {px(inst, p.liquidation_price)} ({fmt.pct(dist)})")
    upnl = fmt.money(p.unrealised_pnl, p.currency)
    roe = ""
    if p.pos_margin:
        roe = f" · ROE {fmt.pct(Decimal(p.unrealised_pnl) / Decimal(p.pos_margin) * 100)}"
    lines.append(f"  uPnL {upnl}{roe}")
    return "\n".join(lines)


def order_block(n: int, o: Order, inst: Instrument | None = None) -> str:
    return f"{n}. {Trading.order_line(o, inst)}"
