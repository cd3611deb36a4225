"""The transport-free dialogue on a real database: what Telegram and the console both rely on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import texts
from bot.dialogue import Dialogue, Reply, Screen, parse_press
from bot.faults import with_db_retry
from db import migrate
from db.engine import PG_POOL_SIZE, make_engine, make_session_factory
from tests.harness import answer_all

CA_ORTHO: list[str | tuple[str, ...]] = [
    "md",
    "active",
    ("none",),
    "certified",
    "established",
    "third_plus",
    "ortho",
    "predictable",
    "10to20",
    "high",
    "yes",
    "comfortable",
    "yes",
    ("wc",),
]


@pytest.fixture
async def dialogue(db_url: str) -> AsyncIterator[Dialogue]:
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    sessions: async_sessionmaker[AsyncSession] = make_session_factory(engine)
    yield Dialogue(sessions)
    await engine.dispose()


def _screens(reply: Reply) -> list[Screen]:
    return reply.screens()


def _last_keyboard(reply: Reply) -> Screen:
    return [s for s in _screens(reply) if s.keyboard][-1]


def _data(screen: Screen, startswith: str) -> str:
    for button in screen.buttons():
        if button.data.startswith(startswith) or button.label.endswith(startswith):
            return button.data
    raise AssertionError(f"no button {startswith!r} in {[b.label for b in screen.buttons()]}")


async def test_completed_flow_then_start_shows_the_recommendation_again(dialogue: Dialogue) -> None:
    reply = await answer_all(dialogue, 7, CA_ORTHO)
    assert "Recommendation: California QME" in reply.send[-1].text
    again = await dialogue.command(7, "start")
    assert again.send[0].text == texts.WELCOME_BACK
    assert "Recommendation: California QME" in again.send[1].text


async def test_editing_an_answer_that_changes_the_path_says_so(dialogue: Dialogue) -> None:
    reply = await answer_all(dialogue, 8, CA_ORTHO)
    summary = (await dialogue.press(8, _data(reply.send[-1], "s:"))).send[0]
    edit = await dialogue.press(8, _data(summary, "Tolerance for regulation"))
    assert edit.edit is not None and "regulation, strict deadlines" in edit.edit.text
    turn = parse_press(edit.edit.buttons()[0].data)
    assert turn is not None
    reply = await dialogue.press(8, f"a:{turn.turn}:paperwork:low")
    assert reply.send[-1].text.startswith("<b>Recommendation: California QME")  # still QME: 6 vs 2
    summary = (await dialogue.press(8, _data(reply.send[-1], "s:"))).send[0]
    edit = await dialogue.press(8, _data(summary, "What matters more"))
    assert edit.edit is not None
    turn = parse_press(edit.edit.buttons()[0].data)
    assert turn is not None
    reply = await dialogue.press(8, f"a:{turn.turn}:income_style:ceiling")
    changed = [s.text for s in reply.send if "changed from" in s.text]
    assert changed and "Hybrid" in changed[0]


async def test_text_after_completion_points_to_the_buttons(dialogue: Dialogue) -> None:
    await answer_all(dialogue, 9, CA_ORTHO)
    reply = await dialogue.text(9, "thanks!")
    assert reply.send[0].text == texts.NO_FLOW_DONE
    assert "Recommendation" in reply.send[1].text


async def test_typed_multi_choice_labels_answer_the_question(dialogue: Dialogue) -> None:
    await answer_all(dialogue, 10, ["md", "willing"])
    reply = await dialogue.text(10, "None, Texas")
    assert "can't be combined" in reply.send[0].text
    reply = await dialogue.text(10, "Nevada, texas")
    assert "Other state licenses: <b>Texas, Nevada</b>" in reply.send[0].text


async def test_a_toggle_updates_the_keyboard_in_place_and_done_needs_a_choice(dialogue: Dialogue) -> None:
    reply = await answer_all(dialogue, 11, ["md", "active"])
    screen = _last_keyboard(reply)
    done = await dialogue.press(11, _data(screen, "d:"))
    assert done.notice is not None and "at least one" in done.notice
    toggled = await dialogue.press(11, _data(screen, "t:"))
    assert toggled.edit is not None and toggled.edit.buttons()[0].label.startswith("☑️")
    # the untoggled keyboard is now an earlier message
    stale = await dialogue.press(11, _data(screen, "t:"))
    assert stale.notice == texts.STALE_BUTTON


@pytest.mark.parametrize("data", [None, "", "a", "a:1", "a:-1:x:y", "zz:1", "a:1:profession:md:extra", "é" * 40])
def test_parse_press_rejects_malformed_data(data: str | None) -> None:
    assert parse_press(data) is None


def test_parse_press_reads_every_verb() -> None:
    assert parse_press("a:3:profession:md") is not None
    assert parse_press("m:3:case_types:wc+pi") is not None
    assert parse_press("b:3") is not None
    assert parse_press("x:abcdef012345:y") is not None


async def test_a_burst_of_physicians_opens_no_connection_beyond_the_pool(db_url: str) -> None:
    """Sixty physicians at once: every flow completes, and on PostgreSQL the process never opens more connections
    than its pool keeps (SQLAlchemy's default closes the extra ones on return, and a burst then opened and closed
    a connection every few updates)."""
    engine = make_engine(db_url)
    opened: list[object] = []
    event.listen(engine.sync_engine, "connect", lambda *_: opened.append(1))
    try:
        await migrate.upgrade(engine)
        opened.clear()
        dialogue = Dialogue(make_session_factory(engine))
        users = range(4100, 4160)
        replies = await asyncio.gather(*(answer_all(dialogue, user, CA_ORTHO) for user in users))
        assert all("Recommendation" in _screens(reply)[-1].text for reply in replies)
        if engine.dialect.name == "postgresql":
            assert 1 < len(opened) <= PG_POOL_SIZE, "more connections than the pool keeps were opened"
    finally:
        await engine.dispose()


async def test_a_step_waits_out_a_pool_with_no_connection_free(db_url: str) -> None:
    """Every connection busy for the pool's timeout (PostgreSQL keeps 20 and opens no more) is a database that
    stalls: the step is tried again, as in an outage, and goes through once a connection is free."""
    engine = make_engine(db_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        await migrate.upgrade(engine)
        dialogue = Dialogue(make_session_factory(engine))
        held = await engine.connect()
        step = asyncio.create_task(with_db_retry(lambda: dialogue.command(4200, "start"), delays=[0.3]))
        await asyncio.sleep(0.3)  # the first try has timed out waiting for the pool
        await held.close()
        reply = await step
        assert "Step 1 of" in _screens(reply)[-1].text
    finally:
        await engine.dispose()
