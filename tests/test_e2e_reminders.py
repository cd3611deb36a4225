"""End to end: a physician turns reminders on from the roadmap, the scheduler queues them, the sender in the
running app delivers the one that is due, and its Stop button turns them off."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from db import outbox
from db import repository as repo
from db.engine import make_session_factory
from tests.fake_bot_api import FakeBotApi
from tests.harness import RunningBot
from tests.test_e2e_telegram import CA_ORTHO, play, say, tap

LA = ZoneInfo("America/Los_Angeles")
TODAY = date(2027, 2, 12)
NOW = datetime(2027, 2, 12, 9, 30, tzinfo=LA)  # half an hour after the 7-day deadline reminder's time


async def test_reminder_delivered_and_stopped(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(4001)
    bot = RunningBot(fake, sqlite_url, today=TODAY)
    bot.app.bot_data["scheduler"].clock = lambda: NOW
    bot.app.bot_data["sender"].clock = lambda: NOW
    async with bot:
        async with make_session_factory(bot.engine)() as session, session.begin():
            await repo.add_sitting(
                session, first_day=date(2027, 4, 5), last_day=date(2027, 4, 11), deadline=date(2027, 2, 19)
            )
        await say(fake, user, "/start", "Step 1 of 14")
        await play(fake, user, CA_ORTHO)
        assert "Exam reminders are off" in user.last.plain_text
        await tap(fake, user, "Remind me of exam dates", None)
        assert "Exam reminders are on: 30, 7, 1 days before" in user.last.plain_text
        assert "🔕 Stop exam reminders" in [label for label, _ in user.last.buttons()]

        scheduler = bot.app.bot_data["scheduler"]
        assert await scheduler.run_once() == 5  # the 30-day deadline reminder (20 Jan) is long past
        reminder = await fake.wait_for_message(user.id, "deadline is in 7 days", timeout=10)
        assert "19 Feb 2027" in reminder.plain_text and "$125" in reminder.plain_text
        assert [label for label, _ in reminder.buttons()] == ["📋 Open my roadmap", "🔕 Stop reminders"]
        assert await scheduler.run_once() == 0  # never queued twice

        await tap(fake, user, "Stop reminders", "Exam reminders are off")
        async with make_session_factory(bot.engine)() as session:
            assert not await outbox.is_subscribed(session, user.id)
        await fake.wait_until_idle()
        reminders = [m for m in user.messages if m.plain_text.startswith("Reminder:")]
        assert len(reminders) == 1
