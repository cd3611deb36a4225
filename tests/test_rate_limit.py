"""The rate limiter's schedules: in memory a sliding-window log (no window holds more than the limit, a stall's
unused capacity is spent afterwards, replies ahead of bulk), on PostgreSQL evenly spaced slots shared by several
processes; 429 pauses for bulk only, per-chat windows."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import random
import time
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from telegram.error import RetryAfter

from bot.rate_limit import BotRateLimiter, ChatWindows, DatabaseSchedule, MemorySchedule, Reservation, is_message
from db.engine import make_engine
from tests.sql_trace import statements_run


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def busiest_window(slots: list[float], length: float = 1.0) -> int:
    """The most slots any `length`-second window [t, t + length) holds (Telegram's count)."""
    slots = sorted(slots)
    return max((bisect.bisect_left(slots, t + length) - i for i, t in enumerate(slots)), default=0)


async def run_bulk(
    schedule: MemorySchedule,
    clock: Clock,
    until: float,
    *,
    step: float = 0.0005,
    stalls: dict[float, float] | None = None,
) -> list[float]:
    """Lanes enough to take every bulk slot the schedule offers, the clock moving `step` at a time; `stalls` maps
    a time to a pause of the event loop (nothing reserved) that starts there. Returns the slots taken."""
    slots: list[float] = []
    stalls = dict(stalls or {})
    while clock.now < until:
        for at in [at for at in stalls if at <= clock.now]:
            clock.now += stalls.pop(at)
        while True:
            delay, _, key = await schedule.reserve(bulk=True)
            if delay is None:
                break
            slots.append(key)
        clock.now += step
    return slots


async def test_no_window_ever_holds_more_than_the_limit() -> None:
    """Bulk, replies, stalls, late slots given back and taken again, at random: never more than the limit."""
    rng = random.Random(7)
    clock = Clock()
    schedule = MemorySchedule(50, clock, window=1.01, ahead=0.02, spare=2, catch_up=0.25)
    kept: list[float] = []
    for _ in range(20_000):
        clock.now += rng.choice([0.0, 0.0, 0.001, 0.005, 0.02]) + (0.3 if rng.random() < 0.002 else 0.0)
        bulk = rng.random() < 0.9
        delay, _, key = await schedule.reserve(bulk=bulk)
        if delay is None:
            continue
        if rng.random() < 0.05:  # woke too late: given back, the request asks again
            assert await schedule.late(key)
        else:
            kept.append(key)
    assert busiest_window(kept, 1.01) <= 50
    assert len(kept) > 20_000 * 0.2  # and it did send (not a vacuous pass)


async def test_a_stall_s_unused_capacity_is_spent_afterwards() -> None:
    """At 1,000/s an 80 ms stall (a full GC) loses nothing with catch-up; without, it loses 60 messages."""

    def schedule(clock: Clock, catch_up: float) -> MemorySchedule:
        return MemorySchedule(1000, clock, window=1.015, ahead=0.02, spare=5, catch_up=catch_up)

    clock = Clock()
    smooth = await run_bulk(schedule(clock, 0.25), clock, clock.now + 4.0)
    clock = Clock()
    stalled = await run_bulk(schedule(clock, 0.25), clock, clock.now + 4.0, stalls={1001.5: 0.08})
    clock = Clock()
    even = await run_bulk(schedule(clock, 0.0), clock, clock.now + 4.0, stalls={1001.5: 0.08})
    assert len(smooth) >= 0.97 * 4.0 * 1000
    assert len(stalled) >= len(smooth) - 3
    assert len(even) <= len(smooth) - 50  # the 60 ms of the stall beyond the 20 ms reserved ahead
    for slots in (smooth, stalled):
        assert busiest_window(slots, 1.015) <= 995  # five places of every window left to replies
        gaps = [b - a for a, b in itertools.pairwise(slots)]
        assert min(gaps) >= 1.015 / 995 / 1.5 - 1e-9  # catching up at most 1.5 times the rate


async def test_replies_wait_little_behind_a_broadcast() -> None:
    """Bulk keeps some places of each window free and reserves at most 20 ms ahead: a reply waits no longer (at 30/s,
    where no place is spare, it also waits for the next place to free, one slot at most)."""
    for rate, spare, longest in ((1000, 5, 0.02), (30, 0, 1.015 / 30 + 0.02)):
        clock = Clock()
        schedule = MemorySchedule(rate, clock, window=1.015, ahead=0.02, spare=spare, catch_up=0.25)
        await run_bulk(schedule, clock, clock.now + 2.0)  # the window is full of bulk, slots reserved ahead
        waits: list[float] = []
        for _ in range(max(1, spare)):
            delay, _, _ = await schedule.reserve(bulk=False)
            assert delay is not None
            waits.append(delay)
        assert max(waits) <= longest + 1e-9, rate


async def test_a_429_pauses_bulk_but_not_replies_and_nothing_is_made_up_after_it() -> None:
    clock = Clock()
    schedule = MemorySchedule(100, clock, window=1.0, ahead=0.01, catch_up=0.25)
    await run_bulk(schedule, clock, clock.now + 1.0)
    await schedule.pause(3.0)
    refused, wait, _ = await schedule.reserve(bulk=True)
    assert refused is None and wait > 2.9
    reply, _, _ = await schedule.reserve(bulk=False)
    assert reply is not None and reply <= 0.01
    clock.now += 3.0
    after = await run_bulk(schedule, clock, clock.now + 0.5)
    gaps = [b - a for a, b in itertools.pairwise(after)]
    assert min(gaps) == pytest.approx(0.01)  # even spacing from the pause's end, no burst


async def test_after_an_idle_spell_bulk_starts_evenly() -> None:
    clock = Clock()
    schedule = MemorySchedule(100, clock, window=1.0, ahead=0.01, catch_up=0.25)
    first = await run_bulk(schedule, clock, clock.now + 0.1)
    assert [b - a for a, b in itertools.pairwise(first)] == pytest.approx([0.01] * (len(first) - 1))


async def test_a_late_slot_is_given_back_and_taken_again_at_once() -> None:
    clock = Clock()
    schedule = MemorySchedule(10, clock, window=1.0, ahead=0.0, catch_up=0.25)
    slots: list[Reservation] = []
    for _ in range(10):  # ten messages, 100 ms apart
        slots.append(await schedule.reserve(bulk=True))
        clock.now += 0.1
    clock.now = slots[-1][2] + 0.08  # the last one woke 80 ms late: it must not go out counted at its slot
    assert await schedule.late(slots[-1][2])
    delay, _, key = await schedule.reserve(bulk=True)
    assert delay == 0.0 and key == clock.now  # its place in the window is free, and the pacing offers it again
    clock.now = slots[0][2] + 1.0
    refused, _, _ = await schedule.reserve(bulk=True)
    assert refused is None  # the window still holds ten (the late one counted from when it really goes)


async def test_a_message_that_reached_telegram_late_holds_its_place_until_telegram_lets_go() -> None:
    """An answer later than the shortest round trip says the message arrived late: its place frees later."""
    clock = Clock()
    schedule = MemorySchedule(1, clock, window=1.0)
    _, _, key = await schedule.reserve(bulk=False)
    clock.now += 0.001
    schedule.answered(key, key)  # a 1 ms round trip
    clock.now = 1001.0
    _, _, key = await schedule.reserve(bulk=False)
    assert key == 1001.0
    clock.now = 1001.2  # the event loop stalled before the request went out: answered 200 ms on
    schedule.answered(key, key)
    clock.now = 1001.3
    delay, _, _ = await schedule.reserve(bulk=False)
    assert delay == pytest.approx(1001.199 + 1.0 - 1001.3, abs=1e-6)  # not 1002.0: it may have arrived at 1001.199


async def test_a_bulk_message_whose_ready_failed_gives_its_slot_back() -> None:
    """The lane's previous outcome was not committed: the message never goes out, and its place is not counted."""
    limiter = BotRateLimiter(10, 1)
    schedule = limiter.schedule
    assert isinstance(schedule, MemorySchedule)
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ready.set_exception(RuntimeError("database gone"))
    sent: list[int] = []

    async def callback() -> bool:
        sent.append(1)
        return True

    with pytest.raises(RuntimeError):
        await limiter.process_request(
            callback, (), {}, "sendMessage", {"chat_id": 5}, {"priority": "bulk", "ready": ready}
        )
    assert sent == [] and schedule.times == [] and limiter.chats.wait(5, time.monotonic()) == 0.0
    assert await limiter.process_request(callback, (), {}, "sendMessage", {"chat_id": 6}, {"priority": "bulk"})
    assert sent == [1] and len(schedule.times) == 1


async def test_a_bulk_message_waiting_for_its_slot_when_a_429_arrives_waits_out_the_pause() -> None:
    """Its slot was reserved before Telegram asked to slow down: it must not go out during the pause anyway."""
    limiter = BotRateLimiter(50, 100)  # slots 20 ms apart: the second message reserves one while the first is out
    sent: dict[int, float] = {}

    async def refused() -> bool:
        await asyncio.sleep(0.005)  # Telegram's answer takes a moment: meanwhile the second message takes its slot
        raise RetryAfter(timedelta(seconds=0.3))

    async def accepted() -> bool:
        sent[2] = time.monotonic()
        return True

    started = time.monotonic()
    results = await asyncio.gather(
        limiter.process_request(refused, (), {}, "sendMessage", {"chat_id": 1}, {"priority": "bulk"}),
        limiter.process_request(accepted, (), {}, "sendMessage", {"chat_id": 2}, {"priority": "bulk"}),
        return_exceptions=True,
    )
    assert isinstance(results[0], RetryAfter) and results[1] is True
    assert sent[2] - started >= 0.3 - 0.01, "nothing goes out during the pause"


def test_chat_windows() -> None:
    windows = ChatWindows(1, window=1.1)
    assert windows.wait(42, 10.0) == 0.0
    windows.record(42, 10.0)
    assert windows.wait(42, 10.5) == pytest.approx(0.6)
    assert windows.wait(43, 10.5) == 0.0
    assert windows.wait(42, 11.1) == 0.0
    two = ChatWindows(2, window=1.0)
    two.record(1, 0.0)
    two.record(1, 0.2)
    assert two.wait(1, 0.5) == pytest.approx(0.5)


def test_messages_are_what_telegram_counts() -> None:
    assert all(is_message(e) for e in ("sendMessage", "sendDocument", "editMessageText", "copyMessage"))
    assert not any(is_message(e) for e in ("sendChatAction", "answerCallbackQuery", "getMe", "setMyCommands"))


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_processes_share_one_schedule_on_postgres(engine: AsyncEngine, db_url: str) -> None:
    """Two schedules on two engines (two processes) hand out slots that are evenly spaced between them."""
    other = make_engine(db_url)
    interval = 0.02
    schedules = [DatabaseSchedule(engine, interval, idle_trust=0), DatabaseSchedule(other, interval, idle_trust=0)]
    slots: list[float] = []

    async def take(schedule: DatabaseSchedule) -> None:
        for _ in range(25):
            delay, _, _ = await schedule.reserve(bulk=False)
            assert delay is not None and schedule.last_slot is not None
            slots.append(schedule.last_slot)  # the database's clock: no jitter from the round trip

    try:
        await asyncio.gather(*(take(s) for s in schedules))
        await schedules[0].pause(5.0)  # one process's 429 holds the other's bulk sending
        refused, wait, _ = await schedules[1].reserve(bulk=True)
        assert refused is None and wait > 4.0
        assert all(s._failing_since is None for s in schedules), "the shared row was used, no memory fallback"
    finally:
        for s in schedules:
            await s.close()
        await other.dispose()
    slots.sort()
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) == pytest.approx(interval, abs=1e-6)  # a slot handed to both processes would be a zero gap
    assert slots[-1] - slots[0] >= 49 * interval - 1e-6


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_late_message_moves_the_shared_schedule_on_postgres(engine: AsyncEngine, db_url: str) -> None:
    other = make_engine(db_url)
    first, second = DatabaseSchedule(engine, 0.5), DatabaseSchedule(other, 0.5)
    try:
        await first.reserve(bulk=False)
        await asyncio.sleep(0.6)  # the message went out long after its slot (and after the next one)
        assert not await first.late(math.nan)  # the message goes now; the shared slots move on
        delay, _, _ = await second.reserve(bulk=False)  # the other process sees the pushed schedule
        assert delay is not None and delay > 0.25  # without the push it would be 0: the old slot is long past
        assert first._failing_since is None and second._failing_since is None  # no fallback to memory
    finally:
        await first.close()
        await second.close()
        await other.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_replies_go_at_once_while_the_shared_schedule_is_idle_and_their_slots_are_booked(
    engine: AsyncEngine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = make_engine(db_url)
    here, there = DatabaseSchedule(engine, 0.2), DatabaseSchedule(other, 0.2)  # two processes
    try:
        assert (await here.reserve(bulk=False))[0] == pytest.approx(0.0, abs=0.01)  # waits: nothing known yet
        assert here._idle_until > time.monotonic()  # ... and it found the schedule idle
        statements = statements_run(engine, monkeypatch)
        for _ in range(3):  # the next replies go at once, their slots booked on the way
            assert (await here.reserve(bulk=False))[0] == 0.0
            await asyncio.sleep(0.002)  # replies of taps a moment apart
        assert statements == [], "booked a moment later"
        await here.booked()
        assert statements == ["UPDATE"], "the three slots booked by one statement"
        delay, _, _ = await there.reserve(bulk=False)  # the other process finds the four slots taken
        assert delay is not None and delay > 3 * 0.2 - 0.05
        # their bookings found slots ahead (replies came faster than the limit): the next reply waits for its own
        assert here._idle_until == 0.0
        delay, _, _ = await here.reserve(bulk=False)
        assert delay is not None and delay > 4 * 0.2 - 0.05
        await asyncio.sleep(delay + 0.2 + 0.05)  # past its slot and the next: the next reply finds the schedule idle
        assert (await here.reserve(bulk=False))[0] == pytest.approx(0.0, abs=0.01)
        assert (await here.reserve(bulk=False))[0] == 0.0
        await here.reserve(bulk=True)  # this process sends bulk: its replies take their booked slots again
        assert here._idle_until == 0.0
    finally:
        await here.close()
        await there.close()
        await other.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_bulk_takes_a_slot_that_went_by_unused_on_postgres(engine: AsyncEngine, db_url: str) -> None:
    schedule = DatabaseSchedule(engine, 0.01, behind=0.005)
    try:
        await schedule.reserve(bulk=True)
        await asyncio.sleep(0.2)  # idle: the schedule is far behind
        delay, _, _ = await schedule.reserve(bulk=True)
        assert delay is not None and -0.0051 < delay < -0.004  # at most 5 ms back, on the database's clock
        reply, _, _ = await schedule.reserve(bulk=False)
        assert reply is not None and reply >= 0.0
        assert schedule._failing_since is None
    finally:
        await schedule.close()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_shared_schedule_the_database_refuses_falls_back_to_memory_and_comes_back(
    engine: AsyncEngine, db_url: str
) -> None:
    """An error of the server's (here the row locked past the lock timeout), not only a lost connection, sends the
    process to its memory schedule; the shared row serves again once the database does."""
    impatient = make_engine(db_url, connect_args={"server_settings": {"lock_timeout": "100"}})
    schedule = DatabaseSchedule(impatient, 0.05, idle_trust=0)
    try:
        await schedule.reserve(bulk=False)
        assert schedule._failing_since is None
        async with engine.connect() as holder:
            await holder.execute(text("SELECT 1 FROM send_rate WHERE id = 1 FOR UPDATE"))  # held until rollback
            reply, _, _ = await schedule.reserve(bulk=False)
            assert reply is not None and schedule._failing_since is not None  # a slot all the same, from memory
            bulk, wait, _ = await schedule.reserve(bulk=True)
            assert bulk is not None or wait > 0
            await holder.rollback()
        delay, _, _ = await schedule.reserve(bulk=False)
        assert delay is not None and schedule._failing_since is None
    finally:
        await schedule.close()
        await impatient.dispose()
