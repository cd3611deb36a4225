"""Several `medlegal run` processes in webhook mode against one PostgreSQL, behind the fake Bot API acting as
Telegram plus a load balancer: updates alternate between the processes, some reach both at once, one arrives late.

One test reuses its processes for every check, since starting them is most of the cost.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from bot import texts
from db.engine import make_engine, make_session_factory
from db.models import FlowSession, ProcessedUpdate, RecommendationRow
from db.repository import latest_flow
from tests.cli_runner import COMMAND, clean_env
from tests.conftest import fresh_database_url
from tests.fake_bot_api import BotMessage, FakeBotApi, FakeUser, make_message_update
from tests.test_e2e_telegram import CA_ORTHO

pytestmark = pytest.mark.postgres

SECRET = "s3cret-token"
PUBLIC_URL = "https://bot.example.org/telegram/hook"
TYPED = {"MD", "Board certified", "Established", "10-20"}
"""Steps one physician answers by typing the option instead of tapping it."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Worker:
    """One `medlegal run` process in webhook mode, its log in a file."""

    def __init__(self, tmp_path: Path, name: str, fake: FakeBotApi, database_url: str) -> None:
        self.port = _free_port()
        self.listen = f"127.0.0.1:{self.port}"
        self.log = tmp_path / f"{name}.log"
        self.env = clean_env(
            tmp_path / "unused.db",
            MEDLEGAL_DATABASE_URL=database_url,
            MEDLEGAL_BOT_TOKEN=fake.token,
            MEDLEGAL_TELEGRAM_BASE_URL=fake.base_url,
            MEDLEGAL_WEBHOOK_URL=PUBLIC_URL,
            MEDLEGAL_WEBHOOK_SECRET=SECRET,
            MEDLEGAL_WEBHOOK_LISTEN=self.listen,
            MEDLEGAL_LOG_FORMAT="text",
        )
        self.cwd = tmp_path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *COMMAND, "run", cwd=self.cwd, env=self.env, stdout=log, stderr=log
            )

    async def health(self, http: aiohttp.ClientSession) -> tuple[int, dict[str, Any]]:
        async with http.get(f"http://{self.listen}/healthz") as response:
            return response.status, await response.json()

    async def wait_healthy(self, http: aiohttp.ClientSession, within: float = 30) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            assert self.proc is not None and self.proc.returncode is None, self.log.read_text()
            try:
                status, body = await self.health(http)
                if status == 200:
                    return body
            except aiohttp.ClientError:
                pass
            assert asyncio.get_running_loop().time() < deadline, self.log.read_text()
            await asyncio.sleep(0.1)

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 20)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()


@pytest.fixture
async def pg_url(tmp_path: Path) -> AsyncIterator[str]:
    async for url in fresh_database_url("postgres", tmp_path):
        yield url


def _after(user: FakeUser) -> int:
    return user.last.message_id if user.messages else 0


Sent = dict[int, str]
"""update_id -> "press" or "text", for one physician."""


async def _tap(
    fake: FakeBotApi, user: FakeUser, label: str, expect: str | None, *, everywhere: bool, sent: Sent
) -> None:
    """Tap a button (delivered to every process when `everywhere`); wait for the next message or the edit."""
    after = _after(user)
    pressed = next(m for m in reversed(user.messages) if any(label.casefold() in b.casefold() for b, _ in m.buttons()))
    edits = pressed.edited
    update_id = user.press(label)
    sent[update_id] = "press"
    if everywhere:
        fake.deliver_everywhere(update_id)
    if expect is not None:
        await fake.wait_for_message(user.id, expect, after=after, timeout=20)
        return
    deadline = asyncio.get_running_loop().time() + 20
    while pressed.edited == edits:
        assert asyncio.get_running_loop().time() < deadline, f"tapping {label!r} changed nothing\n{fake.dump(user.id)}"
        await asyncio.sleep(0.01)


async def _say(
    fake: FakeBotApi, user: FakeUser, words: str, expect: str, *, everywhere: bool, sent: Sent | None = None
) -> BotMessage:
    after = _after(user)
    update_id = user.send(words)
    if sent is not None:
        sent[update_id] = "text"
    if everywhere:
        fake.deliver_everywhere(update_id)
    return await fake.wait_for_message(user.id, expect, after=after, timeout=20)


