"""The `medlegal` command (also `python -m bot`).

Exit codes: 0 success, 1 a user error (one clear line on stderr, no traceback), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from bot import cli_export, cli_flow
from bot.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from bot.app import App
    from db.models import Broadcast, ExamSitting


class UserError(Exception):
    """A problem the operator can fix; printed as one line."""


def _settings() -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"MEDLEGAL_{'_'.join(str(p) for p in err['loc']).upper() or 'SETTINGS'}: {err['msg']}"
            for err in exc.errors()
        )
        raise UserError(f"invalid configuration: {problems}") from None
    _check_sqlite_folder(settings.database_url)
    return settings


def _check_sqlite_folder(url: str) -> None:
    """SQLite creates the file but not its folder; say so up front (a failed connect leaves aiosqlite's worker
    thread to report on a closed event loop)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # reported where the URL is used
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        folder = Path(parsed.database).expanduser().resolve().parent
        if not folder.is_dir():
            raise UserError(f"cannot use the database: the folder {folder} does not exist")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medlegal",
        description="A Telegram bot that helps physicians choose IME, California QME, or both.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the Telegram bot (polling, or webhook when MEDLEGAL_WEBHOOK_URL is set)")
    run.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not apply pending database migrations first (the database must be up to date: `medlegal db upgrade`)",
    )

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

    sittings = sub.add_parser("sittings", help="the QME exam calendar: list, add, edit and remove exam windows")
    sit_sub = sittings.add_subparsers(dest="sittings_command", required=True, metavar="ACTION")
    sit_sub.add_parser("list", help="one line per window: ID  FIRST..LAST  deadline DEADLINE  NOTE")
    add = sit_sub.add_parser("add", help="add an exam window (dates YYYY-MM-DD; the window must start after today)")
    add.add_argument("--first", required=True, metavar="DATE", help="the window's first day")
    add.add_argument("--last", required=True, metavar="DATE", help="the window's last day")
    add.add_argument("--deadline", metavar="DATE", help="the application deadline, when announced")
    add.add_argument("--note", default="", metavar="TEXT", help="format and location, e.g. 'Pearson VUE'")
    add.add_argument("--source", default="", metavar="URL", help="where the dates were announced")
    edit = sit_sub.add_parser("edit", help="change fields of an exam window")
    edit.add_argument("id", type=int, metavar="ID")
    edit.add_argument("--first", metavar="DATE")
    edit.add_argument("--last", metavar="DATE")
    deadline = edit.add_mutually_exclusive_group()
    deadline.add_argument("--deadline", metavar="DATE")
    deadline.add_argument("--no-deadline", action="store_true", help="no deadline was announced")
    edit.add_argument("--note", metavar="TEXT")
    edit.add_argument("--source", metavar="URL")
    remove = sit_sub.add_parser("remove", help="remove an exam window")
    remove.add_argument("id", type=int, metavar="ID")

    broadcast = sub.add_parser(
        "broadcast",
        help="queue a message to subscribers (delivered by `medlegal run`); `broadcast status` lists broadcasts",
        description="Queue a Telegram HTML message to the active subscribers in an audience; the sender inside "
        "`medlegal run` delivers it. `medlegal broadcast status` lists broadcasts with their counts "
        "(read a file named status as ./status).",
    )
    broadcast.add_argument(
        "file", nargs="?", default="-", metavar="FILE|-", help="the message, Telegram HTML (default -: standard input)"
    )
    broadcast.add_argument(
        "--audience",
        default="all",
        metavar="AUDIENCE",
        help="all (default), qme, hybrid, ca, specialty:KEY or source:CODE",
    )
    broadcast.add_argument(
        "--dry-run", action="store_true", help="print the recipient count and preview; queue nothing"
    )
    broadcast.add_argument("--wait", action="store_true", help="follow the delivery with a progress bar until it ends")
    cli_flow.add_parser(sub)

    from bot import cli_polls

    cli_polls.add_parser(sub)
    cli_export.add_parser(sub)
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
    from bot.app import build_application, tune_gc

    if settings.bot_token is None:
        raise UserError("MEDLEGAL_BOT_TOKEN is not set: get a token from @BotFather (or try `medlegal chat`)")
    where = settings.telegram_base_url or "api.telegram.org"
    logs.configure(settings.log_format)
    if migrate_first:
        asyncio.run(_db_quiet_upgrade(settings))
    else:
        asyncio.run(_check_migrated(settings))
    try:
        asyncio.run(_check_telegram(settings))
    except InvalidToken:
        raise UserError("Telegram rejected MEDLEGAL_BOT_TOKEN: check the token @BotFather gave you") from None
    except (NetworkError, TimedOut) as exc:
        raise UserError(f"cannot reach the Telegram Bot API at {where}: {exc}") from None
    app = build_application(settings)
    tune_gc()
    try:
        if settings.webhook_url:
            _serve_webhook(app, settings)
        else:
            app.run_polling(allowed_updates=Update.ALL_TYPES)
    except InvalidToken:
        raise UserError("Telegram rejected MEDLEGAL_BOT_TOKEN: check the token @BotFather gave you") from None
    except (NetworkError, TimedOut) as exc:
        raise UserError(f"cannot reach the Telegram Bot API at {where}: {exc}") from None


