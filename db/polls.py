"""Community polls in the database: the polls, each physician's answer, the daily peer-figure snapshots, and the
anonymous per-respondent rows the export reads. Callers own the transaction.

Answers keep the day only. Counting runs in SQL (GROUP BY over the (poll_id, option_key) index).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.aggregates import completed_flows
from db.models import CommunitySource, PollRow, PollSnapshot, PollVote, UserSource


async def list_polls(session: AsyncSession) -> list[PollRow]:
    """Every poll, oldest first."""
    return list((await session.execute(select(PollRow).order_by(PollRow.id))).scalars())


async def get_poll(session: AsyncSession, poll_id: int) -> PollRow | None:
    return await session.get(PollRow, poll_id)


async def poll_by_key(session: AsyncSession, key: str) -> PollRow | None:
    return (await session.execute(select(PollRow).where(PollRow.key == key))).scalar_one_or_none()


async def poll_keys(session: AsyncSession) -> set[str]:
    return set((await session.execute(select(PollRow.key))).scalars())


async def add_poll(
    session: AsyncSession,
    *,
    key: str,
    question: str,
    options: Sequence[tuple[str, str]],
    choice: str = "single",
    status: str = "open",
    opens_on: date | None = None,
    closes_on: date | None = None,
) -> PollRow | None:
    """Store a poll (options as (key, label) in order); None when a poll with this key exists already."""
    if await poll_by_key(session, key) is not None:
        return None
    row = PollRow(
        key=key,
        question=question,
        options=[{"key": k, "label": label} for k, label in options],
        choice=choice,
        status=status,
        opens_on=opens_on,
        closes_on=closes_on,
    )
    session.add(row)
    await session.flush()
    return row


async def close_poll(session: AsyncSession, key: str) -> bool:
    """Close the poll; False when there is no open poll with this key (missing or closed already)."""
    result = await session.execute(
        update(PollRow).where(PollRow.key == key, PollRow.status == "open").values(status="closed"),
        execution_options={"synchronize_session": False},
    )
    return bool(getattr(result, "rowcount", 0))


# -- answers --------------------------------------------------------------------------------------------------
async def choices(session: AsyncSession, poll_id: int, user_id: int) -> tuple[str, ...]:
    """The option keys the user chose in the poll (empty: not answered)."""
    stmt = select(PollVote.option_key).where(PollVote.poll_id == poll_id, PollVote.user_id == user_id)
    return tuple((await session.execute(stmt)).scalars())


async def answered_polls(session: AsyncSession, user_id: int) -> set[int]:
    stmt = select(PollVote.poll_id).where(PollVote.user_id == user_id).distinct()
    return set((await session.execute(stmt)).scalars())


async def set_answer(session: AsyncSession, poll_id: int, user_id: int, keys: Sequence[str], day: date) -> None:
    """Replace the user's answer with these option keys, dated `day`; the caller has created the user."""
    await session.execute(
        delete(PollVote).where(PollVote.poll_id == poll_id, PollVote.user_id == user_id),
        execution_options={"synchronize_session": False},
    )
    for key in dict.fromkeys(keys):
        session.add(PollVote(poll_id=poll_id, user_id=user_id, option_key=key, answered_on=day))
    await session.flush()


async def live_counts(session: AsyncSession, poll_id: int) -> tuple[dict[str, int], int]:
    """Physicians per option and respondents, as stored right now (for snapshots, never shown directly)."""
    per_option = select(PollVote.option_key, func.count()).where(PollVote.poll_id == poll_id)
    rows = (await session.execute(per_option.group_by(PollVote.option_key))).all()
    respondents = select(func.count(func.distinct(PollVote.user_id))).where(PollVote.poll_id == poll_id)
    return {key: int(n) for key, n in rows}, int((await session.execute(respondents)).scalar_one())


@dataclass(frozen=True)
class Snapshot:
    taken_on: date
    respondents: int
    counts: dict[str, int]


Counter = Callable[[], Awaitable[tuple[dict[str, int], int]]]
"""Computes (counts per option, respondents) for a snapshot; the bot passes the export's published figures."""


