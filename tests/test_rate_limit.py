"""The rate limiter's schedule: evenly spaced slots (a sliding window with no burst), replies ahead of bulk,
429 pauses for bulk only, per-chat windows, and on PostgreSQL one schedule shared by several processes."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.rate_limit import ChatWindows, DatabaseSchedule, MemorySchedule, is_message
from db.engine import make_engine


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_slots_are_evenly_spaced_so_no_second_holds_more_than_the_limit() -> None:
    clock = Clock()
    schedule = MemorySchedule(1.02 / 30, clock)
    slots = []
    for _ in range(300):  # everyone asks at once: the slots spread out, none in the past
        delay, _ = await schedule.reserve(bulk=False)
        assert delay is not None
        slots.append(clock.now + delay)
    for i in range(len(slots) - 30):
        assert slots[i + 30] - slots[i] >= 1.0  # any 31 consecutive slots span more than a second
    assert slots[0] == clock.now  # an idle bot sends at once


async def test_bulk_reserves_at_most_one_slot_ahead_so_replies_wait_little() -> None:
    clock = Clock()
    schedule = MemorySchedule(0.1, clock)
    first, _ = await schedule.reserve(bulk=True)
    second, _ = await schedule.reserve(bulk=True)
    assert first == 0.0 and second == pytest.approx(0.1)
    refused, wait = await schedule.reserve(bulk=True)
    assert refused is None and wait == pytest.approx(0.1)
    reply, _ = await schedule.reserve(bulk=False)  # a reply takes the next slot regardless
    assert reply == pytest.approx(0.2)


async def test_a_429_pauses_bulk_but_not_replies() -> None:
    clock = Clock()
    schedule = MemorySchedule(0.1, clock)
    await schedule.pause(3.0)
    refused, wait = await schedule.reserve(bulk=True)
    assert refused is None and wait == pytest.approx(3.0)
    reply, _ = await schedule.reserve(bulk=False)
    assert reply == 0.0
    clock.now += 3.0
    later, _ = await schedule.reserve(bulk=True)
    assert later is not None


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
    schedules = [DatabaseSchedule(engine, interval), DatabaseSchedule(other, interval)]
    slots: list[float] = []

    async def take(schedule: DatabaseSchedule) -> None:
        for _ in range(25):
            delay, _ = await schedule.reserve(bulk=False)
            assert delay is not None and schedule.last_slot is not None
            slots.append(schedule.last_slot)  # the database's clock: no jitter from the round trip

    try:
        await asyncio.gather(*(take(s) for s in schedules))
        await schedules[0].pause(5.0)  # one process's 429 holds the other's bulk sending
        refused, wait = await schedules[1].reserve(bulk=True)
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


async def test_a_late_message_pushes_the_next_slot_a_full_interval_after_it() -> None:
    clock = Clock()
    schedule = MemorySchedule(0.1, clock)
    await schedule.reserve(bulk=True)  # slot at 1000.0, next at 1000.1
    clock.now += 0.05  # sent 50 ms late
    await schedule.late()
    delay, _ = await schedule.reserve(bulk=False)
    assert delay == pytest.approx(0.1)  # not 0.05: a full interval after the late one


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_late_message_moves_the_shared_schedule_on_postgres(engine: AsyncEngine, db_url: str) -> None:
    other = make_engine(db_url)
    first, second = DatabaseSchedule(engine, 0.5), DatabaseSchedule(other, 0.5)
    try:
        await first.reserve(bulk=False)
        await asyncio.sleep(0.6)  # the message went out long after its slot (and after the next one)
        await first.late()
        delay, _ = await second.reserve(bulk=False)  # the other process sees the pushed schedule
        assert delay is not None and delay > 0.25  # without the push it would be 0: the old slot is long past
        assert first._failing_since is None and second._failing_since is None  # no fallback to memory
    finally:
        await first.close()
        await second.close()
        await other.dispose()


async def test_bulk_takes_a_slot_that_went_by_unused_but_no_older_and_not_from_a_pause() -> None:
    clock = Clock()
    schedule = MemorySchedule(0.01, clock, behind=0.005)
    await schedule.reserve(bulk=True)  # idle until now: its slot is 5 ms back, the next one 5 ms on
    clock.now += 0.008  # every lane was busy: that next slot went by 3 ms ago
    delay, _ = await schedule.reserve(bulk=True)
    assert delay == pytest.approx(-0.003)  # taken now, 3 ms late, instead of lost
    clock.now += 0.1  # idle for long: at most `behind` is made up
    delay, _ = await schedule.reserve(bulk=True)
    assert delay == pytest.approx(-0.005)
    reply, _ = await schedule.reserve(bulk=False)
    assert reply == pytest.approx(0.005)  # replies never take a slot in the past (the next one is 5 ms on)
    clock.now += 1.0
    await schedule.pause(0.001)
    clock.now += 0.002
    delay, _ = await schedule.reserve(bulk=True)
    assert delay == pytest.approx(-0.001)  # nothing from before the pause's end


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_bulk_takes_a_slot_that_went_by_unused_on_postgres(engine: AsyncEngine, db_url: str) -> None:
    schedule = DatabaseSchedule(engine, 0.01, behind=0.005)
    try:
        await schedule.reserve(bulk=True)
        await asyncio.sleep(0.2)  # idle: the schedule is far behind
        delay, _ = await schedule.reserve(bulk=True)
        assert delay is not None and -0.0051 < delay < -0.004  # at most 5 ms back, on the database's clock
        reply, _ = await schedule.reserve(bulk=False)
        assert reply is not None and reply >= 0.0
        assert schedule._failing_since is None
    finally:
        await schedule.close()
