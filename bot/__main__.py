"""Command line: `python -m bot {run,sandbox,migrate,migrate-db,gen-key,rotate-key}`.

This module is a composition root (with bot/sandbox/): it is the only place in
`bot` allowed to reach into `handlers` and `telegram`, and it does so lazily so
that `--help`, `migrate` and `gen-key` start instantly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.config import Settings, load_settings
from bot.errors import ConfigError, VaultError
from bot.logs import register_secret, setup_logging
from bot.memory import tune_malloc

log = logging.getLogger("bot")

NO_TOKEN = (
    "TELEGRAM_BOT_TOKEN is not set. To run the real bot, talk to @BotFather in Telegram, "
    "send /newbot, and put the token it gives you in .env as TELEGRAM_BOT_TOKEN=... "
    "To try the bot offline first, run: python -m bot sandbox"
)
NO_MASTER_KEY = (
    "MASTER_KEY is not set: it encrypts your users' API secrets. "
    "Create one with `python -m bot gen-key` and put it in .env as MASTER_KEY=..."
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bitmex-bot",
        description="Run your BitMEX account from a Telegram chat. "
        "Settings come from the environment and .env (see .env.example).",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="start the bot (polling, or webhook when WEBHOOK_URL is set)",
        description="Migrate the database, then serve Telegram updates. Polling by default; "
        "webhook mode when WEBHOOK_URL is set (an https URL on port 443, 80, 88 or 8443, "
        "served through a TLS proxy; the listener binds to PORT when the host sets it, "
        "else WEBHOOK_PORT).",
    )
    run.add_argument(
        "--sandbox-if-no-token",
        action="store_true",
        help="start the offline sandbox instead of failing when TELEGRAM_BOT_TOKEN is unset",
    )
    sb = sub.add_parser(
        "sandbox",
        help="the bot offline: BitMEX simulator + Telegram emulator + a terminal chat",
        description="Start the BitMEX simulator, the Telegram Bot API emulator and the bot on "
        "free loopback ports with a throwaway database and key, and chat with it in the "
        "terminal. Nothing leaves 127.0.0.1.",
    )
    sb.add_argument("--script", metavar="FILE", help="run a conversation from FILE and print it")
    sb.add_argument("--seed", type=int, default=None, help="seed for the simulated market")
    sb.add_argument("--out", default="sandbox-out", help="folder for photos the bot sends")
    sub.add_parser(
        "migrate",
        help="upgrade the database schema to the newest version",
        description="Apply every Alembic migration to DATABASE_URL (creating the file if needed).",
    )
    mdb = sub.add_parser(
        "migrate-db",
        help="copy every table from the SQLite DATABASE_URL to an empty PostgreSQL database",
        description="Stop the bot first. Copies every table from the SQLite database in "
        "DATABASE_URL to the empty PostgreSQL database given with --to (its schema is created "
        "first), keeping ids, and prints each table's row count on both sides. API secrets "
        "stay encrypted under the same MASTER_KEY. Then set DATABASE_URL to the --to URL.",
    )
    mdb.add_argument("--to", required=True, metavar="URL",
                     help="the target, postgresql+asyncpg://user:password@host:5432/dbname")
    sub.add_parser(
        "gen-key",
        help="print a new MASTER_KEY",
        description="Print a fresh random MASTER_KEY (urlsafe base64 of 32 bytes).",
    )
    sub.add_parser(
        "rotate-key",
        help="re-encrypt stored secrets under the current MASTER_KEY",
        description="Set MASTER_KEY to the new key and MASTER_KEY_OLD to the old one(s), then run "
        "this: every stored API secret is re-encrypted under MASTER_KEY. Afterwards "
        "MASTER_KEY_OLD can be removed.",
    )
    return p


def _settings() -> Settings:
    settings = load_settings()
    if settings.token:
        # The part after the colon is the secret half; the whole token has its own pattern.
        register_secret(settings.token.partition(":")[2])
    return settings


ENV_FILE = Path(".env")  # where Settings reads it from: the working directory


def secure_files(settings: Settings) -> None:
    """Owner-only database, WAL, SHM and paper snapshot, even when an earlier run, a copy or a
    restore left them wider; a warning when .env (token, MASTER_KEY) is open to others."""
    from bot.db.engine import make_owner_only
    from bot.paper_accounts import paper_path

    paper = paper_path(settings)
    for path in make_owner_only(settings.DATABASE_URL, paper,
                                paper.with_suffix(".tmp") if paper else None):
        log.info("made %s owner-only", path)
    try:
        mode = stat.S_IMODE(ENV_FILE.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        log.warning("%s is open to other users of this machine (mode %o) and holds the bot "
                    "token and MASTER_KEY: run chmod 600 %s", ENV_FILE.resolve(), mode, ENV_FILE)


def cmd_migrate(settings: Settings) -> int:
    from bot.db.engine import upgrade

    upgrade(settings.DATABASE_URL)
    print("Database is up to date.")
    return 0


def cmd_migrate_db(settings: Settings, target: str) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from bot.db.move import copy_database

    try:
        Settings(_env_file=None, DATABASE_URL=target)
    except ValueError:
        raise ConfigError(
            "--to must be a postgresql+asyncpg://user:password@host:5432/dbname URL "
            "(and needs `pip install '.[postgres]'`)") from None
    try:
        counts = asyncio.run(copy_database(settings.DATABASE_URL, target))
    except OSError as e:  # the server refused or is not there
        raise ConfigError(f"cannot reach the PostgreSQL server: {e.strerror or e}") from None
    except SQLAlchemyError as e:  # e.g. no such database, or the login was refused
        why = str(getattr(e, "orig", None) or e).splitlines()[0]
        raise ConfigError(f"the PostgreSQL database refused: {why}") from None
    width = max(len(c.table) for c in counts)
    print(f"{'table':<{width}}  {'sqlite':>8}  {'postgres':>8}")
    for c in counts:
        print(f"{c.table:<{width}}  {c.source:>8}  {c.target:>8}" + ("" if c.same else "  DIFFERS"))
    if not all(c.same for c in counts):
        print("The counts differ: nothing was kept on the target. The SQLite file is unchanged.")
        return 1
    secrets = _check_secrets(settings, target)
    print(f"Copied {sum(c.source for c in counts)} rows in {len(counts)} tables; counts match. "
          f"{secrets}Now set DATABASE_URL={_masked(target)} and start the bot.")
    return 0


def _masked(url: str) -> str:
    """The URL without its password (it is printed)."""
    head, sep, tail = url.rpartition("@")
    if not sep or ":" not in head.split("://", 1)[1]:
        return url
    scheme, _, creds = head.partition("://")
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{tail}"


def _check_secrets(settings: Settings, target: str) -> str:
    """Whether every copied API secret still opens under MASTER_KEY (a sentence, or "")."""
    if settings.master_key is None:
        return ""
    from sqlmodel import select

    from bot.db.engine import Database
    from bot.db.models import ApiCredential
    from bot.vault import Vault

    vault = Vault(settings.master_key, settings.old_master_keys)

    async def go() -> int:
        db = Database(target)
        try:
            async with db.session() as s:
                rows = (await s.exec(select(ApiCredential))).all()
        finally:
            await db.dispose()
        sealed = [r for r in rows if r.secret_enc]
        for r in sealed:  # raises VaultError (printed, exit 2) when one does not open
            vault.decrypt(r.secret_enc, user_id=r.user_id, network=r.network)
        return len(sealed)

    return f"{asyncio.run(go())} API secret(s) open under MASTER_KEY. "


def cmd_gen_key() -> int:
    from bot.vault import generate_key

    print(generate_key())
    return 0


def cmd_rotate_key(settings: Settings) -> int:
    from bot.db.engine import Database
    from bot.vault import Vault, rotate_secrets

    master = settings.master_key
    if master is None:
        raise ConfigError(NO_MASTER_KEY)
    vault = Vault(master, settings.old_master_keys)

    async def go() -> tuple[int, int]:
        db = Database(settings.DATABASE_URL)
        try:
            await db.migrate()
            return await rotate_secrets(db, vault)
        finally:
            await db.dispose()

    rotated, current = asyncio.run(go())
    print(f"Re-encrypted {rotated} secret(s); {current} were already under the current key.")
    return 0


def cmd_run(settings: Settings, sandbox_if_no_token: bool) -> int:
    # First, while this is the only thread: arenas made before it stay as they are.
    tuned = tune_malloc()
    if tuned:
        log.debug("malloc: %s", ", ".join(f"{k}={v}" for k, v in tuned.items()))
    if settings.token is None:
        if sandbox_if_no_token:
            print("TELEGRAM_BOT_TOKEN is not set: starting the offline sandbox instead.")
            return cmd_sandbox(None, None, "sandbox-out")
        raise ConfigError(NO_TOKEN)
    if settings.master_key is None:
        raise ConfigError(NO_MASTER_KEY)
    if settings.WEBHOOK_URL and settings.METRICS_PORT == settings.WEBHOOK_PORT:
        raise ConfigError(f"METRICS_PORT and WEBHOOK_PORT are both {settings.WEBHOOK_PORT}: "
                          "the metrics server and the webhook listener need a port each.")
    from bot.leader import lock_database_file

    # SQLite serves one instance: a second one is refused here, before it polls or trades.
    lock_database_file(settings)
    try:
        from handlers.app import run_forever
    except ImportError as e:  # pragma: no cover - only while the runtime is missing
        raise ConfigError(f"the Telegram runtime is not available: {e}") from None
    return run_forever(settings)


def cmd_sandbox(script: str | None, seed: int | None, out: str) -> int:
    try:
        from bot.sandbox.console import main as sandbox_main
    except ImportError as e:  # pragma: no cover - only while the sandbox is missing
        raise ConfigError(f"the sandbox is not available: {e}") from None
    return sandbox_main(script=script, seed=seed, out=out)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    try:
        if args.command == "gen-key":
            return cmd_gen_key()
        # The database, its WAL and the paper snapshot are created by this process: owner-only,
        # so other local users cannot read the (encrypted) keys or the trading history.
        os.umask(0o077)
        settings = _settings()
        setup_logging(settings.LOG_LEVEL)
        if args.command in ("migrate", "migrate-db", "rotate-key", "run"):
            secure_files(settings)
        if args.command == "migrate":
            return cmd_migrate(settings)
        if args.command == "rotate-key":
            return cmd_rotate_key(settings)
        if args.command == "migrate-db":
            return cmd_migrate_db(settings, args.to)
        if args.command == "run":
            return cmd_run(settings, args.sandbox_if_no_token)
        if args.command == "sandbox":
            return cmd_sandbox(args.script, args.seed, args.out)
    except (ConfigError, VaultError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
