"""A fake Telegram Bot API server for end-to-end tests and benchmarks.

The real python-telegram-bot ``Application``/``Bot`` talks to this server through its own HTTP stack
(``ApplicationBuilder().base_url(fake.base_url).base_file_url(fake.base_file_url)``), so tests cover
request encoding, error mapping and retries exactly as in production, without touching Telegram.

The server validates requests roughly like Telegram does (text length, callback_data size, HTML
markup), records every request, keeps the chat history current through edits, simulates users
(``fake.user(42).send("/start")``, ``.press("Yes")``), and can inject faults (429/403/400/5xx/timeouts)
and enforce flood limits.
"""

# The agreed test API takes `timeout=` seconds on async waiters, which ASYNC109 would flag.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import time
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Literal, TypeVar

import aiohttp
from aiohttp import web

__all__ = [
    "BotMessage",
    "Call",
    "FakeBotApi",
    "FakeUser",
    "FaultKind",
    "make_callback_update",
    "make_message_update",
]

FaultKind = Literal["429", "403", "400", "500", "502", "timeout"]
_T = TypeVar("_T")

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200

_ALLOWED_HTML_TAGS = frozenset(
    {
        "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "span",
        "tg-spoiler", "blockquote", "tg-emoji",
    }
)  # fmt: skip
_HTML_ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "code": "code",
    "pre": "pre",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "blockquote": "blockquote",
    "a": "text_link",
    "tg-emoji": "custom_emoji",
}
# Form fields (and query parameters) are strings on the wire; PTB JSON-encodes every non-string value.
# These fields are strings in the Bot API and must not be JSON-decoded ("123" stays "123").
_STRING_FIELDS = frozenset(
    {
        "text", "caption", "parse_mode", "callback_query_id", "url", "secret_token", "action",
        "language_code", "inline_message_id", "business_connection_id", "message_effect_id",
        "ip_address", "title", "description", "short_description", "name", "emoji", "query_id",
        "custom_title", "data", "certificate", "file_id",
    }
)  # fmt: skip
# Fields that are JSON objects/arrays but may arrive JSON-encoded as strings even inside a JSON body.
_JSON_OBJECT_FIELDS = frozenset(
    {
        "reply_markup", "entities", "caption_entities", "commands", "allowed_updates",
        "link_preview_options", "reply_parameters", "scope", "media",
    }
)  # fmt: skip
_INLINE_BUTTON_KINDS = frozenset(
    {
        "callback_data", "url", "switch_inline_query", "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat", "callback_game", "pay", "login_url", "web_app", "copy_text",
    }
)  # fmt: skip
_UPDATE_TYPES_DEFAULT_OFF = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

_FAULT_RESPONSES: dict[str, tuple[int, str]] = {
    "403": (403, "Forbidden: bot was blocked by the user"),
    "400": (400, "Bad Request: chat not found"),
    "500": (500, "Internal Server Error"),
    "502": (502, "Internal Server Error"),
}


def _utf16_len(text: str) -> int:
    """Telegram measures text (limits, entity offsets) in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _now() -> int:
    return int(time.time())


# --------------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------------


@dataclass
class Call:
    """One recorded Bot API request, so tests can assert on what the bot sent and when."""

    method: str
    params: dict[str, Any]
    at: float
    chat_id: int | None
    status: int
    response: dict[str, Any] | None = None  # the JSON answered (None while still pending)


@dataclass
class BotMessage:
    """A message the bot sent, kept current through edits so tests see what the user sees."""

    message_id: int
    chat_id: int
    text: str  # as the bot sent it (raw, with HTML tags if parse_mode=HTML); the caption for documents
    reply_markup: dict[str, Any] | None
    parse_mode: str | None
    edited: int = 0
    document: dict[str, Any] | None = None
    plain_text: str = ""  # text as Telegram renders it (tags stripped, entities decoded)
    entities: list[dict[str, Any]] = field(default_factory=list)
    date: int = 0
    edit_date: int | None = None
    deleted: bool = False

    def buttons(self) -> list[tuple[str, str]]:
        """(text, callback_data) of every inline button, row by row; "" for non-callback buttons."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [
            (str(b.get("text", "")), str(b.get("callback_data", "")))
            for row in rows
            for b in row
            if isinstance(b, dict)
        ]

    def matches(self, contains: str | None) -> bool:
        """Whether `contains` occurs in the raw text, the rendered text or the document's file name."""
        if contains is None:
            return True
        filename = str((self.document or {}).get("filename") or "")
        return contains in self.text or contains in self.plain_text or contains in filename