def _serve_webhook(app: App, settings: Settings) -> None:
    from telegram.error import BadRequest

    from bot import webhook

    try:
        asyncio.run(webhook.serve(app, settings))
    except webhook.ListenError as exc:
        raise UserError(f"cannot listen on MEDLEGAL_WEBHOOK_LISTEN={settings.webhook_listen}: {exc}") from None
    except BadRequest as exc:
        raise UserError(f"Telegram refused MEDLEGAL_WEBHOOK_URL: {exc.message}") from None


async def _check_migrated(settings: Settings) -> None:
    """`run --no-migrate` on a database that is behind would fail at the first update; say so at once."""
    from db import migrate
    from db.engine import make_engine

    engine = make_engine(settings.database_url)
    try:
        at, head = await migrate.current(engine)
    finally:
        await engine.dispose()
    if at != head:
        raise UserError(
            f"the database is at {at or 'base (empty)'}, not {head}: run `medlegal db upgrade` first "
            "(or start without --no-migrate)"
        )


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


async def _sittings(settings: Settings, args: argparse.Namespace) -> None:
    """`medlegal sittings ...`: the calendar and the checks of the admins' chat commands, without a confirm step."""
    from db.engine import make_engine, make_session_factory

    await _db_quiet_upgrade(settings)
    engine = make_engine(settings.database_url)
    try:
        async with make_session_factory(engine)() as session, session.begin():
            work = {"list": _sittings_list, "add": _sittings_add, "edit": _sittings_edit, "remove": _sittings_remove}
            await work[args.sittings_command](session, args, settings.current_date())
    finally:
        await engine.dispose()


def _day(text: str) -> date:
    from flows.sittings import parse_day

    try:
        return parse_day(text)
    except ValueError as exc:
        raise UserError(str(exc)) from None


async def _sittings_list(session: AsyncSession, _args: argparse.Namespace, today: date) -> None:
    from bot.admin_sittings import calendar_is_short, short_calendar_hint, window_line
    from bot.exam_calendar import stored_sittings

    sittings = await stored_sittings(session)
    for sitting in sittings:
        print(window_line(sitting))
    if calendar_is_short(sittings, today):
        print(short_calendar_hint(), file=sys.stderr)  # stdout stays one line per window, for scripts


async def _sittings_add(session: AsyncSession, args: argparse.Namespace, today: date) -> None:
    from bot.admin_sittings import clean_text, problems_with, window_line
    from bot.exam_calendar import as_sitting, stored_sittings
    from db import repository as repo
    from flows.sittings import Sitting

    new = Sitting(
        first_day=_day(args.first),
        last_day=_day(args.last),
        deadline=_day(args.deadline) if args.deadline else None,
        note=clean_text(args.note),
        source=clean_text(args.source),
    )
    problems = problems_with(new, today, await stored_sittings(session))
    if problems:
        raise UserError(f"cannot add the window: {'; '.join(problems)}")
    row = await repo.add_sitting(
        session, first_day=new.first_day, last_day=new.last_day, deadline=new.deadline, note=new.note, source=new.source
    )
    print(f"added {window_line(as_sitting(row))}")


