"""Fuzzing the update handling with hypothesis: random commands, texts, button data (real, old and forged) from a
few physicians in random order. Many examples straight through `Dialogue` (fast), a few through the real PTB
Application and the fake Bot API, with random chat types too. After each example every reply is one Telegram
accepts and every stored flow restores to a valid state."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bot import texts
from bot.dialogue import Dialogue, Reply, parse_press
from bot.settings import Settings
from bot.wiring import build_dialogue
from db import migrate
from db.engine import make_engine, make_session_factory
from tests.fake_bot_api import MAX_CALLBACK_ANSWER_LENGTH, FakeBotApi, _check_text, make_callback_update
from tests.harness import RunningBot
from tests.stored_state import ENGINE, assert_stored_data_valid

COMMANDS = ["start", "restart", "cancel", "help", "privacy", "delete_me", "roadmap", "remind", "stop_reminders"]
JUNK_COMMANDS = ["frobnicate", "sittings", "broadcast", "START", ""]
LABELS = sorted({o.label for q in ENGINE.defn.questions for o in q.options} | {"none", "Yes", "md, do", "1"})
VERBS = ["a", "t", "d", "m", "b", "e", "s", "r", "c", "n", "g", "k", "u", "v", "R", "x", "sit", "bc", "zz"]
PLUGIN_VERBS = {"sit", "bc"}

texts_typed = st.one_of(st.sampled_from(LABELS), st.text(max_size=300))
forged_data = st.one_of(
    st.text(min_size=1, max_size=64).filter(lambda s: len(s.encode()) <= 64),
    st.builds(
        lambda verb, parts: ":".join([verb, *parts]),
        st.sampled_from(VERBS),
        st.lists(st.text(alphabet="0123456789abcdefz_+-:", max_size=12), max_size=4),
    ),
)
event = st.one_of(
    st.tuples(st.just("command"), st.sampled_from(COMMANDS + JUNK_COMMANDS), st.text(max_size=20)),
    st.tuples(st.just("text"), texts_typed, st.none()),
    st.tuples(st.just("media"), st.none(), st.none()),
    st.tuples(st.just("tap"), st.integers(0, 10_000), st.booleans()),  # a button from the last or an older reply
    st.tuples(st.just("forged"), forged_data, st.none()),
)


def check_reply(reply: Reply) -> None:
    """Everything the dialogue answered can be sent to Telegram as it is."""
    for screen in reply.screens():
        _check_text(screen.text, "HTML", None)  # valid HTML, not empty, within 4,096 characters
        for button in screen.buttons():
            assert 1 <= len(button.data.encode()) <= 64, button
            verb = button.data.split(":", 1)[0]
            assert parse_press(button.data) is not None or verb in PLUGIN_VERBS, button
    if reply.notice is not None:
        assert reply.notice.strip() and len(reply.notice) <= MAX_CALLBACK_ANSWER_LENGTH


async def play(dialogue: Dialogue, user: int, events: list[tuple[str, Any, Any]]) -> None:
    buttons: list[list[str]] = []
    for kind, value, extra in events:
        if kind == "command":
            reply = await dialogue.command(user, value, extra)
        elif kind == "text":
            reply = await dialogue.text(user, value)
        elif kind == "media":
            reply = await dialogue.text(user, None)
        elif kind == "tap":
            if not buttons:
                continue
            seen = buttons[-1] if extra else [d for datas in buttons for d in datas]
            if not seen:
                continue
            reply = await dialogue.press(user, seen[value % len(seen)])
        else:
            reply = await dialogue.press(user, value)
        check_reply(reply)
        buttons.append([b.data for s in reply.screens() for b in s.buttons()])


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop:
        yield loop


def test_random_updates_through_the_dialogue_keep_replies_sendable_and_data_valid(
    runner: asyncio.Runner, tmp_path: Path
) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'fuzz.db'}")
    runner.run(migrate.upgrade(engine))
    dialogue = build_dialogue(Settings(_env_file=None), make_session_factory(engine))
    users = itertools.count(10_000)

    @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.integers(0, 2), event), min_size=1, max_size=15))
    def run(steps: list[tuple[int, tuple[str, Any, Any]]]) -> None:
        base = next(users) * 10  # fresh physicians each example; earlier examples' rows stay and are checked too
        by_user: dict[int, list[tuple[str, Any, Any]]] = {}
        for who, step in steps:
            by_user.setdefault(base + who, []).append(step)

        async def interleaved() -> None:  # the physicians' events in parallel, as several chats would arrive
            await asyncio.gather(*(play(dialogue, user, events) for user, events in by_user.items()))
            await assert_stored_data_valid(engine)

        runner.run(interleaved())

    try:
        run()
    finally:
        runner.run(engine.dispose())


CALLBACK_IDS = itertools.count(1)
CHAT_TYPES = ["private", "private", "private", "group", "supergroup", "channel"]
update_event = st.tuples(
    st.sampled_from(CHAT_TYPES),
    st.sampled_from(["text", "tap", "forged", "sticker", "edited"]),
    st.one_of(texts_typed, forged_data),
)


def _update(fake: FakeBotApi, user: Any, chat_type: str, kind: str, value: str) -> None:
    """Enqueue one update of `kind` from `user` in a chat of `chat_type`."""
    if chat_type == "private":
        if kind == "text":
            user.send(value or "?")
        elif kind == "tap":
            buttons = [d for m in user.messages for _, d in m.buttons() if d]
            user.press_data(buttons[len(value) % len(buttons)] if buttons else "zz")
        elif kind == "forged":
            user.press_data(value or "zz")
        else:
            chat = {"id": user.id, "type": "private", "first_name": user.first_name}
            content: dict[str, Any] = {"sticker": {"file_id": "s", "file_unique_id": "s", "type": "regular"}}
            content["sticker"].update(width=1, height=1, is_animated=False, is_video=False)
            message = {"message_id": fake._next_message_id(user.id), "date": 0, "chat": chat, "from": user.as_json()}
            if kind == "edited":
                fake.enqueue_update({"edited_message": {**message, "text": value or "?", "edit_date": 1}})
            else:
                fake.enqueue_update({"message": {**message, **content}})
        return
    chat_id = -(10**12) - user.id if chat_type == "channel" else -user.id
    chat = {"id": chat_id, "type": chat_type, "title": "Fuzz"}
    message = {"message_id": fake._next_message_id(chat_id), "date": 0, "chat": chat, "text": value or "?"}
    if chat_type == "channel":
        fake.enqueue_update({"channel_post": message})
    elif kind in ("tap", "forged"):
        fake.enqueue_update(
            make_callback_update(user.as_json(), value or "zz", callback_id=f"cb{next(CALLBACK_IDS)}", message=message)
        )
    else:
        fake.enqueue_update({"message": {**message, "from": user.as_json()}})


def test_random_updates_through_the_bot_api_are_all_answered_validly(tmp_path: Path) -> None:
    users = itertools.count(20_000)
    runs = itertools.count()

    # Few examples, and no shrinking: each one starts a bot, so a failure is reported as found, in bounded time.
    @settings(
        max_examples=6,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.lists(update_event, min_size=1, max_size=12))
    def run(events: list[tuple[str, str, str]]) -> None:
        async def scenario() -> None:
            # A database per example: each example's fake numbers its updates from the start again, which the
            # duplicate-update guard would take for redeliveries of the previous example's updates.
            url = f"sqlite+aiosqlite:///{tmp_path / f'fuzz-e2e-{next(runs)}.db'}"
            async with FakeBotApi() as fake:
                private, elsewhere = fake.user(next(users)), fake.user(next(users))
                async with RunningBot(fake, url) as bot:
                    private.send("/start")
                    await fake.wait_for_message(private.id, "Step 1 of 14")
                    for chat_type, kind, value in events:
                        _update(fake, private if chat_type == "private" else elsewhere, chat_type, kind, value)
                    await fake.wait_until_idle(timeout=20)
                    refused = [c for c in fake.calls if c.status >= 400]
                    assert not refused, fake.dump()
                    assert not any(texts.ERROR in m.plain_text for m in private.messages)
                    for chat_id in {-elsewhere.id, -(10**12) - elsewhere.id}:
                        assert [m.plain_text for m in fake.messages(chat_id)] in ([], [texts.PRIVATE_ONLY])
                    stored = await assert_stored_data_valid(bot.engine)
                    assert elsewhere.id not in stored  # nothing is stored for groups and channels

        asyncio.run(scenario())

    run()
