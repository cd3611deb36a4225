"""Who a broadcast goes to: active subscribers, narrowed by what their latest pass through the flow said.

An audience is a short string (stored with the broadcast and typed in `medlegal broadcast --audience`):
`all`, `qme`, `hybrid` (the path of the subscriber's latest recommendation), `ca` (an active California license
in the latest completed flow), `specialty:KEY`, and `source:CODE` (physicians who arrived through that community
start link, db.sources; an unknown code is an audience nobody is in).
Recipients are resolved when a broadcast is queued, so an admin's preview count and the queued rows agree with
the database at that moment. `db` knows no question definitions, so a specialty key is checked by the caller.
"""

from __future__ import annotations

import re
from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AnswerRow, FlowSession, RecommendationRow
from db.outbox import active_subscribers
from db.sources import members

PATHS = ("qme", "hybrid")
FORMS = "all, qme, hybrid, ca, specialty:KEY or source:CODE"
_KEY = re.compile(r"^[a-z0-9_]{1,32}$")


def parse_audience(text: str) -> str:
    """The audience in its stored form (lower case, no spaces); ValueError naming the accepted forms."""
    audience = text.strip().lower()
    if audience in {"all", "ca", *PATHS}:
        return audience
    kind, sep, key = audience.partition(":")
    if sep and kind == "specialty" and _KEY.match(key.strip()):
        return f"specialty:{key.strip()}"
    if sep and kind == "source" and _KEY.match(key.strip()):
        return f"source:{key.strip()}"
    if sep and kind in {"specialty", "source"}:
        raise ValueError(f"{text.strip()!r} is not an audience: a {kind} key is letters, digits and _")
    raise ValueError(f"{text.strip()!r} is not an audience; use {FORMS}")


async def recipients(session: AsyncSession, audience: str) -> list[int]:
    """The user ids (ascending) of the active subscribers in the audience."""
    audience = parse_audience(audience)
    subscribers = sorted(set(await active_subscribers(session)))
    if audience == "all":
        return subscribers
    if audience in PATHS:
        chosen = await _latest_paths(session)
        return [u for u in subscribers if chosen.get(u) == audience]
    if audience == "ca":
        answers = await _latest_answers(session, "ca_license")
        return [u for u in subscribers if answers.get(u) == "active"]
    kind, _, key = audience.partition(":")
    if kind == "source":
        arrived = await members(session, key)
        return [u for u in subscribers if u in arrived]
    answers = await _latest_answers(session, "specialty")
    return [u for u in subscribers if answers.get(u) == key]


async def _latest_paths(session: AsyncSession) -> dict[int, str]:
    """Each user's most recent recommendation's path (a physician who redid the flow counts by the new one)."""
    latest = (
        select(func.max(RecommendationRow.id).label("id"))
        .join(FlowSession, RecommendationRow.session_id == FlowSession.id)
        .group_by(FlowSession.user_id)
        .subquery()
    )
    stmt = (
        select(FlowSession.user_id, RecommendationRow.path)
        .join(FlowSession, RecommendationRow.session_id == FlowSession.id)
        .join(latest, RecommendationRow.id == latest.c.id)
    )
    return {user_id: path for user_id, path in (await session.execute(stmt)).all()}


async def _latest_answers(session: AsyncSession, question_key: str) -> dict[int, object]:
    """Each user's answer to one question in their latest completed flow (answers of a flow in progress wait)."""
    latest = (
        select(func.max(FlowSession.id).label("id"))
        .where(FlowSession.status == "completed")
        .group_by(FlowSession.user_id)
        .subquery()
    )
    stmt = (
        select(FlowSession.user_id, AnswerRow.value)
        .join(latest, FlowSession.id == latest.c.id)
        .join(AnswerRow, AnswerRow.session_id == FlowSession.id)
        .where(AnswerRow.question_key == question_key)
    )
    return {user_id: value for user_id, value in (await session.execute(stmt)).all()}


async def specialty_counts(session: AsyncSession) -> dict[str, int]:
    """Active subscribers per specialty key, for the admin's specialty keyboard (one query, not one per key)."""
    subscribers = set(await active_subscribers(session))
    answers = await _latest_answers(session, "specialty")
    return dict(Counter(v for u, v in answers.items() if u in subscribers and isinstance(v, str)))