async def _walk(fake: FakeBotApi, user: FakeUser, *, typed: bool) -> Sent:
    """The whole flow; every third update also reaches every process at once (a duplicate)."""
    sent: Sent = {}
    await _say(fake, user, "/start", "Step 1 of 14", everywhere=True, sent=sent)
    for step, (label, expect) in enumerate(CA_ORTHO):
        everywhere = step % 3 == 0
        if typed and label in TYPED:
            assert expect is not None
            await _say(fake, user, label, expect, everywhere=everywhere, sent=sent)
        else:
            await _tap(fake, user, label, expect, everywhere=everywhere, sent=sent)
    return sent


def _texts(user: FakeUser) -> list[str]:
    return [m.plain_text for m in user.messages]


def _check_conversation(fake: FakeBotApi, user: FakeUser) -> None:
    """Whole and ordered: each question once, in order, then one recommendation; no nudge, no stale answer."""
    shown = _texts(user)
    steps = [
        (next(k for k in range(1, 15) if f"Step {k} of 14" in t), t.startswith("✓")) for t in shown if " of 14" in t
    ]
    assert [k for k, _ in steps] == sorted(k for k, _ in steps), fake.dump(user.id)
    for done in (True, False):  # a question, and its answer (the question edited, or a new line after a typed one)
        numbers = [k for k, answered in steps if answered is done]
        assert len(numbers) == len(set(numbers)), fake.dump(user.id)
    assert {k for k, answered in steps if answered} == set(range(1, 15)), fake.dump(user.id)
    assert sum("Recommendation: California QME" in t for t in shown) == 1, fake.dump(user.id)
    for nudge in (texts.STALE_BUTTON, texts.LATE_MESSAGE, texts.USE_BUTTONS, texts.ERROR):
        assert not any(nudge in t for t in shown), (nudge, fake.dump(user.id))


async def _double_tap(fake: FakeBotApi, user: FakeUser) -> None:
    """Two different options of one question tapped at once, each landing on a different process: the row lock
    lets one apply and the other meet the moved turn (answered as a stale button), never both."""
    after = _after(user)
    user.send("/start")
    question = await fake.wait_for_message(user.id, "Step 1 of 14", after=after, timeout=20)
    user.press("MD", message_id=question.message_id)
    user.press("DO", message_id=question.message_id)
    await fake.wait_for_message(user.id, texts.STALE_BUTTON, after=question.message_id, timeout=20)
    await fake.wait_for_message(user.id, "Step 2 of 14", after=question.message_id, timeout=20)


async def _late_text(fake: FakeBotApi, user: FakeUser) -> None:
    """An older typed answer arriving after a newer update: applied while it still answers the current question
    (the newer update was /help), refused like a stale button once the newer update answered that question."""
    after = _after(user)
    user.send("/start")
    await fake.wait_for_message(user.id, "Step 1 of 14", after=after, timeout=20)

    older = fake.reserve_update_id()
    after = _after(user)
    user.send("/help")
    await fake.wait_for_message(user.id, "/start", after=after, timeout=20)
    after = _after(user)
    user.send("MD", update_id=older)  # older than /help, still answers step 1
    await fake.wait_for_message(user.id, "Step 2 of 14", after=after, timeout=20)

    older = fake.reserve_update_id()
    after = _after(user)
    user.press("No, and not planning to")
    await fake.wait_for_message(user.id, "Step 3 of 12", after=after, timeout=20)
    after = _after(user)
    user.send("Yes, active", update_id=older)  # typed for step 2 before the tap, arrives after it
    late = await fake.wait_for_message(user.id, texts.LATE_MESSAGE, after=after, timeout=20)
    assert "Step 3 of 12" in late.plain_text


