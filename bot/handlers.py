"""Telegram handlers: translate updates into `Dialogue` calls and its replies into Bot API calls."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict

from telegram import Bot, CallbackQuery, InputFile, Message, Update
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot import logs, texts
from bot.dialogue import Dialogue, Reply, Screen
from bot.faults import OUTAGE, ErrorReporter, error_kind, is_db_outage, with_db_retry
from bot.keyboards import post_screen
from bot.screens import PRESSED_MESSAGE
from bot.update_guard import AlreadyProcessed

log = logging.getLogger(__name__)

PRIVATE = filters.ChatType.PRIVATE


def _dialogue(context: ContextTypes.DEFAULT_TYPE) -> Dialogue:
    dialogue: Dialogue = context.application.bot_data["dialogue"]
    return dialogue


async def deliver(bot: Bot, chat_id: int, reply: Reply, source: Message | None = None) -> None:
    """Show a reply: edit the pressed message, send the new messages in order, then the documents.

    The edit and the new messages are different messages that do not wait for each other, so when there are both
    the edit goes out beside the sends and the next question appears a Bot API round trip sooner. A pressed
    message that cannot be edited (too old, deleted) is replaced by a new message only when the edit is all the
    reply shows; beside new messages it is logged, as they carry the conversation on.
    """
    editing: asyncio.Task[bool] | None = None
    if reply.edit is not None:
        if source is not None and reply.send:
            editing = asyncio.create_task(_edited(bot, chat_id, reply.edit, source.message_id))
        elif source is None or not await _edited(bot, chat_id, reply.edit, source.message_id):
            await post_screen(bot, chat_id, reply.edit)
    try:
        for screen in reply.send:
            await post_screen(bot, chat_id, screen)
    finally:
        # a failed send's error wins over the edit's; the edit's own error surfaces when the sends went out
        edit_error = None if editing is None else (await asyncio.gather(editing, return_exceptions=True))[0]
    if isinstance(edit_error, BaseException):
        raise edit_error
    for document in reply.documents:
        await bot.send_document(
            chat_id, InputFile(document.content, filename=document.filename), caption=document.caption or None
        )


async def _edited(bot: Bot, chat_id: int, screen: Screen, message_id: int) -> bool:
    """Put `screen` in place of the message; False (logged) when Telegram refuses to edit it."""
    try:
        await post_screen(bot, chat_id, screen, edit=message_id)
    except BadRequest as exc:
        if "not modified" in str(exc).lower():
            return True
        log.info("could not edit message: %s", exc)
        return False
    return True


async def on_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message, user = update.effective_message, update.effective_user
    if message is None or user is None or not message.text:
        return
    # The text after the command, as typed: PTB fills context.args only for registered commands, and the
    # plugins' commands (admin tools) arrive through the catch-all MessageHandler.
    command, *rest = message.text.strip().split(maxsplit=1)
    name = command[1:].split("@")[0]
    args = rest[0] if rest else ""
    reply = await with_db_retry(lambda: _dialogue(context).command(user.id, name, args))
    await deliver(context.bot, message.chat_id, reply)


async def on_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    if query is None:
        return
    chat = update.effective_chat
    if chat is not None and chat.type != ChatType.PRIVATE:
        try:
            await query.answer(texts.PRIVATE_ONLY)
        except BadRequest as exc:  # an old query: there is nothing else to say in a group
            log.info("callback answer failed: %s", exc)
        return
    source = query.message if isinstance(query.message, Message) else None
    if source is not None and source.chat_id != query.from_user.id:  # a button under someone else's message
        source = None
    pressed = PRESSED_MESSAGE.set(source.message_id if source is not None else None)
    try:
        reply = await with_db_retry(lambda: _dialogue(context).press(query.from_user.id, query.data))
    finally:
        PRESSED_MESSAGE.reset(pressed)
    # The answer (it stops the button's spinner) is no message: it goes out beside the reply, not before it.
    answering = asyncio.create_task(_answer(query, reply.notice))
    try:
        await deliver(context.bot, query.from_user.id, reply, source)
    finally:
        await answering


async def _answer(query: CallbackQuery, notice: str | None) -> None:
    try:
        await query.answer(notice)
    except BadRequest as exc:  # a query older than Telegram keeps them; the reply still helps
        log.info("callback answer failed: %s", exc)


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    reply = await with_db_retry(lambda: _dialogue(context).text(user.id, message.text))
    await deliver(context.bot, message.chat_id, reply)


async def on_other(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stickers, photos, voice and the like: say what the bot can read, and show the current question."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    reply = await with_db_retry(lambda: _dialogue(context).text(user.id, None))
    await deliver(context.bot, message.chat_id, reply)


async def on_edited(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """An edit of an earlier message is not read as an answer (it could rewrite history); say so."""
    message = update.effective_message
    if message is not None:
        await message.reply_text(texts.EDITED)


GROUP_MEMORY = 4096
"""Group and channel chats remembered as already told (in memory only: nothing is stored for them)."""


def _first_time(context: ContextTypes.DEFAULT_TYPE, chat_id: int) -> bool:
    told: OrderedDict[int, None] = context.application.bot_data.setdefault("told_private_only", OrderedDict())
    if chat_id in told:
        return False
    told[chat_id] = None
    if len(told) > GROUP_MEMORY:
        told.popitem(last=False)
    return True


async def on_group(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Groups and channels: say once, politely, that the bot works in private chats; read and store nothing."""
    message = update.effective_message
    if message is not None and _first_time(context, message.chat_id):
        await message.reply_text(texts.PRIVATE_ONLY)


