"""The unlocked tap decides every press exactly as the locked way does, on PostgreSQL (one statement) and on SQLite
(one transaction in one call on the sqlite3 connection).

Hypothesis drives the same random taps - on the current, an older or a never-shown button - through a dialogue with
the unlocked tap and one without it (on SQLite), with a second unlocked dialogue (another process) taking some of
the taps, so the first one's known flow goes stale under it; the replies and the stored flows must be the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncGenerator, Iterator
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.dialogue import Dialogue, Reply
from db import migrate
from db.engine import make_engine, make_session_factory
from db.progress import set_step
from db.repository import StoredFlow, latest_flow
from flows.progress_steps import COURSE
from tests.conftest import BACKENDS, fresh_database_url

taps = st.lists(
    st.tuples(
        st.integers(0, 1_000),  # which button of the reply
        st.sampled_from(["last", "last", "older"]),  # which reply: the latest, or one further back
        st.sampled_from(["here", "here", "there"]),  # which PostgreSQL process takes the tap
    ),
    min_size=1,
    max_size=24,
)


def _shown(reply: Reply) -> list[tuple[str, list[str]]]:
    return [(screen.text, [b.data for b in screen.buttons()]) for screen in reply.screens()]


async def _stored(engine: AsyncEngine, user: int) -> StoredFlow | None:
    async with make_session_factory(engine)() as session:
        flow = await latest_flow(session, user)
    return None if flow is None else StoredFlow(**{**flow.__dict__, "id": 0, "moved_at": None})


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop:
        yield loop


@contextlib.contextmanager
def _backends(runner: asyncio.Runner, kind: str, tmp_path: Path) -> Iterator[tuple[AsyncEngine, AsyncEngine]]:
    """Two migrated databases: `kind` for the unlocked tap, and SQLite (in another file) for the locked way."""
    databases = [fresh_database_url(kind, tmp_path / "unlocked"), fresh_database_url("sqlite", tmp_path / "locked")]
    (tmp_path / "unlocked").mkdir()
    (tmp_path / "locked").mkdir()
    engines = [make_engine(runner.run(_first(database))) for database in databases]
    try:
        for engine in engines:
            runner.run(migrate.upgrade(engine))
        yield engines[0], engines[1]
    finally:
        for engine in engines:
            runner.run(engine.dispose())
        for database in databases:
            runner.run(database.aclose())  # drops the PostgreSQL database


@pytest.mark.parametrize("kind", BACKENDS)
def test_random_taps_get_the_same_answers_with_and_without_the_lock(
    runner: asyncio.Runner, tmp_path: Path, kind: str
) -> None:
    with _backends(runner, kind, tmp_path) as (unlocked, locked):
        here, there = Dialogue(make_session_factory(unlocked)), Dialogue(make_session_factory(unlocked))  # processes
        only = Dialogue(make_session_factory(locked), unlocked_tap=False)
        assert here.unlocked is not None and only.unlocked is None
        users = itertools.count(8_000_000)

        @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
        @given(taps)
        def run(steps: list[tuple[int, str, str]]) -> None:
            runner.run(_compare(next(users), steps, here, there, only))

        run()


async def _first(database: AsyncGenerator[str, None]) -> str:
    return await anext(database)


async def _compare(
    user: int, steps: list[tuple[int, str, str]], here: Dialogue, there: Dialogue, only: Dialogue
) -> None:
    first = await here.command(user, "start")
    assert _shown(first) == _shown(await only.command(user, "start"))
    replies = [first]
    for button, which, where in steps:
        reply = replies[-1] if which == "last" or len(replies) == 1 else replies[-2 - button % (len(replies) - 1)]
        datas = [b.data for screen in reply.screens() for b in screen.buttons()]
        if not datas:
            continue
        data = datas[button % len(datas)]
        on_pg = await (here if where == "here" else there).press(user, data)
        on_lite = await only.press(user, data)
        assert _shown(on_pg) == _shown(on_lite), data
        assert on_pg.notice == on_lite.notice, data
        replies.append(on_pg)
    assert await _stored(here.sessions.kw["bind"], user) == await _stored(only.sessions.kw["bind"], user)


@pytest.mark.parametrize("kind", BACKENDS)
def test_whole_flows_end_alike_with_and_without_the_lock(runner: asyncio.Runner, tmp_path: Path, kind: str) -> None:
    """Passes through the flow to different paths: every reply, the last answer's roadmap and the changed-path note
    included, is the same with the unlocked tap (the recommendation and the roadmap's reads in its save) as the
    locked way's."""
    with _backends(runner, kind, tmp_path) as (unlocked, locked):
        fast, slow = (
            Dialogue(make_session_factory(unlocked)),
            Dialogue(make_session_factory(locked), unlocked_tap=False),
        )
        runner.run(_two_passes(fast, slow, 8_500_000))


async def _two_passes(pg: Dialogue, lite: Dialogue, user: int) -> None:
    """Three passes in fact: QME, IME, then QME again, with reminders on and a progress step ticked after the first (the
    last roadmap's reads come back with the statement that ends the flow)."""
    practice = {"board": "certified", "stage": "established", "paperwork": "high", "admin_support": "yes"}
    qme, ime = {**practice, "ca_license": "active"}, {**practice, "ca_license": "no"}
    passes = (("start", qme), ("restart", ime), ("restart", qme))
    for number, (command, choose) in enumerate(passes):
        if number == 1:
            for dialogue in (pg, lite):
                assert _shown(await dialogue.command(user, "remind")), "subscribed"
                async with dialogue.sessions() as session, session.begin():
                    await set_step(session, user, COURSE, True, date(2026, 3, 1))
        reply = await pg.command(user, command)
        assert _shown(reply) == _shown(await lite.command(user, command))
        for _ in range(60):
            datas = [b.data for screen in reply.screens() for b in screen.buttons()]
            answering = [d for d in datas if d.startswith(("a:", "t:"))]
            if not answering:
                break  # the roadmap
            key = answering[0].split(":")[2]
            wanted = [d for d in answering if d.split(":")[3] == choose.get(key)]
            data = (wanted or answering)[0]
            ticked = any("☑️" in b.label for screen in reply.screens() for b in screen.buttons())
            if data.startswith("t:") and ticked:  # a multi-choice with a tick: confirm it
                data = next(d for d in datas if d.startswith("d:"))
            reply = await pg.press(user, data)
            assert _shown(reply) == _shown(await lite.press(user, data)), data
        else:
            raise AssertionError("the flow did not end")
        assert any("roadmap" in text.lower() for text, _ in _shown(reply)), _shown(reply)
    assert any(text.startswith("Your recommendation changed from") for text, _ in _shown(reply)), _shown(reply)
    roadmap = _shown(reply)[-1][0]
    assert "Exam reminders are on" in roadmap and "<b>Done</b>" in roadmap, roadmap
    assert await _stored(pg.sessions.kw["bind"], user) == await _stored(lite.sessions.kw["bind"], user)
