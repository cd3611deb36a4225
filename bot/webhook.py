"""Webhook mode: a small aiohttp server that feeds Telegram's updates to the PTB Application (the custom-server
pattern of PTB's `customwebhookbot` example), with a health endpoint beside it.

- POST <path of MEDLEGAL_WEBHOOK_URL>: an update. Without the right `X-Telegram-Bot-Api-Secret-Token` header it is
  refused with 403; otherwise it is queued for the Application and acknowledged with 200.
- GET /healthz: 200 with {"status": "ok", "database": "up", "reminder_scheduler": "active"|"standby"} when the
  database answers, 503 with "database": "down" when it does not (a load balancer takes the process out).

Several processes may run behind one reverse proxy: each registers the same public URL and handles what it gets;
`bot.update_guard` processes a repeated update once and the dialogue serialises each physician in the database.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import signal
from urllib.parse import urlparse

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from telegram import Update

from bot.app import App
from bot.reminder_scheduler import ReminderScheduler
from bot.settings import Settings

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
HEALTH_PATH = "/healthz"
HEALTH_DB_TIMEOUT = 2.0
MAX_UPDATE_BYTES = 1024 * 1024


class ListenError(Exception):
    """MEDLEGAL_WEBHOOK_LISTEN cannot be bound (in use, no such address, no permission)."""


def webhook_path(settings: Settings) -> str:
    """The path served: the path of MEDLEGAL_WEBHOOK_URL (a bare host serves "/")."""
    assert settings.webhook_url is not None
    return urlparse(settings.webhook_url).path or "/"


def make_web_app(application: App, settings: Settings) -> web.Application:
    assert settings.webhook_secret is not None  # enforced by Settings
    secret = settings.webhook_secret.get_secret_value().encode()
    web_app = web.Application(client_max_size=MAX_UPDATE_BYTES)

    async def receive(request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, secret):
            log.warning("webhook request without the right secret token refused")
            return web.json_response({"ok": False, "error": "forbidden"}, status=403)
        try:
            data = await request.json()
            update = Update.de_json(data, application.bot)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError, ValueError) as exc:
            log.warning("webhook request that is not an update refused: %s", type(exc).__name__)
            return web.json_response({"ok": False, "error": "not an update"}, status=400)
        await application.update_queue.put(update)
        return web.json_response({"ok": True})

    async def health(_request: web.Request) -> web.Response:
        engine: AsyncEngine = application.bot_data["engine"]
        scheduler: ReminderScheduler = application.bot_data["scheduler"]
        database = "up" if await database_answers(engine) else "down"
        body = {
            "status": "ok" if database == "up" else "unavailable",
            "database": database,
            "reminder_scheduler": "active" if scheduler.active else "standby",
        }
        return web.json_response(body, status=200 if database == "up" else 503)

    web_app.router.add_post(webhook_path(settings), receive)
    web_app.router.add_get(HEALTH_PATH, health)
    return web_app


async def database_answers(engine: AsyncEngine) -> bool:
    try:
        async with asyncio.timeout(HEALTH_DB_TIMEOUT), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:  # any failure means "not reachable now"; the reason is in the database's own logs
        return False
    return True


async def serve(application: App, settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run the bot in webhook mode until SIGINT/SIGTERM (or `stop`), with the lifecycle PTB's run_webhook has:
    initialize, post_init, start, serve; then stop, post_stop, shutdown, post_shutdown."""
    assert settings.webhook_url is not None and settings.webhook_secret is not None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host, _, port = settings.webhook_listen.rpartition(":")
    runner = web.AppRunner(make_web_app(application, settings), access_log=None, handle_signals=False)
    await application.initialize()
    try:
        if application.post_init is not None:
            await application.post_init(application)
        await application.start()
        await runner.setup()
        try:
            await web.TCPSite(runner, host.strip("[]"), int(port)).start()
        except OSError as exc:
            raise ListenError(exc.strerror or str(exc)) from None
        # Every process registers the same public URL; re-registering is harmless and keeps it current.
        await application.bot.set_webhook(
            settings.webhook_url,
            secret_token=settings.webhook_secret.get_secret_value(),
            allowed_updates=Update.ALL_TYPES,
        )
        log.info("webhook server listening on %s, path %s", settings.webhook_listen, webhook_path(settings))
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.cleanup()  # no new requests; the queued updates are processed by stop()
        if application.running:
            await application.stop()
            if application.post_stop is not None:
                await application.post_stop(application)
        await application.shutdown()
        if application.post_shutdown is not None:
            await application.post_shutdown(application)
