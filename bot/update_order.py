"""Which Telegram update is being handled, and whether a typed answer arrived after a newer update.

Telegram numbers updates in order, but with several processes (or a redelivery) an older update can be handled
after a newer one. Buttons carry the flow's turn, so a press on an outdated screen is recognised already. A typed
answer carries nothing: it is late when the update that last moved the flow (showed the current question) is
newer than it - it was typed before that question was on screen, so it is answered like a stale button instead of
being applied to a question it was not meant for.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import UTC, datetime, timedelta

CURRENT_UPDATE: ContextVar[int | None] = ContextVar("current_update", default=None)
"""The update_id being handled; set by `bot.update_guard` for the handlers of one update, None in the console."""

ORDER_WINDOW = timedelta(hours=1)
"""Compare ids only with a recent move: after a week without updates Telegram may restart its numbering lower."""


def is_late(moved_by_update: int | None, moved_at: datetime | None, now: datetime | None = None) -> bool:
    """True when the update being handled is older than the one that last moved the flow."""
    current = CURRENT_UPDATE.get()
    if current is None or moved_by_update is None or moved_at is None:
        return False
    moved = moved_at if moved_at.tzinfo else moved_at.replace(tzinfo=UTC)  # SQLite: naive UTC
    if (now or datetime.now(UTC)) - moved > ORDER_WINDOW:
        return False
    return current < moved_by_update
