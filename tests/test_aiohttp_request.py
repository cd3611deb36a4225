"""The bot's aiohttp networking backend, through PTB's Bot against the fake Bot API: answers, Telegram's errors,
uploads, timeouts and an unreachable server come out as PTB's own results and exceptions."""

from __future__ import annotations

import socket

import pytest
from telegram import Bot, InputFile
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from bot.aiohttp_request import AiohttpRequest
from tests.fake_bot_api import FakeBotApi

CHAT = 4242


async def test_messages_documents_and_telegram_errors_come_back_as_ptb_objects() -> None:
    async with FakeBotApi() as fake:
        bot = Bot(fake.token, base_url=fake.base_url, request=AiohttpRequest(read_timeout=2))
        async with bot:
            message = await bot.send_message(CHAT, "<b>Hello</b> &amp; welcome", parse_mode="HTML")
            assert message.chat_id == CHAT and message.text == "Hello & welcome"
            document = await bot.send_document(CHAT, InputFile(b"BEGIN:VCALENDAR\r\n", filename="exam.ics"))
            assert document.document is not None and document.document.file_name == "exam.ics"
            fake.fail("403", chat_id=CHAT)
            with pytest.raises(Forbidden):
                await bot.send_message(CHAT, "blocked")
            fake.fail("400", chat_id=CHAT)
            with pytest.raises(BadRequest):
                await bot.send_message(CHAT, "gone")
            fake.fail("429", chat_id=CHAT, retry_after=3)
            with pytest.raises(RetryAfter):
                await bot.send_message(CHAT, "slow down")
            fake.fail("timeout", chat_id=CHAT, delay=2.0)
            with pytest.raises(TimedOut):
                await bot.send_message(CHAT, "late", read_timeout=0.2)
        assert len(fake.messages(CHAT)) == 2  # the refused and timed-out messages were not delivered


async def test_an_unreachable_server_is_a_network_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = AiohttpRequest(connect_timeout=1)
    bot = Bot("123:abc", base_url=f"http://127.0.0.1:{port}/bot", request=request)
    await request.initialize()
    try:
        with pytest.raises(NetworkError) as caught:
            await bot.send_message(CHAT, "hello")
        assert "aiohttp." in str(caught.value)
    finally:
        await request.shutdown()
    with pytest.raises(RuntimeError, match="not initialized"):
        await request.do_request("http://127.0.0.1/", "POST")
