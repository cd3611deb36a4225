"""End to end through the fake Bot API: /estimate reuses the flow's answers, cites its sources, sends the chart."""

from __future__ import annotations

from datetime import date
from typing import Any

from db import repository as repo
from db.engine import make_session_factory
from tests.fake_bot_api import FakeBotApi
from tests.harness import RunningBot
from tests.test_e2e_telegram import say, tap

PSYCHIATRIST = {
    "profession": "md", "ca_license": "active", "other_states": ["none"], "board": "certified",
    "stage": "established", "treatment_share": "third_plus", "specialty": "psychiatry", "income_style": "ceiling",
    "hours": "5to10", "paperwork": "low", "admin_support": "no", "testimony": "occasionally", "in_person_ca": "yes",
    "case_types": ["pi", "ffd"],
}  # fmt: skip


async def _answered(bot: RunningBot, user_id: int, answers: dict[str, Any]) -> None:
    """A physician who finished the questions (the flow itself is covered by the flow's own end-to-end tests)."""
    async with make_session_factory(bot.engine)() as session, session.begin():
        await repo.lock_user(session, user_id)
        flow = await repo.start_flow(session, user_id, None)
        await repo.save_flow(
            session, flow.id, current_key=None, editing=False, draft=(), answers=answers, status="completed"
        )


async def test_estimate_reuses_answers_cites_sources_and_sends_the_chart(fake: FakeBotApi, db_url: str) -> None:
    user = fake.user(8101)
    async with RunningBot(fake, db_url, today=date(2026, 11, 29)) as bot:
        await _answered(bot, user.id, PSYCHIATRIST)
        await say(fake, user, "/estimate", "How long does a comprehensive evaluation take")
        reused = user.messages[-2].plain_text
        assert "Reusing your answer in the questions (5-10 hours a week); we use 8 h" in reused
        asked = user.last.plain_text
        assert "our own assumption, not a sourced figure" in asked and "3-8 hours" in asked
        assert [label for label, _ in user.last.buttons()][-1] == "10-16 h (our assumption)"
        await tap(fake, user, "10-16 h (our assumption)", None)
        assert "panels" in user.last.plain_text and "No source gives the panels a month" in user.last.plain_text
        await tap(fake, user, "As many as my hours allow", None)
        result = user.last.plain_text
        for needle in (
            "This is an estimate, not advice",
            "8 h a week ≈ 35 h a month",
            "modifier x2.00 (Psychiatric/psychological)",
            "QME, official Medical-Legal Fee Schedule",
            "IME, fees physicians report",
            "ML201 $2,015 per evaluation",
            "Forensic psychiatrists report $350-$1,000 an hour",
            "forensicexpertpro.com",
            "checked 29 Nov 2026",
            "Our assumptions",
        ):
            assert needle in result, needle
        assert len(user.last.text) <= 4096

        # a modifier toggled on raises the QME range; the message is edited in place
        before = result.split("QME, official Medical-Legal Fee Schedule\n")[1].splitlines()[0]
        await tap(fake, user, "AME x1.35", None)
        after_text = user.last.plain_text
        assert "modifier x2.35" in after_text
        after = after_text.split("QME, official Medical-Legal Fee Schedule\n")[1].splitlines()[0]
        assert after != before

        sent = len(fake.calls_to("sendDocument", user.id))
        user.press("Chart")
        chart = await fake.wait_for_message(user.id, ".png")
        assert chart.document is not None
        assert chart.document["filename"] == "estimate-2026-11-29.png"
        assert chart.document["content"].startswith(b"\x89PNG")
        assert len(fake.calls_to("sendDocument", user.id)) == sent + 1

        # a forged estimator button gets a clear answer, not silence
        user.press_data("es:R:999.1-2.z.0.0.0._:r")
        await fake.wait_for_message(user.id, "out of date or not one I made")


async def test_estimate_without_answers_asks_the_hours_first(fake: FakeBotApi, sqlite_url: str) -> None:
    user = fake.user(8102)
    async with RunningBot(fake, sqlite_url, today=date(2026, 11, 29)):
        await say(fake, user, "/estimate", "How many hours a week")
        await tap(fake, user, "20 h", None)
        assert "6-10 h (our assumption)" in [label for label, _ in user.last.buttons()]
        await tap(fake, user, "6-10 h (our assumption)", None)
        await tap(fake, user, "4", None)
        result = user.last.plain_text
        assert "20 h a week" in result and "at most 4 new evaluations a month" in result
        assert "Published IME fees run $750-$2,500 per examination" in result
