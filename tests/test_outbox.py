"""The outbox repository on SQLite and PostgreSQL: queueing, dedupe, claims and leases, resolving, broadcasts'
counts, cancel and finish, subscriptions, and /delete_me erasing a user's outbox rows and subscription."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db import outbox
from db import repository as repo
from db.models import Broadcast, OutboxMessage, Subscription
from db.outbox_commit import ConnectionCommitter, SqliteFileCommitter, committer_for

Sessions = async_sessionmaker[AsyncSession]
T0 = datetime(2027, 3, 1, 17, 0, tzinfo=UTC)


async def _users(sessions: Sessions, *ids: int) -> None:
    async with sessions() as s, s.begin():
        for user_id in ids:
            await repo.lock_user(s, user_id)


async def _broadcast(sessions: Sessions, recipients: list[int]) -> int:
    async with sessions() as s, s.begin():
        b = await outbox.queue_broadcast(
            s, text="<b>Hello</b>", audience="all", created_by=1, recipients=recipients, not_before=T0
        )
        return b.id


async def _claim(sessions: Sessions, now: datetime, limit: int = 100, lease: float = 60) -> list[outbox.Claimed]:
    async with sessions() as s, s.begin():
        return await outbox.claim_due(s, now, limit, lease)


async def _statuses(sessions: Sessions) -> dict[int, str]:
    async with sessions() as s:
        rows = (await s.execute(select(OutboxMessage.user_id, OutboxMessage.status))).all()
        return {u: st for u, st in rows}


async def test_queue_broadcast_writes_one_row_per_recipient(sessions: Sessions) -> None:
    await _users(sessions, 1, 10, 11, 12)
    bid = await _broadcast(sessions, [10, 11, 12, 11])  # a repeated recipient is queued once
    async with sessions() as s:
        b = await outbox.get_broadcast(s, bid)
        assert b is not None and b.status == "queued" and b.total == 3 and b.created_by == 1
        rows = list((await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())
        assert [r.dedupe_key for r in rows] == [f"b:{bid}:10", f"b:{bid}:11", f"b:{bid}:12"]
        assert {r.status for r in rows} == {"pending"} and all(r.text is None for r in rows)
        assert await outbox.broadcast_counts(s, bid) == {"sent": 0, "failed": 0, "skipped": 0, "left": 3, "total": 3}
        assert [x.id for x in await outbox.list_broadcasts(s)] == [bid]


async def test_queue_message_is_insert_if_absent(sessions: Sessions) -> None:
    await _users(sessions, 20)
    key = "r:20:1:deadline:2027-04-01:7"
    for expected in (True, False):
        async with sessions() as s, s.begin():
            inserted = await outbox.queue_message(
                s, user_id=20, kind="reminder", text="hi", buttons=[[{"text": "x", "callback_data": "R:0:stop"}]],
                dedupe_key=key, not_before=T0,
            )  # fmt: skip
            assert inserted is expected
    # still never twice once it was sent
    (row,) = await _claim(sessions, T0)
    async with sessions() as s, s.begin():
        assert await outbox.mark_sent(s, row, 555)
        assert not await outbox.queue_message(
            s, user_id=20, kind="reminder", text="hi", buttons=None, dedupe_key=key, not_before=T0
        )
        count = (await s.execute(select(func.count()).select_from(OutboxMessage))).scalar_one()
        assert count == 1
        stored = (await s.execute(select(OutboxMessage))).scalar_one()
        assert stored.buttons == [[{"text": "x", "callback_data": "R:0:stop"}]] and stored.message_id == 555


async def test_claim_takes_due_rows_only_and_a_lease_expiry_frees_them(sessions: Sessions) -> None:
    await _users(sessions, 1, 30, 31)
    await _broadcast(sessions, [30])
    async with sessions() as s, s.begin():
        later = T0 + timedelta(hours=1)
        await outbox.queue_message(
            s, user_id=31, kind="reminder", text="later", buttons=None, dedupe_key="r:31", not_before=later
        )
    assert await _claim(sessions, T0 - timedelta(seconds=1)) == []
    (first,) = await _claim(sessions, T0)
    assert first.user_id == 30 and first.attempts == 1 and (await _statuses(sessions))[30] == "in_flight"
    assert first.lease_until == T0 + timedelta(seconds=60)
    # held: nobody else gets it until the lease expires
    assert await _claim(sessions, T0 + timedelta(seconds=59)) == []
    (again,) = await _claim(sessions, T0 + timedelta(seconds=61))
    assert again.id == first.id and again.attempts == 2
    # the first holder lost the row: its late result is refused, the new holder's counts
    async with sessions() as s, s.begin():
        assert not await outbox.mark_sent(s, first, 1)
        assert await outbox.mark_sent(s, again, 2)
    assert (await _statuses(sessions))[30] == "sent"
    (reminder,) = await _claim(sessions, T0 + timedelta(hours=2))
    assert reminder.user_id == 31 and reminder.text == "later"


async def test_resolving_rows(sessions: Sessions) -> None:
    await _users(sessions, 1, 40, 41, 42, 43, 44)
    bid = await _broadcast(sessions, [40, 41, 42, 43, 44])
    rows = {r.user_id: r for r in await _claim(sessions, T0)}
    later = T0 + timedelta(seconds=30)
    async with sessions() as s, s.begin():
        assert await outbox.mark_sent(s, rows[40], 7, at=T0)
        assert await outbox.mark_failed(s, rows[41], "Forbidden: bot was blocked by the user")
        assert await outbox.mark_skipped(s, rows[42], "unsubscribed")
        assert await outbox.retry_later(s, rows[43], later, "Timed out")
        assert await outbox.put_back(s, rows[44], later)
        assert not await outbox.mark_sent(s, rows[41], 8)  # resolved once only
        counts = await outbox.broadcast_counts(s, bid)
    assert counts == {"sent": 1, "failed": 1, "skipped": 1, "left": 2, "total": 5}
    retried = {r.user_id: r for r in await _claim(sessions, later)}
    assert retried[43].attempts == 2 and retried[43].error == "Timed out"
    assert retried[44].attempts == 1  # a 429 does not count as an attempt
    async with sessions() as s:
        sent = (await s.execute(select(OutboxMessage).where(OutboxMessage.user_id == 40))).scalar_one()
        assert sent.message_id == 7 and outbox.as_utc(sent.sent_at or T0) == T0 and sent.lease_until is None


async def test_the_senders_committers_write_what_a_session_writes(engine: AsyncEngine, sessions: Sessions) -> None:
    """The sender's commits (db/outbox_commit.py: a thread and connection of its own on an SQLite file, Core on a
    held connection otherwise) write what resolve_all writes in a session, datetimes included, and keep the claim's
    fence."""
    recipients = list(range(60, 75))
    await _users(sessions, 1, *recipients)
    await _broadcast(sessions, recipients)
    rows = {r.user_id: r for r in await _claim(sessions, T0)}
    later = T0 + timedelta(seconds=30)

    def outcomes(first: int) -> list[outbox.Resolution]:
        return [
            outbox.sent(rows[first], 7, at=T0),
            outbox.failed(rows[first + 1], "Forbidden: bot was blocked by the user"),
            outbox.skipped(rows[first + 2], "unsubscribed"),
            outbox.retry(rows[first + 3], later, "Timed out"),
            outbox.back(rows[first + 4], later),
        ]

    async with sessions() as s, s.begin():  # None: asyncpg cannot count the rows an executemany changed
        assert await outbox.resolve_all(s, outcomes(60)) in (5, None)
    committers = [committer_for(engine), ConnectionCommitter(engine)]
    assert isinstance(committers[0], SqliteFileCommitter) == (engine.dialect.name == "sqlite")
    for first, committer in zip((65, 70), committers, strict=True):
        try:
            assert await committer.commit(outcomes(first)) in (5, None)
            assert await committer.commit([outbox.sent(rows[first + 1], 9, at=T0)]) == 0  # resolved once only
        finally:
            await committer.close()
    columns = ("status", "message_id", "error", "attempts", "not_before", "lease_until", "sent_at")
    async with sessions() as s:
        stored = {r.user_id: r for r in (await s.execute(select(OutboxMessage))).scalars()}
    for user_id in range(60, 65):
        by_session = [getattr(stored[user_id], c) for c in columns]
        for other in (user_id + 5, user_id + 10):
            assert [getattr(stored[other], c) for c in columns] == by_session, other
    assert outbox.as_utc(stored[65].sent_at or later) == T0 and outbox.as_utc(stored[68].not_before) == later
    assert stored[69].attempts == 0 and stored[69].status == "pending"  # the 429's attempt given back


async def test_the_senders_committers_claim_what_claim_due_claims(engine: AsyncEngine, sessions: Sessions) -> None:
    """The sender claims through its committer (its own SQLite connection in a thread, or Core on a held
    connection): the same rows, leases and values as `claim_due`, buttons decoded and datetimes aware."""
    await _users(sessions, 1, 90, 91, 92)
    buttons = [[{"text": "Open", "callback_data": "r:open"}]]
    async with sessions() as s, s.begin():
        for user_id in (90, 91, 92):
            await outbox.queue_message(
                s, user_id=user_id, kind="reminder", text=f"r{user_id}", buttons=buttons, dedupe_key=f"r:{user_id}",
                not_before=T0 + timedelta(seconds=user_id),
            )  # fmt: skip
    by_session = await _claim(sessions, T0 + timedelta(seconds=90), limit=1)
    committers = [committer_for(engine), ConnectionCommitter(engine)]
    claims = []
    for committer in committers:
        try:
            claims.append(await committer.claim(T0 + timedelta(seconds=92), 1, 60))
        finally:
            await committer.close()
    assert [[r.user_id for r in rows] for rows in (by_session, *claims)] == [[90], [91], [92]]
    for (row,) in claims:
        assert row.buttons == buttons and row.text == f"r{row.user_id}" and row.attempts == 1
        assert row.not_before == T0 + timedelta(seconds=row.user_id)
        assert row.lease_until == T0 + timedelta(seconds=92 + 60)
    assert set((await _statuses(sessions)).values()) == {"in_flight"}


async def test_on_sqlite_a_commit_waits_in_a_thread_while_another_connection_writes(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    """The committer's own connection never waits for a lock on the event loop: while another transaction holds
    the database, its group is committed from a thread once that transaction ends."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's single writer")
    await _users(sessions, 1, 80, 81)
    await _broadcast(sessions, [80, 81])
    rows = {r.user_id: r for r in await _claim(sessions, T0)}
    committer = committer_for(engine)
    try:
        assert await committer.commit([outbox.sent(rows[80], 1, at=T0)]) == 1  # on the loop's thread
        async with sessions() as s, s.begin():
            await outbox.set_subscribed(s, 80, True)  # this transaction now holds SQLite's write lock
            pending = asyncio.ensure_future(committer.commit([outbox.sent(rows[81], 2, at=T0)]))
            await asyncio.sleep(0.2)
            assert not pending.done()  # waiting for the lock, in its thread: the loop runs on
        assert await pending == 1
    finally:
        await committer.close()
    assert (await _statuses(sessions)) == {80: "sent", 81: "sent"}


