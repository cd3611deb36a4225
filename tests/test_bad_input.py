"""Bad input through the real PTB Application and the fake Bot API: each gets a clear answer, and afterwards every
stored flow still restores to a valid state (tests.stored_state)."""

from __future__ import annotations

from datetime import date
from typing import Any

from bot import texts
from tests.fake_bot_api import FakeBotApi, FakeUser, make_callback_update, make_message_update
from tests.harness import RunningBot
from tests.stored_state import assert_stored_data_valid

ADMIN = 9201


def _after(user: FakeUser) -> int:
    return user.last.message_id if user.messages else 0


async def _start(fake: FakeBotApi, user: FakeUser) -> None:
    user.send("/start")
    await fake.wait_for_message(user.id, "Step 1 of 14")


async def _tap(fake: FakeBotApi, user: FakeUser, label: str, expect: str) -> None:
    after = _after(user)
    user.press(label)
    await fake.wait_for_message(user.id, expect, after=after)


def _message(user: FakeUser, fake: FakeBotApi, **content: Any) -> dict[str, Any]:
    """A private message from `user` with the given content instead of text."""
    return {
        "message": {
            "message_id": fake._next_message_id(user.id),
            "date": 0,
            "chat": {"id": user.id, "type": "private", "first_name": user.first_name},
            "from": user.as_json(),
            **content,
        }
    }


TEXTS = [
    "x" * 4096,
    "é" * 4096,
    "   ",
    "مرحبا، أريد أن أصبح طبيباً مستقلاً",
    "שלום \u202eevil\u202c עולם",
    "\u200b\u200f\u2066",
    "🙂" * 2048,
    "<b>bold</b> & <script>alert(1)</script> &amp; &lt;",
    "*bold* _italic_ `code` [link](http://example.org) ~~s~~ ||spoiler||",
    "/",
    "a, b, , ,",
]


async def test_odd_texts_get_the_question_again_and_change_nothing(fake: FakeBotApi, db_url: str) -> None:
    user = fake.user(4001)
    async with RunningBot(fake, db_url) as bot:
        await _start(fake, user)
        before = await bot.flow(user.id)
        for text in TEXTS:
            after = _after(user)
            user.send(text)
            expected = texts.UNKNOWN_COMMAND if text == "/" else texts.USE_BUTTONS
            reply = await fake.wait_for_message(user.id, expected, after=after)
            if len(text.strip()) > 3:
                assert text not in reply.plain_text  # nothing the physician typed is echoed into the flow
            if text != "/":
                assert "Step 1 of 14" in reply.plain_text and reply.buttons()
        after = _after(user)
        fake.enqueue_update(_message(user, fake, text=""))  # an empty text: nothing to read
        empty = await fake.wait_for_message(user.id, texts.NOT_TEXT, after=after)
        assert "Step 1 of 14" in empty.plain_text
        await fake.wait_until_idle()
        rejected = [c for c in fake.calls if c.status >= 400]
        assert not rejected, rejected  # every reply was valid for Telegram (HTML, length, buttons)
        assert await bot.flow(user.id) == before
        assert await assert_stored_data_valid(bot.engine) == {user.id: 1}


async def test_markup_typed_by_an_admin_is_escaped_when_shown_back(fake: FakeBotApi, sqlite_url: str) -> None:
    admin = fake.user(ADMIN)
    note = "<b>not bold</b> & *not bold* _x_ <script>"
    async with RunningBot(fake, sqlite_url, admin_ids=frozenset({ADMIN}), today=date(2027, 1, 4)):
        admin.send(f"/sitting_add 2027-04-05 2027-04-11 2027-02-19 | {note} | https://www.dir.ca.gov/dwc/")
        preview = await fake.wait_for_message(admin.id, "Confirm")
        assert note in preview.plain_text  # shown literally, so it was escaped (the fake checks the HTML)
        assert "&lt;b&gt;" in preview.text


