"""/delete_me through the dialogue erases every row about the physician, in every table, and nothing else.

The check walks `Base.metadata.sorted_tables` generically, so a table added later is covered without a change
here: a row is about the user when a `user_id` column (or any foreign key to users.id) holds the user's id, when
it is the user's row in `users`, or when a `session_id` (or any foreign key to flow_sessions.id) points at one of
the user's flow sessions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import texts
from bot.dialogue import Dialogue, Reply, Screen
from bot.progress import ProgressTracker
from bot.settings import Settings
from bot.wiring import build_dialogue
from db import polls, sources
from db.models import Base, FlowSession

Sessions = async_sessionmaker[AsyncSession]
Rows = dict[str, list[dict[str, Any]]]

ERASED = 424242
KEPT = 737373

Answers = Sequence[str | list[str]]

ORTHO: Answers = [
    "MD",
    "Yes, active",
    ["None"],
    "Board certified",
    "Established",
    "At least a third",
    "Orthopedics",
    "Predictable volume, fixed fees",
    "10-20",
    "High tolerance",
    "Yes",
    "Comfortable",
    "Yes",
    ["Workers' compensation"],
]
NEPHRO: Answers = [
    "MD",
    "No, and not planning to",
    ["Texas"],
    "Board certified",
    "Established",
    "Nephrology",
    "Highest per-case ceiling",
    "10-20",
    "Low tolerance",
    "No",
    "Occasionally is fine",
    ["Personal injury", "Long-term disability"],
]
_MARKS = re.compile(r"^[^\w]+")


def _screens(reply: Reply) -> list[Screen]:
    return reply.screens()


def _button(reply: Reply, label: str, prefix: str = "") -> str:
    """The callback data of the button with this label (ignoring ☑️/⬜/✓ marks) on the newest screen that has it."""
    for screen in reversed(_screens(reply)):
        for button in screen.buttons():
            if _MARKS.sub("", button.label).strip() == label and button.data.startswith(prefix):
                return button.data
    raise AssertionError(f"no button {label!r} in {[b.label for s in _screens(reply) for b in s.buttons()]}")


def _text(reply: Reply) -> str:
    return "\n".join(s.text for s in _screens(reply))


async def _answer(dialogue: Dialogue, user_id: int, reply: Reply, answer: str | list[str]) -> Reply:
    """Press the option's button; a multi-choice answer toggles each option, then presses Done."""
    if isinstance(answer, str):
        return await dialogue.press(user_id, _button(reply, answer))
    for label in answer:
        reply = await dialogue.press(user_id, _button(reply, label, "t:"))
    return await dialogue.press(user_id, _button(reply, "Done", "d:"))


async def _walk(dialogue: Dialogue, user_id: int, answers: Answers, reply: Reply | None = None) -> Reply:
    reply = reply or await dialogue.command(user_id, "start")
    for answer in answers:
        reply = await _answer(dialogue, user_id, reply, answer)
    return reply


async def _populate(dialogue: Dialogue) -> None:
    """Both users finish a flow (a recommendation each), then start over and answer part of a new one."""
    done = await _walk(dialogue, ERASED, ORTHO)
    assert "Recommendation: California QME" in _text(done)
    done = await _walk(dialogue, KEPT, NEPHRO)
    assert "Recommendation: IME" in _text(done)
    for user_id, partial in ((ERASED, ["DO", "Not yet, but willing to get one"]), (KEPT, ["MD"])):
        await _walk(dialogue, user_id, partial, await dialogue.command(user_id, "restart"))


async def _snapshot(sessions: Sessions) -> Rows:
    rows: Rows = {}
    async with sessions() as s:
        for table in Base.metadata.sorted_tables:
            order = list(table.primary_key.columns) or list(table.columns)
            result = await s.execute(select(table).order_by(*order))
            rows[table.name] = [dict(r) for r in result.mappings()]
    return rows


async def _session_ids(sessions: Sessions, user_id: int) -> set[int]:
    async with sessions() as s:
        return set((await s.execute(select(FlowSession.id).where(FlowSession.user_id == user_id))).scalars())


def _about(table: Table, row: dict[str, Any], user_id: int, session_ids: set[int]) -> bool:
    """Whether the row refers to the user, directly or through one of the user's flow sessions."""
    if table.name == "users" and row.get("id") == user_id:
        return True
    for column in table.columns:
        value = row[column.name]
        if value is None:
            continue
        if column.name == "user_id" and value == user_id:
            return True
        if column.name == "session_id" and value in session_ids:
            return True
        for fk in column.foreign_keys:
            target = fk.column
            if target.table.name == "users" and target.name == "id" and value == user_id:
                return True
            if target.table.name == "flow_sessions" and target.name == "id" and value in session_ids:
                return True
    return False


