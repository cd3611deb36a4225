"""End to end: the real PTB Application polls the fake Bot API over HTTP; a simulated physician taps buttons."""

from __future__ import annotations

import asyncio

from bot import texts
from tests.fake_bot_api import BotMessage, FakeBotApi, FakeUser
from tests.harness import RunningBot

CA_ORTHO = [
    ("MD", "Step 2 of 14"),
    ("Yes, active", "Step 3 of 14"),
    ("None", None),
    ("Done", "Step 4 of 14"),
    ("Board certified", "Step 5 of 14"),
    ("Established", "Step 6 of 14"),
    ("At least a third", "Step 7 of 14"),
    ("Orthopedics", "Step 8 of 14"),
    ("Predictable", "Step 9 of 14"),
    ("10-20", "Step 10 of 14"),
    ("High tolerance", "Step 11 of 14"),
    ("Yes", "Step 12 of 14"),
    ("Comfortable", "Step 13 of 14"),
    ("Yes", "Step 14 of 14"),
    ("Workers' compensation", None),
    ("Done", "Recommendation: California QME"),
]


def _after(user: FakeUser) -> int:
    return user.last.message_id if user.messages else 0


async def tap(fake: FakeBotApi, user: FakeUser, label: str, expect: str | None) -> BotMessage | None:
    """Press a button; wait for the new message that should follow, or for the pressed message's edit to land
    (waiting for quiet alone can return between the callback answer and the edit on a busy machine)."""
    after = _after(user)
    pressed = next(m for m in reversed(user.messages) if any(label.casefold() in b.casefold() for b, _ in m.buttons()))
    edits = pressed.edited
    user.press(label)
    if expect is None:
        deadline = asyncio.get_running_loop().time() + 10
        while pressed.edited == edits and _after(user) == after:
            assert asyncio.get_running_loop().time() < deadline, f"pressing {label!r} changed nothing"
            await asyncio.sleep(0.01)
        await fake.wait_until_idle()
        return None
    return await fake.wait_for_message(user.id, expect, after=after)


async def say(fake: FakeBotApi, user: FakeUser, text: str, expect: str) -> BotMessage:
    after = _after(user)
    user.send(text)
    return await fake.wait_for_message(user.id, expect, after=after)


async def play(fake: FakeBotApi, user: FakeUser, steps: list[tuple[str, str | None]]) -> None:
    for label, expect in steps:
        await tap(fake, user, label, expect)


async def test_physician_goes_from_start_to_recommendation_by_buttons(fake: FakeBotApi, db_url: str) -> None:
    user = fake.user(1001, first_name="Ana")
    async with RunningBot(fake, db_url) as bot:
        first = await say(fake, user, "/start", "Step 1 of 14")
        assert "Which one do you practise under?" in first.plain_text
        assert [label for label, _ in first.buttons()][:2] == ["MD", "DO"]
        await play(fake, user, CA_ORTHO)
        await fake.wait_until_idle()  # the last question's edit goes out beside the roadmap
        final = user.last
        assert "You want predictable volume and fixed fees" in final.plain_text
        assert "workers' compensation interests you" in final.plain_text
        assert "Next steps" in final.plain_text
        # every answered question keeps the choice, with its progress marker
        edited = [m.plain_text for m in user.messages if m.plain_text.startswith("✓")]
        assert edited[0] == "✓ Step 1 of 14 · License: MD"
        assert any("Other state licenses: None" in t for t in edited)
        assert len(edited) == 14
        # every question message carried a progress marker
        questions = [c for c in fake.calls_to("sendMessage", user.id) if "Step " in c.params.get("text", "")]
        assert len(questions) == 14
        stored = await bot.flow(user.id)
        assert stored is not None and stored.status == "completed"
        assert stored.answers["specialty"] == "ortho" and stored.answers["other_states"] == ["none"]
    assert {c["command"] for c in fake.my_commands} >= {"start", "restart", "cancel", "help", "privacy", "delete_me"}


