"""Tests for the fake Bot API server, driven through a real ``telegram.Bot`` over real HTTP.

They pin down that PTB's own request/exception machinery sees the fake exactly like Telegram, so the
end-to-end tests and benchmarks built on it are meaningful.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from telegram import Bot as PtbBot
from telegram import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from telegram import Update as PtbUpdate
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
)

from tests.fake_bot_api import FakeBotApi, make_message_update

CHAT = 4242


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as server:
        yield server


@pytest.fixture
async def bot(fake: FakeBotApi) -> AsyncIterator[PtbBot]:
    async with PtbBot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url) as client:
        yield client


def keyboard(*labels: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=f"cb:{label.lower()}")] for label in labels]
    )


# ---- basics ---------------------------------------------------------------------------------------


async def test_get_me(fake: FakeBotApi, bot: PtbBot) -> None:
    me = await bot.get_me()
    assert me.id == 123456
    assert me.is_bot
    assert me.username == "medlegal_test_bot"
    assert me.first_name == "MedLegal Test"
    assert fake.calls_to("getMe")[0].status == 200
    assert fake.base_url == f"http://127.0.0.1:{fake.port}/bot"


async def test_wrong_token_and_unknown_method(fake: FakeBotApi, bot: PtbBot) -> None:
    other = PtbBot("999:wrong", base_url=fake.base_url)
    with pytest.raises(InvalidToken):
        await other.initialize()
    await other.shutdown()
    assert fake.calls[-1].status == 401
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendTelepathy", api_kwargs={"chat_id": CHAT})
    assert fake.calls[-1].method == "sendTelepathy"
    assert fake.calls[-1].status == 404


async def test_send_message_with_keyboard_and_edits(fake: FakeBotApi, bot: PtbBot) -> None:
    sent = await bot.send_message(CHAT, "Pick one", reply_markup=keyboard("Yes", "No"))
    assert isinstance(sent, Message)
    assert sent.chat_id == CHAT
    assert sent.from_user is not None and sent.from_user.is_bot
    assert sent.reply_markup is not None
    stored = fake.messages(CHAT)[-1]
    assert stored.message_id == sent.message_id
    assert stored.buttons() == [("Yes", "cb:yes"), ("No", "cb:no")]
    call = fake.calls_to("sendMessage", CHAT)[0]
    assert call.params["chat_id"] == CHAT
    assert call.params["text"] == "Pick one"
    assert isinstance(call.params["reply_markup"], dict)

    edited = await bot.edit_message_text(
        "Picked", chat_id=CHAT, message_id=sent.message_id, reply_markup=keyboard("Undo")
    )
    assert isinstance(edited, Message) and edited.text == "Picked"
    assert stored.text == "Picked" and stored.edited == 1
    assert stored.buttons() == [("Undo", "cb:undo")]

    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_reply_markup(CHAT, sent.message_id, reply_markup=keyboard("Undo"))
    await bot.edit_message_reply_markup(CHAT, sent.message_id, reply_markup=None)
    assert stored.reply_markup is None and stored.edited == 2
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=CHAT, message_id=999)

    assert await bot.delete_message(CHAT, sent.message_id)
    assert fake.messages(CHAT) == []


async def test_wait_for_message_and_html_entities(fake: FakeBotApi, bot: PtbBot) -> None:
    waiter = asyncio.create_task(fake.wait_for_message(CHAT, "Welcome to", timeout=2))
    await asyncio.sleep(0.01)
    sent = await bot.send_message(CHAT, "<b>Welcome</b> to <i>MedLegal</i> &amp; co", parse_mode=ParseMode.HTML)
    msg = await waiter
    assert msg.message_id == sent.message_id
    assert msg.plain_text == "Welcome to MedLegal & co"
    assert sent.text == "Welcome to MedLegal & co"
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [("bold", 0, 7), ("italic", 11, 8)]
    with pytest.raises(AssertionError, match=r"(?i)no bot message"):
        await fake.wait_for_message(CHAT, "nope", after=msg.message_id, timeout=0.05)


async def test_send_document_and_commands(fake: FakeBotApi, bot: PtbBot) -> None:
    sent = await bot.send_document(CHAT, document=b"col1,col2\n", filename="report.csv", caption="Your report")
    assert sent.document is not None and sent.document.file_name == "report.csv"
    msg = await fake.wait_for_message(CHAT, "Your report", timeout=1)
    assert msg.document is not None
    assert msg.document["filename"] == "report.csv"
    assert msg.document["content"] == b"col1,col2\n"
    assert msg.document["caption"] == "Your report"

    assert await bot.send_chat_action(CHAT, "typing")
    await bot.set_my_commands([BotCommand("start", "Start over"), BotCommand("help", "Help")])
    assert fake.my_commands == [
        {"command": "start", "description": "Start over"},
        {"command": "help", "description": "Help"},
    ]
    assert [c.command for c in await bot.get_my_commands()] == ["start", "help"]
    await bot.delete_my_commands()
    assert fake.my_commands == []


# ---- simulated users and polling -----------------------------------------------------------------


async def test_get_updates_long_poll_text_and_callback(fake: FakeBotApi, bot: PtbBot) -> None:
    dana = fake.user(CHAT, username="dana")
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await fake.wait_for_call("getUpdates", timeout=1)
    started = time.monotonic()
    dana.send("/start now")
    updates = await asyncio.wait_for(poll, 2)
    assert time.monotonic() - started < 1
    assert len(updates) == 1
    message = updates[0].message
    assert message is not None and message.text == "/start now"
    assert message.chat.type == "private" and message.from_user is not None
    assert message.from_user.username == "dana"
    assert message.entities[0].type == "bot_command" and message.entities[0].length == 6

    await bot.send_message(CHAT, "Continue?", reply_markup=keyboard("Yes please", "No"))
    dana.press("yes")
    updates = await bot.get_updates(offset=updates[-1].update_id + 1, timeout=1)
    assert len(updates) == 1
    query = updates[0].callback_query
    assert isinstance(query, CallbackQuery)
    assert query.data == "cb:yes please"
    assert isinstance(query.message, Message)
    assert query.message.text == "Continue?"
    assert query.message.reply_markup is not None
    assert await query.answer("Thanks")
    assert fake.answered_callbacks[-1]["text"] == "Thanks"
    assert fake.calls_to("answerCallbackQuery", CHAT)
    with pytest.raises(BadRequest, match=r"(?i)query ID is invalid"):
        await bot.answer_callback_query(query.id)  # answering twice

    # confirmed updates are dropped; an empty long poll returns [] at its timeout
    assert await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0) == ()
    with pytest.raises(AssertionError, match=r"(?i)available buttons"):
        dana.press("Maybe")


async def test_press_data_and_raw_updates(fake: FakeBotApi, bot: PtbBot) -> None:
    dana = fake.user(CHAT)
    await bot.send_message(CHAT, "Old menu", reply_markup=keyboard("A"))
    dana.press_data("stale:xyz")
    group_id = dana.send("hi all", chat_type="group")
    raw = make_message_update(dana.as_json(), "weird", message_id=77, chat_type="supergroup", author_signature="x")
    raw_id = fake.enqueue_update(raw)
    assert raw_id > group_id
    updates = await bot.get_updates(timeout=1)
    assert [u.update_id for u in updates][-1] == raw_id
    assert updates[0].callback_query is not None and updates[0].callback_query.data == "stale:xyz"
    assert updates[1].message is not None and updates[1].message.chat.type == "group"
    assert updates[2].message is not None and updates[2].message.chat.type == "supergroup"


async def test_application_polling_end_to_end(fake: FakeBotApi) -> None:
    async def start(update: PtbUpdate, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("Hello! Continue?", reply_markup=keyboard("Continue"))

    async def pressed(update: PtbUpdate, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer()
        await query.edit_message_text(f"You chose {query.data}")

    app: Application[Any, Any, Any, Any, Any, Any] = (
        ApplicationBuilder().token(fake.token).base_url(fake.base_url).base_file_url(fake.base_file_url).build()
    )
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(pressed))
    dana = fake.user(CHAT)
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=1)
        try:
            dana.send("/start")
            menu = await fake.wait_for_message(CHAT, "Continue?", timeout=3)
            dana.press("continue")
            await fake.wait_for_message(CHAT, "You chose cb:continue", timeout=3)
            await fake.wait_until_idle(quiet=0.1, timeout=3)
            assert menu.edited == 1 and menu.buttons() == []
            assert len(fake.answered_callbacks) == 1
        finally:
            await app.updater.stop()
            await app.stop()


# ---- faults ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "exc", "status"),
    [
        ("429", RetryAfter, 429),
        ("403", Forbidden, 403),
        ("400", BadRequest, 400),
        ("500", NetworkError, 500),
        ("502", NetworkError, 502),
    ],
)
async def test_fault_kinds(fake: FakeBotApi, bot: PtbBot, kind: Any, exc: type[Exception], status: int) -> None:
    fake.fail(kind, chat_id=CHAT, retry_after=7)
    await bot.send_message(CHAT + 1, "other chat is unaffected")
    with pytest.raises(exc) as info:
        await bot.send_message(CHAT, "hi")
    if kind == "429":
        assert isinstance(info.value, RetryAfter)
        assert info.value.retry_after == 7
    if kind == "403":
        assert "blocked by the user" in str(info.value)
    assert fake.calls_to("sendMessage", CHAT)[-1].status == status
    await bot.send_message(CHAT, "fault used up")  # times=1
    assert fake.messages(CHAT)[-1].text == "fault used up"


async def test_fault_method_filter_and_times(fake: FakeBotApi, bot: PtbBot) -> None:
    fake.fail("403", method="sendDocument", times=2)
    await bot.send_message(CHAT, "text is fine")
    for _ in range(2):
        with pytest.raises(Forbidden):
            await bot.send_document(CHAT, document=b"x", filename="a.txt")
    await bot.send_document(CHAT, document=b"x", filename="a.txt")
    assert [c.status for c in fake.calls_to("sendDocument")] == [403, 403, 200]


async def test_timeout_fault_and_fast_stop() -> None:
    server = FakeBotApi()
    await server.start()
    async with PtbBot(server.token, base_url=server.base_url) as client:
        server.fail("timeout", chat_id=CHAT, delay=30)
        started = time.monotonic()
        with pytest.raises(TimedOut):
            await client.send_message(CHAT, "slow", read_timeout=0.3)
        assert time.monotonic() - started < 2
        assert server.messages(CHAT) == []
        poll = asyncio.create_task(client.get_updates(timeout=30))
        await server.wait_for_call("getUpdates", timeout=1)
        started = time.monotonic()
        await server.stop()
        assert time.monotonic() - started < 1.5
        assert list(await asyncio.wait_for(poll, 2)) == []
    assert server.calls_to("sendMessage")[0].status == 504


async def test_slow_server_still_answers(fake: FakeBotApi, bot: PtbBot) -> None:
    fake.fail("timeout", method="sendMessage", delay=0.1)
    sent = await bot.send_message(CHAT, "eventually", read_timeout=3)
    assert sent.text == "eventually"
    assert fake.calls_to("sendMessage")[0].status == 200


# ---- rate limits and validation -------------------------------------------------------------------


async def test_rate_limit_per_chat_and_global(fake: FakeBotApi, bot: PtbBot) -> None:
    await bot.send_message(CHAT, "no limit by default")
    await bot.send_message(CHAT, "still fine")
    fake.set_rate_limit(per_second=3, per_chat_per_second=1)
    await bot.send_message(CHAT, "first")
    await bot.send_chat_action(CHAT, "typing")  # chat actions are not counted
    with pytest.raises(RetryAfter) as info:
        await bot.send_message(CHAT, "second in the same second")
    assert info.value.retry_after == 1
    assert fake.rate_limit_violations == 1
    assert fake.calls_to("sendMessage", CHAT)[-1].status == 429
    await bot.send_message(CHAT + 1, "other chat")
    await bot.send_message(CHAT + 2, "third overall")
    with pytest.raises(RetryAfter):
        await bot.send_message(CHAT + 3, "fourth overall")
    assert fake.rate_limit_violations == 2


async def test_callback_data_too_long(fake: FakeBotApi, bot: PtbBot) -> None:
    ok = InlineKeyboardMarkup([[InlineKeyboardButton("ok", callback_data="a" * 64)]])
    await bot.send_message(CHAT, "fits", reply_markup=ok)
    for data in ("a" * 65, "é" * 33):
        markup = InlineKeyboardMarkup([[InlineKeyboardButton("big", callback_data=data)]])
        with pytest.raises(BadRequest, match=r"(?i)BUTTON_DATA_INVALID"):
            await bot.send_message(CHAT, "too big", reply_markup=markup)
    assert [c.status for c in fake.calls_to("sendMessage")] == [200, 400, 400]


async def test_text_length_and_empty(fake: FakeBotApi, bot: PtbBot) -> None:
    await bot.send_message(CHAT, "x" * 4096)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(CHAT, "x" * 4097)
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(CHAT, "   ")
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.do_api_request("sendMessage", api_kwargs={"chat_id": CHAT})
    with pytest.raises(BadRequest, match=r"(?i)chat_id is empty"):
        await bot.do_api_request("sendMessage", api_kwargs={"text": "hi"})


@pytest.mark.parametrize(
    "text",
    ["<div>block</div>", "<b>unclosed", "<b><i>crossed</b></i>", "a < b", "<br/>", "</b>", "<span>x</span>"],
)
async def test_malformed_html_rejected(bot: PtbBot, text: str) -> None:
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message(CHAT, text, parse_mode=ParseMode.HTML)


async def test_html_only_checked_with_parse_mode(fake: FakeBotApi, bot: PtbBot) -> None:
    await bot.send_message(CHAT, "<div> is fine as plain text")
    sent = await bot.send_message(
        CHAT,
        '<a href="https://example.com">link</a> <tg-spoiler>s</tg-spoiler> '
        '<pre><code class="language-py">x</code></pre>',
        parse_mode="HTML",
    )
    assert [e.type for e in sent.entities] == ["text_link", "spoiler", "pre"]
    assert sent.entities[2].language == "py"


# ---- webhook --------------------------------------------------------------------------------------


async def test_webhook_delivery(fake: FakeBotApi, bot: PtbBot) -> None:
    received: list[tuple[dict[str, Any], str | None]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.json(), request.headers.get("X-Telegram-Bot-Api-Secret-Token")))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s3cret")
        assert fake.webhook is not None and fake.webhook["secret_token"] == "s3cret"
        info = await bot.get_webhook_info()
        assert info.url.endswith("/hook")
        with pytest.raises(Conflict):
            await bot.get_updates()
        dana = fake.user(CHAT)
        first = dana.send("one")
        dana.send("two")
        await fake.wait_until_idle(quiet=0.05, timeout=3)
        assert [(u["update_id"], u["message"]["text"]) for u, _ in received] == [(first, "one"), (first + 1, "two")]
        assert {secret for _, secret in received} == {"s3cret"}
        await bot.delete_webhook()
        assert fake.webhook is None
        dana.send("three")
        updates = await bot.get_updates(timeout=1)
        assert updates[0].message is not None and updates[0].message.text == "three"
    finally:
        await runner.cleanup()
