"""The exam calendar as stored, turned into the pure `flows.sittings.Sitting` values the roadmap plans with.

db does not import flows, so the conversion lives in the adapter layer, once, for the dialogue, the admin
tools and the CLI.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from db import repository as repo
from db.models import ExamSitting
from flows.sittings import Sitting


def as_sitting(row: ExamSitting | Row[Any] | repo.SittingFields) -> Sitting:
    """The stored row as the pure planning value (db does not import flows, so the conversion lives here)."""
    return Sitting(
        first_day=row.first_day,
        last_day=row.last_day,
        deadline=row.deadline,
        note=row.note,
        source=row.source,
        id=row.id,
    )


async def stored_sittings(session: AsyncSession) -> list[Sitting]:
    """The calendar, earliest first, for the roadmap and the admin listings."""
    return [as_sitting(row) for row in await repo.sitting_rows(session)]
