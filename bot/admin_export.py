"""/export for community admins: the anonymised CSV and one bar chart per poll, as documents.

`/export [SINCE [UNTIL]]` (months as YYYY-MM, default: from the first month with answers to last month). The
figures are the ones `medlegal export` writes; see the README's "Anonymity rule".
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.export_cells import load_cells
from bot.export_data import ExportError, Request, build_export
from bot.export_files import charts, csv_bytes, period_text
from bot.screens import Document, Reply, Screen, esc
from bot.settings import Settings
from flows.aggregate import Export

NOT_ADMIN = "Sorry, exports are made by the community admins, and this command is only for them."
USAGE = "Usage: /export [SINCE [UNTIL]] with months as YYYY-MM, e.g. /export 2026-01 2026-06"
NOTHING = "Nothing to export for {period}: no poll reached {k} respondents in any month."
SENT = (
    "<b>Export, {period}</b>\n{polls} polls. Counts below {k} are withheld (shown {suppressed}), and so is any "
    "figure that would let someone work them out. The CSV and one chart per poll follow."
)


class ExportAdmin:
    commands = frozenset({"export"})
    verbs: frozenset[str] = frozenset()

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings

    async def command(self, user_id: int, name: str, args: str) -> Reply:
        if not self.settings.is_admin(user_id):
            return Reply(send=[Screen(esc(NOT_ADMIN))])
        months = args.split()
        if len(months) > 2:
            return Reply(send=[Screen(esc(USAGE))])
        request = Request(since=months[0] if months else None, until=months[1] if len(months) > 1 else None)
        async with self.sessions() as session:
            answers = await load_cells(session, self.settings.zone, request.by)
        try:
            export = build_export(
                answers.cells, self.settings.k_min, self.settings.current_date(), request, answers.links
            )
        except ExportError as exc:
            return Reply(send=[Screen(esc(f"{exc}. {USAGE}"))])
        period = period_text(export.since, export.until)
        if not export.rows:
            return Reply(send=[Screen(esc(NOTHING.format(period=period, k=export.k)))])
        documents = await asyncio.to_thread(_documents, export)
        text = SENT.format(period=esc(period), polls=len(export.polls()), k=export.k, suppressed=esc(export.suppressed))
        return Reply(send=[Screen(text)], documents=documents)

    async def press(self, user_id: int, data: str) -> Reply:
        return Reply(notice="That button is not one I recognise.")

    async def text(self, user_id: int, text: str) -> Reply | None:
        return None


def _documents(export: Export) -> list[Document]:
    """The CSV first, then the charts in poll order (rendering takes a moment: run it off the event loop)."""
    name = f"medlegal-export-{export.since}-{export.until}"
    period = period_text(export.since, export.until)
    files = [Document(f"{name}.csv", csv_bytes(export), caption=f"Anonymised aggregates, {period}")]
    files += [Document(filename, content) for filename, content in charts(export).items()]
    return files
