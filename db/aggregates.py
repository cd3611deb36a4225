"""What the anonymised export reads from the decision flow: each physician's latest completed flow.

Only completed flows count (the recommendation was shown): a physician who stopped half-way has not answered
the questionnaire. A physician who went through the flow again counts once, with the latest completed pass.
Plain values only (db does not depend on flows); the bot layer turns them into poll answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AnswerRow, FlowSession, RecommendationRow


@dataclass(frozen=True)
class CompletedFlow:
    user_id: int
    """Used only to join a source attribution or a poll answer; never published."""
    completed_at: datetime
    answers: dict[str, Any]
    """question key -> option key, or a list of keys for multi-choice questions."""
    path: str | None
    """The path recommended last (qme, ime, hybrid, not_yet); None if no recommendation was stored."""


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def completed_flows(session: AsyncSession) -> list[CompletedFlow]:
    """Every physician's latest completed flow with its answers and recommended path, in three queries."""
    latest = (
        select(func.max(FlowSession.id).label("id"))
        .where(FlowSession.status == "completed", FlowSession.completed_at.is_not(None))
        .group_by(FlowSession.user_id)
        .subquery()
    )
    flows = (
        await session.execute(
            select(FlowSession.id, FlowSession.user_id, FlowSession.completed_at)
            .join(latest, latest.c.id == FlowSession.id)
            .order_by(FlowSession.id)
        )
    ).all()
    answers: dict[int, dict[str, Any]] = {row.id: {} for row in flows}
    rows = await session.execute(
        select(AnswerRow.session_id, AnswerRow.question_key, AnswerRow.value).where(
            AnswerRow.session_id.in_(select(latest.c.id))
        )
    )
    for session_id, key, value in rows:
        answers[session_id][key] = value
    paths: dict[int, str] = {}
    recs = await session.execute(
        select(RecommendationRow.session_id, RecommendationRow.path)
        .where(RecommendationRow.session_id.in_(select(latest.c.id)))
        .order_by(RecommendationRow.id)
    )
    for session_id, path in recs:
        paths[session_id] = path  # the last one wins: the recommendation after the latest edit
    return [
        CompletedFlow(row.user_id, _aware(row.completed_at), answers[row.id], paths.get(row.id))
        for row in flows
        if row.completed_at is not None
    ]
