"""The outbox sender: delivers queued broadcasts and reminders so that nothing is lost and nothing repeats.

Every bot process runs one. It claims a small batch of due rows with a lease (`in_flight`), sends each through
the bot's rate limiter as bulk traffic, and records the outcome in its own transaction right after Telegram
answers: sent (with the message id), failed for good (403 blocked, 400 chat not found or another refusal, or too
many transient errors) or skipped (no longer an active subscriber, broadcast cancelled). Retries:

* `RetryAfter` (429): the row goes back to pending without counting an attempt, the rest of the batch too, and
  the sender (and, through the limiter, every process's bulk sending) pauses for the time Telegram asked.
* timeouts, network errors and 5xx: pending again after an exponential backoff, failed after `max_attempts`.

Crash safety: a row is in flight before its send and resolved right after, so a process killed mid-broadcast
leaves only in-flight rows behind. They are sent again when their lease expires (at once on SQLite, whose single
sender knows that any in-flight row at start-up was its own). The only message that can arrive twice is one that
was on the wire, or answered but not yet recorded, at the moment of the kill.

Lanes: the sender keeps as few messages on the wire as the rate needs. Each lane sends one message, waits until
its outcome is committed, then takes the next, so a crash repeats at most one message per lane. The number of
lanes is ceil(rate x time per message x 1.5), from the measured time on the wire and in the database (not the
time spent waiting for a slot), between 1 and MEDLEGAL_SEND_LANES (the 1.5 lets the lanes send what a stall left
unused at the rate limiter's catch-up pace, `SPEEDUP`): one lane while a message takes less than two thirds of a
slot interval (30/s against a nearby server), a few against Telegram's real round trip. Lanes' results are
committed together (group commit), one writer at a time in the process, so SQLite never makes a writer wait on
another. On PostgreSQL several processes drain the same outbox without sharing a row
(`FOR UPDATE SKIP LOCKED`); a sender never sends a row whose lease is about to run out.

Progress: a broadcast with a progress message (the admin's) gets it edited in place with "Sent S · failed F ·
left L" at most every `progress_every` seconds (over all processes) and a final report once every row is resolved.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.ext import ExtBot

from bot.admin_broadcast import progress_text, report_text
from bot.bulk_send import send_html
from bot.outbox_writer import OutboxWriter
from bot.rate_limit import BULK, BULK_WAITED, SPEEDUP, retry_seconds
from bot.send_lanes import Feed, Lanes
from bot.settings import Settings
from db import outbox
from db import progress as progress_store
from db.models import Broadcast

log = logging.getLogger(__name__)

BULK_ARGS = {"priority": BULK}
CHAT_GONE = ("chat not found", "user not found", "peer_id_invalid", "user is deactivated", "bot was kicked")
LEASE_SAFETY = timedelta(seconds=5)
"""A claimed row is not sent when less than this is left of its lease (another sender may take it soon)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def keyboard(rows: Iterable[Iterable[dict[str, Any]]] | None) -> InlineKeyboardMarkup | None:
    """Stored button rows ({"text", "callback_data"} or {"text", "url"}) as an inline keyboard."""
    if not rows:
        return None
    built = [
        [
            InlineKeyboardButton(str(b["text"]), url=b["url"])
            if b.get("url")
            else InlineKeyboardButton(str(b["text"]), callback_data=str(b.get("callback_data", "")))
            for b in row
        ]
        for row in rows
    ]
    return InlineKeyboardMarkup(built) if any(built) else None


def final_report(broadcast: Broadcast, counts: dict[str, int], reasons: list[tuple[str, int]]) -> str:
    """What the admin sees when a broadcast is over: the outcome, the counts, how long it took, why some failed."""
    lines = [report_text(broadcast.id, broadcast.audience, counts, cancelled=broadcast.status == "cancelled")]
    if broadcast.finished_at is not None:
        took = outbox.as_utc(broadcast.finished_at) - outbox.as_utc(broadcast.created_at)
        lines.append(f"Took {_duration(took)}")
    if reasons:
        lines.append("Failed: " + "; ".join(f"{html.escape(_reason(r))} ({n})" for r, n in reasons))
    return "\n".join(lines)


def _duration(took: timedelta) -> str:
    seconds = max(0, round(took.total_seconds()))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _reason(error: str) -> str:
    """Telegram's description without its "Forbidden: "/"Bad Request: " prefix, as an admin would say it."""
    return error.split(": ", 1)[1] if error.startswith(("Forbidden: ", "Bad Request: ")) else error


@dataclass
class _Delivery:
    row: outbox.Claimed
    text: str
    markup: InlineKeyboardMarkup | None


