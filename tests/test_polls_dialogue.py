"""/polls, the admins' poll tools and community links through the Dialogue, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import admin_polls as ap
from bot import polls as bp
from bot.dialogue import Dialogue, Reply
from bot.published import published
from bot.settings import Settings
from bot.wiring import build_dialogue
from db import outbox, sources
from db import polls as store
from db import repository as repo
from db.models import CommunitySource, OutboxMessage, PollRow
from tests.harness import Clock

Sessions = async_sessionmaker[AsyncSession]
ADMIN, OTHER_ADMIN = 900, 901
TODAY = date(2026, 11, 29)
_MARKS = re.compile(r"^[^\w$]+")


def _dialogue(sessions: Sessions, today: date = TODAY, username: str = "medlegal_test_bot") -> Dialogue:
    settings = Settings(_env_file=None, admin_ids=f"{ADMIN},{OTHER_ADMIN}", today=today)
    return build_dialogue(settings, sessions, bot_username=lambda: username)


def _text(reply: Reply) -> str:
    return "\n".join(s.text for s in reply.screens())


def _button(reply: Reply, label: str) -> str:
    for screen in reversed(reply.screens()):
        for button in screen.buttons():
            if _MARKS.sub("", button.label).strip() == label:
                return button.data
    raise AssertionError(f"no button {label!r} in {[b.label for s in reply.screens() for b in s.buttons()]}")


def _labels(reply: Reply) -> list[str]:
    return [b.label for s in reply.screens() for b in s.buttons()]


async def _poll_id(sessions: Sessions, key: str) -> int:
    async with sessions() as s:
        row = await store.poll_by_key(s, key)
        assert row is not None
        return row.id


async def _choices(sessions: Sessions, key: str, user_id: int) -> tuple[str, ...]:
    async with sessions() as s:
        return await store.choices(s, await _poll_id(sessions, key), user_id)


async def _answer_fee(dialogue: Dialogue, user_id: int, label: str) -> Reply:
    listing = await dialogue.command(user_id, "polls")
    question = await dialogue.press(user_id, _button(listing, "What do you charge for a standard IME?"))
    return await dialogue.press(user_id, _button(question, label))


async def test_answer_change_and_list(sessions: Sessions) -> None:
    dialogue = _dialogue(sessions)
    listing = await dialogue.command(1, "polls")
    assert bp.INTRO in _text(listing)
    assert _labels(listing) == [
        "What holds you back from starting IME work?",
        "What do you charge for a standard IME?",
        "Which IME case types would you feel comfortable with?",
        "Do you already do IME or QME work?",
    ]
    saved = await _answer_fee(dialogue, 1, "$2,001-3,500")
    assert saved.notice == bp.SAVED
    assert "Your answer: <b>$2,001-3,500</b>" in _text(saved)
    assert bp.WAIT_FOR_K.format(k=5) in _text(saved)
    assert await _choices(sessions, "ime_fee", 1) == ("2001_3500",)

    listing = await dialogue.command(1, "polls")
    assert "What do you charge for a standard IME?" not in _labels(listing)
    assert "✓ What do you charge for a standard IME?" in _labels(listing)

    again = await dialogue.press(1, _button(saved, bp.CHANGE.split(" ", 1)[1]))
    assert bp.CHANGE_HINT in _text(again) and "✓ $2,001-3,500" in _labels(again)
    changed = await dialogue.press(1, _button(again, "Over $3,500"))
    assert "Your answer: <b>Over $3,500</b>" in _text(changed)
    assert await _choices(sessions, "ime_fee", 1) == ("over_3500",)


async def test_multiple_choice_toggles_then_done(sessions: Sessions) -> None:
    dialogue = _dialogue(sessions)
    listing = await dialogue.command(2, "polls")
    question = await dialogue.press(2, _button(listing, "Which IME case types would you feel comfortable with?"))
    empty_done = await dialogue.press(2, _button(question, "Done"))
    assert empty_done.notice == bp.PICK_ONE
    reply = await dialogue.press(2, _button(question, "Personal injury"))
    reply = await dialogue.press(2, _button(reply, "Fitness-for-duty"))
    reply = await dialogue.press(2, _button(reply, "Workers' compensation"))
    reply = await dialogue.press(2, _button(reply, "Personal injury"))  # toggled off again
    assert "☑️ Workers' compensation" in _labels(reply) and "⬜ Personal injury" in _labels(reply)
    assert await _choices(sessions, "ime_case_types", 2) == ()  # nothing stored before Done
    done = await dialogue.press(2, _button(reply, "Done"))
    assert "Your answer: <b>Workers' compensation, Fitness-for-duty</b>" in _text(done)
    assert set(await _choices(sessions, "ime_case_types", 2)) == {"wc", "ffd"}


async def test_peer_figures_are_the_exports_once_a_month_has_ended(sessions: Sessions) -> None:
    dialogue = _dialogue(sessions)
    plan = ["Under $1,000"] * 5 + ["$1,000-2,000"] * 3 + ["$2,001-3,500"] * 2
    for user_id, label in enumerate(plan, start=1):
        reply = await _answer_fee(dialogue, user_id, label)
        assert bp.WAIT_FOR_K.format(k=5) in _text(reply)
    poll_id = await _poll_id(sessions, "ime_fee")
    # tomorrow is still November: a month under way is not published, in chat as in `medlegal export`
    tomorrow = _text(await _dialogue(sessions, TODAY + timedelta(days=1)).press(1, f"pq:r:{poll_id}"))
    assert bp.WAIT_FOR_K.format(k=5) in tomorrow

    december = date(2026, 12, 2)
    seen = _text(await _dialogue(sessions, december).press(1, f"pq:r:{poll_id}"))
    assert "Results appear" not in seen
    assert "50% of 10 physicians chose <b>Under $1,000</b>" in seen
    assert "&lt;5 of 10 physicians chose <b>$1,000-2,000</b>" in seen  # a count below k, no share
    assert "30%" not in seen and "20%" not in seen
    async with sessions() as s:  # the very figures the export publishes
        figures = await published(s, ZoneInfo("America/Los_Angeles"), 5, december, "ime_fee")
    assert figures.respondents("ime_fee") == 10 and figures.shown("ime_fee", "under_1000") == 5
    assert figures.shown("ime_fee", "1000_2000") is None
    # an answer given in December leaves November's figures, and the day's snapshot, as they were
    await _answer_fee(_dialogue(sessions, december), 11, "Over $3,500")
    again = _text(await _dialogue(sessions, december).press(2, f"pq:r:{poll_id}"))
    assert "50% of 10 physicians chose <b>Under $1,000</b>" in again


async def test_closed_polls_and_forged_buttons(sessions: Sessions) -> None:
    dialogue = _dialogue(sessions)
    fee = await _poll_id(sessions, "ime_fee")
    types = await _poll_id(sessions, "ime_case_types")
    await _answer_fee(dialogue, 1, "Under $1,000")
    async with sessions() as s, s.begin():
        await store.close_poll(s, "ime_fee")
    assert "What do you charge for a standard IME?" not in " ".join(_labels(await dialogue.command(1, "polls")))
    late = await dialogue.press(1, f"pq:a:{fee}:3")
    assert late.notice == bp.CLOSED and "Your answer: <b>Under $1,000</b>" in _text(late)
    assert bp.CHANGE.split(" ", 1)[1] not in " ".join(_labels(late))
    assert (await dialogue.press(2, f"pq:a:{fee}:0")).notice == bp.CLOSED
    assert await _choices(sessions, "ime_fee", 1) == ("under_1000",)
    assert await _choices(sessions, "ime_fee", 2) == ()
    for data, notice in [
        ("pq:a:99999:0", bp.UNKNOWN_POLL),
        (f"pq:a:{types}:0", bp.UNKNOWN_BUTTON),  # a single-choice tap on a multiple-choice poll
        (f"pq:d:{types}:64", bp.UNKNOWN_BUTTON),  # a bit past the options
        (f"pq:a:{await _poll_id(sessions, 'ime_qme_now')}:9", bp.UNKNOWN_BUTTON),
        ("pq:zz", bp.UNKNOWN_BUTTON),
        ("pq:a:1", bp.UNKNOWN_BUTTON),
    ]:
        assert (await dialogue.press(3, data)).notice == notice, data
    async with sessions() as s:
        assert await store.answered_polls(s, 3) == set()


async def test_no_open_poll(sessions: Sessions) -> None:
    async with sessions() as s, s.begin():
        for row in await store.list_polls(s):
            await store.close_poll(s, row.key)
    assert bp.NONE_OPEN in _text(await _dialogue(sessions).command(1, "polls"))


async def _counts(sessions: Sessions) -> tuple[int, int, int]:
    async with sessions() as s:
        polls = (await s.execute(select(func.count()).select_from(PollRow))).scalar_one()
        links = (await s.execute(select(func.count()).select_from(CommunitySource))).scalar_one()
        queued = (await s.execute(select(func.count()).select_from(OutboxMessage))).scalar_one()
        return polls, links, queued


async def test_non_admins_are_refused_and_nothing_changes(sessions: Sessions) -> None:
    dialogue = _dialogue(sessions)
    before = await _counts(sessions)
    for name, args in [("poll_new", "Q? | A | B"), ("poll_close", "ime_fee"), ("invite", "Club"), ("sources", "")]:
        assert _text(await dialogue.command(1, name, args)) == ap.NOT_ADMIN, name
    assert (await dialogue.press(1, f"pa:cy:{await _poll_id(sessions, 'ime_fee')}")).notice == ap.NOT_ADMIN
    assert await _counts(sessions) == before
    async with sessions() as s:
        fee = await store.poll_by_key(s, "ime_fee")
        assert fee is not None and fee.status == "open"


async def test_poll_new_preview_confirm_and_announce(sessions: Sessions) -> None:
    dialogue = _dialogue(sessions)
    async with sessions() as s, s.begin():
        for user_id in (1, 2):
            await repo.lock_user(s, user_id)
            await outbox.set_subscribed(s, user_id, True)
    polls, links, queued = await _counts(sessions)

    ask = await dialogue.command(ADMIN, "poll_new")
    assert "Send the poll as one message" in _text(ask)
    bad = await dialogue.text(ADMIN, "Just a question?")
    assert "That is not a poll I can use: a poll needs a question" in _text(bad)
    preview = await dialogue.text(ADMIN, "Which IME vendor do you use?\nAlpha & Co\nBeta\nmultiple")
    assert "<b>Add this poll?</b>" in _text(preview) and "Alpha &amp; Co" in _text(preview)
    assert "multiple choice" in _text(preview)
    assert (await dialogue.press(OTHER_ADMIN, _button(preview, "Confirm"))).notice == ap.NOT_YOURS
    assert (await _counts(sessions))[0] == polls

    done = await dialogue.press(ADMIN, _button(preview, "Confirm and announce"))
    assert "Poll added" in _text(done) and "Announcement queued to 2 subscribers" in _text(done)
    assert await _counts(sessions) == (polls + 1, links, queued + 2)
    assert (await dialogue.press(ADMIN, _button(preview, "Confirm"))).notice == ap.GONE
    assert (await _counts(sessions))[0] == polls + 1

    listing = await dialogue.command(1, "polls")
    assert "Which IME vendor do you use?" in _labels(listing)
    # the admin's next text is an answer to the flow again, not a poll
    assert "Add this poll?" not in _text(await dialogue.text(ADMIN, "Another question?\nA\nB"))


async def test_poll_new_inline_cancel_and_replaced_drafts(sessions: Sessions) -> None:
    dialogue = _dialogue(sessions)
    polls = (await _counts(sessions))[0]
    first = await dialogue.command(ADMIN, "poll_new", "Q one? | Yes | No")
    second = await dialogue.command(ADMIN, "poll_new", "Q two? | Yes | No")
    assert (await dialogue.press(ADMIN, _button(first, "Confirm"))).notice == ap.GONE
    cancelled = await dialogue.press(ADMIN, _button(second, "Cancel"))
    assert cancelled.notice == ap.CANCELLED
    assert (await _counts(sessions))[0] == polls
    third = await dialogue.command(ADMIN, "poll_new", "Q two? | Yes | No")
    saved = await dialogue.press(ADMIN, _button(third, "Confirm"))
    assert "<code>q_two</code>" in _text(saved)
    assert "No active subscriber" not in _text(saved)


async def test_poll_close(sessions: Sessions) -> None:
    dialogue = _dialogue(sessions)
    pick = await dialogue.command(ADMIN, "poll_close")
    ask = await dialogue.press(ADMIN, _button(pick, "What do you charge for a standard IME?"))
    assert "Close this poll?" in _text(ask)
    kept = await dialogue.press(ADMIN, _button(ask, "Cancel"))
    assert kept.notice == ap.KEPT
    closed = await dialogue.press(ADMIN, _button(ask, "Confirm"))
    assert "Closed: 📊 <b>What do you charge for a standard IME?</b>" in _text(closed)
    assert (await dialogue.press(ADMIN, _button(ask, "Confirm"))).notice == ap.ALREADY_CLOSED
    assert _text(await dialogue.command(ADMIN, "poll_close", "ime_fee")) == ap.ALREADY_CLOSED
    assert "There is no poll with the key 'nope'" in _text(await dialogue.command(ADMIN, "poll_close", "nope"))
    by_key = await dialogue.command(ADMIN, "poll_close", "IME_QME_NOW")
    await dialogue.press(ADMIN, _button(by_key, "Confirm"))
    async with sessions() as s:
        assert {r.key for r in await store.list_polls(s) if r.status == "open"} == {"ime_barriers", "ime_case_types"}


async def test_invite_start_and_sources(sessions: Sessions) -> None:
    dialogue = _dialogue(sessions)
    assert _text(await dialogue.command(ADMIN, "invite", "  ")) == ap.INVITE_USAGE
    assert _text(await dialogue.command(ADMIN, "invite", "x" * 101)) == ap.INVITE_NAME_LONG
    assert _text(await dialogue.command(ADMIN, "sources")) == ap.NO_SOURCES
    made = _text(await dialogue.command(ADMIN, "invite", "Ortho  Society"))
    assert "https://t.me/medlegal_test_bot?start=ortho_society" in made
    assert "https://t.me/medlegal_test_bot?start=ortho_society" in _text(
        await dialogue.command(ADMIN, "invite", "ortho society")
    )
    assert "?start=ortho_society_2" in _text(await dialogue.command(ADMIN, "invite", "Ortho-Society!"))

    for user_id in range(1, 7):
        reply = await dialogue.command(user_id, "start", "ortho_society")
        assert "Step 1 of" in _text(reply)
    await dialogue.command(1, "start", "ortho_society_2")  # the first link wins
    unknown = await dialogue.command(7, "start", "no_such_link")
    assert "Step 1 of" in _text(unknown)  # ignored: the physician starts as usual
    async with sessions() as s:
        assert await sources.source_of(s, 1) == "ortho_society"
        assert await sources.source_of(s, 7) is None
    listing = _text(await dialogue.command(ADMIN, "sources"))
    assert "<b>Ortho  Society</b>" not in listing and "<b>Ortho Society</b>" in listing
    # the month under way is not counted yet, as in `medlegal export`
    assert "started withheld · finished &lt;5 · not finished yet &lt;5" in listing
    listing = _text(await _dialogue(sessions, today=TODAY + timedelta(days=5)).command(ADMIN, "sources"))
    assert "Nov 2026" in listing
    assert "(<code>ortho_society</code>, since 2026-11-29): started withheld · finished &lt;5 · not finished yet 6" in (
        listing
    )
    assert (
        "(<code>ortho_society_2</code>, since 2026-11-29): started withheld · finished &lt;5 · not finished yet &lt;5"
        in (listing)
    )


async def test_forged_and_expired_admin_presses_change_nothing(sessions: Sessions) -> None:
    clock = Clock()
    admin = ap.PollsAdmin(sessions, {ADMIN}, lambda: TODAY, lambda: 5, lambda: "medlegal_test_bot", now=clock)
    dialogue = Dialogue(sessions, plugins=[admin])
    polls = (await _counts(sessions))[0]
    preview = await dialogue.command(ADMIN, "poll_new", "Which one? | Yes | No")
    confirm = _button(preview, "Confirm")
    action_id = confirm.split(":")[2]
    for data, notice in [
        ("pa:ok:99999:0123abcd", ap.GONE),
        (f"pa:ok:{action_id}:0123abcd", ap.GONE),  # the right row, not the draft this button was made for
        (f"pa:ok:{action_id}", ap.UNKNOWN_BUTTON),
        ("pa:zz:1", ap.UNKNOWN_BUTTON),
        ("pa:cy:99999", ap.UNKNOWN_BUTTON),
    ]:
        assert (await dialogue.press(ADMIN, data)).notice == notice, data
    assert (await _counts(sessions))[0] == polls
    clock.at += timedelta(hours=1, minutes=1)
    assert (await dialogue.press(ADMIN, confirm)).notice == ap.EXPIRED
    assert (await _counts(sessions))[0] == polls
    # a wait for the poll's text expires too: the admin's text then goes to the flow
    await dialogue.command(ADMIN, "poll_new")
    clock.at += timedelta(hours=1, minutes=1)
    assert await admin.text(ADMIN, "Which one? | Yes | No") is None
