"""The export's month-cells from the database's GROUP BY counts (db.export_counts), the same cells
bot.export_data.load_answers gives one answer at a time, without reading the answers into Python.

Each group stands for `count` respondents with the same month, breakdown answers and (for the flow) path,
ticked steps and start link; its answers are folded into the month-cells here exactly as the per-response path
counts them (flow_responses, source_responses, progress_responses, community_responses).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
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
    Breakdown,
    _keys,
    breakdown_of,
    flow_polls,
    progress_polls,
    source_poll,
)
from db import export_counts
from db import polls as poll_store
from db import sources as source_store
from flows.aggregate import ALL, NONE, Block, CellKey, Month, MonthCells, Poll
from flows.definition import FlowDefinition, load_definition
from flows.funnel import position
from flows.progress_steps import load_steps, tracks
from flows.recommend import Path

Blocks = dict[CellKey, Block]


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


def _profile_answers(dimension: str | None, columns: Sequence[Any]) -> dict[str, object]:
    """The breakdown answers of a group (db.export_counts.PROFILE) as the flow stored them."""
    return {q: _json(v) for q, v in zip(export_counts.PROFILE.get(dimension or "", ()), columns, strict=True)}


def _cells(breakdown: Breakdown, dimension: str | None) -> tuple[str, ...]:
    if dimension is None:
        return (ALL,)
    return tuple(dict.fromkeys(breakdown.get(dimension, ()))) or (NONE,)


class _Counter:
    """Adds groups to the "all" month-cells and to those of the breakdown."""

    def __init__(self, dimension: str | None) -> None:
        self.dimension = dimension
        self.overall: Blocks = {}
        self.by: Blocks = {}

    def add(self, poll: str, month: Month, cells: Sequence[str], n: int, chosen: Sequence[str], count: int) -> None:
        targets = [(self.overall, ALL)] + ([(self.by, cell) for cell in cells] if self.dimension else [])
        for blocks, cell in targets:
            block = blocks.setdefault((poll, cell, month), Block())
            block.n += n * count
            for option in set(chosen):
                block.counts[option] += count

    def cells(self, polls: Sequence[Poll]) -> MonthCells:
        return MonthCells(polls, self.overall, self.by if self.dimension else self.overall)


async def load_cells(
    session: AsyncSession, zone: ZoneInfo, by: str | None = None, defn: FlowDefinition | None = None
) -> Counted:
    """What `medlegal export`, /export, /sources and /funnel count, as month-cells by `by` (and "all")."""
    defn = defn or load_definition()
    steps = load_steps()
    links = tuple(await source_store.links(session))
    flow = flow_polls(defn)
    valid = {p.key: {o for o, _ in p.options} for p in flow}
    counter = _Counter(by)
    split = by not in (None, "source")

    def flow_cells(answers: dict[str, object], source: str | None) -> tuple[str, ...]:
        return _cells(breakdown_of(answers, source), by)

    for month_text, path, ticks, source, *rest in await export_counts.flow_groups(session, zone, by):
        *columns, count = rest
        month = Month.parse(month_text)
        answers = _profile_answers(by, columns) if split else {}
        cells = flow_cells(answers, source)
        for poll in flow:
            chosen = (path,) if poll.key == PATH_POLL and path in valid[PATH_POLL] else ()
            counter.add(poll.key, month, cells, 1, chosen, count)
        own = _cells(breakdown_of(answers, None), by)  # the funnel and start-link polls carry no source cell
        counter.add(source_poll(links).key, month, own, 1, (source or NO_LINK,), count)
        on = tracks(Path(path)) if path in PATH_ORDER else ()
        ticked = frozenset(ticks.split(",")) if ticks else frozenset()
        for poll in progress_polls(steps):
            track = poll.key.removeprefix(PROGRESS_PREFIX)
            chosen = (position(track, ticked, steps),) if track in on else ()
            counter.add(poll.key, month, own, 1, chosen, count)
    for question, value, month_text, *rest in await export_counts.flow_answer_groups(session, zone, by):
        *columns, count = rest
        key = FLOW_PREFIX + question
        if key == PATH_POLL or key not in valid:
            continue
        source = columns[0] if by == "source" else None
        cells = flow_cells(_profile_answers(by, columns) if split else {}, source)
        picked = [o for o in _keys(_json(value)) if o in valid[key]]
        counter.add(key, Month.parse(month_text), cells, 0, picked, count)
    for code, month_text, count in await export_counts.open_link_groups(session):
        counter.add(source_poll(links).key, Month.parse(month_text), _cells({}, by), 1, (code + OPEN,), count)
    community = await _community(session, by, counter)
    return Counted(counter.cells([*flow, source_poll(links), *progress_polls(steps), *community]), links)


async def _community(session: AsyncSession, by: str | None, counter: _Counter) -> list[Poll]:
    """Community polls, ordered by key, broken down by the voter's flow profile and start link."""
    rows = {row.id: row for row in await poll_store.list_polls(session)}
    polls: dict[int, Poll] = {}
    for poll_id, row in rows.items():
        if row.key.startswith(BUILT_IN):
            raise ValueError(f"community poll key {row.key!r} clashes with the built-in polls")
        options = tuple((str(o["key"]), str(o["label"])) for o in row.options)
        polls[poll_id] = Poll(row.key, row.question, options, row.choice == "multiple")
    respondents, chosen = await export_counts.vote_groups(session, by)

    def cells(columns: Sequence[Any]) -> tuple[str, ...]:
        if by == "source":
            return _cells({"source": (columns[0],) if columns[0] else ()}, by)
        answers = _profile_answers(by, columns)
        return _cells(breakdown_of(answers, None), by)

    add: Callable[..., None] = counter.add
    for poll_id, month_text, *rest in respondents:
        *columns, count = rest
        add(polls[poll_id].key, Month.parse(month_text), cells(columns), 1, (), count)
    for poll_id, option, month_text, *rest in chosen:
        *columns, count = rest
        if option in {o for o, _ in polls[poll_id].options}:
            add(polls[poll_id].key, Month.parse(month_text), cells(columns), 0, (option,), count)
    return sorted(polls.values(), key=lambda p: p.key)