async def _locked_sitting(session: AsyncSession, sitting_id: int) -> ExamSitting:
    from db import repository as repo

    row = await repo.get_sitting(session, sitting_id, for_update=True)
    if row is None:
        raise UserError(f"there is no exam window with id {sitting_id} (see `medlegal sittings list`)")
    return row


async def _sittings_edit(session: AsyncSession, args: argparse.Namespace, today: date) -> None:
    from dataclasses import replace

    from bot.admin_sittings import clean_text, dates_moved, problems_with, window_line
    from bot.exam_calendar import as_sitting, stored_sittings
    from db import repository as repo

    before = as_sitting(await _locked_sitting(session, args.id))
    changes: dict[str, Any] = {}
    if args.first is not None:
        changes["first_day"] = _day(args.first)
    if args.last is not None:
        changes["last_day"] = _day(args.last)
    if args.deadline is not None or args.no_deadline:
        changes["deadline"] = None if args.no_deadline else _day(args.deadline)
    if args.note is not None:
        changes["note"] = clean_text(args.note)
    if args.source is not None:
        changes["source"] = clean_text(args.source)
    if not changes:
        raise UserError("nothing to change: give --first, --last, --deadline, --no-deadline, --note or --source")
    after = replace(before, **changes)
    existing = await stored_sittings(session)
    problems = problems_with(after, today, existing, dates_changed=dates_moved(before, after))
    if problems:
        raise UserError(f"cannot change window {args.id}: {'; '.join(problems)}")
    updated = await repo.update_sitting(session, args.id, **changes)
    assert updated is not None  # locked above
    print(f"updated {window_line(as_sitting(updated))}")


async def _sittings_remove(session: AsyncSession, args: argparse.Namespace, _today: date) -> None:
    from bot.admin_sittings import window_line
    from bot.exam_calendar import as_sitting
    from db import repository as repo

    before = as_sitting(await _locked_sitting(session, args.id))
    await repo.remove_sitting(session, args.id)
    print(f"removed {window_line(before)}")


def _read_message(name: str) -> str:
    if name == "-":
        return sys.stdin.read().strip()
    try:
        with open(name, encoding="utf-8") as file:
            return file.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UserError(f"cannot read the message from {name}: {reason}") from None


async def _broadcast(settings: Settings, args: argparse.Namespace) -> int:
    """`medlegal broadcast [FILE|-]`: check, count, and (unless --dry-run) queue; --wait follows the sender."""
    from bot.admin_broadcast import audience_label, check_audience, count_text
    from bot.telegram_html import html_problems, plain_text
    from db import outbox
    from db.audience import recipients
    from db.engine import make_engine, make_session_factory

    text = _read_message(args.file)
    problems = html_problems(text)
    if problems:
        raise UserError(f"the message is not valid Telegram HTML: {'; '.join(problems)}")
    try:
        audience = check_audience(args.audience)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    named = f"audience {audience} ({audience_label(audience)})"
    await _db_quiet_upgrade(settings)
    engine = make_engine(settings.database_url)
    try:
        sessions = make_session_factory(engine)
        async with sessions() as session, session.begin():
            people = await recipients(session, audience)
            if args.dry_run:
                print(f"{count_text(len(people))}, {named}; dry run: nothing queued\n")
                print(plain_text(text))
                return 0
            if not people:
                raise UserError(f"no active subscriber is in {named}; nothing was queued")
            broadcast = await outbox.queue_broadcast(
                session, text=text, audience=audience, created_by=None, recipients=people
            )
            broadcast_id = broadcast.id
        print(f"queued broadcast #{broadcast_id} to {count_text(len(people))}, {named}", flush=True)
        if args.wait:
            return await _follow(sessions, broadcast_id, len(people))
        return 0
    finally:
        await engine.dispose()


def _bar(counts: dict[str, int], total: int, width: int = 30) -> str:
    done = total - counts.get("left", 0)
    filled = width * done // total if total else width
    percent = 100 * done // total if total else 100
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {percent:3d}%  sent {counts.get('sent', 0)}  "
        f"failed {counts.get('failed', 0)}  skipped {counts.get('skipped', 0)}  left {counts.get('left', 0)}"
    )


