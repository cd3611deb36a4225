"""The export's counting in SQL: GROUP BY month and breakdown, so the database reads the million answers and
hands back a few thousand groups.

Plain values only (db does not depend on flows): each query returns tuples of group columns and a count, the
answers as their stored JSON text; bot.export_cells turns them into the month-cells of flows.aggregate.

Months: a flow counts in the month (in MEDLEGAL_TIMEZONE) its latest completed pass was completed. The month
boundaries of that zone are computed here as UTC instants and the database assigns each timestamp with a CASE
over them: exact on both PostgreSQL and SQLite (which has no time zones; SQLite stores the UTC wall time, the
bot writes UTC timestamps). Poll votes and start links keep a day: its `YYYY-MM` is the month.

Breakdown columns (`dimension`): specialty -> the specialty answer; license -> the California and other-states
answers; source -> the start-link code; None -> nothing. Each respondent falls in exactly one group of a query.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Text, and_, case, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Subquery

from db.models import AnswerRow, CommunitySource, FlowSession, PollVote, ProgressStep, RecommendationRow, UserSource

Group = tuple[Any, ...]
"""Group columns then the count."""
PROFILE = {"specialty": ("specialty",), "license": ("ca_license", "other_states")}
"""The flow answers each breakdown is made of."""


def _latest_flows() -> Subquery:
    """Each physician's latest completed flow (the highest id, as bot.export_data has always counted)."""
    return (
        select(FlowSession.user_id.label("user_id"), func.max(FlowSession.id).label("sid"))
        .where(FlowSession.status == "completed", FlowSession.completed_at.is_not(None))
        .group_by(FlowSession.user_id)
        .subquery("latest")
    )