def _forged(n: int) -> str:
    """Callback data of exactly `n` bytes (1..64) in shapes a forger might try: unknown verbs, known verbs with
    junk, the plugins' verbs, multibyte text."""
    shapes = [
        "Z" * n,
        ("a:" + "9" * 62)[:n],
        ("t:x:" + "q" * 60)[:n],
        ("sit:" + "%" * 60)[:n],
        ("bc:" + "-" * 61)[:n],
        ("e:0:" + "../" * 20)[:n],
        "é" * (n // 2) + "z" * (n % 2),
    ]
    data = shapes[n % len(shapes)]
    assert len(data.encode()) == n, (n, data)
    return data


async def test_forged_callback_data_of_every_length_up_to_64_bytes(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(4002)
    async with RunningBot(fake, sqlite_url) as bot:
        await _start(fake, user)
        await _tap(fake, user, "MD", "Step 2 of 14")
        before = await bot.flow(user.id)
        answered = len(fake.answered_callbacks)
        for n in range(1, 65):
            user.press_data(_forged(n))
        for data in ("a:0:profession:md:extra", "x" * 65, "é" * 40):  # Telegram would not even deliver these
            user.press_data(data)
        # "idle" alone can come early on a busy machine: a database step sends nothing for a while
        await fake.wait_until(
            lambda: len(fake.answered_callbacks) - answered >= 64 + 3, what="every tap answered", timeout=30
        )
        await fake.wait_until_idle(timeout=30)
        notices = [c.get("text") or "" for c in fake.answered_callbacks[answered:]]
        assert len(notices) == 64 + 3 and all(notices), notices  # every tap answered with a notice
        assert not [c for c in fake.calls if c.status >= 400]
        assert "Step 2 of 14" in user.last.plain_text and user.last.buttons()
        assert await bot.flow(user.id) == before
        await assert_stored_data_valid(bot.engine)


async def test_a_button_under_another_users_message_touches_only_the_presser(fake: FakeBotApi, sqlite_url: str) -> None:
    alice, bob = fake.user(4003), fake.user(4004)
    async with RunningBot(fake, sqlite_url) as bot:
        await _start(fake, alice)
        await _tap(fake, alice, "MD", "Step 2 of 14")
        await _start(fake, bob)
        alice_question = alice.last
        alice_before, bob_before = await bot.flow(alice.id), await bot.flow(bob.id)
        alice_edits = len(fake.calls_to("editMessageText", alice.id))
        data = next(d for label, d in alice_question.buttons() if label == "Yes, active")
        after_bob = _after(bob)
        fake.enqueue_update(
            make_callback_update(
                bob.as_json(), data, callback_id="forged-cross-chat", message=fake.message_json(alice_question)
            )
        )
        resent = await fake.wait_for_message(bob.id, "Step 1 of 14", after=after_bob)
        assert texts.STALE_BUTTON in resent.plain_text
        await fake.wait_until_idle()
        assert alice.last.message_id == alice_question.message_id and alice_question.edited == 0
        assert len(fake.calls_to("editMessageText", alice.id)) == alice_edits
        assert await bot.flow(alice.id) == alice_before and await bot.flow(bob.id) == bob_before
        await assert_stored_data_valid(bot.engine)


async def test_taps_arriving_out_of_order_apply_only_the_current_answer(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(4005)
    async with RunningBot(fake, sqlite_url) as bot:
        await _start(fake, user)
        first_question = user.last
        old_tap = next(d for label, d in first_question.buttons() if label == "DO")
        await _tap(fake, user, "MD", "Step 2 of 14")
        second_question = user.last
        # the newer tap arrives first, then a tap made earlier on the first question (its keyboard is gone now)
        user.press("Yes, active", message_id=second_question.message_id)
        user.press_data(old_tap, message_id=first_question.message_id)
        await fake.wait_until_idle()
        assert any(c.get("text") == texts.STALE_BUTTON for c in fake.answered_callbacks)
        stored = await bot.flow(user.id)
        assert stored is not None and stored.answers == {"profession": "md", "ca_license": "active"}
        assert "Step 3 of 14" in user.last.plain_text
        await assert_stored_data_valid(bot.engine)


async def test_an_edited_message_is_not_read_as_an_answer(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(4006)
    async with RunningBot(fake, sqlite_url) as bot:
        await _start(fake, user)
        before = await bot.flow(user.id)
        after = _after(user)
        typed = make_message_update(user.as_json(), "MD", message_id=fake._next_message_id(user.id))
        edit = {"edited_message": {**typed["message"], "text": "DO", "edit_date": 1}}
        fake.enqueue_update(edit)
        await fake.wait_for_message(user.id, texts.EDITED, after=after)
        assert await bot.flow(user.id) == before
        await assert_stored_data_valid(bot.engine)


STICKER = {
    "file_id": "s",
    "file_unique_id": "s",
    "type": "regular",
    "width": 1,
    "height": 1,
    "is_animated": False,
    "is_video": False,
}
NOT_TEXT: dict[str, dict[str, Any]] = {
    "sticker": {"sticker": STICKER},
    "photo": {"photo": [{"file_id": "p", "file_unique_id": "p", "width": 9, "height": 9}]},
    "voice": {"voice": {"file_id": "v", "file_unique_id": "v", "duration": 3}},
    "document": {"document": {"file_id": "d", "file_unique_id": "d", "file_name": "cv.pdf"}},
    "location": {"location": {"latitude": 34.05, "longitude": -118.24}},
    "contact": {"contact": {"phone_number": "+15555550100", "first_name": "Dana"}},
}


async def test_stickers_photos_voice_and_documents_get_a_clear_answer(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(4007)
    async with RunningBot(fake, sqlite_url) as bot:
        await _start(fake, user)
        await _tap(fake, user, "MD", "Step 2 of 14")
        before = await bot.flow(user.id)
        for kind, content in NOT_TEXT.items():
            after = _after(user)
            fake.enqueue_update(_message(user, fake, **content))
            reply = await fake.wait_for_message(user.id, texts.NOT_TEXT, after=after)
            assert "Step 2 of 14" in reply.plain_text and reply.buttons(), kind
        assert await bot.flow(user.id) == before
        await assert_stored_data_valid(bot.engine)


async def test_groups_and_channels_are_told_once_and_nothing_is_stored(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(4008)
    async with RunningBot(fake, sqlite_url) as bot:
        for chat_type, chat_id in (("group", -4100), ("supergroup", -1004100)):
            for text in ("/start", "hello bot", "/start@medlegal_test_bot"):
                user.send(text, chat_type=chat_type, chat_id=chat_id)
            fake.enqueue_update(
                {
                    "message": {
                        "message_id": fake._next_message_id(chat_id),
                        "date": 0,
                        "chat": {"id": chat_id, "type": chat_type, "title": "Docs"},
                        "from": user.as_json(),
                        "sticker": STICKER,
                    }
                }
            )
        channel = {"id": -1009100, "type": "channel", "title": "News"}
        for text in ("/start", "announcement"):
            post = {"message_id": fake._next_message_id(-1009100), "date": 0, "chat": channel, "text": text}
            fake.enqueue_update({"channel_post": post})
        await fake.wait_until_idle()
        for chat_id in (-4100, -1004100, -1009100):
            told = fake.messages(chat_id)
            assert [m.plain_text for m in told] == [texts.PRIVATE_ONLY], fake.dump(chat_id)
        # a button pressed in a group gets a short notice, and nothing else
        group_message = fake.messages(-4100)[0]
        fake.enqueue_update(
            make_callback_update(
                user.as_json(), "a:0:profession:md", callback_id="group-tap", message=fake.message_json(group_message)
            )
        )
        await fake.wait_until_idle()
        assert fake.answered_callbacks[-1].get("text") == texts.PRIVATE_ONLY
        assert not fake.messages(user.id)
        assert await bot.flow(user.id) is None
        assert await assert_stored_data_valid(bot.engine) == {}


async def test_a_user_without_username_or_language_goes_through(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(4009, first_name="Z", username=None, language_code=None)
    assert "username" not in user.as_json() and "language_code" not in user.as_json()
    async with RunningBot(fake, sqlite_url) as bot:
        await _start(fake, user)
        await _tap(fake, user, "MD", "Step 2 of 14")
        after = _after(user)
        user.send("Yes, active")
        await fake.wait_for_message(user.id, "Step 3 of 14", after=after)
        stored = await bot.flow(user.id)
        assert stored is not None and stored.answers == {"profession": "md", "ca_license": "active"}
        await assert_stored_data_valid(bot.engine)
