"""Admins keep the exam calendar in chat: /sittings, /sitting_add, /sitting_edit, /sitting_remove.

Through `Dialogue` with the `SittingsAdmin` plugin on SQLite, and once end to end through the fake Bot API.
Every change is previewed and stored only on Confirm; anyone else, any stale or forged press, and any bad
input changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot import admin_sittings as admin
from bot import texts
from bot.admin_sittings import SittingsAdmin
from bot.dialogue import Dialogue, Reply, Screen
from db import migrate
from db.engine import make_engine, make_session_factory
from db.models import AdminAction, ExamSitting
from tests.fake_bot_api import FakeBotApi
from tests.harness import Clock, RunningBot

Sessions = async_sessionmaker[AsyncSession]

ADMIN = 501
OTHER_ADMIN = 502
PHYSICIAN = 777
TODAY = date(2026, 12, 1)
SEEDED = 3  # flows/data/sittings.toml: all in the past
ADD = "2027-04-05 2027-04-11 2027-02-19 | Pearson VUE, computer-based | https://www.dir.ca.gov/dwc/qme"


@dataclass
class Bot:
    dialogue: Dialogue
    sessions: Sessions
    engine: AsyncEngine
    clock: Clock
    url: str


def _dialogue(sessions: Sessions, clock: Clock, today: date = TODAY) -> Dialogue:
    plugin = SittingsAdmin(sessions, {ADMIN, OTHER_ADMIN}, lambda: today, now=clock)
    return Dialogue(sessions, plugins=[plugin])


@pytest.fixture
async def bot(sqlite_url: str) -> AsyncIterator[Bot]:
    engine = make_engine(sqlite_url)
    await migrate.upgrade(engine)
    sessions = make_session_factory(engine)
    clock = Clock()
    yield Bot(_dialogue(sessions, clock), sessions, engine, clock, sqlite_url)
    await engine.dispose()


def _screens(reply: Reply) -> list[Screen]:
    return reply.screens()


def _text(reply: Reply) -> str:
    return "\n".join(s.text for s in _screens(reply))


def _button(reply: Reply, label: str) -> str:
    for screen in _screens(reply):
        for button in screen.buttons():
            if label in button.label:
                return button.data
    raise AssertionError(f"no {label!r} button in {[b.label for s in _screens(reply) for b in s.buttons()]}")


async def _rows(sessions: Sessions) -> list[dict[str, Any]]:
    async with sessions() as s:
        rows = (await s.execute(select(ExamSitting).order_by(ExamSitting.id))).scalars()
        return [
            {
                "id": r.id,
                "first_day": r.first_day,
                "last_day": r.last_day,
                "deadline": r.deadline,
                "note": r.note,
                "source": r.source,
            }
            for r in rows
        ]


async def _pending(sessions: Sessions) -> list[tuple[int, str]]:
    async with sessions() as s:
        return [(a.user_id, a.kind) for a in (await s.execute(select(AdminAction))).scalars()]


async def _add_confirmed(bot: Bot, args: str = ADD) -> int:
    preview = await bot.dialogue.command(ADMIN, "sitting_add", args)
    done = await bot.dialogue.press(ADMIN, _button(preview, "Confirm"))
    assert done.notice == admin.SAVED, _text(done)
    return int(re.findall(r"#(\d+)", _text(done))[0])


# -- listing ----------------------------------------------------------------------------------------------


async def test_sittings_lists_future_first_counts_the_past_and_warns(bot: Bot) -> None:
    reply = await bot.dialogue.command(ADMIN, "sittings")
    text = _text(reply)
    assert "QME exam calendar" in text and "today is 2026-12-01" in text
    assert "No exam window from today on" in text
    assert "Past windows: 3 (#1, #2, #3)" in text
    assert "The calendar needs updating" in text and "more than 90 days ahead" in text
    assert "/sitting_add FIRST LAST [DEADLINE] | NOTE | SOURCE" in text and "/sitting_remove ID" in text

    new = await _add_confirmed(bot)
    text = _text(await bot.dialogue.command(ADMIN, "sittings"))
    upcoming = text.index(f"<b>#{new}</b> 2027-04-05..2027-04-11")
    assert upcoming < text.index("Past windows: 3")
    assert "🗓 in 125 days" in text and "deadline 2027-02-19" in text and "Pearson VUE, computer-based" in text
    assert "source: https://www.dir.ca.gov/dwc/qme" in text
    assert "needs updating" not in text  # 125 days ahead


async def test_the_warning_returns_when_the_next_window_is_90_days_away_or_less(bot: Bot) -> None:
    await _add_confirmed(bot)
    later = _dialogue(bot.sessions, bot.clock, today=date(2027, 1, 5))  # 90 days before the window
    text = _text(await later.command(ADMIN, "sittings"))
    assert "🗓 in 90 days" in text and "needs updating" in text
    during = _text(await _dialogue(bot.sessions, bot.clock, today=date(2027, 4, 7)).command(ADMIN, "sittings"))
    assert "⏳ in progress" in during


# -- add, edit, remove with a confirm ---------------------------------------------------------------------


async def test_a_confirm_with_the_right_id_but_an_old_nonce_changes_nothing(bot: Bot) -> None:
    preview = await bot.dialogue.command(ADMIN, "sitting_add", ADD)
    ok = _button(preview, "Confirm")
    action_id = ok.split(":")[2]
    before = await _rows(bot.sessions)
    reply = await bot.dialogue.press(ADMIN, f"sit:ok:{action_id}:00000000")
    assert reply.notice is not None
    assert await _rows(bot.sessions) == before


async def test_add_shows_a_preview_and_stores_only_on_confirm(bot: Bot) -> None:
    before = await _rows(bot.sessions)
    preview = await bot.dialogue.command(ADMIN, "sitting_add", ADD)
    text = _text(preview)
    assert "Add this exam window?" in text
    assert "<b>Window:</b> 2027-04-05..2027-04-11 (7 days)" in text
    assert "<b>Application deadline:</b> 2027-02-19" in text
    assert "<b>Note:</b> Pearson VUE, computer-based" in text
    assert "<b>Source:</b> https://www.dir.ca.gov/dwc/qme" in text
    ok, no = _button(preview, "Confirm"), _button(preview, "Cancel")
    assert re.fullmatch(r"sit:ok:\d+:[0-9a-f]{8}", ok) and re.fullmatch(r"sit:no:\d+:[0-9a-f]{8}", no)
    assert len(ok.encode()) <= 64
    assert await _rows(bot.sessions) == before  # nothing yet
    assert await _pending(bot.sessions) == [(ADMIN, "add")]

    done = await bot.dialogue.press(ADMIN, ok)
    assert done.notice == admin.SAVED
    assert done.edit is not None and not done.edit.keyboard
    assert f"Added exam window #{SEEDED + 1}" in done.edit.text
    rows = await _rows(bot.sessions)
    assert rows[-1] == {
        "id": SEEDED + 1,
        "first_day": date(2027, 4, 5),
        "last_day": date(2027, 4, 11),
        "deadline": date(2027, 2, 19),
        "note": "Pearson VUE, computer-based",
        "source": "https://www.dir.ca.gov/dwc/qme",
    }
    assert await _pending(bot.sessions) == []

    again = await bot.dialogue.press(ADMIN, ok)  # a double tap, or the old message pressed later
    assert again.notice == admin.GONE
    assert await _rows(bot.sessions) == rows


async def test_add_without_deadline_note_or_source(bot: Bot) -> None:
    preview = await bot.dialogue.command(ADMIN, "sitting_add", "2027-04-05 2027-04-05")
    assert "(1 day)" in _text(preview) and "none announced" in _text(preview)
    await bot.dialogue.press(ADMIN, _button(preview, "Confirm"))
    last = (await _rows(bot.sessions))[-1]
    assert (last["deadline"], last["note"], last["source"]) == (None, "", "")


async def test_cancel_stores_nothing(bot: Bot) -> None:
    before = await _rows(bot.sessions)
    preview = await bot.dialogue.command(ADMIN, "sitting_add", ADD)
    cancelled = await bot.dialogue.press(ADMIN, _button(preview, "Cancel"))
    assert cancelled.edit is not None and cancelled.edit.text == admin.CANCELLED
    assert await _rows(bot.sessions) == before
    assert await _pending(bot.sessions) == []
    assert (await bot.dialogue.press(ADMIN, _button(preview, "Confirm"))).notice == admin.GONE
    assert await _rows(bot.sessions) == before


async def test_edit_previews_the_whole_row_and_what_it_replaces(bot: Bot) -> None:
    new = await _add_confirmed(bot)
    preview = await bot.dialogue.command(
        ADMIN, "sitting_edit", f"{new} last=2027-04-12 deadline=- note=Pearson VUE, 8 days; fee=$0"
    )
    text = _text(preview)
    assert f"Change exam window #{new} to this?" in text
    assert "2027-04-05..2027-04-12 (8 days) <i>(was 2027-04-05..2027-04-11 (7 days))</i>" in text
    assert "none announced (the roadmap assumes one and says so) <i>(was 2027-02-19)</i>" in text
    assert "<b>Note:</b> Pearson VUE, 8 days; fee=$0 <i>(was Pearson VUE, computer-based)</i>" in text
    assert "<b>Source:</b> https://www.dir.ca.gov/dwc/qme\n" in text  # unchanged: no "was"
    assert (await _rows(bot.sessions))[-1]["last_day"] == date(2027, 4, 11)

    await bot.dialogue.press(ADMIN, _button(preview, "Confirm"))
    row = (await _rows(bot.sessions))[-1]
    assert (row["last_day"], row["deadline"], row["note"]) == (date(2027, 4, 12), None, "Pearson VUE, 8 days; fee=$0")
    assert row["source"] == "https://www.dir.ca.gov/dwc/qme"


async def test_edit_can_fix_the_source_of_a_past_window(bot: Bot) -> None:
    preview = await bot.dialogue.command(ADMIN, "sitting_edit", "#3 source=https://www.dir.ca.gov/DIRNews/2024/")
    assert "Change exam window #3" in _text(preview)
    await bot.dialogue.press(ADMIN, _button(preview, "Confirm"))
    assert (await _rows(bot.sessions))[2]["source"] == "https://www.dir.ca.gov/DIRNews/2024/"


async def test_remove_previews_then_removes(bot: Bot) -> None:
    new = await _add_confirmed(bot)
    preview = await bot.dialogue.command(ADMIN, "sitting_remove", str(new))
    assert f"Remove exam window #{new}?" in _text(preview) and "2027-04-05..2027-04-11" in _text(preview)
    assert len(await _rows(bot.sessions)) == SEEDED + 1
    done = await bot.dialogue.press(ADMIN, _button(preview, "Confirm"))
    assert f"Removed exam window #{new}" in _text(done)
    assert [r["id"] for r in await _rows(bot.sessions)] == [1, 2, 3]


async def test_a_window_changed_since_the_preview_is_not_overwritten(bot: Bot) -> None:
    new = await _add_confirmed(bot)
    stale_edit = await bot.dialogue.command(ADMIN, "sitting_edit", f"{new} note=first admin's note")
    stale_remove = await bot.dialogue.command(ADMIN, "sitting_remove", str(new))
    fresh = await bot.dialogue.command(OTHER_ADMIN, "sitting_edit", f"{new} note=second admin's note")
    await bot.dialogue.press(OTHER_ADMIN, _button(fresh, "Confirm"))
    after = await _rows(bot.sessions)

    for stale in (stale_edit, stale_remove):
        reply = await bot.dialogue.press(ADMIN, _button(stale, "Confirm"))
        assert reply.notice == admin.CHANGED_SINCE.format(id=new)
        assert await _rows(bot.sessions) == after
    assert after[-1]["note"] == "second admin's note"


async def test_pending_actions_survive_a_restart_and_work_in_another_process(bot: Bot) -> None:
    preview = await bot.dialogue.command(ADMIN, "sitting_add", ADD)
    await bot.engine.dispose()  # the process that showed the preview is gone
    other = make_engine(bot.url)
    try:
        sessions = make_session_factory(other)
        done = await _dialogue(sessions, bot.clock).press(ADMIN, _button(preview, "Confirm"))
        assert done.notice == admin.SAVED
        assert len(await _rows(sessions)) == SEEDED + 1
    finally:
        await other.dispose()


# -- refusals ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args"),
    [("sittings", ""), ("sitting_add", ADD), ("sitting_edit", "3 note=x"), ("sitting_remove", "3")],
)
async def test_a_non_admin_is_refused_politely_and_nothing_changes(bot: Bot, name: str, args: str) -> None:
    before = await _rows(bot.sessions)
    reply = await bot.dialogue.command(PHYSICIAN, name, args)
    assert _text(reply) == admin.NOT_ADMIN
    assert not any(s.buttons() for s in _screens(reply))
    assert await _rows(bot.sessions) == before
    assert await _pending(bot.sessions) == []


async def test_a_non_admin_cannot_press_an_admins_buttons(bot: Bot) -> None:
    preview = await bot.dialogue.command(ADMIN, "sitting_add", ADD)
    before = await _rows(bot.sessions)
    for label in ("Confirm", "Cancel"):
        reply = await bot.dialogue.press(PHYSICIAN, _button(preview, label))
        assert reply.notice == admin.NOT_ADMIN and reply.edit is None and not reply.send
    assert await _rows(bot.sessions) == before
    assert await _pending(bot.sessions) == [(ADMIN, "add")]  # still the admin's to confirm


async def test_another_admin_cannot_confirm_or_cancel_it(bot: Bot) -> None:
    preview = await bot.dialogue.command(ADMIN, "sitting_add", ADD)
    before = await _rows(bot.sessions)
    for label in ("Confirm", "Cancel"):
        reply = await bot.dialogue.press(OTHER_ADMIN, _button(preview, label))
        assert reply.notice == admin.NOT_YOURS and reply.edit is None
    assert await _rows(bot.sessions) == before
    assert (await bot.dialogue.press(ADMIN, _button(preview, "Confirm"))).notice == admin.SAVED


async def test_a_preview_expires_after_an_hour(bot: Bot) -> None:
    preview = await bot.dialogue.command(ADMIN, "sitting_add", ADD)
    before = await _rows(bot.sessions)
    bot.clock.at += timedelta(hours=1, minutes=1)
    reply = await bot.dialogue.press(ADMIN, _button(preview, "Confirm"))
    assert reply.notice == admin.EXPIRED
    assert reply.edit is not None and not reply.edit.keyboard
    assert await _rows(bot.sessions) == before
    assert await _pending(bot.sessions) == []


async def test_old_unconfirmed_actions_are_cleared_when_a_new_one_is_queued(bot: Bot) -> None:
    await bot.dialogue.command(ADMIN, "sitting_add", ADD)
    bot.clock.at += timedelta(hours=2)
    await bot.dialogue.command(ADMIN, "sitting_remove", "1")
    assert await _pending(bot.sessions) == [(ADMIN, "remove")]


@pytest.mark.parametrize(
    "data",
    ["sit:ok:abc", "sit:ok:", "sit:maybe:1", "sit:ok:1:extra", "sit:ok:99999", "sit:no:99999", "sit", "sit:ok:-1"],
)
async def test_forged_presses_change_nothing(bot: Bot, data: str) -> None:
    preview = await bot.dialogue.command(ADMIN, "sitting_add", ADD)
    before = await _rows(bot.sessions)
    reply = await bot.dialogue.press(ADMIN, data)
    assert reply.notice in {admin.UNKNOWN_BUTTON, admin.GONE}
    assert await _rows(bot.sessions) == before
    assert await _pending(bot.sessions) == [(ADMIN, "add")]
    assert (await bot.dialogue.press(ADMIN, _button(preview, "Confirm"))).notice == admin.SAVED


async def test_overlong_callback_data_is_not_routed_to_the_plugin(bot: Bot) -> None:
    reply = await bot.dialogue.press(ADMIN, "sit:ok:" + "1" * 70)
    assert reply.notice == texts.UNKNOWN_BUTTON
    assert await _pending(bot.sessions) == []


@pytest.mark.parametrize(
    ("name", "args", "says"),
    [
        ("sitting_add", "", "Usage: /sitting_add"),
        ("sitting_add", "2027-04-05", "Usage: /sitting_add"),
        ("sitting_add", "2027-04-05 2027-04-11 2027-02-19 2027-02-20", "Usage: /sitting_add"),
        ("sitting_add", "2027-04-31 2027-05-02", "'2027-04-31' is not a date; use YYYY-MM-DD"),
        ("sitting_add", "5 April 2027 | x", "'5' is not a date; use YYYY-MM-DD"),
        ("sitting_add", "2026-11-05 2026-11-06", "the window must start after today (2026-12-01)"),
        ("sitting_add", "2026-12-01 2026-12-06", "the window must start after today (2026-12-01)"),
        ("sitting_add", "2027-04-05 2027-04-11 2027-04-05", "the application deadline must be before the window"),
        ("sitting_add", "2027-04-11 2027-04-05", "the last day is before the first day"),
        ("sitting_add", "2027-04-05 2027-04-11 | " + "x" * 301, "the note is longer than 300 characters"),
        ("sitting_add", "2024-04-06 2024-04-12", "window #3 already has these dates"),
        ("sitting_edit", "", "Usage: /sitting_edit"),
        ("sitting_edit", "3", "Usage: /sitting_edit"),
        ("sitting_edit", "three note=x", "Usage: /sitting_edit"),
        ("sitting_edit", "3 colour=red", "unknown field 'colour'"),
        ("sitting_edit", "3 note=a note=b", "note is given twice"),
        ("sitting_edit", "99 note=x", "there is no exam window #99"),
        ("sitting_edit", "3 first=2024-04-05", "the window must start after today"),
        ("sitting_edit", "3 last=2024-04-01", "the last day is before the first day"),
        ("sitting_edit", "3 deadline=2024-04-06", "the application deadline must be before the window opens"),
        ("sitting_edit", "3 deadline=soon", "'soon' is not a date"),
        ("sitting_edit", "2 deadline=2014-09-11", "already looks like that"),
        ("sitting_remove", "", "Usage: /sitting_remove"),
        ("sitting_remove", "x", "Usage: /sitting_remove"),
        ("sitting_remove", "99", "there is no exam window #99"),
    ],
)
async def test_bad_input_is_one_clear_line_and_queues_nothing(bot: Bot, name: str, args: str, says: str) -> None:
    before = await _rows(bot.sessions)
    reply = await bot.dialogue.command(ADMIN, name, args)
    [screen] = _screens(reply)
    assert says in screen.text, screen.text
    assert screen.text.startswith("Nothing changed: ") and "\n" not in screen.text
    assert not screen.buttons()
    assert await _rows(bot.sessions) == before
    assert await _pending(bot.sessions) == []


async def test_admin_text_is_escaped(bot: Bot) -> None:
    args = "2027-04-05 2027-04-11 | <b>Room & Board</b> | https://x.test/?a=1&b=<2>"
    preview = await bot.dialogue.command(ADMIN, "sitting_add", args)
    text = _text(preview)
    assert "&lt;b&gt;Room &amp; Board&lt;/b&gt;" in text and "https://x.test/?a=1&amp;b=&lt;2&gt;" in text
    await bot.dialogue.press(ADMIN, _button(preview, "Confirm"))
    assert (await _rows(bot.sessions))[-1]["note"] == "<b>Room & Board</b>"  # stored as typed
    assert "&lt;b&gt;Room &amp; Board&lt;/b&gt;" in _text(await bot.dialogue.command(ADMIN, "sittings"))
    bad = _text(await bot.dialogue.command(ADMIN, "sitting_edit", "4 first=<script>"))
    assert "&lt;script&gt;" in bad and "<script>" not in bad


async def test_the_plugin_leaves_free_text_to_the_flow(bot: Bot) -> None:
    await bot.dialogue.command(ADMIN, "start")
    reply = await bot.dialogue.text(ADMIN, "MD")
    assert "Step 2 of" in _text(reply)


async def test_delete_me_erases_an_admins_pending_actions(bot: Bot) -> None:
    await bot.dialogue.command(ADMIN, "sitting_add", ADD)
    await bot.dialogue.command(OTHER_ADMIN, "sitting_remove", "1")
    confirm = await bot.dialogue.command(ADMIN, "delete_me")
    await bot.dialogue.press(ADMIN, _button(confirm, texts.ERASE_YES))
    assert await _pending(bot.sessions) == [(OTHER_ADMIN, "remove")]
    assert len(await _rows(bot.sessions)) == SEEDED  # the calendar is not about the admin


# -- end to end through the fake Bot API ------------------------------------------------------------------


async def test_telegram_admin_adds_a_sitting_and_a_physician_is_refused(fake: FakeBotApi, sqlite_url: str) -> None:
    boss = fake.user(ADMIN, first_name="Ada")
    doctor = fake.user(PHYSICIAN, first_name="Ben")
    async with RunningBot(fake, sqlite_url, admin_ids=frozenset({ADMIN}), today=TODAY) as running:
        sessions = make_session_factory(running.engine)

        boss.send("/sittings")
        listing = await fake.wait_for_message(ADMIN, "QME exam calendar")
        assert "The calendar needs updating" in listing.plain_text

        boss.send(f"/sitting_add {ADD}")
        preview = await fake.wait_for_message(ADMIN, "Add this exam window?", after=listing.message_id)
        assert "Note: Pearson VUE, computer-based" in preview.plain_text
        assert [label for label, _ in preview.buttons()] == [admin.CONFIRM, admin.CANCEL]
        assert len(await _rows(sessions)) == SEEDED

        confirm_data = preview.buttons()[0][1]
        boss.press("Confirm", message_id=preview.message_id)
        await fake.wait_until_idle()
        edited = next(m for m in boss.messages if m.message_id == preview.message_id)
        assert f"Added exam window #{SEEDED + 1}" in edited.plain_text and not edited.buttons()
        answers = [c.params.get("text") for c in fake.calls_to("answerCallbackQuery")]
        assert answers[-1] == admin.SAVED
        rows = await _rows(sessions)
        assert rows[-1]["first_day"] == date(2027, 4, 5) and rows[-1]["note"] == "Pearson VUE, computer-based"

        before_refusal = len(fake.calls_to("answerCallbackQuery"))
        doctor.send(f"/sitting_add {ADD}")
        refusal = await fake.wait_for_message(PHYSICIAN, admin.NOT_ADMIN)
        assert not refusal.buttons()
        doctor.send("/sitting_remove 1")
        await fake.wait_for_message(PHYSICIAN, admin.NOT_ADMIN, after=refusal.message_id)
        doctor.press_data(confirm_data)  # the admin's Confirm data, forged
        await fake.wait_until_idle()
        refused = fake.calls_to("answerCallbackQuery")[before_refusal:]
        assert [c.params.get("text") for c in refused] == [admin.NOT_ADMIN]
        assert await _rows(sessions) == rows
        assert await _pending(sessions) == []
