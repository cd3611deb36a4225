"""End to end: an admin's /export through the real PTB Application and the fake Bot API delivers the CSV and one
chart per poll as documents; a physician is refused; nothing in them names anyone."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator

import pytest
from matplotlib import image

from bot.admin_export import NOT_ADMIN
from bot.export_files import COLUMNS
from db.engine import make_session_factory
from tests.fake_bot_api import BotMessage, FakeBotApi, FakeUser
from tests.harness import RunningBot
from tests.test_e2e_telegram import say
from tests.test_export_cli import FIRST_ID, PLAN, seed, seed_extras

ADMIN = 4242
TODAY = "2026-11-29"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as server:
        yield server


async def documents(fake: FakeBotApi, user: FakeUser, count: int) -> list[BotMessage]:
    deadline = asyncio.get_running_loop().time() + 30
    while len(found := [m for m in user.messages if m.document is not None]) < count:
        assert asyncio.get_running_loop().time() < deadline, f"{len(found)} of {count} documents arrived"
        await asyncio.sleep(0.05)
    await fake.wait_until_idle()
    return found


async def test_admin_export_sends_csv_and_charts_and_a_physician_is_refused(fake: FakeBotApi, sqlite_url: str) -> None:
    admin = fake.user(ADMIN, first_name="Quinn", username="quinn_admin")
    physician = fake.user(FIRST_ID + 500, first_name="Zelda", username="zelda_md")
    async with RunningBot(fake, sqlite_url, today=TODAY, admin_ids=frozenset({ADMIN}), k_min=3) as bot:
        sessions = make_session_factory(bot.engine)
        users = await seed_extras(sessions, await seed(sessions, PLAN))
        # free text where a button is expected is answered, never stored, so it cannot reach an export
        await say(fake, physician, "/start", "Step 1 of 14")
        await say(fake, physician, "I am Zelda Private from Fresno", "Step 1 of 14")

        refused = await say(fake, physician, "/export", "only for them")
        assert refused.plain_text == NOT_ADMIN
        assert fake.calls_to("sendDocument", physician.id) == []

        admin.send("/export")  # nineteen charts are drawn before the reply goes out: allow for a busy machine
        summary = await fake.wait_for_message(ADMIN, "Export, Sep 2026 - Oct 2026", timeout=60)
        # the flow's 15 questions and path, the start-link poll, the two funnel polls and the community poll
        assert "19 polls" in summary.plain_text and "below 3" in summary.plain_text
        sent = await documents(fake, admin, 20)
        assert len(fake.calls_to("sendDocument", ADMIN)) == 20
        files = {str(m.document["filename"]): bytes(m.document["content"]) for m in sent if m.document}
        table = files.pop("medlegal-export-2026-09-2026-10.csv").decode()
        rows = list(csv.DictReader(io.StringIO(table)))
        assert tuple(rows[0]) == COLUMNS
        specialty = {r["option"]: (r["count"], r["respondents"]) for r in rows if r["poll"] == "flow.specialty"}
        assert specialty["Orthopedics"] == ("9", "15") and specialty["Psychiatry"] == ("<3", "15")
        figures = {(r["poll"], r["option"]): (r["count"], r["respondents"]) for r in rows}
        assert figures[("fees", "$1,000-2,000")] == ("4", "7") and figures[("fees", "Over $3,500")] == ("<3", "7")
        assert figures[("source.link", "Ortho Club: finished")] == ("5", "18")
        assert figures[("progress.qme", "Eligibility confirmed")] == ("8", "15")
        assert sorted(files) == sorted(f"{p}.png" for p in dict.fromkeys(r["poll"] for r in rows))
        for content in files.values():
            pixels = image.imread(io.BytesIO(content), format="png")
            assert pixels.shape[0] > 200

        # a month given explicitly, and one that has not ended
        after = admin.last.message_id
        admin.send("/export 2026-10 2026-10")
        await fake.wait_for_message(ADMIN, "Export, Oct 2026", after=after, timeout=60)
        await documents(fake, admin, 39)  # October: no community poll (one answer), so 18 charts and the CSV
        unfinished = await say(fake, admin, "/export 2026-10 2026-11", "has not ended yet")
        assert "Usage: /export" in unfinished.plain_text

    everything = table + "".join(m.plain_text for m in admin.messages)
    for secret in [*map(str, users), str(physician.id), str(ADMIN), "Zelda", "zelda_md", "Quinn", "quinn_admin"]:
        assert secret not in everything
    assert "Private" not in everything and "Fresno" not in everything
