"""The `medlegal` command (also `python -m bot`).

Exit codes: 0 success, 1 a user error (one clear line on stderr, no traceback), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from urllib.parse import urlparse

from pydantic import ValidationError
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from bot.settings import Settings


class UserError(Exception):
    """A problem the operator can fix; printed as one line."""


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"MEDLEGAL_{'_'.join(str(p) for p in err['loc']).upper() or 'SETTINGS'}: {err['msg']}"
            for err in exc.errors()
        )
        raise UserError(f"invalid configuration: {problems}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medlegal",
        description="A Telegram bot that helps physicians choose IME, California QME, or both.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the Telegram bot (polling, or webhook when MEDLEGAL_WEBHOOK_URL is set)")
    run.add_argument("--no-migrate", action="store_true", help="do not apply pending database migrations first")

    chat = sub.add_parser("chat", help="talk to the bot in this terminal: no token, no network")
    chat.add_argument("--user", type=int, default=None, help="the user id to act as (default: one fixed local id)")
    chat.add_argument("--admin", action="store_true", help="let this user use admin commands")

    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = db_sub.add_parser("upgrade", help="apply migrations (default: up to the newest)")
    up.add_argument("revision", nargs="?", default="head")
    down = db_sub.add_parser("downgrade", help="revert migrations (default: the last one; 'base' reverts all)")
    down.add_argument("revision", nargs="?", default="-1")
    db_sub.add_parser("current", help="show the database's revision and the newest one")
    return parser


async def _db(settings: Settings, action: str, revision: str) -> None:
    from db import migrate
    from db.engine import make_engine

    engine = make_engine(settings.database_url)
    try:
        if action == "upgrade":
            await migrate.upgrade(engine, revision)
        elif action == "downgrade":
            await migrate.downgrade(engine, revision)
        at, head = await migrate.current(engine)
        state = "up to date" if at == head else f"newest is {head}"
        print(f"database at {at or 'base (empty)'} ({state})")
    finally:
        await engine.dispose()


def _run_bot(settings: Settings, migrate_first: bool) -> None:
    from telegram import Update
    from telegram.error import InvalidToken, NetworkError, TimedOut

    from bot import logs
    from bot.app import build_application

    if settings.bot_token is None:
        raise UserError("MEDLEGAL_BOT_TOKEN is not set: get a token from @BotFather (or try `medlegal chat`)")
    where = settings.telegram_base_url or "api.telegram.org"
    logs.configure(settings.log_format)
    if migrate_first:
        asyncio.run(_db_quiet_upgrade(settings))
    try:
        asyncio.run(_check_telegram(settings))
    except InvalidToken:
        raise UserError("Telegram rejected MEDLEGAL_BOT_TOKEN: check the token @BotFather gave you") from None
    except (NetworkError, TimedOut) as exc:
        raise UserError(f"cannot reach the Telegram Bot API at {where}: {exc}") from None
    app = build_application(settings)
    try:
        if settings.webhook_url:
            host, _, port = settings.webhook_listen.rpartition(":")
            assert settings.webhook_secret is not None  # enforced by Settings
            app.run_webhook(
                listen=host,
                port=int(port),
                url_path=urlparse(settings.webhook_url).path.lstrip("/"),
                webhook_url=settings.webhook_url,
                secret_token=settings.webhook_secret.get_secret_value(),
                allowed_updates=Update.ALL_TYPES,
            )
        else:
            app.run_polling(allowed_updates=Update.ALL_TYPES)
    except InvalidToken:
        raise UserError("Telegram rejected MEDLEGAL_BOT_TOKEN: check the token @BotFather gave you") from None
    except (NetworkError, TimedOut) as exc:
        raise UserError(f"cannot reach the Telegram Bot API at {where}: {exc}") from None


async def _check_telegram(settings: Settings) -> None:
    """One getMe before starting, so a bad token or no network is one clear line, not PTB's retry traceback."""
    from telegram import Bot

    assert settings.bot_token is not None
    bot = Bot(
        settings.bot_token.get_secret_value(),
        base_url=settings.telegram_base_url or "https://api.telegram.org/bot",
        base_file_url=settings.base_file_url or "https://api.telegram.org/file/bot",
    )
    async with bot:
        await bot.get_me()


async def _db_quiet_upgrade(settings: Settings) -> None:
    from db import migrate
    from db.engine import make_engine

    engine = make_engine(settings.database_url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


def _chat(settings: Settings, user: int | None, admin: bool) -> None:
    from bot.console import DEFAULT_USER_ID, run_console

    user_id = DEFAULT_USER_ID if user is None else user
    if admin:
        settings = settings.model_copy(update={"admin_ids": settings.admin_ids | {user_id}})
    try:
        asyncio.run(run_console(settings, user_id, sys.stdin, sys.stdout))
    except KeyboardInterrupt:
        print()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings()
        if args.command == "run":
            _run_bot(settings, migrate_first=not args.no_migrate)
        elif args.command == "chat":
            _chat(settings, args.user, args.admin)
        elif args.command == "db":
            asyncio.run(_db(settings, args.db_command, getattr(args, "revision", "head")))
    except UserError as exc:
        print(f"medlegal: {exc}", file=sys.stderr)
        return 1
    except (OSError, SQLAlchemyError, ImportError) as exc:
        print(f"medlegal: {_database_problem(exc)}", file=sys.stderr)
        return 1
    return 0


def _database_problem(exc: BaseException) -> str:
    """One line for a database that cannot be used: a malformed URL, a missing driver, no such file or server."""
    if isinstance(exc, ImportError):
        return (
            f"MEDLEGAL_DATABASE_URL needs a driver that is not installed ({exc.name}); "
            "use sqlite+aiosqlite or postgresql+asyncpg"
        )
    if isinstance(exc, ArgumentError):
        return f"MEDLEGAL_DATABASE_URL is not a database URL: {exc}"
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return f"cannot use the database: {detail}"


if __name__ == "__main__":
    raise SystemExit(main())
