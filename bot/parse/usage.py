"""/help, read from the command table: the list of commands, or one command's grammar."""

from __future__ import annotations

from typing import Literal

from bot.parse.commands import BY_NAME, COMMANDS, canonical

GROUP_COMMANDS = tuple(c.name for c in COMMANDS if c.where == "group")
OPERATOR_COMMANDS = tuple(c.name for c in COMMANDS if c.where == "operators")


def help_text(command: str | None = None, *, group: bool = False,
              operator: bool = False) -> str:
    """/help: the list of commands, or the full grammar of one command with examples.

    In a group only what works there is listed; operators' commands only to operators.
    """
    if command is None:
        if group:
            lines = ["In this group (admins post signals and shared alerts; anyone can see the "
                     "record). Trading and your account live in a private chat with me.",
                     "Send /help COMMAND for details:"]
            lines += [BY_NAME[c].usage for c in GROUP_COMMANDS]
            lines.append("Or free text in the usual shape: BTC/USDT long entry 60000 "
                         "targets 62000 stop 59000")
            return "\n".join(lines)
        lines = ["Commands (send /help COMMAND for details):"]
        lines += [c.usage for c in COMMANDS if operator or c.where != "operators"]
        return "\n".join(lines)
    n = canonical(command)
    if n is None:
        return f"No command /{command.lstrip('/')}. Send /help for the list."
    c = BY_NAME[n]
    return "\n".join([c.usage, *c.details, f"Example: {c.example}"])


MenuScope = Literal["private", "group", "admins"]


def menu(scope: MenuScope) -> list[tuple[str, str]]:
    """The BotFather menu of one scope, as (command, description) in the menu's order:
    private chats, every group member, group administrators."""
    entries = [(m, c.name) for c in COMMANDS
               if (m := {"private": c.menu, "group": c.group_menu, "admins": c.admin_menu}[scope])]
    return [(name, m.text) for m, name in sorted(entries, key=lambda e: e[0].rank)]
