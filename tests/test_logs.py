"""Structured logs: one JSON object a line, tagged with the update id and an HMAC of the user id, never texts."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError

from bot import logs
from bot.dialogue import Dialogue
from tests.fake_bot_api import FakeBotApi, FakeUser
from tests.harness import RunningBot

USER_ID = 734519
TYPED = "Zebra-typed-words-8841"
KEY = "test-log-key"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger writing JSON into a buffer for the test, then put back as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure("json", level=logging.DEBUG, stream=stream)
    logging.getLogger("aiosqlite").setLevel(logging.INFO)  # its debug lines name every call, not data
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("aiosqlite").setLevel(logging.NOTSET)


def _after(user: FakeUser) -> int:
    return user.last.message_id if user.messages else 0


async def _flow_with_a_failure(fake: FakeBotApi, user: FakeUser, monkeypatch: pytest.MonkeyPatch) -> None:
    """Typed text, taps, and one update that fails with the answer in the exception's message."""
    user.send("/start")
    await fake.wait_for_message(user.id, "Step 1 of 14")
    after = _after(user)
    user.send(TYPED)
    await fake.wait_for_message(user.id, "Please answer", after=after)
    after = _after(user)
    user.press("MD")
    await fake.wait_for_message(user.id, "Step 2 of 14", after=after)

    def broken(self: Dialogue, state: Any, press: Any) -> Any:  # the answer's move, on the locked and unlocked way
        raise DBAPIError("UPDATE answers SET value = :v", {"v": f"{TYPED}-{user.id}"}, Exception(f"{user.id} {TYPED}"))

    monkeypatch.setattr(Dialogue, "_move", broken)
    after = _after(user)
    user.press("Yes, active")
    await fake.wait_for_message(user.id, "something went wrong", after=after)
    monkeypatch.undo()
    await fake.wait_until_idle()


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    assert lines
    return [json.loads(line) for line in lines]  # every line is one JSON object


async def test_json_logs_carry_the_update_and_a_keyed_hash_of_the_user_and_no_text(
    fake: FakeBotApi, sqlite_url: str, captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = fake.user(USER_ID, username="dr_logged")
    async with RunningBot(fake, sqlite_url, log_hash_key=KEY):
        await _flow_with_a_failure(fake, user, monkeypatch)
    raw = captured.getvalue()
    records = _records(captured)
    assert str(USER_ID) not in raw and TYPED not in raw and "dr_logged" not in raw
    expected = logs.user_ref(USER_ID, KEY)
    assert expected is not None and len(expected) == 16
    failed = [r for r in records if r["message"].startswith("update failed")]
    assert len(failed) == 1
    assert failed[0]["user"] == expected and isinstance(failed[0]["update_id"], int)
    assert failed[0]["error_type"] == "DBAPIError" and "bot/dialogue.py" in failed[0]["exception"]
    assert {r["level"] for r in records} >= {"ERROR"}
    assert all(r.get("user") in (None, expected) for r in records)


async def test_without_a_key_no_user_id_is_logged_at_all(
    fake: FakeBotApi, sqlite_url: str, captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = fake.user(USER_ID)
    async with RunningBot(fake, sqlite_url):
        await _flow_with_a_failure(fake, user, monkeypatch)
    raw = captured.getvalue()
    records = _records(captured)
    assert str(USER_ID) not in raw and TYPED not in raw
    assert not any("user" in r for r in records)
    assert any(isinstance(r.get("update_id"), int) for r in records)


def test_the_hash_depends_on_the_key_and_the_user() -> None:
    assert logs.user_ref(1, None) is None and logs.user_ref(1, "") is None
    assert logs.user_ref(1, "a") != logs.user_ref(1, "b")
    assert logs.user_ref(1, "a") != logs.user_ref(2, "a")
    assert logs.user_ref(1, "a") == logs.user_ref(1, "a")


def test_text_format_leaves_driver_messages_out_too() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.UpdateContext())
    handler.setFormatter(logs.TextFormatter())
    logger = logging.getLogger("medlegal.test_logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logs.set_update(77, 42, KEY)
        secret = "-".join(["secret", "answer"])  # not spelled out: the traceback shows this line's source
        try:
            raise DBAPIError("INSERT", {"answer": secret}, Exception(secret))
        except DBAPIError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        logs.set_update(None, None, None)
    out = stream.getvalue()
    assert "secret-answer" not in out and "DBAPIError" in out and "update_id=77" in out
    assert f"user={logs.user_ref(42, KEY)}" in out
