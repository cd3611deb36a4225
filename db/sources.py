"""Community start links (`/invite NAME`, `?start=CODE`) and which one each physician arrived through.

A physician's source is used in aggregates only (counts per link, the export's breakdown, the `source:CODE`
broadcast audience); it is never shown next to a person. The first link a physician used is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import CommunitySource, FlowSession, UserSource


async def source_by_code(session: AsyncSession, code: str) -> CommunitySource | None:
    stmt = select(CommunitySource).where(CommunitySource.code == code)
    return (await session.execute(stmt)).scalar_one_or_none()


async def source_by_name(session: AsyncSession, name: str) -> CommunitySource | None:
    """The link made for this name before (names compare without regard to case)."""
    stmt = select(CommunitySource).where(func.lower(CommunitySource.name) == name.casefold()).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def source_codes(session: AsyncSession) -> set[str]:
    return set((await session.execute(select(CommunitySource.code))).scalars())


async def add_source(session: AsyncSession, code: str, name: str, today: date) -> CommunitySource:
    row = CommunitySource(code=code, name=name, created_on=today)
    session.add(row)
    await session.flush()
    return row


async def attribute(session: AsyncSession, user_id: int, code: str, today: date) -> bool:
    """Record that the user arrived through the link `code`; False for an unknown code or when the user already
    has a source (the first one wins). The caller has created the user."""
    source = await source_by_code(session, code)
    if source is None:
        return False
    dialect = session.get_bind().dialect.name
    ins = pg_insert(UserSource) if dialect == "postgresql" else sqlite_insert(UserSource)
    stmt = ins.values(user_id=user_id, source_id=source.id, started_on=today).on_conflict_do_nothing()
    result = await session.execute(stmt)
    return bool(getattr(result, "rowcount", 0))


async def source_of(session: AsyncSession, user_id: int) -> str | None:
    stmt = (
        select(CommunitySource.code)
        .join(UserSource, UserSource.source_id == CommunitySource.id)
        .where(UserSource.user_id == user_id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


@dataclass(frozen=True)
class SourceStats:
    code: str
    name: str
    created_on: date
    started: int
    """Physicians who arrived through the link."""
    finished: int
    """Of those, physicians who completed the decision flow at least once."""


async def source_stats(session: AsyncSession) -> list[SourceStats]:
    """Every link with its counts, oldest link first (two GROUP BY queries, whatever the number of links)."""
    started = dict(
        (await session.execute(select(UserSource.source_id, func.count()).group_by(UserSource.source_id))).all()
    )
    completed = select(FlowSession.user_id).where(FlowSession.status == "completed").distinct().subquery()
    finished_stmt = (
        select(UserSource.source_id, func.count())
        .join(completed, completed.c.user_id == UserSource.user_id)
        .group_by(UserSource.source_id)
    )
    finished = dict((await session.execute(finished_stmt)).all())
    sources = (await session.execute(select(CommunitySource).order_by(CommunitySource.id))).scalars()
    return [
        SourceStats(s.code, s.name, s.created_on, int(started.get(s.id, 0)), int(finished.get(s.id, 0)))
        for s in sources
    ]


async def links(session: AsyncSession) -> list[tuple[str, str]]:
    """Every start link as (code, name), oldest first: the options of the export's start-link poll."""
    stmt = select(CommunitySource.code, CommunitySource.name).order_by(CommunitySource.id)
    return [(code, name) for code, name in (await session.execute(stmt)).all()]


async def attributions(session: AsyncSession) -> dict[int, tuple[str, date]]:
    """user id -> (link code, day they started through it), for the export's aggregates only (never published)."""
    stmt = select(UserSource.user_id, CommunitySource.code, UserSource.started_on).join(
        CommunitySource, CommunitySource.id == UserSource.source_id
    )
    return {user_id: (code, day) for user_id, code, day in (await session.execute(stmt)).all()}


async def members(session: AsyncSession, code: str) -> set[int]:
    """The user ids attributed to the link (for the `source:CODE` broadcast audience)."""
    stmt = (
        select(UserSource.user_id)
        .join(CommunitySource, CommunitySource.id == UserSource.source_id)
        .where(CommunitySource.code == code)
    )
    return set((await session.execute(stmt)).scalars())
