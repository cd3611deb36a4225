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

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import DateTime, bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import TextClause

from db.models import FlowSession

Group = tuple[Any, ...]
"""Group columns then the count."""


LATEST = """latest AS (SELECT user_id, MAX(id) AS sid FROM flow_sessions
    WHERE status = 'completed' AND completed_at IS NOT NULL GROUP BY user_id)"""
"""Each physician's latest completed flow (the highest id, as the per-response path has always counted)."""


class _Dialect:
    """The few SQL fragments PostgreSQL and SQLite spell differently: JSON elements and a day's month."""

    def __init__(self, session: AsyncSession) -> None:
        self.pg = session.get_bind().dialect.name == "postgresql"

    def elements(self, value: str) -> str:
        """A join giving one row `e` per element of a JSON array (a plain value counts as a one-element array)."""
        if self.pg:
            json = f"{value}::jsonb"
            return (
                f"CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof({json}) = 'array' THEN {json}"
                f" ELSE jsonb_build_array({json}) END) AS e(v)"
            )
        return f"JOIN json_each({value}) AS e"

    @property
    def element(self) -> str:
        return "(e.v #>> '{}')" if self.pg else "e.value"

    @property
    def is_text(self) -> str:
        """The element is a string (numbers, nulls and nested lists are not option keys)."""
        return "jsonb_typeof(e.v) = 'string'" if self.pg else "e.type = 'text'"

    def equals_text(self, value: str, literal: str) -> str:
        if self.pg:
            return f"(jsonb_typeof({value}::jsonb) = 'string' AND ({value}::jsonb #>> '{{}}') = '{literal}')"
        return f"(json_type({value}) = 'text' AND json_extract({value}, '$') = '{literal}')"

    def month_of_day(self, column: str) -> str:
        return f"to_char({column}, 'YYYY-MM')" if self.pg else f"strftime('%Y-%m', {column})"

    def as_text(self, column: str) -> str:
        return f"CAST({column} AS TEXT)"


def _licenses(sql: _Dialect) -> str:
    """license cells per flow: "CA" when California is active, and each other state held (not "none")."""
    return f"""lic AS (
    SELECT a.session_id AS sid, 'CA' AS cell FROM answers a JOIN latest l ON l.sid = a.session_id
    WHERE a.question_key = 'ca_license' AND {sql.equals_text("a.value", "active")}
    UNION
    SELECT a.session_id, {sql.element} FROM answers a {sql.elements("a.value")} JOIN latest l ON l.sid = a.session_id
    WHERE a.question_key = 'other_states' AND {sql.is_text} AND {sql.element} <> 'none')"""