class OutboxSender:
    """Drains the outbox through `bot` (an ExtBot with the `BotRateLimiter`), see the module docstring."""

    def __init__(
        self,
        bot: ExtBot[Any],
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        clock: Callable[[], datetime] = _utcnow,
        lease: float = 60.0,
        batch_size: int | None = None,
        max_lanes: int | None = None,
        max_attempts: int = 5,
        backoff: float = 2.0,
        poll_interval: float = 1.0,
        progress_every: float = 2.0,
    ) -> None:
        self.bot = bot
        self.sessions = sessions
        self.settings = settings
        self.clock = clock
        self.lease = lease
        # about half a second of sending per claim: cheap claims, and a cancel or unsubscribe takes effect quickly
        self.batch_size = batch_size or max(1, min(200, settings.rate_limit // 2))
        self.max_lanes = max(1, settings.send_lanes if max_lanes is None else max_lanes)
        self.cycle = 0.0
        """Seconds per message on the wire and in the database (moving average), which sizes the lanes."""
        self._writer = OutboxWriter(sessions)
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.poll_interval = poll_interval
        self.progress_every = progress_every
        self._stopped = asyncio.Event()
        self._wake = asyncio.Event()
        self._paused_until = 0.0  # time.monotonic()
        self._texts: dict[int, str] = {}
        self._started = False
        self._claimed = 0
        self._progress_looked: dict[int, float] = {}
        """When this process last asked the database whether a broadcast's progress edit is due (time.monotonic())."""
        self.sent = 0
        self.failed = 0

    @property
    def lanes(self) -> int:
        """Messages to keep on the wire: enough to keep up with the rate, no more (see the module docstring)."""
        wanted = math.ceil(self.settings.rate_limit * self.cycle * SPEEDUP)  # room to catch up after a stall
        return max(1, min(self.max_lanes, wanted))

    # -- loop ---------------------------------------------------------------------------------------------

    async def run_forever(self) -> None:
        """Drain until `stop()`; errors (a database outage) are logged and the loop carries on."""
        await self._start()
        while not self._stopped.is_set():
            try:
                done = await self._pump()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox sender pass failed")
                done = 0
                await self._idle(5.0)
            if not done:
                await self._idle(self.poll_interval)

    async def _pump(self) -> int:
        """Deliver batch after batch while rows are due; the writer's connection is returned when they run out."""
        try:
            return await self._batches()
        finally:
            await self._writer.close()

    async def _batches(self) -> int:
        """Run the lanes over batch after batch (bot/send_lanes.py); returns how many rows were claimed."""
        self._claimed = 0
        batch = await self._refill()
        while batch is not None and not self._stopped.is_set():
            feed = Feed(batch, self._refill)
            halted = await self._run_lanes(feed)
            # after a 429 the batch being claimed (once the pause is over) goes on; otherwise the claims ran dry
            batch = await feed.claimed() if halted else None
        await self._finish()
        return self._claimed

    async def _run_lanes(self, feed: Feed[_Delivery]) -> bool:
        """Deliver what the feed hands out and put back what it did not; whether to go on after a 429's pause."""
        lanes = Lanes(feed, self._deliver, lambda: self.lanes, self._stopped)
        try:
            await lanes.run()
        except Exception:
            unsent = feed.stop() + lanes.unsent
            with contextlib.suppress(Exception):  # a claim in progress: its rows go back too (else their lease ends)
                unsent += await feed.claimed() or []
            with contextlib.suppress(Exception):  # the database may be the trouble: then they wait for their lease
                await self._put_back([d.row for d in unsent])
            raise
        unsent = feed.stop() + lanes.unsent
        go_on = lanes.halted and not self._stopped.is_set()
        if not go_on:
            unsent += await feed.claimed() or []
        await self._put_back([d.row for d in unsent])
        return go_on

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def wake(self) -> None:
        """Look for due rows now (e.g. right after a broadcast was queued in this process)."""
        self._wake.set()

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _start(self) -> None:
        if self._started:
            return
        self._started = True
        async with self._writer.transaction() as session:
            if session.get_bind().dialect.name == "sqlite":
                released = await outbox.release_in_flight(session)
                if released:
                    log.info("%d outbox rows were in flight when the bot stopped; sending them again", released)

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def _wait_pause(self) -> None:
        while (left := self._paused_until - time.monotonic()) > 0 and not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), left)

    # -- one pass -----------------------------------------------------------------------------------------

    async def drain_once(self) -> int:
        """Claim one batch of due rows and resolve each of them; returns how many were claimed."""
        await self._start()
        self._claimed = 0
        try:
            batch = await self._refill()
            if batch:
                await self._run_lanes(Feed(batch))
            await self._finish()
            return self._claimed
        finally:
            await self._writer.close()

    async def _claim(self) -> tuple[list[outbox.Claimed], list[_Delivery]] | None:
        """The next batch, with what must not go out skipped; None while paused or stopping."""
        await self._wait_pause()
        if self._stopped.is_set():
            return None
        rows = await self._writer.claim(self.clock(), self.batch_size, self.lease)  # the lanes' commits wait for it
        if not rows:
            return rows, []
        async with self.sessions() as session:  # reads, beside the writer (SQLite's WAL lets them)
            deliveries, skips = await self._prepare(session, rows)
        if skips:
            await self._writer.write(resolutions=skips)
        return rows, deliveries

    async def _refill(self) -> list[_Delivery] | None:
        """The next batch's deliveries ([] when all of it was skipped), None when nothing is due; shows progress."""
        claimed = await self._claim()
        if claimed is None or not claimed[0]:
            return None
        rows, deliveries = claimed
        self._claimed += len(rows)
        await self._after(rows)
        return deliveries

    async def _after(self, rows: list[outbox.Claimed]) -> None:
        for broadcast_id in sorted({r.broadcast_id for r in rows if r.broadcast_id is not None}):
            await self._progress(broadcast_id)

    async def _put_back(self, rows: list[outbox.Claimed]) -> None:
        """Unsent claimed rows back to pending, after any pause, so that nobody waits for their lease."""
        if not rows:
            return
        resume = self.clock() + timedelta(seconds=max(0.0, self._paused_until - time.monotonic()))
        await self._writer.write(resolutions=[outbox.back(row, resume) for row in rows])

    async def _prepare(
        self, session: AsyncSession, rows: list[outbox.Claimed]
    ) -> tuple[list[_Delivery], list[outbox.Resolution]]:
        """Pair claimed rows with their text, and skip what must not go out any more (cancelled, unsubscribed).

        Read after the claim committed, so anything committed before the claim is seen."""
        broadcast_ids = {r.broadcast_id for r in rows if r.broadcast_id is not None}
        broadcasts: dict[int, Broadcast] = {}
        for broadcast_id in broadcast_ids:
            b = await outbox.get_broadcast(session, broadcast_id)
            if b is not None:
                broadcasts[broadcast_id] = b
        # Reminders and every broadcast audience (db.audience) are drawn from active subscribers; weekly progress
        # nudges have their own opt-in.
        nudge = progress_store.NUDGE_KIND
        unsubscribed = await outbox.unsubscribed(session, {r.user_id for r in rows if r.kind != nudge})
        unsubscribed_nudges = await progress_store.nudges_off(session, {r.user_id for r in rows if r.kind == nudge})
        deliveries: list[_Delivery] = []
        skips: list[outbox.Resolution] = []
        for row in rows:
            broadcast = broadcasts.get(row.broadcast_id) if row.broadcast_id is not None else None
            text = row.text if row.text is not None else (broadcast.text if broadcast is not None else None)
            if broadcast is not None and broadcast.status == "cancelled":
                skips.append(outbox.skipped(row, "cancelled"))
            elif row.user_id in (unsubscribed_nudges if row.kind == nudge else unsubscribed):
                skips.append(outbox.skipped(row, "unsubscribed"))
            elif not text:
                skips.append(outbox.skipped(row, "nothing to send"))
            else:
                deliveries.append(_Delivery(row, text, keyboard(row.buttons)))
        return deliveries, skips

    async def _deliver(
        self, delivery: _Delivery, ready: asyncio.Future[None] | None
    ) -> tuple[bool, asyncio.Future[None] | None]:
        """Send one row once `ready` (the lane's previous outcome committed) is done, and hand in its outcome.

        Returns whether Telegram asked to slow down (the lanes stop) and the future of the outcome's commit.
        """
        row = delivery.row
        if row.lease_until - self.clock() < LEASE_SAFETY:
            return False, None  # too late in its lease: leave it to whoever claims it next
        started = time.monotonic()
        BULK_WAITED.set(0.0)
        args = BULK_ARGS if ready is None else {"priority": BULK, "ready": ready}
        try:
            message_id = await send_html(self.bot, row.user_id, delivery.text, delivery.markup, args)
        except RetryAfter as exc:
            seconds = retry_seconds(exc)
            self.pause(seconds)
            return True, self._record(outbox.back(row, self.clock() + timedelta(seconds=seconds)))
        except Forbidden as exc:
            committed = self._gone(row, exc)
        except BadRequest as exc:
            if any(marker in exc.message.lower() for marker in CHAT_GONE):
                committed = self._gone(row, exc)
            else:  # Telegram refused this message; sending it again would be refused again
                self.failed += 1
                committed = self._record(outbox.failed(row, _describe(exc)))
        except ChatMigrated as exc:
            self.failed += 1
            committed = self._record(outbox.failed(row, _describe(exc)))
        except (NetworkError, TelegramError) as exc:  # timeouts, 5xx, connection trouble: try again later
            committed = self._transient(row, exc)
        else:
            self.sent += 1
            committed = self._record(outbox.sent(row, message_id, self.clock()))
        on_wire = started + BULK_WAITED.get()
        if committed.done():  # committed at once (SQLite): no callback to schedule
            self._measure(time.monotonic() - on_wire)
        else:
            committed.add_done_callback(lambda _: self._measure(time.monotonic() - on_wire))
        return False, committed

    def _measure(self, took: float) -> None:
        """A message's time on the wire and until its outcome was committed, which sizes the lanes."""
        self.cycle = took if not self.cycle else 0.9 * self.cycle + 0.1 * took

    def _record(self, resolution: outbox.Resolution) -> asyncio.Future[None]:
        return self._writer.submit(resolutions=[resolution])

    def _gone(self, row: outbox.Claimed, exc: TelegramError) -> asyncio.Future[None]:
        """Blocked, or the chat is gone: failed for good and unsubscribed, so nothing is queued for it again."""
        self.failed += 1

        async def work(session: AsyncSession) -> None:
            if await outbox.mark_failed(session, row, _describe(exc)):
                await outbox.unsubscribe_after_block(session, row.user_id)
                await progress_store.stop_nudges_after_block(session, row.user_id)

        return self._writer.submit(work)

    def _transient(self, row: outbox.Claimed, exc: TelegramError) -> asyncio.Future[None]:
        reason = _describe(exc)
        if row.attempts >= self.max_attempts:
            self.failed += 1
            return self._record(outbox.failed(row, f"gave up after {row.attempts} attempts: {reason}"))
        delay = min(self.backoff * 2 ** (row.attempts - 1), 600.0)
        log.info("outbox row %d: %s; retrying in %.0f s", row.id, reason, delay)
        return self._record(outbox.retry(row, self.clock() + timedelta(seconds=delay), reason))

    # -- the admin's view ---------------------------------------------------------------------------------

    async def _progress(self, broadcast_id: int) -> None:
        now = time.monotonic()
        if now - self._progress_looked.get(broadcast_id, -math.inf) < self.progress_every:
            return  # no edit is due yet from this process; the database keeps the rule over all processes
        self._progress_looked[broadcast_id] = now
        async with self._writer.transaction() as session:
            if not await outbox.claim_progress_edit(session, broadcast_id, self.clock(), self.progress_every):
                return
            broadcast = await outbox.get_broadcast(session, broadcast_id)
            counts = await outbox.broadcast_counts(session, broadcast_id)
        if broadcast is None or not counts["left"]:
            return  # the final report follows
        text = progress_text(broadcast.id, broadcast.audience, counts)
        if await self._show(broadcast, text, keyboard(broadcast.progress_buttons)):
            async with self._writer.transaction() as session:  # the interval runs from the edit itself
                await outbox.claim_progress_edit(session, broadcast_id, self.clock(), 0.0)

    async def _finish(self) -> None:
        """Mark finished the broadcasts with nothing left and edit their progress message into the final report."""
        reports: list[tuple[Broadcast, str]] = []
        async with self._writer.transaction() as session:
            for broadcast in await outbox.finish_complete(session, self.clock()):
                counts = await outbox.broadcast_counts(session, broadcast.id)
                reasons = await outbox.failure_reasons(session, broadcast.id)
                log.info(
                    "broadcast %d %s: sent %d, failed %d, skipped %d",
                    broadcast.id,
                    broadcast.status,
                    counts["sent"],
                    counts["failed"],
                    counts["skipped"],
                )
                reports.append((broadcast, final_report(broadcast, counts, reasons)))
        for broadcast, report in reports:
            await self._show(broadcast, report, None, final=True)

    async def _show(
        self, broadcast: Broadcast, text: str, markup: InlineKeyboardMarkup | None, *, final: bool = False
    ) -> bool:
        """Edit the progress message (a final report is sent anew if that fails); whether the edit was made."""
        chat_id, message_id = broadcast.progress_chat_id, broadcast.progress_message_id
        if chat_id is None:
            return False
        try:
            if message_id is None:
                raise BadRequest("message to edit not found")
            await self.bot.edit_message_text(
                text,
                chat_id=chat_id,
                message_id=message_id,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
                rate_limit_args=BULK_ARGS,
            )
        except BadRequest as exc:
            if "not modified" in exc.message.lower():
                return True
            if final:  # the progress message is gone: the report still reaches the admin
                with contextlib.suppress(TelegramError):
                    await self.bot.send_message(chat_id, text, parse_mode=ParseMode.HTML, rate_limit_args=BULK_ARGS)
            else:
                log.info("broadcast %d: progress not shown: %s", broadcast.id, exc.message)
        except RetryAfter as exc:
            self.pause(retry_seconds(exc))
        except TelegramError as exc:
            log.info("broadcast %d: progress not shown: %s", broadcast.id, _describe(exc))
        else:
            return True
        return False


def _describe(exc: TelegramError) -> str:
    return exc.message or type(exc).__name__
