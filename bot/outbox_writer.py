"""The outbox sender's writes: one at a time in the process, outcomes committed in groups.

Each lane of the sender (bot/sender.py) hands in its message's outcome and waits until it is committed before it
sends again, so a crash repeats at most one message per lane. Outcomes that arrive while a commit runs go
together in the next one, their row updates in one executemany. Claims take the same turn, so SQLite never makes
one of the sender's writers wait on another.

Plain outcomes (row updates) go to a committer held while the sender drains (db/outbox_commit.py): at 1,000
messages a second a pooled ORM session per commit (check-out, a reset on check-in, the ORM's bulk-update path,
SQLAlchemy's aiosqlite adapter) cost about as much CPU as the rest of a message, and delayed each lane's next
message. If a group fails, each outcome is tried again on its own in a fresh pooled session (pre-pinged on
PostgreSQL), so a connection the database closed meanwhile costs no record, and one bad outcome cannot hold back
(and later duplicate) the messages recorded beside it. Outcomes with more to do than update their row (`work`)
use a pooled session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db import outbox
from db.outbox_commit import OutcomeCommitter, SqliteFileCommitter, committer_for

log = logging.getLogger(__name__)

Work = Callable[[AsyncSession], Awaitable[object]]


@dataclass
class _Write:
    work: Work | None
    resolutions: list[outbox.Resolution]
    committed: asyncio.Future[None]
    error: BaseException | None = None


class OutboxWriter:
    """Group commit for the sender, see the module docstring. `close()` returns the held connection."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        bind = sessions.kw.get("bind")
        self.engine = bind if isinstance(bind, AsyncEngine) else None
        self.lock = asyncio.Lock()
        self.pending: list[_Write] = []
        self._committer: OutcomeCommitter | None = None
        self._committing: asyncio.Task[None] | None = None

    def submit(self, work: Work | None = None, resolutions: Iterable[outbox.Resolution] = ()) -> asyncio.Future[None]:
        """Queue `work` (run in a session) and `resolutions` for the next commit; the future is done once they are
        committed, or fails with the reason they could not be."""
        op = _Write(work, list(resolutions), asyncio.get_running_loop().create_future())
        if work is None and not self.pending and not self.lock.locked() and self._commit_now(op):
            return op.committed
        self.pending.append(op)
        if self._committing is None:
            self._committing = asyncio.create_task(self._commit_pending(), name="outbox-writer")
        return op.committed

    def _commit_now(self, op: _Write) -> bool:
        """Commit a plain outcome at once where the committer can without waiting (SQLite: on the event loop's
        thread), sparing the turn of the loop a queued commit takes; whether it was committed."""
        if self.engine is None:
            return False
        committer = self._committer_for_engine(self.engine)
        if not isinstance(committer, SqliteFileCommitter):
            return False
        try:
            held = committer.commit_now(op.resolutions)
        except Exception:  # the queued commit tries again, then each outcome on its own
            return False
        if held is None:
            return False
        _check_held(held, len(op.resolutions))
        op.committed.set_result(None)
        return True

    async def write(self, work: Work | None = None, resolutions: Iterable[outbox.Resolution] = ()) -> None:
        """Commit `work` and `resolutions`, together with whatever else is waiting."""
        await self.submit(work, resolutions)

    async def _commit_pending(self) -> None:
        """Commit group after group while outcomes wait; each waiter is woken by its own future, not by the lock."""
        try:
            while self.pending:
                async with self.lock:  # taken anew for each group: a claim waiting for its turn gets it
                    group, self.pending = self.pending, []
                    try:
                        await self._commit(group)
                    except Exception:  # each waiter has its error; the writer carries on
                        log.exception("outbox writer: a group of outcomes failed")
        finally:
            self._committing = None
            if self.pending:  # cancelled before their turn (the process is stopping)
                group, self.pending = self.pending, []
                _settle(group, asyncio.CancelledError())

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session transaction in the writer's turn (claims, progress, finishing broadcasts)."""
        async with self.lock, self.sessions() as session, session.begin():
            yield session

    async def claim(self, now: datetime, limit: int, lease: float) -> list[outbox.Claimed]:
        """`db.outbox.claim_due` in the writer's turn, through its committer (a claim is a write)."""
        async with self.lock:
            if self.engine is None:
                async with self.sessions() as session, session.begin():
                    return await outbox.claim_due(session, now, limit, lease)
            return await self._committer_for_engine(self.engine).claim(now, limit, lease)

    def _committer_for_engine(self, engine: AsyncEngine) -> OutcomeCommitter:
        if self._committer is None:
            self._committer = committer_for(engine)
        return self._committer

    async def close(self) -> None:
        async with self.lock:
            committer, self._committer = self._committer, None
            if committer is not None:
                await committer.close()

    async def _commit(self, group: list[_Write]) -> None:
        try:
            plain = [op for op in group if op.work is None]
            if plain:
                await self._each_on_failure(plain, self._on_connection)
            worked = [op for op in group if op.work is not None]
            if worked:
                await self._each_on_failure(worked, self._in_session)
        except BaseException as exc:
            _settle(group, exc)
            raise
        _settle(group)

    async def _each_on_failure(self, ops: list[_Write], commit: Callable[[list[_Write]], Awaitable[None]]) -> None:
        try:
            await commit(ops)
        except Exception:
            for op in ops:
                try:
                    await self._in_session([op])
                except Exception as exc:
                    op.error = exc

    async def _on_connection(self, ops: list[_Write]) -> None:
        if self.engine is None:
            await self._in_session(ops)
            return
        resolutions = [r for op in ops for r in op.resolutions]
        _check_held(await self._committer_for_engine(self.engine).commit(resolutions), len(resolutions))

    async def _in_session(self, ops: list[_Write]) -> None:
        async with self.sessions() as session, session.begin():
            await _resolve(session, [r for op in ops for r in op.resolutions])
            for op in ops:
                if op.work is not None:
                    await op.work(session)


async def _resolve(session: AsyncSession, resolutions: Sequence[outbox.Resolution]) -> None:
    if resolutions:
        _check_held(await outbox.resolve_all(session, resolutions), len(resolutions))


def _settle(group: list[_Write], failure: BaseException | None = None) -> None:
    """Wake each waiter with its outcome's fate: committed, its own error, or what stopped the whole group."""
    for op in group:
        if op.committed.done():
            continue
        error = op.error or failure
        if isinstance(error, asyncio.CancelledError):
            op.committed.cancel()
        elif error is not None:
            op.committed.set_exception(error)
        else:
            op.committed.set_result(None)


def _check_held(held: int | None, resolved: int) -> None:
    if held is not None and held < resolved:
        log.warning("%d outbox rows were claimed again before their result was recorded", resolved - held)