async def test_release_in_flight_returns_rows_at_once(sessions: Sessions) -> None:
    await _users(sessions, 1, 50, 51)
    await _broadcast(sessions, [50, 51])
    assert len(await _claim(sessions, T0)) == 2
    async with sessions() as s, s.begin():
        assert await outbox.release_in_flight(s) == 2
    assert len(await _claim(sessions, T0)) == 2


async def test_cancel_skips_pending_rows_and_finish_marks_each_broadcast_once(sessions: Sessions) -> None:
    await _users(sessions, 1, 60, 61, 62)
    bid = await _broadcast(sessions, [60, 61, 62])
    other = await _broadcast(sessions, [60])
    (held, *_rest) = await _claim(sessions, T0, limit=1)
    async with sessions() as s, s.begin():
        assert await outbox.cancel_broadcast(s, bid) == 2
        assert await outbox.cancel_broadcast(s, bid) == 0
        assert await outbox.cancelled_broadcasts(s, [bid, other]) == {bid}
        assert await outbox.finish_complete(s) == []  # one row of it still in flight
        assert await outbox.mark_sent(s, held, 9)
    async with sessions() as s, s.begin():
        (finished,) = await outbox.finish_complete(s)
        assert finished.id == bid and finished.status == "cancelled" and finished.finished_at is not None
        assert await outbox.broadcast_counts(s, bid) == {"sent": 1, "failed": 0, "skipped": 2, "left": 0, "total": 3}
        assert await outbox.finish_complete(s) == []
    (row,) = await _claim(sessions, T0)
    async with sessions() as s, s.begin():
        await outbox.mark_sent(s, row, 10)
        (done,) = await outbox.finish_complete(s)
        assert done.id == other and done.status == "done"