async def test_back_and_edit_a_single_answer_from_the_summary(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(1002)
    async with RunningBot(fake, sqlite_url) as bot:
        await say(fake, user, "/start", "Step 1 of 14")
        await tap(fake, user, "MD", "Step 2 of 14")
        await tap(fake, user, "Yes, active", "Step 3 of 14")
        question = user.last
        await tap(fake, user, "Back", None)
        # the same message now shows step 2 again, with the earlier answer marked
        assert user.last.message_id == question.message_id
        assert "Step 2 of 14" in user.last.plain_text
        assert "✓ Yes, active" in [label for label, _ in user.last.buttons()]
        await tap(fake, user, "Yes, active", "Step 3 of 14")
        await play(fake, user, CA_ORTHO[2:])
        before = await bot.flow(user.id)
        assert before is not None

        summary = await tap(fake, user, "Review or change answers", "Your answers")
        assert summary is not None and "Specialty: Orthopedics" in summary.plain_text
        await tap(fake, user, "✏️ What matters more", None)
        assert "What matters more to you" in user.last.plain_text
        assert "✓ Predictable volume, fixed fees" in [label for label, _ in user.last.buttons()]
        await tap(fake, user, "Highest per-case ceiling", "Recommendation")
        after = await bot.flow(user.id)
        assert after is not None and after.status == "completed"
        changed = {k for k in before.answers if before.answers[k] != after.answers.get(k)}
        assert changed == {"income_style"}
        assert after.answers.keys() == before.answers.keys()


async def test_resume_after_the_application_restarts(fake: FakeBotApi, db_url: str) -> None:
    user = fake.user(1003)
    async with RunningBot(fake, db_url):
        await say(fake, user, "/start", "Step 1 of 14")
        await play(fake, user, CA_ORTHO[:4])
    old_question = user.last
    assert "Step 4 of 14" in old_question.plain_text

    async with RunningBot(fake, db_url) as bot:
        # the button on the message sent before the restart still works
        await tap(fake, user, "Board certified", "Step 5 of 14")
        prompt = await say(fake, user, "/start", "Pick up where you left off?")
        assert "step 5 of 14" in prompt.plain_text
        resumed = await tap(fake, user, "Resume", "Step 5 of 14")
        assert resumed is not None and "Where are you in your career?" in resumed.plain_text
        stored = await bot.flow(user.id)
        assert stored is not None and stored.current_key == "stage"
        assert stored.answers == {
            "profession": "md",
            "ca_license": "active",
            "other_states": ["none"],
            "board": "certified",
        }


async def test_start_mid_flow_can_start_over(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(1004)
    async with RunningBot(fake, sqlite_url) as bot:
        await say(fake, user, "/start", "Step 1 of 14")
        await tap(fake, user, "DO", "Step 2 of 14")
        await say(fake, user, "/start", "Pick up where you left off?")
        await tap(fake, user, "Start over", "Step 1 of 14")
        stored = await bot.flow(user.id)
        assert stored is not None and stored.answers == {} and stored.current_key == "profession"


async def test_bad_input_gets_a_friendly_answer_and_loses_nothing(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(1005)
    async with RunningBot(fake, sqlite_url) as bot:
        await say(fake, user, "/start", "Step 1 of 14")
        await tap(fake, user, "MD", "Step 2 of 14")
        step1_message = user.messages[-2]
        before = await bot.flow(user.id)

        # free text where a button is expected
        reply = await say(fake, user, "what is a QME?", texts.USE_BUTTONS)
        assert "Step 2 of 14" in reply.plain_text and reply.buttons()
        # a typed label is accepted like the button
        await say(fake, user, "yes, active", "Step 3 of 14")
        mid = await bot.flow(user.id)
        assert mid is not None and mid.answers["ca_license"] == "active"

        # a stale button from an earlier message
        after = _after(user)
        user.press_data(f"a:{before.turn if before else 0}:ca_license:no", message_id=step1_message.message_id)
        resent = await fake.wait_for_message(user.id, "Step 3 of 14", after=after)
        assert texts.STALE_BUTTON in resent.plain_text
        assert texts.STALE_BUTTON in (fake.answered_callbacks[-1].get("text") or "")

        # forged callback data of several shapes, up to 64 bytes
        for forged in ["zzz", "a:99999999:profession:md", "a:x:y:z", "x" * 64, "a:1:" + "b" * 60, "e:0:../../etc"]:
            after = _after(user)
            user.press_data(forged)
            resent = await fake.wait_for_message(user.id, "Step 3 of 14", after=after)
            assert resent.buttons()

        # something that is not text
        after = _after(user)
        fake.enqueue_update(
            {
                "message": {
                    "message_id": 999,
                    "date": 0,
                    "chat": {"id": user.id, "type": "private", "first_name": "D"},
                    "from": user.as_json(),
                    "sticker": {
                        "file_id": "s",
                        "file_unique_id": "s",
                        "type": "regular",
                        "width": 1,
                        "height": 1,
                        "is_animated": False,
                        "is_video": False,
                    },
                }
            }
        )
        resent = await fake.wait_for_message(user.id, texts.NOT_TEXT, after=after)
        assert "Step 3 of 14" in resent.plain_text

        # an unknown command
        await say(fake, user, "/frobnicate", texts.UNKNOWN_COMMAND)
        final = await bot.flow(user.id)
        assert final is not None and mid is not None
        assert final.answers == mid.answers and final.current_key == "other_states"


async def test_group_chats_are_told_to_use_a_private_chat(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(1006)
    async with RunningBot(fake, sqlite_url) as bot:
        user.send("/start", chat_type="group", chat_id=-500)
        message = await fake.wait_for_message(-500, "private chats")
        assert message.chat_id == -500
        assert await bot.flow(user.id) is None


async def test_help_privacy_cancel_restart_and_delete_me(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(1007)
    async with RunningBot(fake, sqlite_url) as bot:
        await say(fake, user, "/help", "/delete_me")
        await say(fake, user, "/privacy", "What I store and why")
        await say(fake, user, "/start", "Step 1 of 14")
        await tap(fake, user, "Psychologist", "Step 2 of 13")
        await say(fake, user, "/cancel", "Stopped")
        stored = await bot.flow(user.id)
        assert stored is not None and stored.status == "cancelled"
        await say(fake, user, "/restart", "Step 1 of 14")
        await say(fake, user, "/delete_me", "cannot be undone")
        await tap(fake, user, "Yes, erase everything", None)
        assert texts.DELETE_DONE in user.last.plain_text
        assert await bot.flow(user.id) is None


async def test_a_telegram_failure_on_a_reply_loses_no_answer(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(1008)
    async with RunningBot(fake, sqlite_url) as bot:
        await say(fake, user, "/start", "Step 1 of 14")
        fake.fail("500", chat_id=user.id, method="sendMessage", times=1)
        after = _after(user)
        user.press("MD")
        sorry = await fake.wait_for_message(user.id, "something went wrong", after=after)
        assert sorry.plain_text == texts.ERROR
        stored = await bot.flow(user.id)
        assert stored is not None and stored.answers == {"profession": "md"}
        prompt = await say(fake, user, "/start", "Pick up where you left off?")
        assert prompt.buttons()
        await tap(fake, user, "Resume", "Step 2 of 14")


async def test_two_physicians_do_not_interfere(fake: FakeBotApi, sqlite_url: str) -> None:
    a, b = fake.user(2001), fake.user(2002)
    async with RunningBot(fake, sqlite_url) as bot:
        a.send("/start")
        b.send("/start")
        await fake.wait_for_message(a.id, "Step 1 of 14")
        await fake.wait_for_message(b.id, "Step 1 of 14")
        a.press("MD")
        b.press("Dentist")
        await asyncio.gather(fake.wait_for_message(a.id, "Step 2 of 14"), fake.wait_for_message(b.id, "Step 2 of 13"))
        flow_a, flow_b = await bot.flow(a.id), await bot.flow(b.id)
        assert flow_a is not None and flow_a.answers == {"profession": "md"}
        assert flow_b is not None and flow_b.answers == {"profession": "dds"}
