"""The database's GROUP BY month-cells (bot.export_cells) are exactly those the per-response path counts, and so
give the same published rows, on a varied seeded dataset: second passes, unfinished flows, skipped and unknown
answers, repeated multi-choice keys, several recommendations, votes naming a removed option, start links with and
without a finished flow, and completion times on either side of a month boundary in the export's time zone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import date

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.export import ZONE, store, synthetic_rows
from bot.export_cells import load_cells
from bot.export_data import Request, build_export, load_answers
from flows.aggregate import Block, CellKey, count_responses

TODAY = date(2026, 11, 15)


def plain(blocks: Mapping[CellKey, Block]) -> dict[CellKey, tuple[int, Counter[str]]]:
    return {key: (block.n, +block.counts) for key, block in blocks.items()}


@pytest.mark.parametrize("by", [None, "specialty", "license", "source"])
async def test_sql_month_cells_and_rows_equal_the_per_response_ones(
    sessions: async_sessionmaker[AsyncSession], by: str | None
) -> None:
    await store(sessions, synthetic_rows(300, seed=by.__hash__() % 7 if by else 3))
    async with sessions() as session:
        counted = await load_cells(session, ZONE, by)
        answers = await load_answers(session, ZONE)
    reference = count_responses(answers.responses, by)
    assert len(reference.overall) > 100 and plain(counted.cells.overall) == plain(reference.overall)
    assert plain(counted.cells.by) == plain(reference.by)
    assert counted.links == answers.links
    published = 0
    for k in (3, 5):
        for request in (
            Request(by=by),
            Request(since="2026-02", until="2026-06", by=by),
            Request(poll="flow.specialty", by=by),
        ):
            sql = build_export(counted.cells, k, TODAY, request, counted.links)
            python = build_export(answers.responses, k, TODAY, request, answers.links)
            assert sql.rows == python.rows
            published += sum(row.count is not None for row in sql.rows)
    assert published > 50


async def test_the_export_benchmark_stays_runnable() -> None:
    """bench.export on a few physicians: figures come out for every breakdown and the charts; none is asserted."""
    from bench.common import fresh_database
    from bench.export import measure
    from db.engine import make_engine, make_session_factory

    async with fresh_database("sqlite", None) as url:
        engine = make_engine(url)
        await store(make_session_factory(engine), synthetic_rows(60))
        await engine.dispose()
        lines = await measure(url, TODAY, (None, "license"), repeat=1)
    assert [line.split(":")[0].strip() for line in lines] == [
        "aggregation + CSV",
        "PNG charts",
        "aggregation + CSV --by license",
    ]
