"""Benchmark a broadcast through the real sender, limiter and Bot stack against the fake Bot API (not a timed test).

    python -m bench.broadcast [--recipients 10000] [--rates 30,1000] [--database-url URL] [--max-lanes N]
                              [--profile PREFIX]

For each rate the fake server runs in a child process (so its work and memory are not the bot's) and enforces
Telegram's limits itself at exactly that rate: it answers 429 to the request that would make more than RATE
messages in a sliding one-second window, or more than one a second in one chat. The bot queues one broadcast to
every recipient (all subscribers) in a fresh database and its sender delivers it with MEDLEGAL_RATE_LIMIT=RATE.

Printed per rate: the achieved rate (first to last message as the server saw them) as a fraction of the limit, the
429s provoked, whether every recipient got exactly one message, and this process's peak RSS. Targets: at least
97% of the limit, zero 429s, peak RSS under 150 MB. The 30/s run over 10,000 recipients takes about 5.5 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.child import ChildFake
from bench.common import profiled
from bot.app import build_application, tune_gc
from bot.sender import OutboxSender
from bot.settings import Settings
from db import migrate, outbox
from db.engine import make_engine, make_session_factory
from db.models import Subscription, User, utcnow

FIRST_USER = 10_000_000
ADMIN = 1


# -- the fake server, in a child process ------------------------------------------------------------------


async def serve_fake(rate: int) -> None:
    """Run the fake Bot API with its flood limits on; print its address, then a report when told to."""
    from tests.fake_bot_api import FakeBotApi

    async with FakeBotApi() as fake:
        fake.set_rate_limit(per_second=rate, per_chat_per_second=1)
        # Its start-up frozen, as the bot's (bot.app.tune_gc): else the fake's own full collection stops it
        # for about 140 ms mid-broadcast, it stamps the requests that queued meanwhile late, and the bot's sliding
        # window must then hold their places longer, every second after, for a stall no Telegram server makes.
        gc.collect()
        gc.freeze()
        print(json.dumps({"base_url": fake.base_url, "token": fake.token}), flush=True)
        started = time.process_time()  # its own start-up (imports, server) is not the broadcast's
        loop = asyncio.get_running_loop()
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "report":
            sends = [c for c in fake.calls if c.method.lower() == "sendmessage" and c.status == 200]
            per_chat = Counter(c.chat_id for c in sends)
            report = {
                "sent": len(sends),
                "first": sends[0].at if sends else 0.0,
                "last": sends[-1].at if sends else 0.0,
                "violations": fake.rate_limit_violations,
                "chats": len(per_chat),
                "twice": sum(1 for n in per_chat.values() if n > 1),
                "cpu": time.process_time() - started,
            }
            print(json.dumps(report), flush=True)


class FakeProcess(ChildFake):
    """The fake server in a child process: `address` once started, `report()` at the end."""

    def __init__(self, rate: int) -> None:
        super().__init__("bench.broadcast", "--serve-fake", str(rate))

    async def report(self) -> dict[str, Any]:
        return await self.ask(b"report\n")


# -- the bot side -----------------------------------------------------------------------------------------


async def populate(url: str, recipients: int) -> int:
    """Users who all subscribed, and one broadcast to them; returns the broadcast id."""
    engine = make_engine(url)
    await migrate.upgrade(engine)
    now = utcnow()
    ids = list(range(FIRST_USER, FIRST_USER + recipients))
    async with make_session_factory(engine)() as session, session.begin():
        await session.execute(insert(User), [{"id": i, "created_at": now, "updated_at": now} for i in [ADMIN, *ids]])
        await session.execute(
            insert(Subscription), [{"user_id": i, "active": True, "created_at": now, "updated_at": now} for i in ids]
        )
        broadcast = await outbox.queue_broadcast(
            session,
            text="<b>QME exam</b>: applications for the next window close in 30 days.",
            audience="all",
            created_by=ADMIN,
            recipients=ids,
        )
        broadcast_id = broadcast.id
    await engine.dispose()
    return broadcast_id


async def wait_finished(sessions: async_sessionmaker[AsyncSession], broadcast_id: int) -> dict[str, int]:
    """Poll until the sender has finished the broadcast; its outbox counts."""
    while True:
        await asyncio.sleep(0.5)
        async with sessions() as session:
            b = await outbox.get_broadcast(session, broadcast_id)
            if b is not None and b.finished_at is not None:
                return await outbox.broadcast_counts(session, broadcast_id)


async def bench_rate(rate: int, recipients: int, url: str, max_lanes: int, profile: str | None) -> None:
    broadcast_id = await populate(url, recipients)
    async with FakeProcess(rate) as fake:
        settings = Settings(
            _env_file=None,
            bot_token=fake.address["token"],
            database_url=url,
            telegram_base_url=fake.address["base_url"],
            rate_limit=rate,
            chat_rate_limit=1,
        )
        engine = make_engine(url)
        app = build_application(settings, engine)  # the bot exactly as `medlegal run` builds it
        await app.initialize()
        tune_gc()  # as `medlegal run` does once initialized
        sessions = make_session_factory(engine)
        sender = OutboxSender(app.bot, sessions, settings, max_lanes=max_lanes)
        started = time.perf_counter()
        cpu_started = time.process_time()
        task = asyncio.create_task(sender.run_forever())
        try:
            async with profiled(profile, f"broadcast-{rate}"):
                counts = await wait_finished(sessions, broadcast_id)
        finally:
            sender.stop()
            await task
            await app.shutdown()
            await engine.dispose()
        wall = time.perf_counter() - started
        cpu_ms = (time.process_time() - cpu_started) * 1000 / max(1, recipients)
        report = await fake.report()
    achieved = (report["sent"] - 1) / (report["last"] - report["first"]) if report["sent"] > 1 else 0.0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    exact = report["sent"] == report["chats"] == recipients and report["twice"] == 0
    print(
        f"limit {rate:>5}/s: {report['sent']:>6} sent in {wall:6.1f} s, achieved {achieved:8.1f}/s = "
        f"{achieved / rate:6.1%} of the limit, 429s {report['violations']}, "
        f"exactly once {'yes' if exact else 'NO'} (outbox: {counts}), peak RSS {peak_mb:.0f} MB, "
        f"bot CPU {cpu_ms:.2f} ms a message (the fake's {report['cpu'] * 1000 / max(1, recipients):.2f})",
        flush=True,
    )


async def run(recipients: int, rates: list[int], url: str | None, max_lanes: int, profile: str | None) -> None:
    for rate in rates:
        with tempfile.TemporaryDirectory() as tmp:
            db_url = url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            await bench_rate(rate, recipients, db_url, max_lanes, profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--rates", default="30,1000", help="comma-separated limits in messages per second")
    parser.add_argument("--database-url", help="an empty database (default: a temporary SQLite file)")
    parser.add_argument("--max-lanes", type=int, default=4, help="the most messages the sender keeps on the wire")
    parser.add_argument("--profile", metavar="PREFIX", help="write a pyinstrument profile of the bot to PREFIX-*.txt")
    parser.add_argument("--serve-fake", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        asyncio.run(serve_fake(args.serve_fake))
        return
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    asyncio.run(run(args.recipients, rates, args.database_url, args.max_lanes, args.profile))


if __name__ == "__main__":
    main()