async def snapshot(session: AsyncSession, poll_id: int, today: date, counter: Counter | None = None) -> Snapshot:
    """The poll's peer figures as of the first look today: taken at most once a day for all processes.

    A snapshot from an earlier day is replaced; when two processes refresh at once, the first one stored wins the
    day (the upsert only replaces an older day), so everybody sees the same figures until tomorrow. `counter`
    computes the figures (by default the live counts).
    """
    stored = await session.get(PollSnapshot, poll_id, populate_existing=True)
    if stored is None or stored.taken_on < today:
        counts, respondents = await (counter() if counter is not None else live_counts(session, poll_id))
        values: dict[str, Any] = {"poll_id": poll_id, "taken_on": today, "respondents": respondents, "counts": counts}
        dialect = session.get_bind().dialect.name
        ins = pg_insert(PollSnapshot) if dialect == "postgresql" else sqlite_insert(PollSnapshot)
        stmt = ins.values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[PollSnapshot.poll_id],
            set_={"taken_on": stmt.excluded.taken_on, "respondents": stmt.excluded.respondents, "counts": counts},
            where=PollSnapshot.taken_on < stmt.excluded.taken_on,
        )
        await session.execute(stmt)
        stored = await session.get(PollSnapshot, poll_id, populate_existing=True)
        assert stored is not None
    return Snapshot(stored.taken_on, stored.respondents, {str(k): int(v) for k, v in stored.counts.items()})


# -- for the export -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PollResponse:
    """One respondent's answer to one poll, with nothing that identifies them.

    `respondent` is an opaque number, the same for one physician across polls within one call (so answers can be
    cross-tabulated) and unrelated to the Telegram id; `options` are all the poll's labels in order, `chosen` the
    chosen option keys in the poll's order; `answered_on` is a day; `source` the start-link code or None.
    """

    respondent: int
    poll: str
    question: str
    options: tuple[tuple[str, str], ...]
    chosen: tuple[str, ...]
    answered_on: date
    source: str | None
    profile: dict[str, Any] | None = None
    """The answers of the respondent's latest completed decision flow (question key -> option key or keys), for
    the specialty and license breakdowns; None when they have not completed it. Joined here so that no user id
    leaves the database layer with the answer."""
    multi: bool = False
    """Multiple choice."""


async def poll_responses(session: AsyncSession) -> list[PollResponse]:
    """Every stored answer, one row per respondent and poll, ordered by poll key then respondent number."""
    polls = {row.id: row for row in await list_polls(session)}
    profiles = {flow.user_id: flow.answers for flow in await completed_flows(session)}
    stmt = (
        select(PollVote.poll_id, PollVote.user_id, PollVote.option_key, PollVote.answered_on, CommunitySource.code)
        .outerjoin(UserSource, UserSource.user_id == PollVote.user_id)
        .outerjoin(CommunitySource, CommunitySource.id == UserSource.source_id)
        .order_by(PollVote.poll_id, PollVote.user_id)
    )
    grouped: dict[tuple[int, int], tuple[list[str], date, str | None]] = {}
    for poll_id, user_id, key, day, code in (await session.execute(stmt)).all():
        chosen, _, _ = grouped.setdefault((poll_id, user_id), ([], day, code))
        chosen.append(key)
    users = list({user_id for _, user_id in grouped})
    random.SystemRandom().shuffle(users)  # numbers in no relation to the ids, not even their order
    numbers = {user_id: n for n, user_id in enumerate(users, 1)}
    out = []
    for (poll_id, user_id), (chosen, day, source) in grouped.items():
        row = polls[poll_id]
        options = tuple((str(o["key"]), str(o["label"])) for o in row.options)
        order = [k for k, _ in options]
        ranked = tuple(sorted(chosen, key=lambda k: order.index(k) if k in order else len(order)))
        profile = profiles.get(user_id)
        out.append(
            PollResponse(
                numbers[user_id], row.key, row.question, options, ranked, day, source, profile, row.choice == "multiple"
            )
        )
    return sorted(out, key=lambda r: (r.poll, r.respondent))
