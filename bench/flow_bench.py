"""Benchmark the decision flow at three depths and print figures (not a timed test).

    python -m bench.flow_bench [--physicians N] [--database-url URL]

1. engine: pure state moves through a full 14-question persona, no I/O;
2. dialogue: the same persona through `Dialogue` on a real database (one transaction per tap);
3. telegram: N simulated physicians tapping through the real PTB Application polling the fake Bot API over
   HTTP, all at once; latency is from a tap being queued to the next question arriving.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bot.dialogue import Dialogue
from db import migrate
from db.engine import make_engine, make_session_factory
from flows.engine import FlowEngine
from tests.fake_bot_api import FakeBotApi, FakeUser
from tests.harness import RunningBot, answer_data

PERSONA: list[str | tuple[str, ...]] = [
    "md", "active", ("none",), "certified", "established", "third_plus", "ortho", "predictable", "10to20",
    "high", "yes", "comfortable", "yes", ("wc",),
]  # fmt: skip
TAPS = ["MD", "Yes, active", "None", "Done", "Board certified", "Established", "At least a third",
        "Orthopedics", "Predictable", "10-20", "High tolerance", "Yes", "Comfortable", "Yes", "Workers' compensation",
        "Done"]  # fmt: skip


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_engine(rounds: int = 2000) -> None:
    engine = FlowEngine()
    started = time.perf_counter()
    for _ in range(rounds):
        state = engine.start()
        for value in PERSONA:
            assert state.current is not None
            state = engine.answer(state, state.current, value)
        assert state.complete
    elapsed = time.perf_counter() - started
    moves = rounds * len(PERSONA)
    print(f"engine:    {moves / elapsed:10,.0f} answers/s   ({elapsed / rounds * 1e3:.2f} ms per full flow)")


async def bench_dialogue(url: str, physicians: int) -> None:
    engine = make_engine(url)
    await migrate.upgrade(engine)
    dialogue = Dialogue(make_session_factory(engine))
    latencies: list[float] = []
    started = time.perf_counter()
    for user in range(1, physicians + 1):
        reply = await dialogue.command(user, "start")
        for value in PERSONA:
            data = answer_data(reply, value)
            t0 = time.perf_counter()
            reply = await dialogue.press(user, data)
            latencies.append(time.perf_counter() - t0)
        assert "Recommendation" in reply.send[-1].text
    elapsed = time.perf_counter() - started
    await engine.dispose()
    print(
        f"dialogue:  {len(latencies) / elapsed:10,.0f} taps/s      p50 {_pct(latencies, 0.5) * 1e3:.1f} ms, "
        f"p95 {_pct(latencies, 0.95) * 1e3:.1f} ms per tap ({physicians} physicians, sequential, {_backend(url)})"
    )


async def _physician(fake: FakeBotApi, user: FakeUser, latencies: list[float]) -> None:
    user.send("/start")
    await fake.wait_for_message(user.id, "Step 1 of", timeout=60)
    for label in TAPS:
        after = user.last.message_id
        t0 = time.perf_counter()
        user.press(label)
        if label in {"None", "Workers' compensation"}:  # toggles edit the keyboard in place
            await fake.wait_for_call("editMessageText", user.id, after_index=len(fake.calls), timeout=60)
        else:
            await fake.wait_for_message(user.id, None, after=after, timeout=60)
        latencies.append(time.perf_counter() - t0)
    assert "Recommendation" in user.last.plain_text


async def bench_telegram(url: str, physicians: int) -> None:
    latencies: list[float] = []
    async with FakeBotApi() as fake, RunningBot(fake, url):
        users = [fake.user(10_000 + i) for i in range(physicians)]
        started = time.perf_counter()
        await asyncio.gather(*(_physician(fake, u, latencies) for u in users))
        elapsed = time.perf_counter() - started
        calls = len([c for c in fake.calls if c.method != "getUpdates"])
    print(
        f"telegram:  {len(latencies) / elapsed:10,.0f} taps/s      p50 {_pct(latencies, 0.5) * 1e3:.1f} ms, "
        f"p95 {_pct(latencies, 0.95) * 1e3:.1f} ms per tap; {physicians} physicians at once finished in "
        f"{elapsed:.1f} s ({calls} Bot API calls, {_backend(url)})"
    )
    print(f"           mean {statistics.mean(latencies) * 1e3:.1f} ms, max {max(latencies) * 1e3:.1f} ms")


def _backend(url: str) -> str:
    return "PostgreSQL" if url.startswith("postgresql") else "SQLite"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--physicians", type=int, default=50)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        bench_engine()
        asyncio.run(bench_dialogue(base, args.physicians))
        telegram_url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench-tg.db'}"
        asyncio.run(bench_telegram(telegram_url, args.physicians))


if __name__ == "__main__":
    main()