def _rows_about(rows: Rows, user_id: int, session_ids: set[int]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for table in Base.metadata.sorted_tables:
        hits = [r for r in rows[table.name] if _about(table, r, user_id, session_ids)]
        if hits:
            found[table.name] = hits
    return found


def _without(rows: Rows, user_id: int, session_ids: set[int]) -> Rows:
    return {
        table.name: [r for r in rows[table.name] if not _about(table, r, user_id, session_ids)]
        for table in Base.metadata.sorted_tables
    }


async def _users(sessions: Sessions) -> int:
    async with sessions() as s:
        return int((await s.execute(select(func.count()).select_from(Base.metadata.tables["users"]))).scalar_one())


async def _polls_and_links(sessions: Sessions) -> Dialogue:
    """Both users arrive through a community start link and answer polls (the dialogue with every plugin)."""
    dialogue = build_dialogue(Settings(_env_file=None), sessions)
    async with sessions() as s, s.begin():
        await sources.add_source(s, "ortho_club", "Ortho Club", date(2026, 11, 29))
        fee = await polls.poll_by_key(s, "ime_fee")
        types = await polls.poll_by_key(s, "ime_case_types")
        assert fee is not None and types is not None
    for user_id in (ERASED, KEPT):
        await dialogue.command(user_id, "start", "ortho_club")
        assert (await dialogue.press(user_id, f"pq:a:{fee.id}:1")).notice == "Saved."
        assert (await dialogue.press(user_id, f"pq:d:{types.id}:5")).notice == "Saved."
    return dialogue


async def test_delete_me_erases_every_row_about_the_user_and_nothing_else(sessions: Sessions) -> None:
    dialogue = await _polls_and_links(sessions)
    await _populate(dialogue)

    erased_sessions = await _session_ids(sessions, ERASED)
    kept_sessions = await _session_ids(sessions, KEPT)
    assert len(erased_sessions) == 2 and len(kept_sessions) == 2
    before = await _snapshot(sessions)
    # the walk finds the user in every table the flow writes to, so the check below is not vacuous
    written = {"users", "flow_sessions", "answers", "recommendations", "poll_votes", "user_sources"}
    assert set(_rows_about(before, ERASED, erased_sessions)) >= written
    assert set(_rows_about(before, KEPT, kept_sessions)) >= written

    confirm = await dialogue.command(ERASED, "delete_me")
    assert texts.DELETE_CONFIRM in _text(confirm)
    yes = _button(confirm, texts.ERASE_YES)
    assert re.fullmatch(r"x:\w+:y", yes)
    done = await dialogue.press(ERASED, yes)
    assert done.edit is not None and done.edit.text == texts.DELETE_DONE

    after = await _snapshot(sessions)
    assert _rows_about(after, ERASED, erased_sessions) == {}
    # everything else, the other physician's rows included, is exactly as it was
    assert after == _without(before, ERASED, erased_sessions)
    assert _rows_about(after, KEPT, kept_sessions) == _rows_about(before, KEPT, kept_sessions)

    # asking again: nothing is stored, and asking does not store anything
    again = await dialogue.command(ERASED, "delete_me")
    assert texts.DELETE_NOTHING in _text(again)
    assert not _screens(again)[0].buttons()
    assert await _snapshot(sessions) == after
    # a second press of the same button finds nothing to erase
    twice = await dialogue.press(ERASED, yes)
    assert twice.edit is not None and twice.edit.text == texts.DELETE_NOTHING
    assert await _snapshot(sessions) == after


async def test_erased_user_can_start_again(sessions: Sessions) -> None:
    dialogue = Dialogue(sessions)
    await _populate(dialogue)
    await dialogue.press(ERASED, _button(await dialogue.command(ERASED, "delete_me"), texts.ERASE_YES))

    reply = await dialogue.command(ERASED, "start")
    assert texts.WELCOME in _text(reply)  # a new physician, not "welcome back"
    assert "Step 1 of" in _text(reply)
    reply = await _walk(dialogue, ERASED, ORTHO, reply)
    assert "Recommendation: California QME" in _text(reply)
    assert "changed from" not in _text(reply)  # no memory of an earlier recommendation


async def test_old_confirm_button_does_not_erase_newer_data(sessions: Sessions) -> None:
    dialogue = Dialogue(sessions)
    await _populate(dialogue)
    yes = _button(await dialogue.command(ERASED, "delete_me"), texts.ERASE_YES)
    await dialogue.press(ERASED, yes)

    # the physician comes back and answers again; the old confirmation message is still in the chat
    await _walk(dialogue, ERASED, ["MD", "Yes, active"])
    new_sessions = await _session_ids(sessions, ERASED)
    before = await _snapshot(sessions)
    assert set(_rows_about(before, ERASED, new_sessions)) >= {"users", "flow_sessions", "answers"}

    stale = await dialogue.press(ERASED, yes)
    assert stale.notice == texts.STALE_BUTTON
    assert stale.edit is not None and stale.edit.text == texts.DELETE_KEPT
    assert await _snapshot(sessions) == before

    # the fresh button still works
    fresh = _button(await dialogue.command(ERASED, "delete_me"), texts.ERASE_YES)
    assert fresh != yes
    await dialogue.press(ERASED, fresh)
    assert _rows_about(await _snapshot(sessions), ERASED, new_sessions) == {}


async def test_no_keeps_everything(sessions: Sessions) -> None:
    dialogue = Dialogue(sessions)
    await _populate(dialogue)
    before = await _snapshot(sessions)

    no = _button(await dialogue.command(ERASED, "delete_me"), texts.ERASE_NO)
    assert re.fullmatch(r"x:\w+:n", no)
    kept = await dialogue.press(ERASED, no)
    assert kept.edit is not None and kept.edit.text == texts.DELETE_KEPT
    assert await _snapshot(sessions) == before

    # and the physician carries on where they were
    resume = await dialogue.command(ERASED, "start")
    assert _button(resume, texts.RESUME.split(" ", 1)[1]).startswith("c:")


async def test_one_users_confirm_button_cannot_erase_another_user(sessions: Sessions) -> None:
    dialogue = Dialogue(sessions)
    await _populate(dialogue)
    before = await _snapshot(sessions)

    foreign = _button(await dialogue.command(ERASED, "delete_me"), texts.ERASE_YES)
    reply = await dialogue.press(KEPT, foreign)
    assert reply.edit is not None and reply.edit.text == texts.DELETE_KEPT
    assert await _snapshot(sessions) == before


async def test_forged_erase_buttons_erase_nothing(sessions: Sessions) -> None:
    dialogue = Dialogue(sessions)
    await _populate(dialogue)
    before = await _snapshot(sessions)
    for data in ("x:000000000000:y", "x::y", "x:abc:maybe", "x:" + "a" * 70 + ":y", "x:abc:y:extra"):
        await dialogue.press(ERASED, data)
    assert await _snapshot(sessions) == before


async def test_delete_me_for_an_unknown_user_stores_nothing(sessions: Sessions) -> None:
    dialogue = Dialogue(sessions)
    reply = await dialogue.command(555, "delete_me")
    assert texts.DELETE_NOTHING in _text(reply)
    assert await _users(sessions) == 0


async def test_delete_me_erases_the_progress_tracker_rows(sessions: Sessions) -> None:
    """The tracker's plugin writes ticked steps and the nudge opt-in; /delete_me erases them with the rest."""
    dialogue = Dialogue(sessions, plugins=[ProgressTracker(sessions, Settings.model_construct())])
    await _populate(dialogue)
    for user_id in (ERASED, KEPT):
        await _walk(
            dialogue, user_id, ORTHO if user_id == ERASED else NEPHRO, await dialogue.command(user_id, "restart")
        )
        key = "eligible" if user_id == ERASED else "ime_source"
        await dialogue.press(user_id, f"prg:t:{key}:1")
        await dialogue.press(user_id, "prg:n:1")
    erased_sessions = await _session_ids(sessions, ERASED)
    before = await _snapshot(sessions)
    tracker_tables = {"progress_steps", "progress_nudges"}
    assert set(_rows_about(before, ERASED, erased_sessions)) >= tracker_tables
    assert set(_rows_about(before, KEPT, await _session_ids(sessions, KEPT))) >= tracker_tables

    await dialogue.press(ERASED, _button(await dialogue.command(ERASED, "delete_me"), texts.ERASE_YES))
    after = await _snapshot(sessions)
    assert _rows_about(after, ERASED, erased_sessions) == {}
    assert after == _without(before, ERASED, erased_sessions)