def _day_month(session: AsyncSession, column: Any) -> ColumnElement[str]:
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(column, "YYYY-MM")
    return func.strftime("%Y-%m", column)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _flow_month(session: AsyncSession, zone: ZoneInfo) -> ColumnElement[str | None]:
    """`YYYY-MM` of FlowSession.completed_at in `zone`: a CASE over the zone's month boundaries in UTC."""
    first, last = (
        await session.execute(
            select(func.min(FlowSession.completed_at), func.max(FlowSession.completed_at)).where(
                FlowSession.status == "completed"
            )
        )
    ).one()
    if first is None or last is None:
        return literal(None)
    start, end = _aware(first).astimezone(zone), _aware(last).astimezone(zone)
    year, month = start.year, start.month
    whens: list[tuple[ColumnElement[bool], str]] = []
    while (year, month) <= (end.year, end.month):
        following = (year + month // 12, month % 12 + 1)
        boundary = datetime(*following, 1, tzinfo=zone).astimezone(UTC)
        whens.append((FlowSession.completed_at < boundary, f"{year:04d}-{month:02d}"))
        year, month = following
    return case(*whens, else_=None)


def _profile(flow_id: Any, dimension: str | None) -> tuple[list[Any], list[tuple[Any, Any]]]:
    """The breakdown's answer columns (stored JSON text) and their outer joins on the flow id `flow_id`."""
    columns, joins = [], []
    for question in PROFILE.get(dimension or "", ()):
        table = AnswerRow.__table__.alias(f"p_{question}")
        columns.append(cast(table.c.value, Text).label(question))
        joins.append((table, and_(table.c.session_id == flow_id, table.c.question_key == question)))
    return columns, joins


def _source_join(user_id: Any) -> tuple[Any, list[tuple[Any, Any]]]:
    return CommunitySource.code, [
        (UserSource, UserSource.user_id == user_id),
        (CommunitySource, CommunitySource.id == UserSource.source_id),
    ]


async def flow_groups(session: AsyncSession, zone: ZoneInfo, dimension: str | None) -> list[Group]:
    """Completed flows per (month, recommended path, ticked steps, start link, *breakdown answers): the
    respondents of every flow poll, the path poll's counts, the funnel and the start-link poll's finished part.
    Ticked steps come comma-joined in no particular order."""
    latest = _latest_flows()
    month = (await _flow_month(session, zone)).label("month")
    last_rec = (
        select(RecommendationRow.session_id, func.max(RecommendationRow.id).label("rid"))
        .group_by(RecommendationRow.session_id)
        .subquery("last_rec")
    )
    rec = RecommendationRow.__table__.alias("rec")
    joined = (
        func.string_agg(ProgressStep.step_key, literal(","))
        if session.get_bind().dialect.name == "postgresql"
        else func.group_concat(ProgressStep.step_key, ",")
    )
    ticks = select(ProgressStep.user_id, joined.label("ticks")).group_by(ProgressStep.user_id).subquery("ticks")
    source, source_joins = _source_join(latest.c.user_id)
    profile, profile_joins = _profile(latest.c.sid, "" if dimension == "source" else dimension)
    keys = [month, rec.c.path, ticks.c.ticks, source, *profile]
    stmt = (
        select(*keys, func.count())
        .select_from(latest)
        .join(FlowSession, FlowSession.id == latest.c.sid)
        .outerjoin(last_rec, last_rec.c.session_id == latest.c.sid)
        .outerjoin(rec, rec.c.id == last_rec.c.rid)
        .outerjoin(ticks, ticks.c.user_id == latest.c.user_id)
    )
    for table, on in [*source_joins, *profile_joins]:
        stmt = stmt.outerjoin(table, on)
    return [tuple(row) for row in (await session.execute(stmt.group_by(*keys))).all()]


async def flow_answer_groups(session: AsyncSession, zone: ZoneInfo, dimension: str | None) -> list[Group]:
    """Answers of the latest completed flows per (question, stored JSON text, month, *breakdown columns); the
    breakdown columns are the start-link code for "source", else the breakdown's answers."""
    latest = _latest_flows()
    month = (await _flow_month(session, zone)).label("month")
    joins: list[tuple[Any, Any]]
    if dimension == "source":
        code, joins = _source_join(latest.c.user_id)
        breakdown = [code]
    else:
        breakdown, joins = _profile(latest.c.sid, dimension)
    keys = [AnswerRow.question_key, cast(AnswerRow.value, Text).label("value"), month, *breakdown]
    stmt = (
        select(*keys, func.count())
        .select_from(latest)
        .join(FlowSession, FlowSession.id == latest.c.sid)
        .join(AnswerRow, AnswerRow.session_id == latest.c.sid)
    )
    for table, on in joins:
        stmt = stmt.outerjoin(table, on)
    return [tuple(row) for row in (await session.execute(stmt.group_by(*keys))).all()]


async def open_link_groups(session: AsyncSession) -> list[Group]:
    """Physicians who arrived through a start link and have no completed flow, per (link code, month started)."""
    latest = _latest_flows()
    month = _day_month(session, UserSource.started_on).label("month")
    stmt = (
        select(CommunitySource.code, month, func.count())
        .select_from(UserSource)
        .join(CommunitySource, CommunitySource.id == UserSource.source_id)
        .where(UserSource.user_id.not_in(select(latest.c.user_id)))
        .group_by(CommunitySource.code, month)
    )
    return [tuple(row) for row in (await session.execute(stmt)).all()]


def _vote_breakdown(dimension: str | None) -> tuple[list[Any], list[tuple[Any, Any]]]:
    """Community answers are broken down by the voter's latest completed flow and their start link."""
    if dimension == "source":
        code, joins = _source_join(PollVote.user_id)
        return [code], joins
    if dimension not in PROFILE:
        return [], []
    latest = _latest_flows()
    columns, joins = _profile(latest.c.sid, dimension)
    return columns, [(latest, latest.c.user_id == PollVote.user_id), *joins]


async def vote_groups(session: AsyncSession, dimension: str | None) -> tuple[list[Group], list[Group]]:
    """Community poll answers: respondents per (poll id, month, *breakdown) and chosen options per (poll id,
    option key, month, *breakdown). A respondent's votes in a poll share one day (db.polls.vote)."""
    month = _day_month(session, PollVote.answered_on).label("month")
    breakdown, joins = _vote_breakdown(dimension)
    out: list[list[Group]] = []
    for keys, count in (
        ([PollVote.poll_id, month, *breakdown], func.count(PollVote.user_id.distinct())),
        ([PollVote.poll_id, PollVote.option_key, month, *breakdown], func.count()),
    ):
        stmt = select(*keys, count).select_from(PollVote)
        for table, on in joins:
            stmt = stmt.outerjoin(table, on)
        out.append([tuple(row) for row in (await session.execute(stmt.group_by(*keys))).all()])
    return out[0], out[1]
