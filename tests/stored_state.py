"""A whole-database check used after bad input and fuzzing: everything stored is a state the bot can resume."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import make_session_factory
from db.models import FlowSession, RecommendationRow, User
from db.repository import StoredFlow
from flows.engine import FlowEngine, restore

ENGINE = FlowEngine()
STATUSES = {"active", "completed", "cancelled", "abandoned"}


async def assert_stored_data_valid(engine: AsyncEngine) -> dict[int, int]:
    """Every stored flow restores unchanged to a valid state; no partial rows. Returns flows per user."""
    async with make_session_factory(engine)() as session:
        flows = list((await session.execute(select(FlowSession))).scalars())
        users = {u for (u,) in (await session.execute(select(User.id))).all()}
        recommended = {s for (s,) in (await session.execute(select(RecommendationRow.session_id))).all()}
    per_user = Counter(f.user_id for f in flows)
    active = Counter(f.user_id for f in flows if f.status == "active")
    assert all(n == 1 for n in active.values()), f"more than one active flow: {active}"
    for row in flows:
        answers = {a.question_key: a.value for a in row.answers}
        flow = StoredFlow(row.id, row.status, row.current_key, row.editing, tuple(row.draft or ()), row.turn, answers)
        assert row.user_id in users, f"flow {flow.id} without its user"
        assert flow.status in STATUSES, flow
        assert all(ENGINE.defn.has_question(k) for k in flow.answers), flow
        current = None if flow.status == "completed" else flow.current_key
        state = restore(ENGINE, flow.answers, current, flow.editing, flow.draft)
        assert ENGINE.is_valid(state), flow
        stored_answers = {k: tuple(v) if isinstance(v, list) else v for k, v in flow.answers.items()}
        assert dict(state.answers) == stored_answers, f"stored answers needed repair: {flow}"
        if flow.status == "active":
            assert state.current == flow.current_key, f"stored position needed repair: {flow}"
        if flow.status == "completed":
            assert state.complete and flow.id in recommended, f"completed without a recommendation: {flow}"
    return dict(per_user)
