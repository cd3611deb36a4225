"""The weekly progress nudge, queued by the reminder scheduler's pass through the same outbox.

The schedule is read from the database on every pass: a nudge is due at the reminder hour at least a week after
the later of the opt-in and the last nudge queued, and its outbox key names that anchor, so a restart, a second
pass or a second process cannot queue it twice; only physicians with an open step get one.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.progress import nudge_buttons, roadmap_for
from bot.screens import esc
from bot.settings import Settings
from db import outbox
from db import progress as store
from flows.engine import FlowEngine
from flows.progress import checklist, next_nudge_at, nudge_text
from flows.recommend import Path
from flows.sittings import Sitting

LATE = timedelta(hours=12)
"""A nudge found due longer ago than this (the scheduler was down) is dated now, so the next one is a week on."""


async def queue_nudges(
    session: AsyncSession,
    *,
    now: datetime,
    today: date,
    sittings: list[Sitting],
    settings: Settings,
    flow: FlowEngine,
) -> int:
    """Queue the nudges due at `now`; returns how many were newly queued."""
    queued = 0
    for user_id, anchor in (await store.nudge_anchors(session)).items():
        due = next_nudge_at(anchor, settings.zone, settings.reminder_hour)
        if now < due:
            continue
        built = await roadmap_for(session, user_id, flow, today, sittings)
        if built is None or built[0].path is Path.NOT_YET:
            continue
        items = checklist(*built)
        if not items.next:
            continue  # all done: nothing to nudge about
        queued += await outbox.queue_message(
            session,
            user_id=user_id,
            kind=store.NUDGE_KIND,
            text=esc(nudge_text(items, today)),
            buttons=nudge_buttons(),
            dedupe_key=f"n:{user_id}:{anchor.isoformat()}",
            not_before=due if now - due <= LATE else now,
        )
    return queued
