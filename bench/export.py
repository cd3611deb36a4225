"""How long the export takes with a million stored answers: aggregation + CSV, and separately the PNG charts.

    python -m bench.export [--answers 1000000] [--backends postgres,sqlite]

Synthetic physicians are bulk-inserted straight into a fresh migrated database (executemany, not through the
dialogue): completed flows with every question answered (some skipped or answered again in a second pass), a
recommended path, ticked progress steps, start links and community poll votes over twelve months. "Answers" are
the stored flow answer rows plus the poll vote rows. PostgreSQL comes from MEDLEGAL_BENCH_PG_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.common import backend_name, fresh_database, machine, pg_url_from_env
from db.engine import make_engine, make_session_factory
from db.models import (
    AnswerRow,
    CommunitySource,
    FlowSession,
    PollRow,
    PollVote,
    ProgressStep,
    RecommendationRow,
    User,
    UserSource,
)
from flows.definition import load_definition
from flows.progress_steps import load_steps

ZONE = ZoneInfo("America/Los_Angeles")
FIRST_USER = 7_000_000_000
START = datetime(2025, 11, 1, tzinfo=UTC)
LINKS = (("club", "Doctors club"), ("ortho", "Ortho forum"), ("west", "West coast IME group"))
PATHS = ("qme", "ime", "hybrid", "not_yet")
POLLS = (
    ("bench_fees", "single", ("lt1k", "1to2k", "2to3k", "gt3k")),
    ("bench_hours", "single", ("lt5", "5to10", "gt10")),
    ("bench_venues", "multiple", ("ime_cos", "law_firms", "insurers", "direct", "gone")),
)
"""Community polls; "gone" is an option a vote still names after the poll changed (counted as nothing)."""
POLL_IDS = 1000
"""Bench poll ids start past the polls the migrations seed."""
ANSWERS_PER_PHYSICIAN = 18
CHUNK = 5_000


def _answer(rng: random.Random, key: str, options: Sequence[str], multi: bool) -> Any:
    if multi:
        chosen = rng.sample(list(options), rng.choice((1, 1, 2, 3)))
        return chosen if rng.random() > 0.02 else [*chosen, chosen[0]]  # a repeated key counts once
    if rng.random() < 0.01:
        return rng.choice((42, "bogus", None))  # stored values the questions do not know count as nothing
    return rng.choice(options)


def synthetic_rows(physicians: int, seed: int = 1) -> dict[str, list[dict[str, Any]]]:
    """Rows per table for `physicians` synthetic physicians; the same seed gives the same rows."""
    rng = random.Random(seed)
    defn = load_definition()
    steps = [s.key for s in load_steps().steps]
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in ("users", "flows", "answers", "recs", "steps")}
    rows |= {"sources": [], "user_sources": [], "polls": [], "votes": []}
    rows["sources"] = [
        {"id": n, "code": code, "name": name, "created_on": START.date()} for n, (code, name) in enumerate(LINKS, 1)
    ]
    rows["polls"] = [
        {
            "id": POLL_IDS + n,
            "key": key,
            "question": f"Question {key}?",
            "options": [{"key": o, "label": o} for o in opts[:4]],
        }
        | {"choice": choice}
        for n, (key, choice, opts) in enumerate(POLLS, 1)
    ]
    flow_id = answer_id = rec_id = 0
    for number in range(physicians):
        user = FIRST_USER + number
        rows["users"].append({"id": user})
        passes = rng.choices((0, 1, 2), weights=(8, 80, 12))[0]  # no completed flow, one, or one done again
        for attempt in range(passes + (rng.random() < 0.05)):
            flow_id += 1
            done = attempt < passes
            # minutes after a month boundary in UTC are still the month before in Los Angeles
            when = START + timedelta(days=rng.randrange(365), minutes=rng.randrange(1440))
            if rng.random() < 0.1:
                when = datetime(2026, rng.randrange(1, 12), 1, 0, rng.choice((0, 30)), tzinfo=UTC)
            status = "completed" if done else rng.choice(("active", "abandoned"))
            rows["flows"].append(
                {"id": flow_id, "user_id": user, "status": status, "completed_at": when if done else None}
                | {"current_key": None, "editing": False, "draft": [], "turn": 1}
            )
            for question in defn.questions:
                if question.key == "treatment_share" and rng.random() < 0.4:
                    continue  # skipped by the flow for this physician
                answer_id += 1
                keys = [o.key for o in question.options]
                value = _answer(rng, question.key, keys, question.multi)
                rows["answers"].append(
                    {"id": answer_id, "session_id": flow_id, "question_key": question.key, "value": value}
                )
            for _ in range(rng.choice((0, 1, 1, 1, 2)) if done else 0):
                rec_id += 1
                rows["recs"].append({"id": rec_id, "session_id": flow_id, "path": rng.choice(PATHS)})
        if rng.random() < 0.5:
            rows["steps"] += [
                {"user_id": user, "step_key": key, "done_on": START.date()} for key in steps if rng.random() < 0.3
            ]
        if rng.random() < 0.6:
            day = START.date() + timedelta(days=rng.randrange(365))
            rows["user_sources"].append({"user_id": user, "source_id": rng.randrange(1, 4), "started_on": day})
        for poll_id, (_, choice, options) in enumerate(POLLS, POLL_IDS + 1):
            if rng.random() < 0.8:
                day = START.date() + timedelta(days=rng.randrange(365))
                chosen = rng.sample(options, rng.choice((1, 2, 3))) if choice == "multiple" else [rng.choice(options)]
                rows["votes"] += [
                    {"poll_id": poll_id, "user_id": user, "option_key": key, "answered_on": day} for key in chosen
                ]
    return rows


TABLES: tuple[tuple[str, Any], ...] = (
    ("users", User),
    ("sources", CommunitySource),
    ("polls", PollRow),
    ("flows", FlowSession),
    ("answers", AnswerRow),
    ("recs", RecommendationRow),
    ("steps", ProgressStep),
    ("user_sources", UserSource),
    ("votes", PollVote),
)


async def store(sessions: async_sessionmaker[AsyncSession], rows: dict[str, list[dict[str, Any]]]) -> None:
    """Bulk inserts (executemany in chunks), parents first; then the statistics the planner needs."""
    async with sessions() as session:
        for name, model in TABLES:
            for start in range(0, len(rows[name]), CHUNK):
                await session.execute(insert(model), rows[name][start : start + CHUNK])
        await session.commit()
    async with sessions() as session:
        await session.execute(text("ANALYZE"))
        await session.commit()


async def _timed(step: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = step()
    if asyncio.iscoroutine(result):
        result = await result
    return time.perf_counter() - started, result


async def measure(url: str, today: date, by: Iterable[str | None] = (None,), repeat: int = 3) -> list[str]:
    """Best of `repeat`: load_cells + build_export + CSV per breakdown, and the PNG charts of the plain export."""
    from bot.export_cells import load_cells
    from bot.export_data import Request, build_export
    from bot.export_files import charts, csv_bytes

    engine = make_engine(url)
    sessions = make_session_factory(engine)
    lines = []
    try:
        for dimension in by:

            async def export(dimension: str | None = dimension) -> Any:
                async with sessions() as session:
                    counted = await load_cells(session, ZONE, dimension)
                made = build_export(counted.cells, 3, today, Request(by=dimension), counted.links)
                return made, csv_bytes(made)

            times = []
            for _ in range(repeat):
                seconds, (made, csv) = await _timed(export)
                times.append(seconds)
            lines.append(
                f"  aggregation + CSV{f' --by {dimension}' if dimension else ''}: {min(times):.3f} s"
                f" (best of {repeat}; {len(made.rows)} rows, {len(csv):,} bytes)"
            )
            if dimension is None:
                seconds, files = await _timed(lambda made=made: charts(made))  # type: ignore[misc]
                lines.append(
                    f"  PNG charts: {seconds:.3f} s ({len(files)} charts, {sum(map(len, files.values())):,} bytes)"
                )
    finally:
        await engine.dispose()
    return lines


async def main(answers: int, backends: Sequence[str]) -> None:
    print(f"machine: {machine()}")
    physicians = max(1, answers // ANSWERS_PER_PHYSICIAN)
    rows = synthetic_rows(physicians)
    stored = len(rows["answers"]) + len(rows["votes"])
    print(
        f"{physicians:,} physicians, {stored:,} stored answers ({len(rows['answers']):,} flow answers,"
        f" {len(rows['votes']):,} poll votes), {len(rows['flows']):,} flows"
    )
    today = date(2026, 11, 15)
    for kind in backends:
        pg_url = pg_url_from_env()
        if kind == "postgres" and pg_url is None:
            print(f"skipping PostgreSQL: set {'MEDLEGAL_BENCH_PG_URL'}")
            continue
        async with fresh_database(kind, pg_url) as url:
            engine = make_engine(url)
            seconds, _ = await _timed(lambda engine=engine: store(make_session_factory(engine), rows))  # type: ignore[misc]
            await engine.dispose()
            print(f"{backend_name(url)}: stored in {seconds:.1f} s")
            for line in await measure(url, today, (None, "specialty", "license", "source")):
                print(line)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=1_000_000, help="stored answers (flow answers + poll votes)")
    parser.add_argument("--backends", default="postgres,sqlite", help="comma-separated: postgres, sqlite")
    args = parser.parse_args()
    asyncio.run(main(args.answers, [b.strip() for b in args.backends.split(",") if b.strip()]))


if __name__ == "__main__":
    cli()
