"""Telegram failing on the bot's replies, and unexpected exceptions, through the real Application and the fake API."""

from __future__ import annotations

from typing import Any

import pytest

from bot import texts
from bot.aiohttp_request import AiohttpRequest
from bot.dialogue import Dialogue
from bot.faults import ErrorReporter, error_kind
from tests.fake_bot_api import FakeBotApi, FakeUser
from tests.harness import RunningBot

ADMINS = frozenset({9101, 9102})


def _after(user: FakeUser) -> int:
    return user.last.message_id if user.messages else 0


async def _at_step_2(fake: FakeBotApi, user: FakeUser) -> None:
    user.send("/start")
    await fake.wait_for_message(user.id, "Step 1 of 14")
    after = _after(user)
    user.press("MD")
    await fake.wait_for_message(user.id, "Step 2 of 14", after=after)
    await fake.wait_until_idle()  # the answered question's edit too


async def test_flood_control_on_a_reply_is_waited_out_and_retried(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(3101)
    async with RunningBot(fake, sqlite_url, admin_ids=ADMINS) as bot:
        await _at_step_2(fake, user)
        fake.fail("429", chat_id=user.id, method="sendMessage", retry_after=1)
        after = _after(user)
        user.press("Yes, active")
        await fake.wait_for_message(user.id, "Step 3 of 14", after=after)
        await fake.wait_until_idle()
        statuses = [c.status for c in fake.calls_to("sendMessage", user.id)]
        assert 429 in statuses and statuses[-1] == 200
        assert not any(texts.ERROR in m.plain_text for m in user.messages)
        assert all(not fake.messages(admin) for admin in ADMINS)  # Telegram's own trouble is only logged
        flow = await bot.flow(user.id)
        assert flow is not None and flow.answers["ca_license"] == "active"


@pytest.mark.parametrize("kind", ["500", "502", "timeout"])
async def test_a_failed_reply_keeps_the_answer_and_says_so(fake: FakeBotApi, sqlite_url: str, kind: Any) -> None:
    user = fake.user(3102)
    async with RunningBot(fake, sqlite_url, admin_ids=ADMINS) as bot:
        request = bot.app.bot.request
        assert isinstance(request, AiohttpRequest)
        request.read_timeout = 0.5
        await _at_step_2(fake, user)
        fake.fail(kind, chat_id=user.id, method="sendMessage", delay=2.0)
        after = _after(user)
        user.press("Yes, active")
        sorry = await fake.wait_for_message(user.id, "something went wrong", after=after)
        assert sorry.plain_text == texts.ERROR
        flow = await bot.flow(user.id)
        assert flow is not None and flow.answers == {"profession": "md", "ca_license": "active"}
        await fake.wait_until_idle()
        assert all(not fake.messages(admin) for admin in ADMINS)
        # the bot goes on: the physician picks up where they were
        after = _after(user)
        user.send("/start")
        await fake.wait_for_message(user.id, "Pick up where you left off?", after=after)


async def test_telegram_failing_even_the_apology_does_not_stop_the_bot(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(3103)
    async with RunningBot(fake, sqlite_url):
        await _at_step_2(fake, user)
        fake.fail("500", chat_id=user.id, times=4)  # the reply, the callback answer and the apology all fail
        user.press("Yes, active")
        await fake.wait_until_idle()
        fake.clear_faults()
        after = _after(user)
        user.send("/start")
        await fake.wait_for_message(user.id, "Pick up where you left off?", after=after)


async def test_an_unexpected_error_reaches_the_admins_once_without_user_data(
    fake: FakeBotApi, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Dialogue, state: Any, press: Any) -> Any:  # the answer's move, on the locked and unlocked way
        raise ValueError(f"user {user.id} answered {'='.join(press.args)}")

    user = fake.user(3104, username="dr_private")
    async with RunningBot(fake, sqlite_url, admin_ids=ADMINS) as bot:
        await _at_step_2(fake, user)
        monkeypatch.setattr(Dialogue, "_move", broken)
        for _ in range(2):
            after = _after(user)
            user.press("Yes, active")
            sorry = await fake.wait_for_message(user.id, "something went wrong", after=after)
            assert sorry.plain_text == texts.ERROR
        await fake.wait_until_idle()
        assert any(c.get("text") == texts.ERROR for c in fake.answered_callbacks)
        for admin in ADMINS:
            reports = fake.messages(admin)
            assert len(reports) == 1, fake.dump(admin)  # once per kind per hour
            report = reports[0].plain_text
            assert "ValueError" in report and "bot.dialogue" in report
            for private in (str(user.id), "dr_private", "active", "answered", "ca_license"):
                assert private not in report
        flow = await bot.flow(user.id)
        assert flow is not None and flow.answers == {"profession": "md"}


def test_the_reporter_lets_each_kind_through_once_an_hour() -> None:
    now = [0.0]
    reporter = ErrorReporter(clock=lambda: now[0])

    def kind_of(exc: Exception) -> Any:
        try:
            raise exc
        except Exception as raised:
            return error_kind(raised)

    a, b = kind_of(ValueError("secret-42")), kind_of(KeyError("y"))
    assert a.key != b.key and len(a.key) == 8
    assert reporter.due(a) and reporter.due(b)
    now[0] = 3599.0
    assert not reporter.due(a)
    now[0] = 3600.0
    assert reporter.due(a)
    assert "secret-42" not in ErrorReporter.text(a, outage=False)


def test_the_place_of_an_error_is_named_by_the_nearest_package() -> None:
    from bot.faults import _module_of

    assert _module_of("/srv/bot/app/db/repository.py") == "db.repository"
    assert _module_of("/tmp/wt/bot/handlers.py") == "bot.handlers"
    assert _module_of("/venv/site-packages/telegram/_bot.py") == "telegram._bot"


async def test_a_message_that_cannot_be_edited_does_not_stop_the_flow(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(3105)
    async with RunningBot(fake, sqlite_url):
        await _at_step_2(fake, user)
        fake.fail("400", chat_id=user.id, method="editMessageText")
        after = _after(user)
        user.press("Yes, active")  # marking the answered question fails; the next question comes all the same
        await fake.wait_for_message(user.id, "Step 3 of 14", after=after)
        await fake.wait_until_idle()
        assert [c.status for c in fake.calls_to("editMessageText", user.id)][-1] == 400, fake.dump(user.id)
        assert not any(m.plain_text.startswith("✓ Step 2") for m in user.messages), fake.dump(user.id)

        fake.fail("400", chat_id=user.id, method="editMessageText")
        after = _after(user)
        user.press("None")  # a toggle: the redrawn question is all the reply shows, so it comes as a new message
        redrawn = await fake.wait_for_message(user.id, "Step 3 of 14", after=after)
        assert any(label.startswith("☑️") and "None" in label for label, _ in redrawn.buttons()), fake.dump(user.id)
