"""End to end through the fake Bot API: a physician ticks steps on /progress and sees the roadmap and the next
sitting change; the admins' funnel refuses a non-admin and shows an admin suppressed counts; the weekly nudge is
delivered by the running app's sender to a physician who never asked for exam reminders."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from bot.progress import ProgressTracker
from db import repository as repo
from db.engine import make_session_factory
from tests.fake_bot_api import FakeBotApi
from tests.harness import RunningBot
from tests.test_e2e_telegram import CA_ORTHO, play, say, tap

MARCH = date(2027, 3, 1)  # April's application deadline (19 Feb) has passed; its window (5 Apr) has not opened
ADMIN = 5999
LA = ZoneInfo("America/Los_Angeles")


async def _calendar(bot: RunningBot) -> None:
    async with make_session_factory(bot.engine)() as session, session.begin():
        await repo.add_sitting(session, first_day=date(2027, 4, 5), last_day=date(2027, 4, 11),
                               deadline=date(2027, 2, 19))  # fmt: skip
        await repo.add_sitting(session, first_day=date(2027, 10, 4), last_day=date(2027, 10, 10))


async def test_ticking_steps_changes_the_roadmap_and_the_next_sitting(fake: FakeBotApi, sqlite_url: str) -> None:
    user, other, admin = fake.user(5001), fake.user(5002), fake.user(ADMIN)
    async with RunningBot(fake, sqlite_url, today=MARCH, admin_ids=frozenset({ADMIN})) as bot:
        await _calendar(bot)
        await say(fake, user, "/start", "Step 1 of 14")
        await play(fake, user, CA_ORTHO)
        assert "Next exam you can make: 4-10 Oct 2027; apply by 20 Aug 2027" in user.last.plain_text

        screen = await tap(fake, user, "My progress", "Your progress: California QME")
        assert screen is not None and "⬜ Eligibility confirmed" in screen.plain_text
        assert "Due 20 Aug 2027 (172 days left)" in screen.plain_text  # the October deadline

        await tap(fake, user, "Eligibility confirmed", None)
        assert "✅ Eligibility confirmed · 1 Mar 2027" in user.last.plain_text
        assert fake.answered_callbacks[-1].get("text") == "Ticked: Eligibility confirmed"
        await tap(fake, user, "Exam application filed", None)
        assert "✅ Exam application filed · 1 Mar 2027" in user.last.plain_text
        assert "⬜ Report-writing course done" in user.last.plain_text
        assert "Due 4 Apr 2027 (34 days left): before the 5-11 Apr 2027 window" in user.last.plain_text

        roadmap = await say(fake, user, "/roadmap", "Recommendation: California QME")
        assert "Next exam you can make: 5-11 Apr 2027; you have applied, 35 days to the window" in roadmap.plain_text
        assert "Done: Eligibility confirmed; Exam application filed" in roadmap.plain_text

        await say(fake, user, "/progress", "Your progress")
        await tap(fake, user, "Exam passed", None)
        assert "✅ Exam passed" in user.last.plain_text
        await tap(fake, user, "Exam application filed", None)  # one tap unticks
        assert "⬜ Exam application filed" in user.last.plain_text
        assert fake.answered_callbacks[-1].get("text") == "Unticked: Exam application filed"

        roadmap = await say(fake, user, "/roadmap", "Recommendation: California QME")
        assert "QME exam timing" not in roadmap.plain_text and "Apr 2027" not in roadmap.plain_text
        assert "You passed: pay the annual QME fee" in roadmap.plain_text

        refused = await say(fake, other, "/funnel", "only")
        assert refused.plain_text == "Sorry, the progress funnel is for the community admins only."
        funnel = await say(fake, admin, "/funnel", "Progress funnel")
        assert "QME track (QME and hybrid roadmaps)" in funnel.plain_text
        # one physician, and in the month under way: nothing is published yet
        assert "Withheld: fewer than 5 physicians" in funnel.plain_text and "course done" not in funnel.plain_text


async def test_weekly_nudge_delivered_without_exam_reminders_and_stopped(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(5003)
    opted_in = datetime(2026, 11, 29, 10, tzinfo=LA)
    later = datetime(2026, 12, 7, 9, 5, tzinfo=LA)  # a week on is 6 Dec 10:00, so the first nudge is 7 Dec 9:00
    bot = RunningBot(fake, sqlite_url, today=date(2026, 11, 29))
    tracker = next(p for p in bot.app.bot_data["dialogue"].plugins if isinstance(p, ProgressTracker))
    tracker.now = lambda: opted_in
    bot.app.bot_data["scheduler"].clock = lambda: later
    bot.app.bot_data["sender"].clock = lambda: later
    async with bot:
        await say(fake, user, "/start", "Step 1 of 14")
        await play(fake, user, CA_ORTHO)
        await say(fake, user, "/progress", "Weekly nudge is off")
        await tap(fake, user, "Nudge me weekly", None)
        assert "Weekly nudge is on" in user.last.plain_text

        assert await bot.app.bot_data["scheduler"].run_once() == 1  # no exam reminders asked for: just the nudge
        nudge = await fake.wait_for_message(user.id, "Your next step toward medical-legal work", timeout=10)
        assert "Confirm you meet the QME eligibility rules" in nudge.plain_text
        assert [label for label, _ in nudge.buttons()] == ["✅ My progress", "🔕 Stop weekly nudge"]
        assert await bot.app.bot_data["scheduler"].run_once() == 0

        await tap(fake, user, "Stop weekly nudge", "Weekly nudges are off")
        await say(fake, user, "/progress", "Weekly nudge is off")
