"""End to end through the fake Bot API: answering and changing a poll, peer figures only past k once the daily
snapshot is refreshed, a start link counted under its source, and non-admins refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest
from sqlalchemy import update

from bot import admin_polls as ap
from db import sources
from db.engine import make_session_factory
from db.models import PollSnapshot, PollVote
from tests.fake_bot_api import FakeBotApi, FakeUser
from tests.harness import RunningBot
from tests.test_e2e_telegram import say, tap

ADMIN = 4242
TODAY = date(2026, 11, 29)
FEE = "What do you charge for a standard IME?"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as server:
        yield server


async def _answer(fake: FakeBotApi, user: FakeUser, label: str) -> str:
    await say(fake, user, "/polls", "Community polls")
    await tap(fake, user, FEE, None)
    await tap(fake, user, label, None)
    return user.last.plain_text


async def test_poll_answer_change_figures_past_k_and_start_links(fake: FakeBotApi, db_url: str) -> None:
    async with RunningBot(fake, db_url, admin_ids=str(ADMIN), today=TODAY) as bot:
        assert "polls" in [c["command"] for c in fake.my_commands]
        ana = fake.user(1001, first_name="Ana")
        first = await _answer(fake, ana, "$1,000-2,000")
        assert "Your answer: $1,000-2,000" in first
        assert "Results appear once 5 physicians have answered" in first
        await tap(fake, ana, "Change my answer", None)
        await tap(fake, ana, "Under $1,000", None)
        assert "Your answer: Under $1,000" in ana.last.plain_text

        for user_id in range(1002, 1006):
            text = await _answer(fake, fake.user(user_id, first_name="Doc"), "Under $1,000")
            assert "Results appear once 5 physicians have answered" in text  # today's snapshot holds

        async with bot.engine.begin() as conn:  # the answers are from last month, and a day passes for the snapshot
            await conn.execute(update(PollVote).values(answered_on=TODAY - timedelta(days=31)))
            await conn.execute(update(PollSnapshot).values(taken_on=TODAY - timedelta(days=1)))
        await say(fake, ana, "/polls", "Community polls")
        await tap(fake, ana, f"✓ {FEE}", None)
        figures = ana.last.plain_text
        assert "100% of 5 physicians chose Under $1,000" in figures
        assert "<5 of 5 physicians chose Over $3,500" in figures
        assert "Results appear" not in figures

        # community links: admins only
        for command in ("/poll_new", "/invite Ortho Society"):
            refused = await say(fake, ana, command, "Sorry")
            assert refused.plain_text == ap.NOT_ADMIN
        admin = fake.user(ADMIN, first_name="Admin")
        link = await say(fake, admin, "/invite Ortho Society", "Start link")
        assert f"https://t.me/{fake.bot_username}?start=ortho_society" in link.plain_text
        newcomer = fake.user(1100, first_name="Ben")
        await say(fake, newcomer, "/start ortho_society", "Step 1 of")
        async with make_session_factory(bot.engine)() as session:
            assert await sources.source_of(session, 1100) == "ortho_society"
            assert await sources.source_of(session, 1001) is None
        listing = await say(fake, admin, "/sources", "Community links")
        assert "Ortho Society (ortho_society" in listing.plain_text and "not finished yet <5" in listing.plain_text