def _cell(sql: _Dialect, dimension: str | None, flow: str, user: str) -> tuple[list[str], str, list[str]]:
    """(cell column, its joins on flow id `flow` and user id `user`, extra CTEs) of the breakdown; the cell is
    the specialty answer's JSON text, a license cell, or a start-link code; NULL is "none"."""
    if dimension == "specialty":
        join = f"LEFT JOIN answers sp ON sp.session_id = {flow} AND sp.question_key = 'specialty'"
        return [sql.as_text("sp.value")], join, []
    if dimension == "license":
        return ["c.cell"], f"LEFT JOIN lic c ON c.sid = {flow}", [_licenses(sql)]
    if dimension == "source":
        join = (
            f"LEFT JOIN user_sources bus ON bus.user_id = {user}"
            " LEFT JOIN community_sources bcs ON bcs.id = bus.source_id"
        )
        return ["bcs.code"], join, []
    return [], "", []


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _flow_month(session: AsyncSession, zone: ZoneInfo) -> tuple[str, dict[str, datetime]]:
    """`YYYY-MM` of flow_sessions.completed_at (as `fs`) in `zone`: a CASE over the zone's month boundaries in
    UTC, and its parameters."""
    first, last = (
        await session.execute(
            select(func.min(FlowSession.completed_at), func.max(FlowSession.completed_at)).where(
                FlowSession.status == "completed"
            )
        )
    ).one()
    if first is None or last is None:
        return "NULL", {}
    start, end = _aware(first).astimezone(zone), _aware(last).astimezone(zone)
    year, month = start.year, start.month
    whens: list[str] = []
    params: dict[str, datetime] = {}
    while (year, month) <= (end.year, end.month):
        following = (year + month // 12, month % 12 + 1)
        name = f"b{len(params)}"
        params[name] = datetime(*following, 1, tzinfo=zone).astimezone(UTC)
        whens.append(f"WHEN fs.completed_at < :{name} THEN '{year:04d}-{month:02d}'")
        year, month = following
    return f"CASE {' '.join(whens)} END", params


def _statement(sql_text: str, params: Mapping[str, datetime] = {}) -> TextClause:
    return text(sql_text).bindparams(
        *(bindparam(name, value, type_=DateTime(timezone=True)) for name, value in params.items())
    )


async def _groups(session: AsyncSession, sql_text: str, params: Mapping[str, datetime] = {}) -> list[Group]:
    if _Dialect(session).pg:
        # JIT compiling costs more than these scans (the planner overestimates the joined rows); sorts and hashes
        # of a million answers fit in memory
        await session.execute(text("SET LOCAL jit = off"))
        await session.execute(text("SET LOCAL work_mem = '64MB'"))
    return [tuple(row) for row in (await session.execute(_statement(sql_text, params))).all()]


async def _flows_cte(session: AsyncSession, zone: ZoneInfo, dimension: str | None) -> tuple[str, dict[str, datetime]]:
    """The CTEs `latest`, the breakdown's, and `flows` (user_id, sid, month, cell): the month and the breakdown
    cell once per flow (a flow holding several licenses has a row per cell), not once per answer."""
    sql = _Dialect(session)
    month, params = await _flow_month(session, zone)
    cell, join, ctes = _cell(sql, dimension, "l.sid", "l.user_id")
    materialized = "MATERIALIZED " if sql.pg else ""
    flows = f"""flows AS {materialized}(SELECT l.user_id, l.sid, {month} AS month, {cell[0] if cell else "NULL"} AS cell
    FROM latest l JOIN flow_sessions fs ON fs.id = l.sid {join})"""
    return ", ".join([LATEST, *ctes, flows]), params


def _first_unticked(track: str, steps: Sequence[str]) -> str:
    if not all(re.fullmatch(r"[a-z0-9_]+", key) for key in (track, *steps)):
        raise ValueError(f"step keys are lower-case words: {track}, {steps}")
    ticked = [f"MAX(CASE WHEN step_key = '{key}' THEN 1 ELSE 0 END) = 0" for key in steps]
    whens = " ".join(f"WHEN {has} THEN '{key}'" for has, key in zip(ticked, steps, strict=True))
    return f"CASE {whens} ELSE '{track}_done' END" if steps else f"'{track}_done'"


async def flow_groups(
    session: AsyncSession, zone: ZoneInfo, dimension: str | None, tracks: Mapping[str, Sequence[str]]
) -> list[Group]:
    """Completed flows per (month, recommended path, first unticked step of each track in `tracks` order (NULL:
    nothing ticked), start-link code, breakdown cell): the respondents of every flow poll, the path poll, the
    funnel and the start-link poll's finished part. `tracks` maps a track to its step keys in order."""
    flows, params = await _flows_cte(session, zone, dimension)
    cell = ["f.cell"] if dimension else []
    positions = ", ".join(f"{_first_unticked(track, steps)} AS t_{track}" for track, steps in tracks.items())
    ticks = f"ticks AS (SELECT user_id, {positions} FROM progress_steps GROUP BY user_id)"
    keys = ["f.month", "r.path", *(f"t.t_{track}" for track in tracks), "cs.code", *cell]
    return await _groups(
        session,
        f"""WITH {flows}, {ticks}, lastrec AS (SELECT session_id, MAX(id) AS rid FROM recommendations
        GROUP BY session_id)
        SELECT {", ".join(keys)}, COUNT(*) FROM flows f
        LEFT JOIN lastrec lr ON lr.session_id = f.sid LEFT JOIN recommendations r ON r.id = lr.rid
        LEFT JOIN ticks t ON t.user_id = f.user_id
        LEFT JOIN user_sources us ON us.user_id = f.user_id LEFT JOIN community_sources cs ON cs.id = us.source_id
        GROUP BY {", ".join(keys)}""",
        params,
    )


async def flow_answer_groups(session: AsyncSession, zone: ZoneInfo, dimension: str | None) -> list[Group]:
    """Latest completed flows per (question, chosen key, month, breakdown cell): a multi-choice answer counts
    under each key it holds (once), a plain answer under its key; values that are not strings count nowhere.

    The answers are grouped by their stored JSON text first; only those few distinct texts are taken apart."""
    sql = _Dialect(session)
    flows, params = await _flows_cte(session, zone, dimension)
    cell = ["f.cell"] if dimension else []
    value = sql.as_text("a.value")
    inner = ["a.question_key", value, "f.month", *cell]
    names = ["q", "vt", "month", *(["cell"] if cell else [])]
    columns = ", ".join(f"{c} AS {n}" for c, n in zip(inner, names, strict=True))
    outer = ["q", "elem", "month", *names[3:]]
    return await _groups(
        session,
        f"""WITH {flows},
        g AS (SELECT {columns}, COUNT(*) AS n FROM flows f JOIN answers a ON a.session_id = f.sid
            GROUP BY {", ".join(inner)}),
        x AS (SELECT DISTINCT {", ".join("g." + n for n in names)}, g.n, {sql.element} AS elem
            FROM g {sql.elements("g.vt")} WHERE {sql.is_text})
        SELECT {", ".join(outer)}, CAST(SUM(n) AS BIGINT) FROM x GROUP BY {", ".join(outer)}""",
        params,
    )


async def open_link_groups(session: AsyncSession) -> list[Group]:
    """Physicians who arrived through a start link and have no completed flow, per (link code, month started)."""
    sql = _Dialect(session)
    return await _groups(
        session,
        f"""WITH {LATEST}
        SELECT cs.code, {sql.month_of_day("us.started_on")} AS month, COUNT(*) FROM user_sources us
        JOIN community_sources cs ON cs.id = us.source_id
        WHERE us.user_id NOT IN (SELECT user_id FROM latest)
        GROUP BY cs.code, {sql.month_of_day("us.started_on")}""",
    )


async def vote_groups(session: AsyncSession, dimension: str | None) -> tuple[list[Group], list[Group]]:
    """Community poll answers: respondents per (poll id, day or month, breakdown cell) and chosen options per
    (poll id, option key, day or month, breakdown cell); the cell comes from the voter's latest completed flow or
    start link. A respondent's votes in a poll share one day (db.polls.vote), so the days of a month add up to it."""
    sql = _Dialect(session)
    cell, join, ctes = _cell(sql, dimension, "f.sid", "v.user_id")
    # without a breakdown by day, in the order of ix_poll_votes_poll_id_answered_on (days fold into months); with
    # one by month, or the days would multiply the groups by thirty
    month = "v.answered_on" if dimension is None else sql.month_of_day("v.answered_on")
    out = []
    for keys, count in (
        (["v.poll_id", month, *cell], "COUNT(DISTINCT v.user_id)"),
        (["v.poll_id", "v.option_key", month, *cell], "COUNT(*)"),
    ):
        out.append(
            await _groups(
                session,
                f"""WITH {LATEST}{"".join(", " + c for c in ctes)}
                SELECT {", ".join(keys)}, {count} FROM poll_votes v LEFT JOIN latest f ON f.user_id = v.user_id
                {join}
                GROUP BY {", ".join(keys)}""",
            )
        )
    return out[0], out[1]