async def test_processes_share_one_postgresql(fake_api: FakeBotApi, pg_url: str, tmp_path: Path) -> None:
    fake = fake_api
    workers = [Worker(tmp_path, f"w{i}", fake, pg_url) for i in range(2)]
    fake.webhook_targets = [w.listen for w in workers]
    engine = make_engine(pg_url)
    try:
        await asyncio.gather(*(w.start() for w in workers))  # together: they migrate once, under the lock
        async with aiohttp.ClientSession() as http:
            bodies = [await w.wait_healthy(http) for w in workers]
            await fake.wait_for_call("setWebhook", timeout=20)
            assert all(b["database"] == "up" for b in bodies)

            # the secret token: missing or wrong is 403, and nothing reaches the dialogue
            update = make_message_update({"id": 7, "is_bot": False, "first_name": "X"}, "/start", message_id=1)
            update["update_id"] = 1
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
                async with http.post(f"http://{workers[0].listen}/telegram/hook", json=update, headers=headers) as r:
                    assert r.status == 403
            async with http.post(
                f"http://{workers[0].listen}/telegram/hook",
                data=b"not json",
                headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
            ) as r:
                assert r.status == 400

            # physicians in parallel; their updates alternate between the processes, some reach both
            users = [fake.user(500 + i) for i in range(3)]
            late = fake.user(600)
            late_walk = asyncio.create_task(_late_text(fake, late))
            taps = asyncio.create_task(_double_tap(fake, tapper := fake.user(650)))
            walks = await asyncio.gather(*(_walk(fake, u, typed=i == 0) for i, u in enumerate(users)))
            await late_walk
            await taps
            await fake.wait_until_idle(quiet=0.3, timeout=10)
            assert fake.messages(7) == []
            for user, sent in zip(users, walks, strict=True):
                _check_conversation(fake, user)
                hit = {url for uid, url, status in fake.webhook_deliveries if uid in sent and status == 200}
                assert len(hit) == 2, "each physician's updates reached both processes"
                presses = sum(1 for kind in sent.values() if kind == "press")
                assert len(fake.calls_to("answerCallbackQuery", user.id)) == presses, "a repeat was processed"
            duplicated = [uid for uid in walks[0] if sum(d[0] == uid for d in fake.webhook_deliveries) == 2]
            assert len(duplicated) >= 5, "duplicates were delivered to both processes"

            # the database: every physician's answers, identical, recorded once; the late text changed nothing
            sessions = make_session_factory(engine)
            async with sessions() as session:
                flows = [await latest_flow(session, u.id) for u in users]
                assert all(f is not None and f.status == "completed" for f in flows)
                answers = [f.answers for f in flows if f is not None]
                assert len(answers[0]) == 14 and all(a == answers[0] for a in answers)
                for user in users:
                    count = select(func.count()).select_from(RecommendationRow).join(FlowSession)
                    assert (await session.execute(count.where(FlowSession.user_id == user.id))).scalar_one() == 1
                tapped = await latest_flow(session, tapper.id)
                assert tapped is not None and tapped.turn == 2, "one tap moved the flow, once"
                assert tapped.answers in ({"profession": "md"}, {"profession": "do"})
                assert sum(texts.STALE_BUTTON in t for t in _texts(tapper)) == 1, fake.dump(tapper.id)
                assert sum(t.startswith("✓ Step 1 of 14") for t in _texts(tapper)) == 1, fake.dump(tapper.id)
                late_flow = await latest_flow(session, late.id)
                assert late_flow is not None
                assert late_flow.answers == {"profession": "md", "ca_license": "no"}, late_flow.answers
                assert (await session.execute(select(func.count()).select_from(ProcessedUpdate))).scalar_one() > 0

            # exactly one reminder scheduler; when its process dies, the other takes over
            states = [(await w.health(http))[1]["reminder_scheduler"] for w in workers]
            assert sorted(states) == ["active", "standby"], states
            holder = workers[states.index("active")]
            survivor = workers[1 - states.index("active")]
            holder.kill()
            await holder.stop()
            deadline = asyncio.get_running_loop().time() + 10
            while (await survivor.health(http))[1]["reminder_scheduler"] != "active":
                assert asyncio.get_running_loop().time() < deadline, survivor.log.read_text()
                await asyncio.sleep(0.2)

            # a delivery to the dead process fails and is retried on the survivor, like Telegram behind a proxy
            again = fake.user(700)
            for _ in range(2):
                await _say(fake, again, "/start", "Step 1 of 14", everywhere=False)
            assert any(status == 0 for _, _, status in fake.webhook_deliveries), "the dead process was tried"

            # the database goes away: the health endpoint says so with 503, and recovers
            db_name = pg_url.rpartition("/")[2]
            await _admin(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS false')
            await _admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db_name}'")
            try:
                status, body = await survivor.health(http)
                assert status == 503 and body["database"] == "down", body
            finally:
                await _admin(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS true')
            await survivor.wait_healthy(http, within=10)
        assert await survivor.stop() == 0, survivor.log.read_text()
    finally:
        for worker in workers:
            if worker.proc is not None and worker.proc.returncode is None:
                worker.kill()
                await worker.proc.wait()
        await engine.dispose()
    logs = "".join(w.log.read_text() for w in workers)
    assert fake.token not in logs
    assert sum("reminder scheduler active in this process" in w.log.read_text() for w in workers) == 2


async def _admin(sql: str) -> None:
    import asyncpg

    from tests.conftest import PG_URL

    conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as server:
        yield server