class _ApiError(Exception):
    """Raised inside method handlers to answer a Telegram-style error."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


@dataclass
class _Fault:
    kind: FaultKind
    chat_id: int | None
    method: str | None
    remaining: int
    retry_after: int
    delay: float

    def matches(self, method: str, chat_id: int | None) -> bool:
        # A fault without a method only hits chat-targeted calls: otherwise the polling loop's
        # getUpdates (or getMe) would swallow a fault meant for the bot's replies.
        if self.method is not None:
            if self.method.lower() != method.lower():
                return False
        elif chat_id is None:
            return False
        return self.chat_id is None or self.chat_id == chat_id


# --------------------------------------------------------------------------------------------------
# HTML parse_mode checking
# --------------------------------------------------------------------------------------------------


class _HtmlEntities(HTMLParser):
    """Parses Telegram-flavoured HTML into plain text + entities, recording the first error like Telegram."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=False)
        self.source = source
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self.parts: list[str] = []
        self.length = 0  # UTF-16 length of the plain text so far
        self.stack: list[tuple[str, dict[str, str | None], int]] = []
        self.entities: list[dict[str, Any]] = []
        self.error: str | None = None

    def _index(self) -> int:
        line, col = self.getpos()
        return self._line_starts[line - 1] + col

    def _byte_offset(self) -> int:
        return len(self.source[: self._index()].encode("utf-8"))

    def _fail(self, message: str) -> None:
        if self.error is None:
            self.error = message

    def _emit(self, text: str) -> None:
        self.parts.append(text)
        self.length += _utf16_len(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.error:
            return
        if tag not in _ALLOWED_HTML_TAGS:
            self._fail(f'Unsupported start tag "{tag}" at byte offset {self._byte_offset()}')
            return
        attr_map = dict(attrs)
        if tag == "span" and attr_map.get("class") != "tg-spoiler":
            self._fail(f'Tag "span" must have class "tg-spoiler" at byte offset {self._byte_offset()}')
            return
        self.stack.append((tag, attr_map, self.length))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._fail(f'Unsupported start tag "{tag}/" at byte offset {self._byte_offset()}')

    def handle_endtag(self, tag: str) -> None:
        if self.error:
            return
        if not self.stack:
            self._fail(f'Unexpected end tag "{tag}" at byte offset {self._byte_offset()}')
            return
        open_tag, attrs, start = self.stack[-1]
        if open_tag != tag:
            self._fail(
                f'Unmatched end tag at byte offset {self._byte_offset()}, expected "</{open_tag}>", found "</{tag}>"'
            )
            return
        self.stack.pop()
        length = self.length - start
        if length <= 0:
            return
        entity: dict[str, Any] = {"type": _HTML_ENTITY_TYPES[tag], "offset": start, "length": length}
        if tag == "a":
            entity["url"] = attrs.get("href") or ""
        elif tag == "tg-emoji":
            entity["custom_emoji_id"] = attrs.get("emoji-id") or ""
        elif tag == "blockquote" and "expandable" in attrs:
            entity["type"] = "expandable_blockquote"
        elif tag == "code" and self.stack and self.stack[-1][0] == "pre":
            css = attrs.get("class") or ""
            if css.startswith("language-"):  # <pre><code class="language-x"> is one pre entity
                pre_tag, pre_attrs, pre_start = self.stack[-1]
                self.stack[-1] = (pre_tag, {**pre_attrs, "language": css[len("language-") :]}, pre_start)
            return
        elif tag == "pre" and attrs.get("language"):
            entity["language"] = attrs["language"]
        self.entities.append(entity)

    def handle_data(self, data: str) -> None:
        if self.error:
            return
        if "<" in data:  # a literal "<" must be written as &lt;
            self._fail(f'Unsupported start tag "" at byte offset {self._byte_offset()}')
            return
        self._emit(data)

    def handle_entityref(self, name: str) -> None:
        index = self._index()
        raw = self.source[index : index + len(name) + 2]
        if raw.endswith(";"):
            self._emit(html.unescape(raw))
        else:  # "A&T": a bare ampersand stays literal
            self._emit("&" + name)

    def handle_charref(self, name: str) -> None:
        try:
            code = int(name[1:], 16) if name[:1] in "xX" else int(name)
            self._emit(chr(code))
        except (ValueError, OverflowError):
            self._fail(f"Invalid character reference at byte offset {self._byte_offset()}")

    def handle_comment(self, data: str) -> None:
        self._fail(f"Unsupported comment at byte offset {self._byte_offset()}")

    def handle_decl(self, decl: str) -> None:
        self._fail(f"Unsupported declaration at byte offset {self._byte_offset()}")

    def handle_pi(self, data: str) -> None:
        self._fail(f"Unsupported processing instruction at byte offset {self._byte_offset()}")

    def unknown_decl(self, data: str) -> None:
        self._fail(f"Unsupported declaration at byte offset {self._byte_offset()}")


def _render(text: str, parse_mode: str | None, entities: Any = None) -> tuple[str, list[dict[str, Any]]]:
    """Return (plain text, entities) as Telegram would store them, or raise 400 for bad HTML."""
    if parse_mode is None or parse_mode.lower() != "html":
        return text, list(entities) if isinstance(entities, list) else []
    parser = _HtmlEntities(text)
    parser.feed(text)
    parser.close()
    if parser.error is None and parser.stack:
        tag = parser.stack[-1][0]
        parser.error = f'Can\'t find end tag corresponding to start tag "{tag}"'
    if parser.error is not None:
        raise _ApiError(400, f"Bad Request: can't parse entities: {parser.error}")
    ordered = sorted(parser.entities, key=lambda e: (e["offset"], -e["length"]))
    return "".join(parser.parts), ordered


# --------------------------------------------------------------------------------------------------
# Update builders
# --------------------------------------------------------------------------------------------------


def _command_entities(text: str) -> list[dict[str, Any]]:
    if not text.startswith("/"):
        return []
    command = text.split(maxsplit=1)[0] if text.strip() else text
    return [{"type": "bot_command", "offset": 0, "length": _utf16_len(command)}]


def make_message_update(
    user: dict[str, Any],
    text: str,
    *,
    message_id: int,
    update_id: int | None = None,
    chat: dict[str, Any] | None = None,
    chat_type: str = "private",
    date: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A Telegram ``message`` update from `user` (a User dict); `extra` fields go into the message."""
    if chat is None:
        if chat_type == "private":
            chat = {"id": user["id"], "type": "private", "first_name": user.get("first_name", "")}
            for key in ("last_name", "username"):
                if user.get(key):
                    chat[key] = user[key]
        else:
            chat = {"id": -abs(int(user["id"])), "type": chat_type, "title": "Test chat"}
    message: dict[str, Any] = {
        "message_id": message_id,
        "date": _now() if date is None else date,
        "chat": chat,
        "from": user,
        "text": text,
    }
    entities = _command_entities(text)
    if entities:
        message["entities"] = entities
    message.update(extra)
    update: dict[str, Any] = {"message": message}
    if update_id is not None:
        update["update_id"] = update_id
    return update


def make_callback_update(
    user: dict[str, Any],
    data: str,
    *,
    callback_id: str,
    message: dict[str, Any] | None,
    update_id: int | None = None,
    chat_instance: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A Telegram ``callback_query`` update: `user` pressed a button carrying `data` under `message`."""
    query: dict[str, Any] = {
        "id": callback_id,
        "from": user,
        "chat_instance": chat_instance or str(abs(hash((user["id"], "chat"))) % 10**18),
        "data": data,
    }
    if message is not None:
        query["message"] = message
    query.update(extra)
    update: dict[str, Any] = {"callback_query": query}
    if update_id is not None:
        update["update_id"] = update_id
    return update


# --------------------------------------------------------------------------------------------------
# Simulated user
# --------------------------------------------------------------------------------------------------


class FakeUser:
    """A simulated Telegram user talking to the bot in a private chat (chat id = user id)."""

    def __init__(
        self,
        api: FakeBotApi,
        user_id: int,
        first_name: str,
        username: str | None,
        language_code: str | None,
        last_name: str | None,
    ) -> None:
        self.api = api
        self.id = user_id
        self.first_name = first_name
        self.username = username
        self.language_code = language_code
        self.last_name = last_name

    @property
    def chat_id(self) -> int:
        return self.id

    def as_json(self) -> dict[str, Any]:
        """The Telegram ``User`` object for this user."""
        data: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code:
            data["language_code"] = self.language_code
        return data

    def send(
        self,
        text: str,
        *,
        chat_type: str = "private",
        chat_id: int | None = None,
        extra: dict[str, Any] | None = None,
        update_id: int | None = None,
    ) -> int:
        """Enqueue a text message from this user; returns its update_id (`update_id` to choose it, e.g. an older
        one than the last queued, for out-of-order delivery).

        A non-private `chat_type` (e.g. "group") sends into a group chat (id `chat_id`, default -user id).
        """
        chat: dict[str, Any] | None = None
        if chat_type != "private" or chat_id is not None:
            cid = chat_id if chat_id is not None else -abs(self.id)
            chat = {"id": cid, "type": chat_type}
            if chat_type == "private":
                chat["first_name"] = self.first_name
            else:
                chat["title"] = "Test chat"
        target = chat["id"] if chat else self.id
        update = make_message_update(
            self.as_json(),
            text,
            message_id=self.api._next_message_id(target),
            chat=chat,
            chat_type=chat_type,
            update_id=update_id,
            **(extra or {}),
        )
        return self.api.enqueue_update(update)

    def press(self, label: str, *, message_id: int | None = None, update_id: int | None = None) -> int:
        """Press the inline button whose text contains `label` (case-insensitive) on the newest bot message
        that has one (or on message `message_id`); returns the callback update's update_id (`update_id` to
        choose it)."""
        wanted = label.casefold()
        candidates = [m for m in reversed(self.messages) if message_id is None or m.message_id == message_id]
        for msg in candidates:
            buttons = msg.buttons()
            exact = [b for b in buttons if b[0].casefold() == wanted]
            partial = [b for b in buttons if wanted in b[0].casefold()]
            for text, data in exact or partial:
                if not data:
                    raise AssertionError(f"button {text!r} on message {msg.message_id} is not a callback button")
                return self._press(data, msg, update_id)
        available = "\n".join(
            f"  #{m.message_id} {m.plain_text[:60]!r}: {[b[0] for b in m.buttons()]}"
            for m in candidates[:10]
            if m.buttons()
        )
        where = f"message {message_id}" if message_id is not None else f"chat {self.id}"
        raise AssertionError(f"no button matching {label!r} in {where}; available buttons:\n{available or '  (none)'}")

    def press_data(self, data: str, *, message_id: int | None = None) -> int:
        """Send a callback query with arbitrary (forged or stale) `data` under the newest bot message
        (or message `message_id`); returns the update_id."""
        msg: BotMessage | None = None
        for m in reversed(self.messages):
            if message_id is None or m.message_id == message_id:
                msg = m
                break
        if msg is None and message_id is not None:
            raise AssertionError(f"no bot message {message_id} in chat {self.id}")
        return self._press(data, msg)

    def _press(self, data: str, msg: BotMessage | None, update_id: int | None = None) -> int:
        callback_id = self.api._new_callback_id(msg.chat_id if msg else self.id)
        update = make_callback_update(
            self.as_json(),
            data,
            callback_id=callback_id,
            message=self.api.message_json(msg) if msg else None,
            chat_instance=str(10**12 + abs(msg.chat_id if msg else self.id)),
            update_id=update_id,
        )
        return self.api.enqueue_update(update)

    @property
    def messages(self) -> list[BotMessage]:
        """The bot's (non-deleted) messages in this user's private chat, oldest first."""
        return self.api.messages(self.id)

    @property
    def last(self) -> BotMessage:
        """The bot's newest message in this chat."""
        messages = self.messages
        if not messages:
            raise AssertionError(f"the bot has sent no message to chat {self.id}")
        return messages[-1]

    def __repr__(self) -> str:
        return f"FakeUser(id={self.id}, first_name={self.first_name!r})"


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------

_Handler = Callable[[Call, web.Request], Awaitable[Any]]


class FakeBotApi:
    """An in-process Telegram Bot API server on 127.0.0.1 (free port) running in the current event loop.

    Use as ``async with FakeBotApi() as fake:``; point PTB at ``fake.base_url``/``fake.base_file_url``.
    """

    def __init__(self, token: str = "123456:TEST-token", bot_username: str = "medlegal_test_bot") -> None:
        self.token = token
        self.bot_username = bot_username
        self.bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 123456
        self.port = 0
        self.calls: list[Call] = []
        self.rate_limit_violations = 0
        self.rate_limit_refusals: list[tuple[str, int | None]] = []
        """Each 429 the limits caused: ("bot", chat) past the bot-wide limit, ("chat", chat) past a chat's."""
        self.answered_callbacks: list[dict[str, Any]] = []
        self.my_commands: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] | None = None
        self.webhook_errors: list[str] = []
        self.webhook_targets: list[str] | None = None
        """host:port of the bot processes behind a simulated reverse proxy: deliveries go to the registered URL's
        path on these, in turn (update n to target n mod len); None: to the registered URL itself."""
        self.webhook_deliveries: list[tuple[int, str, int]] = []
        """(update_id, target URL, HTTP status or 0 for a connection error) for every webhook POST, in order."""
        self._everywhere: set[int] = set()
        self._deliveries = itertools.count()
        self.on_handed_out: Callable[[list[dict[str, Any]]], None] | None = None
        """Called with each batch getUpdates hands out, as it does (benchmarks time updates from here)."""
        self.on_call: Callable[[Call], None] | None = None
        """Called with each finished call, status and response set (benchmarks react to replies here)."""

        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(100_000)
        self._fetched_upto = 0  # highest update_id handed out by getUpdates
        self._allowed_updates: list[str] | None = None
        self._poll_generation = 0
        self._messages: dict[int, list[BotMessage]] = {}
        self._message_ids: dict[int, int] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._users: dict[int, FakeUser] = {}
        self._callback_chats: dict[str, int] = {}
        self._answered_ids: set[str] = set()
        self._callback_ids = itertools.count(4_000_000_000_000_000)
        self._faults: list[_Fault] = []
        self._per_second: int | None = None
        self._per_chat_per_second: int | None = None
        self._sent_all: deque[float] = deque()
        self._sent_by_chat: dict[int, deque[float]] = {}
        self._inflight = 0  # non-getUpdates requests being handled (not counting held "timeout" faults)
        self._last_activity = time.monotonic()
        self._changed = asyncio.Event()
        self._closed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._handlers: dict[str, _Handler] = {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "sendmessage": self._send_message,
            "editmessagetext": self._edit_message_text,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "editmessagecaption": self._edit_message_caption,
            "answercallbackquery": self._answer_callback_query,
            "deletemessage": self._delete_message,
            "senddocument": self._send_document,
            "sendchataction": self._send_chat_action,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "close": self._true,
            "logout": self._true,
        }

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind a free port on 127.0.0.1 and serve in the running loop."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A short shutdown_timeout keeps stop() fast even if a client left a connection hanging.
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop serving; pending long polls answer [] and held "timeout" faults are released at once."""
        self._closed.set()
        self._notify()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._webhook_task
            self._webhook_task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBotApi:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # ---- test-facing API -------------------------------------------------------------------------

    def calls_to(self, method: str, chat_id: int | None = None) -> list[Call]:
        """Recorded calls of `method` (case-insensitive), optionally only those for `chat_id`."""
        wanted = method.lower()
        return [c for c in self.calls if c.method.lower() == wanted and (chat_id is None or c.chat_id == chat_id)]

    def user(
        self,
        user_id: int,
        first_name: str = "Dana",
        username: str | None = None,
        language_code: str | None = "en",
        last_name: str | None = None,
    ) -> FakeUser:
        """A simulated user whose private chat with the bot has id `user_id`."""
        fake_user = FakeUser(self, user_id, first_name, username, language_code, last_name)
        self._users[user_id] = fake_user
        chat: dict[str, Any] = {"id": user_id, "type": "private", "first_name": first_name}
        if last_name:
            chat["last_name"] = last_name
        if username:
            chat["username"] = username
        self._chats[user_id] = chat
        return fake_user

    def enqueue_update(self, update: dict[str, Any]) -> int:
        """Queue a raw update (any shape, for bad-input tests); assigns update_id if missing."""
        update = dict(update)
        if "update_id" not in update:
            update["update_id"] = next(self._update_ids)
        else:
            given = int(update["update_id"])
            self._update_ids = itertools.count(max(given + 1, next(self._update_ids)))
        for key in ("message", "edited_message", "callback_query"):
            payload = update.get(key)
            if not isinstance(payload, dict):
                continue
            if key == "callback_query":
                message = payload.get("message")
                chat = message.get("chat") if isinstance(message, dict) else None
                from_user = payload.get("from")
                chat_id = chat.get("id") if isinstance(chat, dict) else None
                if chat_id is None and isinstance(from_user, dict):
                    chat_id = from_user.get("id")
                if isinstance(payload.get("id"), str) and isinstance(chat_id, int):
                    self._callback_chats.setdefault(payload["id"], chat_id)
            else:
                chat = payload.get("chat")
                if isinstance(chat, dict) and isinstance(chat.get("id"), int):
                    self._chats.setdefault(chat["id"], chat)
                    mid = payload.get("message_id")
                    if isinstance(mid, int) and mid > self._message_ids.get(chat["id"], 0):
                        self._message_ids[chat["id"]] = mid
        self._updates.append(update)
        self._touch()
        self._notify()
        return int(update["update_id"])

    def reserve_update_id(self) -> int:
        """An update_id no queued update has or will get: for an update queued later but numbered earlier (an
        update Telegram delivers out of order)."""
        return next(self._update_ids)

    def deliver_everywhere(self, update_id: int) -> None:
        """Deliver the queued update `update_id` to every webhook target at once (a duplicate of the same update
        reaching every process, as a redelivery behind a load balancer can do)."""
        self._everywhere.add(update_id)

    def messages(self, chat_id: int, *, include_deleted: bool = False) -> list[BotMessage]:
        """The bot's messages in `chat_id`, oldest first."""
        return [m for m in self._messages.get(chat_id, []) if include_deleted or not m.deleted]

    def message_json(self, msg: BotMessage) -> dict[str, Any]:
        """`msg` as a Telegram ``Message`` object (what the bot gets back / sees in callback queries)."""
        data: dict[str, Any] = {
            "message_id": msg.message_id,
            "from": self._bot_user(),
            "chat": self._chat_json(msg.chat_id),
            "date": msg.date,
        }
        if msg.edit_date is not None:
            data["edit_date"] = msg.edit_date
        if msg.document is not None:
            doc = msg.document
            data["document"] = {
                "file_id": doc["file_id"],
                "file_unique_id": doc["file_unique_id"],
                "file_size": len(doc.get("content") or b""),
            }
            if doc.get("filename"):
                data["document"]["file_name"] = doc["filename"]
            if doc.get("mime_type"):
                data["document"]["mime_type"] = doc["mime_type"]
            if msg.plain_text:
                data["caption"] = msg.plain_text
                if msg.entities:
                    data["caption_entities"] = msg.entities
        else:
            data["text"] = msg.plain_text
            if msg.entities:
                data["entities"] = msg.entities
        if msg.reply_markup and "inline_keyboard" in msg.reply_markup:
            data["reply_markup"] = msg.reply_markup
        return data

    async def wait_for_message(
        self, chat_id: int, contains: str | None = None, *, after: int = 0, timeout: float = 5.0
    ) -> BotMessage:
        """Wait for the first bot message in `chat_id` with message_id > `after` containing `contains`."""

        def probe() -> BotMessage | None:
            for msg in self.messages(chat_id):
                if msg.message_id > after and msg.matches(contains):
                    return msg
            return None

        def describe() -> str:
            return (
                f"no bot message in chat {chat_id} after #{after} containing {contains!r} "
                f"within {timeout}s\n{self.dump(chat_id)}"
            )

        return await self._wait(probe, timeout, describe)

    async def wait_for_call(
        self, method: str, chat_id: int | None = None, *, after_index: int = 0, timeout: float = 5.0
    ) -> Call:
        """Wait for the first call of `method` (for `chat_id`) recorded at index >= `after_index`."""
        wanted = method.lower()

        def probe() -> Call | None:
            for call in self.calls[after_index:]:
                if call.method.lower() == wanted and (chat_id is None or call.chat_id == chat_id):
                    return call
            return None

        def describe() -> str:
            return f"no {method} call (chat {chat_id}) within {timeout}s\n{self.dump(chat_id)}"

        return await self._wait(probe, timeout, describe)

    async def wait_until(self, condition: Callable[[], bool], *, what: str, timeout: float = 5.0) -> None:
        """Wait until `condition()` holds, re-checked whenever a call is recorded (e.g. a count of answers)."""
        await self._wait(lambda: True if condition() else None, timeout, lambda: f"not {what} within {timeout}s")

    async def wait_until_idle(self, quiet: float = 0.2, timeout: float = 5.0) -> None:
        """Wait until every queued update was fetched/delivered and no Bot API call arrived for `quiet` s.

        getUpdates long polls do not count as activity (the polling loop always has one pending).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        step = max(0.005, min(0.02, quiet / 4))
        while True:
            pending = self._pending_updates()
            idle_for = time.monotonic() - self._last_activity
            if not pending and self._inflight == 0 and idle_for >= quiet:
                return
            if loop.time() >= deadline:
                raise AssertionError(
                    f"bot not idle after {timeout}s: {len(pending)} undelivered update(s), "
                    f"{self._inflight} request(s) in flight, last activity {idle_for:.3f}s ago\n{self.dump()}"
                )
            await asyncio.sleep(step)

    def fail(
        self,
        kind: FaultKind,
        *,
        chat_id: int | None = None,
        method: str | None = None,
        times: int = 1,
        retry_after: int = 1,
        delay: float = 30.0,
    ) -> None:
        """Make the next `times` matching calls fail with `kind`.

        Without `method` only chat-targeted calls (sendMessage, editMessageText, answerCallbackQuery, ...)
        match, so getUpdates/getMe of a running bot do not consume the fault. "timeout" holds the request
        for `delay` seconds; if the client is still waiting it is then processed normally (a slow server),
        otherwise it is dropped unprocessed and recorded with status 504.
        """
        if kind not in ("429", "403", "400", "500", "502", "timeout"):
            raise ValueError(f"unknown fault kind {kind!r}")
        self._faults.append(_Fault(kind, chat_id, method, times, retry_after, delay))

    def clear_faults(self) -> None:
        """Drop faults that have not fired yet."""
        self._faults.clear()

    def set_rate_limit(self, per_second: int | None = 30, per_chat_per_second: int | None = 1) -> None:
        """Enforce Telegram's flood limits on send*/edit* calls (sliding 1 s windows); None disables one."""
        self._per_second = per_second
        self._per_chat_per_second = per_chat_per_second
        self._sent_all.clear()
        self._sent_by_chat.clear()

    def dump(self, chat_id: int | None = None, last_calls: int = 15) -> str:
        """A human-readable summary of the chat(s) and the latest calls, for assertion messages."""
        lines: list[str] = []
        chats = [chat_id] if chat_id is not None else sorted(self._messages)
        for cid in chats:
            lines.append(f"chat {cid}:")
            for m in self._messages.get(cid, []):
                flags = (" (deleted)" if m.deleted else "") + (f" (edited x{m.edited})" if m.edited else "")
                doc = f" [document {m.document.get('filename')!r}]" if m.document else ""
                lines.append(f"  #{m.message_id}{flags}{doc} {m.plain_text[:200]!r}")
                if m.buttons():
                    lines.append(f"      buttons: {[b[0] for b in m.buttons()]}")
            if not self._messages.get(cid):
                lines.append("  (no bot messages)")
        lines.append(f"last {last_calls} calls:")
        for c in self.calls[-last_calls:]:
            desc = (c.response or {}).get("description", "")
            lines.append(f"  {c.method} chat={c.chat_id} -> {c.status or 'pending'} {desc}".rstrip())
        lines.append(f"pending updates: {len(self._pending_updates())}")
        return "\n".join(lines)

    # ---- internals: bookkeeping ------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake every waiter (long polls, webhook pusher, wait_for_*); they re-check their condition."""
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def _touch(self) -> None:
        self._last_activity = time.monotonic()

    async def _wait_changed(self, event: asyncio.Event, timeout: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    async def _wait(self, probe: Callable[[], _T | None], timeout: float, describe: Callable[[], str]) -> _T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._changed
            found = probe()
            if found is not None:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(describe())
            await self._wait_changed(event, remaining)

    def _pending_updates(self) -> list[dict[str, Any]]:
        if self.webhook is not None:
            return list(self._updates)
        return [u for u in self._updates if int(u["update_id"]) > self._fetched_upto]

    def _next_message_id(self, chat_id: int) -> int:
        """Message ids are per chat and shared by the user's and the bot's messages, like in Telegram."""
        self._message_ids[chat_id] = self._message_ids.get(chat_id, 0) + 1
        return self._message_ids[chat_id]

    def _new_callback_id(self, chat_id: int) -> str:
        callback_id = str(next(self._callback_ids))
        self._callback_chats[callback_id] = chat_id
        return callback_id

    def _bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "MedLegal Test", "username": self.bot_username}

    def _chat_json(self, chat_id: int) -> dict[str, Any]:
        chat = self._chats.get(chat_id)
        if chat is not None:
            return dict(chat)
        if chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": "User"}
        return {"id": chat_id, "type": "group", "title": "Test chat"}

    # ---- internals: HTTP -------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/file/"):
            return _json_error(404, "Not Found")
        match = re.fullmatch(r"/bot([^/]*)/([^/]+)/?", path)
        if match is None:
            return _json_error(404, "Not Found")
        token, method = match.group(1), match.group(2)
        parse_error: str | None = None
        try:
            params = await _read_params(request)
        except (ValueError, UnicodeDecodeError) as exc:
            params, parse_error = {}, f"Bad Request: can't parse request: {exc}"
        lowered = method.lower()
        call = Call(method, params, time.monotonic(), self._chat_of(lowered, params), 0)
        self.calls.append(call)
        tracked = lowered != "getupdates"
        if tracked:
            self._inflight += 1
            self._touch()
        self._notify()
        try:
            status, body = await self._dispatch(call, lowered, token, parse_error, request)
        finally:
            if tracked:
                self._inflight -= 1
                self._touch()
        call.status = status
        call.response = body
        if self.on_call is not None:
            self.on_call(call)
        self._notify()
        return web.json_response(body, status=status)

    def _chat_of(self, method: str, params: dict[str, Any]) -> int | None:
        if method == "answercallbackquery":
            return self._callback_chats.get(str(params.get("callback_query_id")))
        chat_id = params.get("chat_id")
        if isinstance(chat_id, bool):
            return None
        if isinstance(chat_id, int):
            return chat_id
        if isinstance(chat_id, str) and re.fullmatch(r"-?\d+", chat_id):
            return int(chat_id)
        return None

    async def _dispatch(
        self, call: Call, method: str, token: str, parse_error: str | None, request: web.Request
    ) -> tuple[int, dict[str, Any]]:
        if token != self.token:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        handler = self._handlers.get(method)
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        if parse_error is not None:
            return 400, {"ok": False, "error_code": 400, "description": parse_error}
        fault = next((f for f in self._faults if f.matches(call.method, call.chat_id)), None)
        if fault is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.remove(fault)
            if fault.kind == "timeout":
                if not await self._hold(fault.delay, request):
                    return 504, {"ok": False, "error_code": 504, "description": "Gateway Timeout"}
            elif fault.kind == "429":
                return _error_body(_too_many(fault.retry_after))
            else:
                status, description = _FAULT_RESPONSES[fault.kind]
                return status, {"ok": False, "error_code": status, "description": description}
        try:
            self._check_rate_limit(method, call.chat_id)
            result = await handler(call, request)
        except _ApiError as err:
            return _error_body(err)
        return 200, {"ok": True, "result": result}

    async def _hold(self, delay: float, request: web.Request) -> bool:
        """Hold a "timeout" request; True if the client still waits afterwards (then it is processed)."""
        self._inflight -= 1  # a held request must not keep wait_until_idle() busy
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), delay)
        finally:
            self._inflight += 1
        transport = request.transport
        return not self._closed.is_set() and transport is not None and not transport.is_closing()

    def _check_rate_limit(self, method: str, chat_id: int | None) -> None:
        if not (method.startswith(("send", "edit")) and method != "sendchataction"):
            return  # chat actions are not messages and are not flood-limited like them
        if self._per_second is None and self._per_chat_per_second is None:
            return
        now = time.monotonic()
        window = [self._sent_all]
        chat_window = self._sent_by_chat.setdefault(chat_id, deque()) if chat_id is not None else None
        if chat_window is not None:
            window.append(chat_window)
        for times in window:
            while times and now - times[0] >= 1.0:
                times.popleft()
        over_global = self._per_second is not None and len(self._sent_all) >= self._per_second
        over_chat = (
            self._per_chat_per_second is not None
            and chat_window is not None
            and len(chat_window) >= self._per_chat_per_second
        )
        if over_global or over_chat:
            self.rate_limit_violations += 1
            self.rate_limit_refusals.append(("bot" if over_global else "chat", chat_id))
            raise _too_many(1)
        for times in window:
            times.append(now)

    # ---- internals: Bot API methods --------------------------------------------------------------

    async def _true(self, call: Call, request: web.Request) -> Any:
        return True

    async def _get_me(self, call: Call, request: web.Request) -> Any:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, call: Call, request: web.Request) -> Any:
        if self.webhook is not None:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        params = call.params
        offset = _as_int(params.get("offset"), 0)
        limit = min(max(_as_int(params.get("limit"), 100), 1), 100)
        timeout = max(_as_int(params.get("timeout"), 0), 0)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(a) for a in allowed] or None
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()  # an older long poll still waiting is answered 409, like Telegram does
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._changed
            if self._closed.is_set():
                return []
            if generation != self._poll_generation:
                raise _ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                )
            self._confirm(offset)
            batch = [u for u in self._updates if self._allowed(u)][:limit]
            if batch:
                transport = request.transport
                if transport is not None and not transport.is_closing():
                    self._fetched_upto = max(self._fetched_upto, *(int(u["update_id"]) for u in batch))
                    self._touch()
                    if self.on_handed_out is not None:
                        self.on_handed_out(batch)
                return batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            await self._wait_changed(event, remaining)

    def _confirm(self, offset: int) -> None:
        """Drop confirmed updates (id < offset) and those the bot did not subscribe to."""
        if offset > 0:
            self._updates = [u for u in self._updates if int(u["update_id"]) >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]
        kept = [u for u in self._updates if self._allowed(u)]
        if len(kept) != len(self._updates):
            self._updates = kept

    def _allowed(self, update: dict[str, Any]) -> bool:
        kinds = [k for k in update if k != "update_id"]
        if not kinds:
            return True
        if self._allowed_updates is None:
            return kinds[0] not in _UPDATE_TYPES_DEFAULT_OFF
        return kinds[0] in self._allowed_updates

    def _require_chat(self, call: Call) -> int:
        if "chat_id" not in call.params or call.params["chat_id"] in ("", None):
            raise _ApiError(400, "Bad Request: chat_id is empty")
        if call.chat_id is None:
            raise _ApiError(400, "Bad Request: chat not found")
        return call.chat_id

    def _find_message(self, call: Call, action: str) -> BotMessage:
        params = call.params
        if "inline_message_id" in params and "message_id" not in params:
            raise _ApiError(400, "Bad Request: MESSAGE_ID_INVALID")
        chat_id = self._require_chat(call)
        message_id = _as_int(params.get("message_id"), 0)
        if message_id <= 0:
            raise _ApiError(400, "Bad Request: message identifier is not specified")
        for msg in self._messages.get(chat_id, []):
            if msg.message_id == message_id and not msg.deleted:
                return msg
        raise _ApiError(400, f"Bad Request: message to {action} not found")

    def _store(self, msg: BotMessage) -> dict[str, Any]:
        self._messages.setdefault(msg.chat_id, []).append(msg)
        return self.message_json(msg)

    async def _send_message(self, call: Call, request: web.Request) -> Any:
        params = call.params
        chat_id = self._require_chat(call)
        text, parse_mode = _text_param(params.get("text")), _opt_str(params.get("parse_mode"))
        plain, entities = _check_text(text, parse_mode, params.get("entities"))
        markup = _check_markup(params.get("reply_markup"))
        msg = BotMessage(
            message_id=self._next_message_id(chat_id),
            chat_id=chat_id,
            text=text,
            reply_markup=markup,
            parse_mode=parse_mode,
            plain_text=plain,
            entities=entities,
            date=_now(),
        )
        return self._store(msg)

    async def _send_document(self, call: Call, request: web.Request) -> Any:
        params = call.params
        chat_id = self._require_chat(call)
        document = params.get("document")
        if document in (None, ""):
            raise _ApiError(400, "Bad Request: there is no document in the request")
        caption, parse_mode = _text_param(params.get("caption")), _opt_str(params.get("parse_mode"))
        plain, entities = _render(caption, parse_mode, params.get("caption_entities"))
        if _utf16_len(plain) > MAX_CAPTION_LENGTH:
            raise _ApiError(400, "Bad Request: message caption is too long")
        markup = _check_markup(params.get("reply_markup"))
        message_id = self._next_message_id(chat_id)
        if isinstance(document, dict):
            doc = {
                "filename": document.get("filename"),
                "content": document.get("content", b""),
                "mime_type": document.get("content_type"),
            }
        else:  # a file_id or URL
            doc = {"filename": None, "content": b"", "mime_type": None, "source": str(document)}
        doc.update(
            caption=caption or None,
            file_id=f"BQACAgIAAx{chat_id}_{message_id}",
            file_unique_id=f"AgAD{chat_id}_{message_id}",
        )
        msg = BotMessage(
            message_id=message_id,
            chat_id=chat_id,
            text=caption,
            reply_markup=markup,
            parse_mode=parse_mode,
            document=doc,
            plain_text=plain,
            entities=entities,
            date=_now(),
        )
        return self._store(msg)

    async def _edit_message_text(self, call: Call, request: web.Request) -> Any:
        params = call.params
        msg = self._find_message(call, "edit")
        if msg.document is not None:
            raise _ApiError(400, "Bad Request: there is no text in the message to edit")
        text, parse_mode = _text_param(params.get("text")), _opt_str(params.get("parse_mode"))
        plain, entities = _check_text(text, parse_mode, params.get("entities"))
        # Like Telegram, omitting reply_markup removes the inline keyboard.
        markup = _check_markup(params.get("reply_markup"))
        if plain == msg.plain_text and entities == msg.entities and markup == msg.reply_markup:
            raise _not_modified()
        msg.text, msg.parse_mode, msg.plain_text, msg.entities = text, parse_mode, plain, entities
        msg.reply_markup = markup
        return self._edited(msg)

    async def _edit_message_caption(self, call: Call, request: web.Request) -> Any:
        params = call.params
        msg = self._find_message(call, "edit")
        if msg.document is None:
            raise _ApiError(400, "Bad Request: there is no caption in the message to edit")
        caption, parse_mode = _text_param(params.get("caption")), _opt_str(params.get("parse_mode"))
        plain, entities = _render(caption, parse_mode, params.get("caption_entities"))
        if _utf16_len(plain) > MAX_CAPTION_LENGTH:
            raise _ApiError(400, "Bad Request: message caption is too long")
        markup = _check_markup(params.get("reply_markup"))
        if plain == msg.plain_text and entities == msg.entities and markup == msg.reply_markup:
            raise _not_modified()
        msg.text, msg.parse_mode, msg.plain_text, msg.entities = caption, parse_mode, plain, entities
        msg.reply_markup = markup
        msg.document = {**(msg.document or {}), "caption": caption or None}
        return self._edited(msg)

    async def _edit_message_reply_markup(self, call: Call, request: web.Request) -> Any:
        msg = self._find_message(call, "edit")
        markup = _check_markup(call.params.get("reply_markup"))
        if markup == msg.reply_markup:
            raise _not_modified()
        msg.reply_markup = markup
        return self._edited(msg)

    def _edited(self, msg: BotMessage) -> dict[str, Any]:
        msg.edited += 1
        msg.edit_date = _now()
        return self.message_json(msg)

    async def _delete_message(self, call: Call, request: web.Request) -> Any:
        msg = self._find_message(call, "delete")
        msg.deleted = True
        return True

    async def _answer_callback_query(self, call: Call, request: web.Request) -> Any:
        query_id = str(call.params.get("callback_query_id") or "")
        if query_id not in self._callback_chats or query_id in self._answered_ids:
            raise _ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        text = call.params.get("text")
        if isinstance(text, str) and _utf16_len(text) > MAX_CALLBACK_ANSWER_LENGTH:
            raise _ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self._answered_ids.add(query_id)
        self.answered_callbacks.append(dict(call.params))
        return True

    async def _send_chat_action(self, call: Call, request: web.Request) -> Any:
        self._require_chat(call)
        if not call.params.get("action"):
            raise _ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    async def _set_my_commands(self, call: Call, request: web.Request) -> Any:
        commands = call.params.get("commands")
        if not isinstance(commands, list):
            raise _ApiError(400, "Bad Request: can't parse commands JSON object")
        for command in commands:
            name = command.get("command") if isinstance(command, dict) else None
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise _ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            description = command.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise _ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self.my_commands = [dict(c) for c in commands]
        return True

    async def _get_my_commands(self, call: Call, request: web.Request) -> Any:
        return [dict(c) for c in self.my_commands]

    async def _delete_my_commands(self, call: Call, request: web.Request) -> Any:
        self.my_commands = []
        return True

    async def _set_webhook(self, call: Call, request: web.Request) -> Any:
        params = call.params
        url = params.get("url")
        if not isinstance(url, str):
            raise _ApiError(400, "Bad Request: bad webhook: URL must be provided")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise _ApiError(400, "Bad Request: secret token contains unallowed characters")
        if _as_bool(params.get("drop_pending_updates")):
            self._updates.clear()
        if isinstance(params.get("allowed_updates"), list):
            self._allowed_updates = [str(a) for a in params["allowed_updates"]] or None
        if url == "":  # setWebhook with an empty url removes the webhook
            await self._remove_webhook()
            return True
        if not url.startswith(("http://", "https://")):
            raise _ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook = {k: v for k, v in params.items() if not isinstance(v, dict) or "content" not in v}
        if self._webhook_task is None or self._webhook_task.done():
            self._webhook_task = asyncio.create_task(self._push_webhook_updates())
        self._notify()
        return True

    async def _delete_webhook(self, call: Call, request: web.Request) -> Any:
        if _as_bool(call.params.get("drop_pending_updates")):
            self._updates.clear()
        await self._remove_webhook()
        return True

    async def _remove_webhook(self) -> None:
        self.webhook = None
        task, self._webhook_task = self._webhook_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._notify()

    async def _get_webhook_info(self, call: Call, request: web.Request) -> Any:
        hook = self.webhook or {}
        info: dict[str, Any] = {
            "url": hook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook is not None:
            info["max_connections"] = _as_int(hook.get("max_connections"), 40)
            if self._allowed_updates is not None:
                info["allowed_updates"] = list(self._allowed_updates)
        if self.webhook_errors:
            info["last_error_date"] = _now()
            info["last_error_message"] = self.webhook_errors[-1]
        return info

    def _webhook_urls(self, url: str, update_id: int) -> list[str]:
        """Where the next attempt goes: the registered URL, or its path on the next target (or on all of them)."""
        if not self.webhook_targets:
            return [url]
        path = urllib.parse.urlsplit(url).path or "/"
        urls = [f"http://{target}{path}" for target in self.webhook_targets]
        if update_id in self._everywhere:
            return urls
        return [urls[next(self._deliveries) % len(urls)]]

    async def _post_update(
        self, session: aiohttp.ClientSession, url: str, update: dict[str, Any], headers: dict[str, str]
    ) -> str:
        """One delivery; "" when the bot acknowledged it with a 2xx status, else the error Telegram would report."""
        status, error = 0, ""
        try:
            async with session.post(url, json=update, headers=headers) as resp:
                await resp.read()
                status = resp.status
                if not 200 <= resp.status < 300:
                    error = f"Wrong response from the webhook: {resp.status} {resp.reason}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"Connection error: {exc!r}"
        self.webhook_deliveries.append((int(update["update_id"]), url, status))
        return error

    async def _push_webhook_updates(self) -> None:
        """POST queued updates to the webhook one at a time, in order, retrying a failed one a few times (behind
        targets, the retry goes to the next target, like a load balancer), as Telegram does for a non-2xx answer."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        session = self._session
        while not self._closed.is_set():
            event = self._changed
            hook = self.webhook
            if hook is None:
                return
            self._confirm(0)
            if not self._updates:
                await self._wait_changed(event, None)
                continue
            update = self._updates[0]
            headers = {}
            if hook.get("secret_token"):
                headers["X-Telegram-Bot-Api-Secret-Token"] = str(hook["secret_token"])
            error = ""
            for attempt in range(4):
                urls = self._webhook_urls(str(hook["url"]), int(update["update_id"]))
                errors = await asyncio.gather(*(self._post_update(session, url, update, headers) for url in urls))
                error = "" if "" in errors else errors[-1]
                if not error:
                    break
                await asyncio.sleep(0.05 * (attempt + 1))
            if error:
                self.webhook_errors.append(error)
            if self._updates and self._updates[0] is update:
                self._updates.pop(0)
            self._touch()
            self._notify()


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _json_error(status: int, description: str) -> web.Response:
    return web.json_response({"ok": False, "error_code": status, "description": description}, status=status)


def _error_body(err: _ApiError) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"ok": False, "error_code": err.status, "description": err.description}
    if err.parameters:
        body["parameters"] = err.parameters
    return err.status, body


def _too_many(retry_after: int) -> _ApiError:
    return _ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})


def _not_modified() -> _ApiError:
    return _ApiError(
        400,
        "Bad Request: message is not modified: specified new message content and reply markup are "
        "exactly the same as a current content and reply markup of the message",
    )


def _as_int(value: Any, default: int) -> int:
    if isinstance(value, bool) or value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("true", "1")
    return bool(value)


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _text_param(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _check_text(text: str, parse_mode: str | None, entities: Any) -> tuple[str, list[dict[str, Any]]]:
    """Validate a message text like Telegram: parse entities first, then check empty/too long."""
    if not text.strip():
        raise _ApiError(400, "Bad Request: message text is empty")
    plain, parsed = _render(text, parse_mode, entities)
    if not plain.strip():
        raise _ApiError(400, "Bad Request: message text is empty")
    if _utf16_len(plain) > MAX_TEXT_LENGTH:
        raise _ApiError(400, "Bad Request: message is too long")
    return plain, parsed


def _check_markup(markup: Any) -> dict[str, Any] | None:
    """Validate reply_markup; inline keyboards get Telegram's button checks (callback_data <= 64 bytes)."""
    if markup is None or markup == "":
        return None
    if not isinstance(markup, dict):
        raise _ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in markup:
        return markup
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _ApiError(
            400, 'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
        )
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _ApiError(
                    400, 'Bad Request: can\'t parse inline keyboard button: Field "text" must be of type String'
                )
            if "callback_data" in button:
                data = button["callback_data"]
                if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
                    raise _ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            elif not _INLINE_BUTTON_KINDS.intersection(button):
                raise _ApiError(
                    400,
                    "Bad Request: can't parse inline keyboard button: "
                    "Text buttons are unallowed in the inline keyboard",
                )
    return markup


def _decode_form_value(key: str, value: str) -> Any:
    """PTB sends strings as-is and JSON-encodes everything else; undo that for non-string fields."""
    if key in _STRING_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Merge query string, JSON body, urlencoded or multipart form (files kept as dicts) into one dict."""
    params: dict[str, Any] = {k: _decode_form_value(k, v) for k, v in request.query.items()}
    files: dict[str, dict[str, Any]] = {}
    if request.can_read_body:
        content_type = request.content_type
        if content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("JSON body must be an object")
            for key, value in body.items():
                if key in _JSON_OBJECT_FIELDS and isinstance(value, str) and value:
                    value = json.loads(value)
                params[key] = value
        elif content_type == "multipart/form-data":
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                    continue
                if part.filename is not None:
                    files[part.name] = {
                        "filename": part.filename,
                        "content": bytes(await part.read(decode=True)),
                        "content_type": part.headers.get(aiohttp.hdrs.CONTENT_TYPE),
                    }
                else:
                    params[part.name] = _decode_form_value(part.name, await part.text())
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    params[key] = _decode_form_value(key, value)
    for key, value in list(params.items()):
        if isinstance(value, str) and value.startswith("attach://") and value[9:] in files:
            params[key] = files.pop(value[9:])
    params.update(files)
    return params