async def on_update_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Tag this update's log records with its id and the hashed user id (see bot.logs)."""
    settings = context.application.bot_data.get("settings")
    key = settings.log_hash_key if settings is not None else None
    user = update.effective_user
    logs.set_update(update.update_id, user.id if user else None, key.get_secret_value() if key else None)


def _expected(error: BaseException | None) -> bool:
    """Telegram's own trouble (blocked, flood control, timeouts, 5xx): logged, not worth an admin's attention."""
    if isinstance(error, Forbidden | RetryAfter | TimedOut):
        return True
    return isinstance(error, NetworkError) and not isinstance(error, BadRequest)


async def _report_to_admins(context: ContextTypes.DEFAULT_TYPE, error: BaseException, outage: bool) -> None:
    """Each kind of failure at most once an hour per process; the type and place only, never user data. A database
    outage is one kind, whichever statement or connection attempt met it first."""
    settings = context.application.bot_data.get("settings")
    admins = sorted(settings.admin_ids) if settings is not None else []
    reporter: ErrorReporter = context.application.bot_data.setdefault("error_reporter", ErrorReporter())
    kind = error_kind(error)
    if not admins or not reporter.due(OUTAGE if outage else kind):
        return
    for admin in admins:
        try:
            await context.bot.send_message(admin, ErrorReporter.text(kind, outage))
        except TelegramError as exc:
            log.warning("could not report error #%s to an admin: %s", kind.key, type(exc).__name__)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the failure, tell the physician what to do, and report the unexpected ones to the admins."""
    error = context.error
    if isinstance(error, AlreadyProcessed):
        log.info("update %d was delivered again; already processed", error.update_id)
        return
    outage = error is not None and is_db_outage(error)
    kind = error_kind(error) if error is not None else None
    log.error(
        "update failed: %s in %s (#%s)",
        kind.type if kind else "?",
        kind.where if kind else "?",
        kind.key if kind else "-",
        exc_info=error,
    )
    if isinstance(error, Forbidden):
        return
    if error is not None and (outage or not _expected(error)):
        await _report_to_admins(context, error, outage)
    if isinstance(update, Update) and update.effective_chat and update.effective_chat.type == ChatType.PRIVATE:
        text = texts.DB_UNAVAILABLE if outage else texts.ERROR
        if update.callback_query is not None:
            with contextlib.suppress(TelegramError):
                await update.callback_query.answer(text[:200])
        try:
            await context.bot.send_message(update.effective_chat.id, text)
        except TelegramError as exc:
            log.warning("could not report the error to the user: %s", type(exc).__name__)


LOG_TAG_GROUP = -200
"""Before every other handler group, the duplicate-update guard's (-100) included: PTB runs only the first
matching handler of a group, and the guard's own log lines should carry the update too."""


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(TypeHandler(Update, on_update_start), group=LOG_TAG_GROUP)
    commands = [name for name, _ in texts.COMMANDS]
    app.add_handler(CommandHandler(commands, on_command, filters=PRIVATE))
    app.add_handler(CallbackQueryHandler(on_callback))
    app.add_handler(MessageHandler(PRIVATE & filters.COMMAND, on_command))
    app.add_handler(MessageHandler(PRIVATE & filters.TEXT & ~filters.COMMAND & ~filters.UpdateType.EDITED, on_text))
    app.add_handler(MessageHandler(PRIVATE & filters.UpdateType.EDITED_MESSAGE, on_edited))
    app.add_handler(
        MessageHandler(PRIVATE & ~filters.TEXT & ~filters.StatusUpdate.ALL & ~filters.UpdateType.EDITED, on_other)
    )
    app.add_handler(MessageHandler(~PRIVATE & ~filters.StatusUpdate.ALL, on_group))
    app.add_error_handler(on_error)
