"""The webhook server in-process (SQLite and PostgreSQL): the secret token, the health endpoint, a repeated update
processed once, and a delivery that failed retried like Telegram does."""

from __future__ import annotations

import asyncio
import socket

import aiohttp

from bot import texts
from bot.app import build_application
from bot.webhook import SECRET_HEADER, serve
from db import migrate
from db.engine import make_engine
from tests.fake_bot_api import FakeBotApi
from tests.harness import make_settings

SECRET = "hook-secret_1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_webhook_server(fake: FakeBotApi, db_url: str) -> None:
    port = _free_port()
    listen = f"127.0.0.1:{port}"
    settings = make_settings(
        fake,
        db_url,
        webhook_url="https://bot.example.org/hook/path",
        webhook_secret=SECRET,
        webhook_listen=listen,
    )
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(build_application(settings, engine), settings, stop))
    dead = f"127.0.0.1:{_free_port()}"
    try:
        fake.webhook_targets = [listen]
        await fake.wait_for_call("setWebhook", timeout=10)
        assert fake.webhook is not None and fake.webhook["secret_token"] == SECRET
        hook = f"http://{listen}/hook/path"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{listen}/healthz") as response:
                assert response.status == 200
                assert (await response.json())["database"] == "up"
            for headers in ({}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: SECRET + "x"}):
                async with http.post(hook, json={"update_id": 1}, headers=headers) as response:
                    assert response.status == 403
            async with http.post(hook, data=b"[1, 2", headers={SECRET_HEADER: SECRET}) as response:
                assert response.status == 400
            async with http.post(f"http://{listen}/other", json={}, headers={SECRET_HEADER: SECRET}) as response:
                assert response.status in {404, 405}, "only the webhook URL's path is served"

        user = fake.user(81)
        start = user.send("/start")
        fake.deliver_everywhere(start)
        fake.webhook_targets = [listen, listen]  # the same update twice at once
        await fake.wait_for_message(81, "Step 1 of 14", timeout=10)
        fake.webhook_targets = [dead, listen]  # the first try fails; Telegram tries again
        user.press("MD")
        await fake.wait_for_message(81, "Step 2 of 14", timeout=10)
        await fake.wait_until_idle()
        texts_shown = [m.plain_text for m in user.messages]
        assert sum("Step 1 of 14" in t for t in texts_shown) == 1, fake.dump(81)
        assert not any(texts.STALE_BUTTON in t for t in texts_shown)
        statuses = [status for uid, _, status in fake.webhook_deliveries if uid == start]
        assert statuses == [200, 200], "both copies were acknowledged, one was processed"
        assert [s for _, url, s in fake.webhook_deliveries if dead in url] == [0]
        assert not fake.webhook_errors
    finally:
        stop.set()
        await asyncio.wait_for(server, 20)
        await engine.dispose()
