"""Replies asking for a slot at the same time share one statement on PostgreSQL, and still get a slot each."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.rate_limit import DatabaseSchedule
from db.engine import DriverStatement


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_concurrent_replies_are_reserved_together_one_slot_each(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    interval = 10.0  # long slots: each reply's delay names its slot unambiguously despite a slow machine
    schedule = DatabaseSchedule(engine, interval, idle_trust=0)  # every reply waits for its statement
    reservations: list[str] = []

    fetch = DriverStatement.fetch

    async def counted(self: DriverStatement, conn: AsyncConnection, params: Mapping[str, Any]) -> Sequence[Any]:
        if self.sql.lstrip().startswith("UPDATE send_rate"):
            reservations.append(self.sql)
        return await fetch(self, conn, params)

    monkeypatch.setattr(DriverStatement, "fetch", counted)  # the schedule's statements run on the driver's own
    try:
        await schedule.reserve(bulk=False)  # connects and takes slot 0, alone
        results = await asyncio.gather(*(schedule.reserve(bulk=False) for _ in range(20)))
    finally:
        await schedule.close()
    slots = sorted(round(delay / interval) for delay, _, _ in results if delay is not None)
    assert slots == list(range(1, 21))  # twenty distinct consecutive slots after the first reply's
    assert schedule._failing_since is None  # from the shared row, not the memory fallback
    assert len(reservations) == 2  # the lone reply, then the twenty in one statement
