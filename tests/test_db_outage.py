"""End to end on PostgreSQL: the connection to the database is cut mid-flow through a TCP proxy the test controls.

The physician's tap is retried while the database is away; if it stays away they are told to try again in a moment,
nothing half-done is stored, the same tap works once it is back, and the bot recovers without a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bot import faults, texts
from db.engine import make_engine, make_session_factory
from db.repository import StoredFlow, active_flow
from tests.conftest import fresh_database_url
from tests.fake_bot_api import FakeBotApi, FakeUser
from tests.harness import RunningBot
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres
ADMIN = 9001


@pytest.fixture
async def pg_url(tmp_path: Path) -> AsyncIterator[str]:
    async for url in fresh_database_url("postgres", tmp_path):
        yield url


@pytest.fixture
async def proxy(pg_url: str) -> AsyncIterator[TcpProxy]:
    url = make_url(pg_url)
    async with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running


def through(proxy: TcpProxy, pg_url: str) -> str:
    return make_url(pg_url).set(port=proxy.port).render_as_string(hide_password=False)


async def stored(pg_url: str, user_id: int) -> StoredFlow | None:
    """The physician's active flow, read directly (not through the proxy)."""
    engine = make_engine(pg_url)
    try:
        async with make_session_factory(engine)() as session:
            return await active_flow(session, user_id)
    finally:
        await engine.dispose()


def _after(user: FakeUser) -> int:
    return user.last.message_id if user.messages else 0


async def _start_to_step_2(fake: FakeBotApi, user: FakeUser) -> None:
    user.send("/start")
    await fake.wait_for_message(user.id, "Step 1 of 14")
    after = _after(user)
    user.press("MD")
    await fake.wait_for_message(user.id, "Step 2 of 14", after=after)


async def test_an_outage_longer_than_the_retries_asks_again_and_the_bot_recovers(
    proxy: TcpProxy, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faults, "DB_RETRY_DELAYS", (0.05, 0.05))
    async with FakeBotApi() as fake:
        user = fake.user(3001)
        async with RunningBot(fake, through(proxy, pg_url), admin_ids=frozenset({ADMIN})):
            await _start_to_step_2(fake, user)
            question = user.last

            await proxy.cut()
            after = _after(user)
            user.press("Yes, active")
            sorry = await fake.wait_for_message(user.id, "can't reach my database", after=after, timeout=10)
            assert sorry.plain_text == texts.DB_UNAVAILABLE
            assert any(c.get("text") == texts.DB_UNAVAILABLE for c in fake.answered_callbacks)
            # the admins hear about it once, with no user data
            report = await fake.wait_for_message(ADMIN, "database is unreachable", timeout=10)
            assert str(user.id) not in report.plain_text and "Yes" not in report.plain_text
            # nothing half-done is stored, and the question still has its buttons to tap again
            flow = await stored(pg_url, user.id)
            assert flow is not None and flow.answers == {"profession": "md"} and flow.current_key == "ca_license"
            assert question.buttons() and "Step 2 of 14" in question.plain_text

            # a second failure of the same kind within the hour is not reported again
            after = _after(user)
            user.press("Yes, active")
            await fake.wait_for_message(user.id, "can't reach my database", after=after, timeout=10)
            await fake.wait_until_idle()
            assert len(fake.messages(ADMIN)) == 1

            await proxy.restore()
            after = _after(user)
            user.press("Yes, active", message_id=question.message_id)
            await fake.wait_for_message(user.id, "Step 3 of 14", after=after, timeout=10)
            for label, expect in (("None", None), ("Done", "Step 4 of 14")):
                after = _after(user)
                user.press(label)
                if expect:
                    await fake.wait_for_message(user.id, expect, after=after, timeout=10)
                else:
                    await fake.wait_until_idle()
            flow = await stored(pg_url, user.id)
            assert flow is not None
            assert flow.answers == {"profession": "md", "ca_license": "active", "other_states": ["none"]}
            assert proxy.connections >= 2  # the bot reconnected by itself


async def test_a_short_outage_is_retried_and_the_physician_sees_nothing_of_it(
    proxy: TcpProxy, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faults, "DB_RETRY_DELAYS", (0.25,) * 8)
    async with FakeBotApi() as fake:
        user = fake.user(3002)
        async with RunningBot(fake, through(proxy, pg_url)):
            await _start_to_step_2(fake, user)
            await proxy.cut()
            after = _after(user)
            user.press("Yes, active")
            await asyncio.sleep(0.6)
            await proxy.restore()
            await fake.wait_for_message(user.id, "Step 3 of 14", after=after, timeout=10)
            await fake.wait_until_idle()
            assert not any(texts.DB_UNAVAILABLE in m.plain_text or texts.ERROR in m.plain_text for m in user.messages)
            flow = await stored(pg_url, user.id)
            assert flow is not None and flow.answers == {"profession": "md", "ca_license": "active"}