async def test_progress_edits_are_rationed(sessions: Sessions) -> None:
    await _users(sessions, 1, 70)
    bid = await _broadcast(sessions, [70])
    async with sessions() as s, s.begin():
        assert not await outbox.claim_progress_edit(s, bid, T0, 2.0)  # no progress message yet
        await outbox.set_progress_message(s, bid, 1, 99, [[{"text": "Cancel", "callback_data": "B:0:c"}]])
        assert await outbox.claim_progress_edit(s, bid, T0, 2.0)
        assert not await outbox.claim_progress_edit(s, bid, T0 + timedelta(seconds=1), 2.0)
        assert await outbox.claim_progress_edit(s, bid, T0 + timedelta(seconds=2), 2.0)
        b = await outbox.get_broadcast(s, bid)
        assert b is not None and b.progress_message_id == 99 and b.progress_buttons is not None


async def test_subscriptions(sessions: Sessions) -> None:
    await _users(sessions, 80, 81, 82)
    async with sessions() as s, s.begin():
        assert not await outbox.is_subscribed(s, 80)
        await outbox.set_subscribed(s, 80, True)
        await outbox.set_subscribed(s, 81, True)
        await outbox.set_subscribed(s, 81, False)
        await outbox.set_subscribed(s, 82, True)
        await outbox.unsubscribe_after_block(s, 82)
        await outbox.unsubscribe_after_block(s, 999)  # not a user (erased meanwhile): nothing to record
    async with sessions() as s:
        assert await outbox.is_subscribed(s, 80) and not await outbox.is_subscribed(s, 81)
        assert await outbox.active_subscribers(s) == [80]
        assert await outbox.unsubscribed(s, [80, 81, 82, 83]) == {81, 82, 83}
        assert (await s.execute(select(func.count()).select_from(Subscription))).scalar_one() == 3


