"""The export's month-cells from the database's GROUP BY counts (db.export_counts), the same cells
bot.export_data.load_answers gives one answer at a time, without reading the answers into Python.

Each group stands for `count` respondents with the same month, breakdown answers and (for the flow) path,
ticked steps and start link; its answers are folded into the month-cells here exactly as the per-response path
counts them (flow_responses, source_responses, progress_responses, community_responses).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.export_data import (
    BUILT_IN,
    FLOW_PREFIX,
    NO_LINK,
    OPEN,
    PATH_ORDER,
    PATH_POLL,
    PROGRESS_PREFIX,
    Links,
    _keys,
    flow_polls,
    progress_polls,
    source_poll,
)
from db import export_counts
from db import polls as poll_store
from db import sources as source_store
from flows.aggregate import ALL, NONE, PARTITIONS, Block, CellKey, Month, MonthCells, Poll
from flows.definition import FlowDefinition, load_definition
from flows.funnel import position
from flows.progress_steps import Steps, load_steps, tracks
from flows.recommend import Path

Blocks = dict[CellKey, Block]
TRACKS = ("qme", "ime")
"""The funnel's tracks, in the order of its polls (bot.export_data.progress_polls)."""


@dataclass(frozen=True)
class Counted:
    """The month-cells of everything the export counts, and the start links (the source poll's options)."""

    cells: MonthCells
    links: tuple[tuple[str, str], ...]


def _json(text: str | None) -> object:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _month(value: object) -> Month:
    """A group's month: `YYYY-MM`, or a day (a date, or its ISO text from SQLite) that folds into its month."""
    if isinstance(value, date):
        return Month.of(value)
    text = str(value)
    return Month.parse(text) if len(text) == 7 else Month.of(date.fromisoformat(text))


def _cells(dimension: str | None, value: str | None) -> tuple[str, ...]:
    """The breakdown cells of a group's cell column (db.export_counts): the specialty answer's JSON text, a
    license cell or a start-link code; NULL is "none"."""
    if dimension == "specialty":
        return _keys(_json(value))[:1] or (NONE,)
    return (value,) if value else (NONE,)


def _add(
    blocks: Blocks, poll: str, month: Month, cells: Sequence[str], n: int, chosen: Sequence[str], count: int
) -> None:
    for cell in cells:
        block = blocks.setdefault((poll, cell, month), Block())
        block.n += n * count
        for option in set(chosen):
            block.counts[option] += count


async def _count(
    session: AsyncSession, zone: ZoneInfo, dimension: str | None, defn: FlowDefinition, links: Links, steps: Steps
) -> Blocks:
    """The month-cells by `dimension` (None: the "all" ones) of every poll."""
    blocks: Blocks = {}
    flow = flow_polls(defn)
    valid = {p.key: {o for o, _ in p.options} for p in flow}
    source_key = source_poll(links).key
    on_track = {track: [s.key for s in steps.steps if s.track == track] for track in TRACKS}

    def cells(value: str | None, own: bool = False) -> tuple[str, ...]:
        """`own`: the funnel and start-link polls, which carry no source cell."""
        if dimension is None:
            return (ALL,)
        return (NONE,) if own and dimension == "source" else _cells(dimension, value)

    for month_text, path, *rest in await export_counts.flow_groups(session, zone, dimension, on_track):
        positions, (source, *rest) = rest[: len(TRACKS)], rest[len(TRACKS) :]
        *cell, count = rest
        value = cell[0] if cell else None
        month = Month.parse(month_text)
        for poll in flow:
            chosen = (path,) if poll.key == PATH_POLL and path in valid[PATH_POLL] else ()
            _add(blocks, poll.key, month, cells(value), 1, chosen, count)
        own = cells(value, own=True)
        _add(blocks, source_key, month, own, 1, (source or NO_LINK,), count)
        on = tracks(Path(path)) if path in PATH_ORDER else ()
        for track, first in zip(TRACKS, positions, strict=True):
            chosen = (first or position(track, (), steps),) if track in on else ()
            _add(blocks, PROGRESS_PREFIX + track, month, own, 1, chosen, count)
    for question, key, month_text, *rest in await export_counts.flow_answer_groups(session, zone, dimension):
        *cell, count = rest
        poll_key = FLOW_PREFIX + question
        if poll_key != PATH_POLL and key in valid.get(poll_key, ()):
            _add(blocks, poll_key, Month.parse(month_text), cells(cell[0] if cell else None), 0, (key,), count)
    for code, month_text, count in await export_counts.open_link_groups(session):
        _add(blocks, source_key, Month.parse(month_text), cells(None, own=True), 1, (code + OPEN,), count)
    respondents, picks = await export_counts.vote_groups(session, dimension)
    polls = await _community(session)
    for poll_id, day, *rest in respondents:
        *cell, count = rest
        _add(blocks, polls[poll_id].key, _month(day), cells(cell[0] if cell else None), 1, (), count)
    for poll_id, option, day, *rest in picks:
        *cell, count = rest
        if option in {o for o, _ in polls[poll_id].options}:
            month = _month(day)
            _add(blocks, polls[poll_id].key, month, cells(cell[0] if cell else None), 0, (option,), count)
    return blocks


async def _community(session: AsyncSession) -> dict[int, Poll]:
    """Community polls by id, ordered by key."""
    polls: dict[int, Poll] = {}
    for row in sorted(await poll_store.list_polls(session), key=lambda row: row.key):
        if row.key.startswith(BUILT_IN):
            raise ValueError(f"community poll key {row.key!r} clashes with the built-in polls")
        options = tuple((str(o["key"]), str(o["label"])) for o in row.options)
        polls[row.id] = Poll(row.key, row.question, options, row.choice == "multiple")
    return polls


def _merged(cells: Blocks) -> Blocks:
    """The "all" month-cells of a breakdown whose cells partition the respondents."""
    overall: Blocks = {}
    for (poll, _, month), block in cells.items():
        whole = overall.setdefault((poll, ALL, month), Block())
        whole.n += block.n
        whole.counts.update(block.counts)
    return overall


async def load_cells(
    session: AsyncSession, zone: ZoneInfo, by: str | None = None, defn: FlowDefinition | None = None
) -> Counted:
    """What `medlegal export`, /export, /sources and /funnel count, as month-cells: "all" and by `by`."""
    defn = defn or load_definition()
    steps = load_steps()
    links = tuple(await source_store.links(session))
    if by in PARTITIONS:
        cells = await _count(session, zone, by, defn, links, steps)
        overall = _merged(cells)  # one cell per respondent: the cells add up to "all"
    else:
        overall = await _count(session, zone, None, defn, links, steps)
        cells = overall if by is None else await _count(session, zone, by, defn, links, steps)
    polls = [*flow_polls(defn), source_poll(links), *progress_polls(steps), *(await _community(session)).values()]
    return Counted(MonthCells(polls, overall, cells), links)
