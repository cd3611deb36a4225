"""Telegram handlers: translate updates into `Dialogue` calls and its replies into Bot API calls."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from telegram import Bot, CallbackQuery, InputFile, Message, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot import texts
from bot.dialogue import Dialogue, Reply, Screen
from bot.keyboards import markup
from bot.screens import PRESSED_MESSAGE

log = logging.getLogger(__name__)

PRIVATE = filters.ChatType.PRIVATE


def _dialogue(context: ContextTypes.DEFAULT_TYPE) -> Dialogue:
    dialogue: Dialogue = context.application.bot_data["dialogue"]
    return dialogue


async def _send(bot: Bot, chat_id: int, screen: Screen) -> Message:
    return await bot.send_message(chat_id, screen.text, parse_mode=ParseMode.HTML, reply_markup=markup(screen.keyboard))


async def deliver(bot: Bot, chat_id: int, reply: Reply, source: Message | None = None) -> None:
    """Show a reply: edit the pressed message when there is one, then send the new messages in order."""
    if reply.edit is not None:
        edited = False
        if source is not None:
            try:
                await bot.edit_message_text(
                    reply.edit.text,
                    chat_id=chat_id,
                    message_id=source.message_id,
                    parse_mode=ParseMode.HTML,
                    reply_markup=markup(reply.edit.keyboard),
                )
                edited = True
            except BadRequest as exc:
                edited = "not modified" in str(exc).lower()
                if not edited:
                    log.info("could not edit message, sending instead: %s", exc)
        if not edited:
            await _send(bot, chat_id, reply.edit)
    for screen in reply.send:
        await _send(bot, chat_id, screen)
    for document in reply.documents:
        await bot.send_document(
            chat_id, InputFile(document.content, filename=document.filename), caption=document.caption or None
        )


async def on_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message, user = update.effective_message, update.effective_user
    if message is None or user is None or not message.text:
        return
    # The text after the command, as typed: PTB fills context.args only for registered commands, and the
    # plugins' commands (admin tools) arrive through the catch-all MessageHandler.
    command, *rest = message.text.strip().split(maxsplit=1)
    name = command[1:].split("@")[0]
    reply = await _dialogue(context).command(user.id, name, rest[0] if rest else "")
    await deliver(context.bot, message.chat_id, reply)


async def on_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    if query is None:
        return
    chat = update.effective_chat
    if chat is not None and chat.type != ChatType.PRIVATE:
        await query.answer(texts.PRIVATE_ONLY)
        return
    source = query.message if isinstance(query.message, Message) else None
    pressed = PRESSED_MESSAGE.set(source.message_id if source is not None else None)
    try:
        reply = await _dialogue(context).press(query.from_user.id, query.data)
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
    reply = await _dialogue(context).text(user.id, message.text)
    await deliver(context.bot, message.chat_id, reply)


async def on_other(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stickers, photos, voice and the like: say what the bot can read, and show the current question."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    reply = await _dialogue(context).text(user.id, None)
    await deliver(context.bot, message.chat_id, reply)


async def on_group(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is not None:
        await message.reply_text(texts.PRIVATE_ONLY)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the failure and tell the physician to try again; their stored answers were not touched."""
    log.error("update failed: %s", type(context.error).__name__, exc_info=context.error)
    if isinstance(context.error, Forbidden):
        return
    if isinstance(update, Update) and update.effective_chat and update.effective_chat.type == ChatType.PRIVATE:
        if update.callback_query is not None:
            with contextlib.suppress(TelegramError):
                await update.callback_query.answer(texts.ERROR)
        try:
            await context.bot.send_message(update.effective_chat.id, texts.ERROR)
        except TelegramError as exc:
            log.warning("could not report the error to the user: %s", exc)


def register(app: Application) -> None:  # type: ignore[type-arg]
    commands = [name for name, _ in texts.COMMANDS]
    app.add_handler(CommandHandler(commands, on_command, filters=PRIVATE))
    app.add_handler(CallbackQueryHandler(on_callback))
    app.add_handler(MessageHandler(PRIVATE & filters.COMMAND, on_command))
    app.add_handler(MessageHandler(PRIVATE & filters.TEXT & ~filters.COMMAND & ~filters.UpdateType.EDITED, on_text))
    app.add_handler(
        MessageHandler(PRIVATE & ~filters.TEXT & ~filters.StatusUpdate.ALL & ~filters.UpdateType.EDITED, on_other)
    )
    app.add_handler(MessageHandler(~PRIVATE & filters.COMMAND, on_group))
    app.add_error_handler(on_error)
