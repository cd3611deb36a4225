"""The sender's lanes: a few messages on the wire at once, never more than one sent and unrecorded per lane.

A lane takes a delivery, sends it and hands its outcome to the writer; it then takes the next delivery and reserves
its send slot at once, but the message goes out only once the previous outcome is committed (the limiter waits
for `ready`, see bot/rate_limit.py). Waiting for a slot and waiting for the database overlap, so a lane keeps
pace with the rate when a message's time on the wire plus its commit fits in `lanes` slots, and a crash still
repeats at most one message per lane: the one sent whose outcome was not yet committed.

The lanes run across batches: the feed claims the next batch while half of the current one is still to be handed
out, so the lanes neither drain nor wait at a batch's end. More lanes join while `wanted()` asks for more (the
sender measures a message's time on the wire and in the database as it goes).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

Refill = Callable[[], Awaitable[list[T] | None]]
"""The next batch to hand out; [] when everything claimed was skipped, None when there is nothing more."""


class Feed(Generic[T]):
    """The deliveries to hand out: a claimed batch, topped up from `refill` when half of it is out."""

    def __init__(self, first: list[T], refill: Refill[T] | None = None) -> None:
        self.queue = deque(first)
        self._refill = refill
        self._mark = len(first) // 2
        self._next: asyncio.Task[list[T] | None] | None = None
        self._ended = refill is None

    def _prefetch(self) -> None:
        if self._next is None and not self._ended and self._refill is not None:
            self._next = asyncio.ensure_future(self._refill())

    async def take(self) -> T | None:
        """The next delivery, or None once the claims have run dry."""
        while True:
            if self.queue:
                item = self.queue.popleft()
                if len(self.queue) <= self._mark:
                    self._prefetch()
                return item
            self._prefetch()
            task = self._next
            if task is None:
                return None
            batch = await asyncio.shield(task)
            if self._next is task:  # the first lane back hands the batch over; the others find it queued
                self._next = None
                if batch is None:
                    self._ended = True
                else:
                    self.queue.extend(batch)
                    self._mark = len(batch) // 2

    def stop(self) -> list[T]:
        """End the feed; what it still holds, not handed out (see `claimed` for a claim in progress)."""
        self._ended = True
        rest = list(self.queue)
        self.queue.clear()
        return rest

    async def claimed(self) -> list[T] | None:
        """The batch a claim in progress brings (once it is done), after `stop()`."""
        task, self._next = self._next, None
        return None if task is None else await task


Deliver = Callable[[T, "asyncio.Future[None] | None"], Awaitable[tuple[bool, "asyncio.Future[None] | None"]]]
"""Send one delivery once `ready` (the lane's previous outcome committed) is done; returns whether to halt (Telegram
asked to slow down) and the future of its own outcome's commit (None when it was not sent and has no outcome)."""


@dataclass
class Lanes(Generic[T]):
    """Run `deliver` over the feed in up to `wanted()` lanes until it runs dry, a lane halts or `stopped` is set."""

    feed: Feed[T]
    deliver: Deliver[T]
    wanted: Callable[[], int]
    stopped: asyncio.Event
    halted: bool = False
    errors: list[BaseException] = field(default_factory=list)
    unsent: list[T] = field(default_factory=list)
    """Deliveries taken but never sent (their lane stopped first): the caller puts them back."""
    _running: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self) -> None:
        self._spawn()
        try:
            while running := {task for task in self._running if not task.done()}:
                await asyncio.wait(running)
        except asyncio.CancelledError:
            for task in self._running:
                task.cancel()
            raise
        if self.errors:
            raise self.errors[0]

    def _spawn(self) -> None:
        while len(self._running) < self.wanted() and not self._stopping():
            task = asyncio.create_task(self._lane())
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _stopping(self) -> bool:
        return self.halted or bool(self.errors) or self.stopped.is_set()

    async def _lane(self) -> None:
        last: asyncio.Future[None] | None = None  # this lane's previous outcome, being committed
        try:
            while not self._stopping():
                try:
                    item = await self.feed.take()
                except Exception as exc:  # the claim failed
                    self.errors.append(exc)
                    break
                if item is None:
                    break
                if self._stopping():
                    self.unsent.append(item)
                    break
                self._spawn()
                try:
                    halt, committed = await self.deliver(item, last)
                except Exception as exc:
                    if last is not None and last.done() and not last.cancelled() and last.exception() is not None:
                        self.unsent.append(item)  # it waited for `last`, which failed: it never went out
                    else:
                        self.errors.append(exc)  # e.g. the database is gone: no more sends after an unrecorded one
                    break
                last = committed or last
                if halt:
                    self.halted = True
        finally:
            if last is not None:
                try:
                    await last
                except Exception as exc:
                    self.errors.append(exc)
