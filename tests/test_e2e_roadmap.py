"""End to end: the roadmap after the flow, its full version, the .ics file, and /roadmap after the calendar changes."""

from __future__ import annotations

from datetime import date, timedelta

from icalendar import Calendar

from db import repository as repo
from db.engine import make_session_factory
from tests.fake_bot_api import FakeBotApi
from tests.harness import RunningBot
from tests.test_e2e_telegram import CA_ORTHO, play, say, tap

TODAY = date(2026, 11, 29)


async def _add_april_2027(bot: RunningBot) -> int:
    async with make_session_factory(bot.engine)() as session, session.begin():
        row = await repo.add_sitting(
            session,
            first_day=date(2027, 4, 5),
            last_day=date(2027, 4, 11),
            deadline=date(2027, 2, 19),
            note="Computer-based, Pearson VUE",
            source="https://www.dir.ca.gov/dwc/medicalunit/QME_page.html",
        )
        return row.id


async def test_roadmap_full_version_and_calendar_file(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(3001)
    async with RunningBot(fake, sqlite_url, today=TODAY) as bot:
        sitting_id = await _add_april_2027(bot)
        await say(fake, user, "/start", "Step 1 of 14")
        await play(fake, user, CA_ORTHO)
        summary = user.last.plain_text
        assert "Recommendation: California QME" in summary
        assert "apply by 19 Feb 2027: 82 days left to apply, 127 days to the window" in summary
        assert "Next steps" in summary
        labels = [label for label, _ in user.last.buttons()]
        assert labels[:2] == ["📋 Full roadmap", "📅 Calendar (.ics)"]

        details = await tap(fake, user, "Full roadmap", "Full roadmap")
        assert details is not None
        await fake.wait_until_idle()
        full = "\n".join(m.plain_text for m in user.messages if m.message_id >= details.message_id)
        for needle in ("ML201 Comprehensive evaluation $2,015.00", "ML204 Testimony $455.00", "Source:", "(confirmed)"):
            assert needle in full
        assert all(len(m.text) <= 4096 for m in user.messages)

        calls = len(fake.calls_to("sendDocument", user.id))
        user.press("Calendar")
        document = await fake.wait_for_message(user.id, ".ics")
        assert len(fake.calls_to("sendDocument", user.id)) == calls + 1
        assert document.document is not None
        assert document.document["filename"] == "qme-roadmap-2026-11-29.ics"
        calendar = Calendar.from_ical(document.document["content"])
        events = {str(e.get("summary")): e for e in calendar.walk("VEVENT")}
        deadline = events["QME application deadline: Forms 100 and 102"]
        assert deadline.decoded("dtstart") == date(2027, 2, 19)
        exam = events["QME competency exam window"]
        assert exam.decoded("dtstart") == date(2027, 4, 5)
        assert exam.decoded("dtend") == date(2027, 4, 12)  # exclusive end of an all-day event
        course = events["Finish the 16-hour QME report-writing course"]
        assert course.decoded("dtstart") == date(2027, 4, 4)
        assert len(deadline.walk("VALARM")) == 3  # 30, 7 and 1 days before (MEDLEGAL_REMINDER_DAYS)
        assert fake.answered_callbacks[-1].get("text") == "Calendar file on its way."

        # the admin removes the sitting: /roadmap is recomputed against the current calendar
        async with make_session_factory(bot.engine)() as session, session.begin():
            assert await repo.remove_sitting(session, sitting_id)
        again = await say(fake, user, "/roadmap", "Recommendation: California QME")
        assert "has not been announced yet" in again.plain_text
        assert "2027" not in again.plain_text.split("QME exam timing")[1].split("Next steps")[0]


async def test_roadmap_before_finishing_says_what_to_do(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(3002)
    async with RunningBot(fake, sqlite_url, today=TODAY):
        await say(fake, user, "/roadmap", "once you've answered the questions")


async def test_roadmap_is_recomputed_for_a_later_today(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(3003)
    async with RunningBot(fake, sqlite_url, today=TODAY) as bot:
        await _add_april_2027(bot)
        await say(fake, user, "/start", "Step 1 of 14")
        await play(fake, user, CA_ORTHO)
    later = TODAY + timedelta(days=82)  # the deadline itself
    async with RunningBot(fake, sqlite_url, today=later):
        message = await say(fake, user, "/roadmap", "Recommendation")
        assert "today is the last day to apply" in message.plain_text
