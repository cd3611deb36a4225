"""The export's figures for one built-in poll, for the admins' chat views (/sources, /funnel).

Those views show exactly what `medlegal export` would write for the default period (from the first month with
answers to the last finished month), so nothing in chat can be combined with an export to reveal more than
either does alone: one anonymity rule, the one in flows/aggregate.py.
"""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.export_cells import load_cells
from bot.export_data import Request, build_export
from bot.export_files import period_text
from flows.aggregate import Export, Row


class Published:
    """One poll's published rows by option key, with the period and k they were computed for."""

    def __init__(self, export: Export, polls: tuple[str, ...]) -> None:
        self.export = export
        self.period = period_text(export.since, export.until)
        self.rows: dict[tuple[str, str], Row] = {
            (r.poll, r.option_key): r for r in export.rows if r.poll in polls and r.breakdown == "all"
        }

    def shown(self, poll: str, option: str) -> int | None:
        """The published count, or None when withheld (or the whole poll is)."""
        row = self.rows.get((poll, option))
        return row.count if row is not None else None

    def text(self, poll: str, option: str) -> str:
        count = self.shown(poll, option)
        return f"{count:,}" if count is not None else self.export.suppressed

    def respondents(self, poll: str) -> int | None:
        return next((r.respondents for (p, _), r in self.rows.items() if p == poll), None)


async def published(session: AsyncSession, zone: ZoneInfo, k: int, today: date, *polls: str) -> Published:
    answers = await load_cells(session, zone)
    export = build_export(answers.cells, k, today, Request(), answers.links)
    return Published(export, polls)