async def test_skip_pending_reminders_keeps_the_planned_ones(sessions: Sessions) -> None:
    await _users(sessions, 1, 90)
    async with sessions() as s, s.begin():
        for key in ("r:a", "r:b", "r:c"):
            await outbox.queue_message(
                s, user_id=90, kind="reminder", text=key, buttons=None, dedupe_key=key, not_before=T0
            )
    await _broadcast(sessions, [90])
    async with sessions() as s, s.begin():
        assert await outbox.skip_pending_reminders(s, 90, keep={"r:b"}, reason="no longer on the roadmap") == 2
        keys = dict((await s.execute(select(OutboxMessage.dedupe_key, OutboxMessage.status))).all())
    assert keys["r:a"] == keys["r:c"] == "skipped" and keys["r:b"] == "pending"
    assert [k for k, v in keys.items() if k.startswith("b:")] and all(
        v == "pending" for k, v in keys.items() if k.startswith("b:")
    )


async def test_delete_user_erases_outbox_rows_and_subscription(sessions: Sessions) -> None:
    await _users(sessions, 1, 100, 101)
    bid = await _broadcast(sessions, [100, 101])
    async with sessions() as s, s.begin():
        await outbox.set_subscribed(s, 100, True)
        await outbox.set_subscribed(s, 101, True)
        await outbox.queue_message(
            s, user_id=100, kind="reminder", text="r", buttons=None, dedupe_key="r:100", not_before=T0
        )
    async with sessions() as s, s.begin():
        await repo.delete_user(s, 100)
        await repo.delete_user(s, 1)  # the admin who sent the broadcast
    async with sessions() as s:
        assert set((await s.execute(select(OutboxMessage.user_id))).scalars()) == {101}
        assert set((await s.execute(select(Subscription.user_id))).scalars()) == {101}
        b = (await s.execute(select(Broadcast).where(Broadcast.id == bid))).scalar_one()
        assert b.created_by is None and b.total == 2


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_concurrent_claims_never_share_a_row_on_postgres(sessions: Sessions) -> None:
    """SKIP LOCKED: claims racing from many connections split the rows between them."""
    recipients = list(range(1000, 1400))
    await _users(sessions, 1, *recipients)
    await _broadcast(sessions, recipients)

    async def claimer() -> list[int]:
        got: list[int] = []
        while True:
            rows = await _claim(sessions, T0, limit=7)
            if not rows:
                return got
            got.extend(r.id for r in rows)
            await asyncio.sleep(0)

    results = await asyncio.gather(*(claimer() for _ in range(8)))
    claimed = [row_id for got in results for row_id in got]
    assert len(claimed) == len(set(claimed)) == len(recipients)
    assert sum(1 for got in results if got) > 1  # they really did run side by side


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_claim_skips_rows_another_transaction_holds(sessions: Sessions) -> None:
    await _users(sessions, 1, 2000, 2001)
    await _broadcast(sessions, [2000, 2001])
    async with sessions() as first, first.begin():
        held = await outbox.claim_due(first, T0, 1, 60)
        # first's transaction is still open: its row is locked, the other one is free
        async with sessions() as second, second.begin():
            other = await outbox.claim_due(second, T0, 10, 60)
        assert [r.id for r in other] != [r.id for r in held] and len(other) == 1
