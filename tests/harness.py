"""Run the real PTB Application (polling, PTB's own HTTP stack) against the fake Bot API server."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import build_application
from bot.dialogue import Dialogue, Reply, parse_press
from bot.settings import Settings
from db import migrate
from db.engine import make_engine, make_session_factory
from db.repository import StoredFlow, active_flow, latest_flow
from tests.fake_bot_api import FakeBotApi


def make_settings(fake: FakeBotApi, database_url: str, **extra: Any) -> Settings:
    return Settings(
        _env_file=None,
        bot_token=fake.token,
        database_url=database_url,
        telegram_base_url=fake.base_url,
        **extra,
    )


def answer_data(reply: Reply, value: str | tuple[str, ...]) -> str:
    """The callback data that answers the question on the reply's last keyboard with `value` (several option keys
    for a multi-choice question), as a tap (or the console's "1,3") would."""
    screen = [s for s in reply.screens() if s.keyboard][-1]
    press = parse_press(screen.buttons()[0].data)
    assert press is not None, screen.text
    key = press.args[0]
    return f"m:{press.turn}:{key}:{'+'.join(value)}" if isinstance(value, tuple) else f"a:{press.turn}:{key}:{value}"


async def answer_all(dialogue: Dialogue, user: int, answers: Sequence[str | tuple[str, ...]]) -> Reply:
    """/start, then answer every question in order; returns the last reply."""
    reply = await dialogue.command(user, "start")
    for value in answers:
        reply = await dialogue.press(user, answer_data(reply, value))
    return reply


class Clock:
    """A settable "now" (aware, UTC) for code that takes a clock, e.g. the expiry of pending admin actions."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


class RunningBot:
    """Start and stop the bot like `medlegal run` does, but inside the test's event loop."""

    def __init__(self, fake: FakeBotApi, database_url: str, **settings: Any) -> None:
        self.fake = fake
        self.settings = make_settings(fake, database_url, **settings)
        self.engine: AsyncEngine = make_engine(database_url)
        self.app = build_application(self.settings, self.engine)

    async def start(self) -> RunningBot:
        await migrate.upgrade(self.engine)
        await self.app.initialize()
        if self.app.post_init is not None:  # run_polling() calls it; so do we
            await self.app.post_init(self.app)
        await self.app.start()
        assert self.app.updater is not None
        await self.app.updater.start_polling(poll_interval=0, timeout=1)
        return self

    async def stop(self) -> None:
        assert self.app.updater is not None
        if self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()
        if self.app.post_stop is not None:  # run_polling() calls it between stop() and shutdown()
            await self.app.post_stop(self.app)
        await self.app.shutdown()
        if self.app.post_shutdown is not None:
            await self.app.post_shutdown(self.app)
        await self.engine.dispose()

    async def __aenter__(self) -> RunningBot:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def flow(self, user_id: int) -> StoredFlow | None:
        """The physician's stored session (the active one, else the latest)."""
        async with make_session_factory(self.engine)() as session:
            return await active_flow(session, user_id) or await latest_flow(session, user_id)