async def _follow(
    sessions: async_sessionmaker[AsyncSession], broadcast_id: int, total: int, interval: float = 0.5
) -> int:
    """`--wait`: a progress bar on stderr (redrawn in place on a terminal, a line per change otherwise)."""
    from db import outbox

    tty = sys.stderr.isatty()
    shown = ""
    while True:
        async with sessions() as session:
            counts = await outbox.broadcast_counts(session, broadcast_id)
        bar = _bar(counts, total)
        if bar != shown:
            print(f"\r{bar}" if tty else bar, end="" if tty else "\n", file=sys.stderr, flush=True)
            shown = bar
        if not counts.get("left", 0):
            break
        await asyncio.sleep(interval)
    if tty:
        print(file=sys.stderr)
    async with sessions() as session:
        broadcast = await outbox.get_broadcast(session, broadcast_id)
    ended = "cancelled" if broadcast is not None and broadcast.status == "cancelled" else "done"
    print(
        f"broadcast #{broadcast_id} {ended}: sent {counts.get('sent', 0)}, failed {counts.get('failed', 0)}, "
        f"skipped {counts.get('skipped', 0)}"
    )
    return 0


STATUS_LIMIT = 100


async def _broadcast_status(settings: Settings) -> None:
    """`medlegal broadcast status`: `ID  CREATED  AUDIENCE  sent S  failed F  skipped K  left L  STATUS`.

    The newest first, at most STATUS_LIMIT of them; STATUS is queued, sending, cancelled or done.
    """
    from db import outbox
    from db.engine import make_engine, make_session_factory

    await _db_quiet_upgrade(settings)
    engine = make_engine(settings.database_url)
    try:
        async with make_session_factory(engine)() as session:
            broadcasts = await outbox.list_broadcasts(session, limit=STATUS_LIMIT)
            for broadcast in broadcasts:
                counts = await outbox.broadcast_counts(session, broadcast.id)
                print(_status_line(broadcast, counts))
        if not broadcasts:
            print("no broadcasts yet", file=sys.stderr)  # stdout stays one line per broadcast, for scripts
    finally:
        await engine.dispose()


def _status_line(broadcast: Broadcast, counts: dict[str, int]) -> str:
    from db.outbox import as_utc

    created = as_utc(broadcast.created_at)
    left = counts.get("left", 0)
    status = broadcast.status  # queued, cancelled or done
    if status == "queued" and left and sum(counts.get(k, 0) for k in ("sent", "failed", "skipped")):
        status = "sending"
    return (
        f"{broadcast.id}  {created.strftime('%Y-%m-%dT%H:%MZ')}  {broadcast.audience}  "
        f"sent {counts.get('sent', 0)}  failed {counts.get('failed', 0)}  skipped {counts.get('skipped', 0)}  "
        f"left {left}  {status}"
    )


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
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "broadcast" and args.file == "status" and (args.dry_run or args.wait or args.audience != "all"):
        parser.error("`broadcast status` takes no options")  # exits 2
    if args.command == "flow":
        return cli_flow.run(args)
    try:
        settings = _settings()
        if args.command == "run":
            _run_bot(settings, migrate_first=not args.no_migrate)
        elif args.command == "chat":
            _chat(settings, args.user, args.admin)
        elif args.command == "db":
            asyncio.run(_db(settings, args.db_command, getattr(args, "revision", "head")))
        elif args.command == "sittings":
            asyncio.run(_sittings(settings, args))
        elif args.command == "polls":
            from bot import cli_polls

            asyncio.run(cli_polls.run(settings, args))
        elif args.command == "broadcast" and args.file == "status":
            asyncio.run(_broadcast_status(settings))
        elif args.command == "broadcast":
            return asyncio.run(_broadcast(settings, args))
        elif args.command == "export":
            cli_export.run(settings, args)
    except (UserError, cli_export.ExportProblem) as exc:
        print(f"medlegal: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.command != "broadcast" or not args.wait:
            raise
        print("\nmedlegal: stopped waiting; the broadcast goes on (see `medlegal broadcast status`)", file=sys.stderr)
        return 130
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
