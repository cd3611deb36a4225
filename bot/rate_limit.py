"""One rate limiter for every request the bot makes (wired with `ApplicationBuilder().rate_limiter(...)`).

Telegram answers 429 when a bot sends more than about 30 messages a second overall or about one a second to one
chat, and a 429 during a broadcast stalls it for the time Telegram asks. So messages are scheduled, not retried:

* Bot-wide, Telegram's limit is a sliding window: at most MEDLEGAL_RATE_LIMIT messages in any second.
  On SQLite (one bot process, so one sender that sees every message) the schedule is a log of this process's
  send times (`MemorySchedule`): a message may go when the last `WINDOW` (a second and 15 ms of jitter) holds
  fewer than the limit. Bulk is paced evenly on top, so it does not come in bursts, but that pacing may fall
  behind the clock (`CATCH_UP`): after a stall (a GC pause, the event loop busy, every lane on the wire) the
  capacity the stall left unused is sent at up to `SPEEDUP` times the rate as far as the window allows, where
  even slots could only lose it. A message that could not go out within `LATE` of its slot gives the slot back
  and takes a new one, and one answered later than the shortest round trip allows keeps its place from when it
  may have reached Telegram (`MemorySchedule.answered`), so the log holds when Telegram counted the messages, and
  a burst after a stall is not repeated a second later into a window Telegram still holds full.
  On PostgreSQL the schedule is the `send_rate` row, shared by every process, in evenly spaced slots
  `(1 + MARGIN) / MEDLEGAL_RATE_LIMIT` seconds apart (even spacing is a sliding window with no burst on top):
  taking a slot is one atomic `UPDATE ... RETURNING` that moves `next_at` on, so N processes together stay under
  the limit. A bulk request may take a slot that went by unused up to `BULK_BEHIND` ago (within the margin); a
  slot missed for longer is lost. (A shared log of every process's sends would cost a round trip per message.)
* Per chat, a bulk message waits until the chat has had fewer than MEDLEGAL_CHAT_RATE_LIMIT messages in the last
  second (replies included). Replies to a physician are counted but not held by it: the physician is tapping
  right now, a short burst (the answered question, then the next one) is what Telegram tolerates in a private
  chat, and delaying every next question by a second would make the bot feel broken. Per-chat windows live in
  each process's memory (a chat's updates and its queued messages rarely meet in two processes at once).
* Priority: a request without `rate_limit_args` is a reply and takes the next slot at once; bulk requests
  (`rate_limit_args={"priority": "bulk"}`, the outbox sender) reserve at most `BULK_AHEAD` (20 ms; on the shared
  schedule at least one slot) ahead, so a reply waits at most that long, in this process or any other. In memory
  bulk also leaves `SPARE` of each window to replies; at 30/s that is no place, and a reply may also wait for the
  next place to free (one slot, 34 ms). A bulk request
  may carry `"ready"`, an awaitable it waits for once its slot is reserved and before it goes out: the sender's
  lane passes the commit of its previous message's outcome, so the two waits overlap (bot/send_lanes.py).
* On `RetryAfter` every process's bulk sending pauses for the time asked (`paused_until`); the bulk request's
  error goes back to its caller (the sender reschedules the row), while a reply is retried after the pause, as
  PTB's own limiter does, a bounded number of times.

Requests that are not messages (getMe, answerCallbackQuery, setMyCommands, ...) pass straight through.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import contextvars
import functools
import logging
import math
import time
import warnings
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from db.engine import DriverStatement

log = logging.getLogger(__name__)

RateLimitArgs = dict[str, Any]
Result = bool | dict[str, Any] | list[dict[str, Any]]
Reservation = tuple[float | None, float, float]
"""(seconds until the reserved slot, 0, the slot's key for `release`/`late`), or (None, seconds to wait, 0)."""

BULK = "bulk"
MARGIN = 0.02
"""The shared schedule's slots are 2% longer than 1/limit: 98% of the limit at most, 20 ms of jitter a second."""
LATE = 0.005
"""Seconds after its slot beyond which a message counts as late and takes another (see `BotRateLimiter._until`)."""
EARLY = 0.001
"""A slot at most this near is taken at once: it costs 1 ms of the margin's 20 ms a second, and sleeping for less
would cost an event-loop turn that on a busy loop wakes "late" and restarts the schedule (at 1,000/s, where a slot
is 1 ms long, this was the difference between 70% and 86% of the limit in bench.broadcast)."""
BULK_AHEAD = 0.02
"""How far ahead (seconds; on the shared schedule at least one slot) bulk may reserve slots: a reply waits this long
behind a broadcast, and at high rates the lanes keep enough slots in hand that a late event-loop turn does not
leave a slot unused (one slot ahead is 1 ms at 1,000/s, less than one turn of a busy loop)."""
BULK_BEHIND = 0.005
"""How far in the past (seconds) a bulk request may take a shared slot nobody took: when every lane was busy
as a slot went by, the slot is used a moment late instead of lost (a tenth of the slots at 1,000/s). A message so
sent and one sent up to `LATE` after its slot still leave any second at most (1 + 0.010) / (1 + MARGIN) of the
limit, with the rest of the margin for jitter; after a 429's pause there is nothing to make up."""
WINDOW = 1.015
"""The memory schedule's window in seconds: Telegram counts a second, and the 15 ms on top absorb a message sent
up to `EARLY` before or `LATE` after its slot plus 9 ms of jitter on the way to Telegram (a ceiling of 98.5% of
the limit, less the places `SPARE` keeps for replies: 98.3% at 1,000/s)."""
SPARE = 0.002
"""The share of each window bulk leaves to replies in the memory schedule (2 places at 1,000/s, none at 30/s,
where a reply waits at most for the next slot, as on the even schedule)."""
CATCH_UP = 0.25
"""How far (seconds) the memory schedule's bulk pacing may fall behind the clock while sending: a stall (a GC pause,
every lane busy) is made up afterwards, as far as the window allows, instead of lost."""
SPEEDUP = 1.5
"""The memory schedule's bulk catches up at most this many times the rate: a burst as fast as the lanes go would
pile requests up at Telegram and widen their jitter (and a second later the window frees them all at once)."""
IDLE_TRUST = 1.0
"""Seconds for which a reply reservation that found PostgreSQL's shared schedule idle lets later replies go at once
(`DatabaseSchedule`)."""
BOOKING_DELAY = 0.02
"""Seconds the slot of a reply that went at once (the shared schedule idle) waits to be booked, so that the replies
after it within that time are booked by the same statement (`DatabaseSchedule`). A booking of its own for every
tap's replies cost 0.1-0.3 ms of CPU a tap, and its statement ran beside the next tap's work (bench.flow's round
trip p50 on PostgreSQL went from 1.11-1.17x the bare bot's to 1.04-1.07x). Other processes learn of these replies
this much later, a span shorter than one slot at Telegram's 30 messages a second; this process's own bulk waits
for the booking first."""
CHAT_WINDOW = 1.1
"""The per-chat window in seconds, with a wider margin (a chat's own rate is never the bottleneck)."""


BULK_WAITED: contextvars.ContextVar[float] = contextvars.ContextVar("medlegal_bulk_waited", default=0.0)
"""Seconds the current task's last bulk request waited for its slots, so its caller can tell the time on the
wire from the time spent queueing (the sender sizes its concurrency from the former)."""


def retry_seconds(exc: RetryAfter) -> float:
    """The pause Telegram asked for, without PTB's int/timedelta deprecation warning."""
    value = getattr(exc, "_retry_after", None)
    if value is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@functools.cache
def is_message(endpoint: str) -> bool:
    """The calls Telegram's flood limits count: sending, editing, copying and forwarding messages."""
    name = endpoint.lower()
    return name.startswith(("send", "edit", "copy", "forward")) and name != "sendchataction"


def _chat_key(value: object) -> int | str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    with contextlib.suppress(TypeError, ValueError):
        return int(str(value))
    return str(value)


class Schedule(Protocol):
    """The bot-wide slots: `reserve` gives a `Reservation` (a slot, or how long to wait before asking again)."""

    async def reserve(self, bulk: bool) -> Reservation: ...

    async def release(self, key: float) -> None:
        """Give back a reserved slot whose message did not go out."""

    async def late(self, key: float) -> bool:
        """The message could not go out within `LATE` of its slot: True if it must reserve a new one (the slot is
        given back), False if it goes now (the schedule moved on a full interval after it)."""

    def answered(self, key: float, sent: float) -> None:
        """Telegram answered the message of slot `key`, sent at `sent` (both on time.monotonic())."""

    async def pause(self, seconds: float) -> None: ...

    def paused(self) -> bool:
        """A pause this process asked for (`pause`) is still running."""

    async def close(self) -> None: ...


class MemorySchedule:
    """A sliding-window log of this process's sends (SQLite: one bot process, so the log sees every message).

    `times` holds the reserved send times, sorted (every reservation is at or after the previous one), of which
    only the last `limit` matter: a message may go at `t` when the one `limit` places back went at or before
    `t - window`, so no `window` ever holds more than `limit`. Bulk also keeps `spare` places of each window free
    for replies, and is paced on an even grid `window / (limit - spare)` apart that may lag up to `catch_up`
    seconds behind the clock: after a stall the lanes send what the stall left unused as fast as the log allows,
    then settle back to even spacing.

    A message that reached Telegram late (the event loop stalled between its slot and the write, or the request
    queued) would free its place in the log before Telegram's window lets go of it: so when Telegram answers, its
    entry moves to the latest time Telegram can have counted it, the answer less the shortest round trip seen.
    """

    def __init__(
        self,
        limit: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        window: float = WINDOW,
        ahead: float = 0.0,
        spare: int = 0,
        catch_up: float = 0.0,
        speedup: float = SPEEDUP,
    ) -> None:
        self.limit = max(1, limit)
        self.window = window
        self.spare = min(max(0, spare), self.limit - 1)
        self.spacing = window / (self.limit - self.spare)
        self.ahead = ahead  # not a whole slot at low rates: a reply would wait for it and then for the next one
        self.catch_up = catch_up
        self.burst_spacing = self.spacing / max(1.0, speedup)
        self.clock = clock
        self.times: list[float] = []
        self.next_at = -math.inf
        self.last_bulk = -math.inf
        self.paused_until = 0.0
        self.round_trip = math.inf
        """The shortest round trip seen lately (it creeps up, so a route that got slower is learnt again)."""

    def _free_at(self, places: int) -> float:
        """The earliest time at which the log has fewer than `places` messages in the window before it."""
        times = self.times
        return times[-places] + self.window if len(times) >= places else -math.inf

    async def reserve(self, bulk: bool) -> Reservation:
        now = self.clock()
        times = self.times
        slot = max(now, times[-1]) if times else now
        if bulk:
            slot = max(
                slot,
                self._free_at(self.limit - self.spare),
                self.next_at,
                self.last_bulk + self.burst_spacing,
                self.paused_until,
            )
            if slot > now + self.ahead:
                return None, slot - self.ahead - now, 0.0
            # the pacing may lag (catch up) only while sending: not after an idle spell, nor from before a pause
            behind = now - self.catch_up if times and times[-1] >= now - self.catch_up else now
            self.next_at = max(self.next_at, behind, self.paused_until) + self.spacing
            self.last_bulk = slot
        else:
            slot = max(slot, self._free_at(self.limit))
        times.append(slot)
        if len(times) > 2 * self.limit:
            del times[: -self.limit]
        return slot - now, 0.0, slot

    async def release(self, key: float) -> None:
        """Take the slot out of the log, and offer it again to bulk (the pacing only smooths; the log limits)."""
        times = self.times
        if math.isnan(key):
            return
        i = bisect.bisect_left(times, key)
        if i < len(times) and times[i] == key:
            del times[i]
            self.next_at -= self.spacing

    async def late(self, key: float) -> bool:
        await self.release(key)
        return True

    def answered(self, key: float, sent: float) -> None:
        now = self.clock()
        self.round_trip = min(now - sent, self.round_trip * 1.001)
        received = now - self.round_trip  # the latest Telegram can have received it (from a round trip's outset)
        if received > key + LATE:  # within that, the window's jitter allowance covers it
            times = self.times
            i = bisect.bisect_left(times, key)
            if i < len(times) and times[i] == key:
                del times[i]
                bisect.insort(times, received)

    async def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    def paused(self) -> bool:
        return self.paused_until > self.clock()

    async def close(self) -> None:
        return None


_RESERVE = """
UPDATE send_rate AS r
SET next_at = GREATEST(r.next_at, c.now - make_interval(secs => :behind), LEAST(r.paused_until, c.now))
              + make_interval(secs => :span)
FROM (SELECT clock_timestamp() AS now) AS c
WHERE r.id = 1 {bulk}
RETURNING CAST(EXTRACT(EPOCH FROM (r.next_at - c.now)) AS double precision) - :span,
          CAST(EXTRACT(EPOCH FROM r.next_at) AS double precision) - :span
"""
"""Reserve `span / interval` consecutive slots, the first at most `behind` seconds in the past (and not before a
pause's end); returns the seconds until the first, and the first on the database's clock (seconds since the
epoch)."""
_BULK_ONLY = "AND r.next_at <= c.now + make_interval(secs => :ahead) AND r.paused_until <= c.now"
_WAIT = """
SELECT CAST(GREATEST(EXTRACT(EPOCH FROM next_at - clock_timestamp()) - :ahead,
                     EXTRACT(EPOCH FROM paused_until - clock_timestamp())) AS double precision)
FROM send_rate WHERE id = 1
"""
_PAUSE = """
UPDATE send_rate SET paused_until = GREATEST(paused_until, clock_timestamp() + make_interval(secs => :s))
WHERE id = 1
RETURNING CAST(:s AS double precision)
"""
_LATE = """
UPDATE send_rate SET next_at = GREATEST(next_at, clock_timestamp() + make_interval(secs => :iv)) WHERE id = 1
"""
_ENSURE = """
INSERT INTO send_rate (id, next_at, paused_until) VALUES (1, clock_timestamp(), clock_timestamp())
ON CONFLICT (id) DO NOTHING
"""
# Compiled once and run on the driver's connection: a reply books its slot with every tap, and SQLAlchemy's
# text() and execution cost several times asyncpg's own round trip (see `db.engine.DriverStatement`).
_RESERVE_REPLY = DriverStatement(text(_RESERVE.format(bulk="")))
_RESERVE_BULK = DriverStatement(text(_RESERVE.format(bulk=_BULK_ONLY)))
_WAIT_STATEMENT = DriverStatement(text(_WAIT))
_PAUSE_STATEMENT = DriverStatement(text(_PAUSE))
_LATE_STATEMENT = DriverStatement(text(_LATE))


class DatabaseSchedule:
    """The schedule in PostgreSQL's `send_rate` row, on the database server's clock (no skew between hosts).

    One autocommit connection per process; each reservation is one statement whose row lock lasts only that
    statement. Replies that ask while a statement is running wait for the next one, which reserves consecutive
    slots for all of them at once: under load the replies then cost a fraction of a round trip each instead of
    queueing for one round trip apiece. If the database cannot be reached, this process falls back to its memory
    schedule (logged), so a reply still goes out, and returns to the shared row when the database answers again.

    A reply does not wait for its statement while the shared schedule is idle: when the last reply reservation,
    under `idle_trust` seconds ago, found no message booked ahead, and this process is not sending bulk nor paused,
    the reply goes at once and its slot is booked a moment later (`BOOKING_DELAY`), by one statement with the
    replies that follow it meanwhile (the next bulk reservation, here or elsewhere, follows them). So a physician's
    tap does not wait a database round trip for a slot nobody else wanted; the cost is that a broadcast another
    process starts in that moment may share a second with a reply or two it has not seen yet, which the limit's
    margin covers.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        interval: float,
        ahead: float = 0.0,
        behind: float = 0.0,
        fallback_limit: int = 0,
        idle_trust: float = IDLE_TRUST,
    ) -> None:
        self.engine = engine
        self.idle_trust = idle_trust
        self.interval = interval
        self.ahead = max(interval, ahead)
        self.behind = behind
        self.fallback = MemorySchedule(fallback_limit or max(1, round(1 / interval)), ahead=ahead)
        self._conn: AsyncConnection | None = None
        self._lock = asyncio.Lock()
        self._failing_since: float | None = None
        self._replies: list[tuple[asyncio.Future[float], int]] = []
        """Replies waiting for the next reservation statement, each with its count of slots: it reserves them all,
        in order."""
        self.last_slot: float | None = None
        """The first slot of this process's last reservation, in seconds since the epoch on the database's clock."""
        self._idle_until = 0.0
        """Until when (time.monotonic()) replies go at once, their slots booked on the way (see the class docstring)."""
        self._unbooked = 0
        """Replies that went at once, whose slots the pending booking (`_booking`) reserves."""
        self._booking: asyncio.Task[None] | None = None

    async def _connection(self) -> AsyncConnection:
        if self._conn is None:
            conn = await self.engine.connect()
            try:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(_ENSURE))
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
        return self._conn

    async def _run(self, statement: DriverStatement, **params: float) -> float | None:
        async with self._lock:
            return await self._execute(statement, **params)

    async def _execute(self, statement: DriverStatement, **params: float) -> float | None:
        conn = await self._connection()
        try:
            rows = await statement.fetch(conn, params)
            row = rows[0] if rows else None
            value = None if row is None else row[0]
            if row is not None and len(row) > 1:
                self.last_slot = float(row[1])
        except BaseException:
            self._conn = None
            with contextlib.suppress(Exception):
                await conn.invalidate()
            raise
        if self._failing_since is not None:
            log.info("send rate shared through the database again")
            self._failing_since = None
        return None if value is None else float(value)

    def _failed(self, exc: Exception) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning("send rate falls back to this process's memory: %s", type(exc).__name__)

    async def reserve(self, bulk: bool) -> Reservation:
        if not bulk:
            if self._idle_until > time.monotonic() and not self.fallback.paused():
                self._unbooked += 1
                if self._booking is None:
                    self._booking = asyncio.create_task(self._book_later())
                return 0.0, 0.0, math.nan
            return await self._reserve_reply()
        await self.booked()  # this process's bulk follows its own replies
        self._idle_until = 0.0  # this process sends bulk: its replies take their booked slots
        try:
            delay = await self._run(_RESERVE_BULK, span=self.interval, ahead=self.ahead, behind=self.behind)
            if delay is not None:
                return delay, 0.0, math.nan
            wait = await self._run(_WAIT_STATEMENT, ahead=self.ahead)
            return None, max(wait or 0.0, 0.0005), 0.0
        except (SQLAlchemyError, OSError) as exc:
            self._failed(exc)
            return await self.fallback.reserve(bulk)

    async def _reserve_reply(self, count: int = 1) -> Reservation:
        """Join the replies waiting for a slot (`count` slots: replies that went at once); whoever gets the lock
        first reserves for all of them. It first lets the loop run the tasks that are ready once, so replies issued
        together (a tap's edit beside its next question) share one statement instead of the second waiting for the
        first's round trip. The delay is to the first of the `count` slots."""
        mine: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._replies.append((mine, count))
        await asyncio.sleep(0)
        async with self._lock:
            if not mine.done():
                batch, self._replies = self._replies, []
                slots = sum(n for _, n in batch)
                try:
                    first = await self._execute(_RESERVE_REPLY, span=self.interval * slots, behind=0.0)
                except (SQLAlchemyError, OSError) as exc:
                    self._failed(exc)
                    for waiting, n in batch:  # a reply's slot in memory is never refused, nor given back
                        delays = [(await self.fallback.reserve(False))[0] or 0.0 for _ in range(n)]
                        waiting.set_result(delays[0])
                except BaseException:  # this reply was cancelled: the next one to get the lock reserves for the rest
                    self._replies = [w for w in batch if w[0] is not mine] + self._replies
                    raise
                else:
                    before = 0
                    for waiting, n in batch:
                        waiting.set_result((first or 0.0) + before * self.interval)
                        before += n
                    idle = (first or 0.0) <= EARLY  # the first of them found no message booked ahead
                    self._idle_until = time.monotonic() + self.idle_trust if idle else 0.0
        return mine.result(), 0.0, math.nan

    async def _book_later(self) -> None:
        """Book the slots of the replies that went at once, `BOOKING_DELAY` after the first of them, in one
        statement; the replies going at once from then on start the next booking."""
        try:
            await asyncio.sleep(BOOKING_DELAY)
        finally:
            self._booking = None
        count, self._unbooked = self._unbooked, 0
        try:
            await self._reserve_reply(count)
        except Exception as exc:  # the database's errors fall back to memory in `_reserve_reply`: this is a bug
            log.warning("replies' slots were not booked: %s", type(exc).__name__)

    async def booked(self) -> None:
        """Wait until the slots of the replies that went at once so far are booked."""
        if self._booking is not None:
            await asyncio.gather(self._booking, return_exceptions=True)

    async def pause(self, seconds: float) -> None:
        await self.fallback.pause(seconds)
        try:
            await self._run(_PAUSE_STATEMENT, s=seconds)
        except (SQLAlchemyError, OSError) as exc:
            self._failed(exc)

    def paused(self) -> bool:
        """This process's own pauses (another process's shows in its next reservation)."""
        return self.fallback.paused()

    async def release(self, key: float) -> None:
        """A slot of the shared schedule is not given back (the other processes' slots already follow it)."""
        await self.fallback.release(key)

    def answered(self, key: float, sent: float) -> None:
        """The shared slots are not corrected (it would cost a statement a message)."""
        self.fallback.answered(key, sent)

    async def late(self, key: float) -> bool:
        if not math.isnan(key):  # a slot from the memory fallback
            return await self.fallback.late(key)
        try:
            await self._run(_LATE_STATEMENT, iv=self.interval)
        except (SQLAlchemyError, OSError) as exc:
            self._failed(exc)
        return False

    async def close(self) -> None:
        await self.booked()
        async with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await self._conn.close()
                self._conn = None


class ChatWindows:
    """Recent message times per chat (sliding windows), forgetting chats that have been quiet for a window."""

    def __init__(self, per_window: int, window: float = CHAT_WINDOW) -> None:
        self.per_window = max(1, per_window)
        self.window = window
        self._sent: dict[int | str, deque[float]] = {}

    def wait(self, chat: int | str, now: float) -> float:
        times = self._sent.get(chat)
        if not times:
            return 0.0
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < self.per_window:
            return 0.0
        return times[-self.per_window] + self.window - now

    def forget(self, chat: int | str, at: float) -> None:
        """Take back a message recorded for `at` that did not go out then."""
        times = self._sent.get(chat)
        if times and at in times:
            times.remove(at)

    def record(self, chat: int | str, at: float) -> None:
        times = self._sent.setdefault(chat, deque())
        times.append(at)
        if len(self._sent) > 4096:  # bounded memory during a broadcast to thousands of chats
            cutoff = at - 2 * self.window
            for key in [k for k, v in self._sent.items() if not v or v[-1] < cutoff]:
                del self._sent[key]


class BotRateLimiter(BaseRateLimiter[RateLimitArgs]):
    """MEDLEGAL_RATE_LIMIT bot-wide (shared through PostgreSQL), MEDLEGAL_CHAT_RATE_LIMIT per chat, replies first.

    See the module docstring for the rules and why; `engine` selects the shared schedule on PostgreSQL.
    """

    def __init__(
        self,
        rate_limit: int,
        chat_rate_limit: int,
        *,
        engine: AsyncEngine | None = None,
        margin: float = MARGIN,
        max_retries: int = 2,
    ) -> None:
        self.rate_limit = max(1, rate_limit)
        self.interval = (1.0 + margin) / self.rate_limit
        self.max_retries = max_retries
        self.schedule: Schedule = (
            DatabaseSchedule(
                engine, self.interval, ahead=BULK_AHEAD, behind=BULK_BEHIND, fallback_limit=self.rate_limit
            )
            if engine is not None and engine.dialect.name == "postgresql"
            else MemorySchedule(
                self.rate_limit, ahead=BULK_AHEAD, spare=int(self.rate_limit * SPARE), catch_up=CATCH_UP
            )
        )
        self.chats = ChatWindows(chat_rate_limit)
        self._bulk_lock = asyncio.Lock()
        self.throttled = 0
        """RetryAfter answers seen (for logs and benchmarks)."""

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        await self.schedule.close()

    async def _bulk_slot(self, chat: int | str | None, ready: asyncio.Future[Any] | None) -> float:
        """Wait for the chat's window, then reserve the next bot-wide slot (at most one ahead) and wait for it and
        for `ready`; returns the slot's key."""
        started = time.monotonic()
        try:
            return await self._bulk_wait(chat, ready)
        finally:
            BULK_WAITED.set(time.monotonic() - started)

    async def _bulk_wait(self, chat: int | str | None, ready: asyncio.Future[Any] | None) -> float:
        while True:
            if chat is not None and (wait := self.chats.wait(chat, time.monotonic())) > 0:
                await asyncio.sleep(wait)
                continue
            async with self._bulk_lock:  # one bulk reservation at a time in this process
                if chat is not None and self.chats.wait(chat, time.monotonic()) > 0:
                    continue
                while True:
                    delay, wait, key = await self.schedule.reserve(bulk=True)
                    if delay is not None:
                        break
                    await asyncio.sleep(min(wait, 1.0))
                at = time.monotonic() + max(delay, 0.0)  # a shared slot in the past (`BULK_BEHIND`) is taken now
                if chat is not None:
                    self.chats.record(chat, at)
            try:
                if await self._until(at, key, ready):
                    if not self.schedule.paused():
                        return key
                    # Telegram asked to slow down while this message waited for its slot: it waits out the pause
                    await self.schedule.release(key)
            except BaseException:  # `ready` failed (the message never goes out), or cancelled
                await self.schedule.release(key)
                if chat is not None:
                    self.chats.forget(chat, at)
                raise
            # the slot went by while `ready` was awaited, or the event loop woke us too late for it: take the next
            # free one (`ready` stays: it is done, or was not awaited yet)
            if chat is not None:
                self.chats.forget(chat, at)

    async def _reply_slot(self, chat: int | str | None) -> float:
        while True:
            delay, _, key = await self.schedule.reserve(bulk=False)
            at = time.monotonic() + max(delay or 0.0, 0.0)
            if chat is not None:
                self.chats.record(chat, at)
            if await self._until(at, key):
                return key
            if chat is not None:
                self.chats.forget(chat, at)

    async def _until(self, slot: float, key: float, ready: asyncio.Future[Any] | None = None) -> bool:
        """Wait for the slot, then for `ready`; False when the request must take another slot: the slot went by
        while `ready` was awaited, or a busy event loop woke us more than `LATE` after it and the schedule gave it
        back (`Schedule.late`; the even schedule instead moves the slots after it on and the message goes now)."""
        if slot - time.monotonic() > EARLY:
            await asyncio.sleep(slot - time.monotonic())
        if time.monotonic() - slot > LATE:
            if await self.schedule.late(key):
                return False
        elif ready is not None and not ready.done():
            await ready
            if time.monotonic() - slot > LATE:
                await self.schedule.release(key)
                return False
            return True
        if ready is not None:
            await ready
        return True

    async def _throttled(self, exc: RetryAfter) -> float:
        seconds = retry_seconds(exc)
        self.throttled += 1
        log.warning("Telegram asked to slow down: bulk sending paused for %.1f s", seconds)
        await self.schedule.pause(seconds)
        return seconds

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Result]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: RateLimitArgs | None,
    ) -> Result:
        counted = is_message(endpoint)
        chat = _chat_key(data.get("chat_id"))
        if isinstance(rate_limit_args, dict) and rate_limit_args.get("priority") == BULK:
            key = await self._bulk_slot(chat, rate_limit_args.get("ready")) if counted else math.nan
            sent = time.monotonic()
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                await self._throttled(exc)
                raise
            finally:
                if counted:
                    self.schedule.answered(key, sent)
        for attempt in range(self.max_retries + 1):
            key = await self._reply_slot(chat) if counted else math.nan
            sent = time.monotonic()
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                seconds = await self._throttled(exc)
                if attempt == self.max_retries:
                    raise
            finally:
                if counted:
                    self.schedule.answered(key, sent)
            await asyncio.sleep(seconds)
        raise AssertionError("unreachable")  # pragma: no cover
