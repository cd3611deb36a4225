"""`medlegal polls list|add FILE|close KEY`: the community polls from the command line (no confirm step)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.admin_polls import poll_line, store_poll
from bot.cli import UserError
from bot.settings import Settings
from db import polls as store
from flows.polls import PollFileError, load_polls


def add_parser(sub: Any) -> None:
    """The `polls` subcommand on the `medlegal` parser (`sub` is its subparsers action)."""
    polls = sub.add_parser("polls", help="community polls: list, add from a TOML or YAML file, close")
    actions = polls.add_subparsers(dest="polls_command", required=True, metavar="ACTION")
    actions.add_parser("list", help="one line per poll: KEY  STATUS  CHOICE  N options  [DATES]  QUESTION")
    add = actions.add_parser(
        "add",
        help="add the polls in a .toml, .yaml or .yml file (all or none)",
        description="Add polls from a file: [[poll]] tables (TOML) or a `poll:` list (YAML), or one poll's fields "
        "at the top level. Fields: key, question, options (a list of {key, label}), choice (single|multiple), "
        "status (open|closed), opens, closes (YYYY-MM-DD). See flows/data/polls.toml.",
    )
    add.add_argument("file", type=Path, metavar="FILE")
    close = actions.add_parser("close", help="close an open poll (its answers are kept)")
    close.add_argument("key", metavar="KEY")


async def run(settings: Settings, args: argparse.Namespace) -> None:
    from bot.cli import _db_quiet_upgrade
    from db.engine import make_engine, make_session_factory

    if args.polls_command == "add":
        try:
            polls = load_polls(args.file)
        except PollFileError as exc:
            raise UserError(str(exc)) from None
    await _db_quiet_upgrade(settings)
    engine = make_engine(settings.database_url)
    try:
        async with make_session_factory(engine)() as session, session.begin():
            if args.polls_command == "list":
                for row in await store.list_polls(session):
                    print(poll_line(row, settings.current_date()))
            elif args.polls_command == "add":
                existing = await store.poll_keys(session)
                taken = sorted(p.key for p in polls if p.key in existing)
                if taken:
                    raise UserError(f"{args.file.name}: a poll with the key {', '.join(taken)} exists already")
                for poll in polls:
                    await store_poll(session, poll)
                    print(f"added {poll.key}  {poll.question}")
            else:
                await _close(session, args.key)
    finally:
        await engine.dispose()


async def _close(session: AsyncSession, key: str) -> None:
    row = await store.poll_by_key(session, key)
    if row is None:
        raise UserError(f"there is no poll with the key {key!r} (`medlegal polls list` shows them)")
    if not await store.close_poll(session, key):
        raise UserError(f"poll {key} is already closed")
    print(f"closed {key}  {row.question}")
