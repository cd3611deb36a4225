"""Admins broadcast in chat: /broadcast, the message, a preview with the audience and its count, Confirm.

Through `Dialogue` with the `BroadcastAdmin` plugin on SQLite (the transport's part, the pressed message's id,
is set as Telegram's handler sets it), and once end to end through the fake Bot API with the sender of the
running bot delivering. Nothing is queued before Confirm; anyone else, any stale or forged press and any bad
message changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot import admin_broadcast as bc
from bot.admin_broadcast import BroadcastAdmin
from bot.dialogue import Dialogue, Reply, Screen
from bot.screens import PRESSED_MESSAGE
from db import migrate, outbox
from db.engine import make_engine, make_session_factory
from db.models import AdminAction, Broadcast, OutboxMessage
from tests.fake_bot_api import FakeBotApi
from tests.harness import Clock, RunningBot
from tests.test_audience import community

Sessions = async_sessionmaker[AsyncSession]

ADMIN = 501
OTHER_ADMIN = 502
PHYSICIAN = 1  # a subscriber (tests.test_audience.community)
CONTROL = 900  # the id Telegram gave the control message whose buttons are pressed
MESSAGE = '<b>QME exam news</b>\nThe April window is open: <a href="https://www.dir.ca.gov/dwc/">DWC</a> &amp; more.'


@dataclass
class Bot:
    dialogue: Dialogue
    sessions: Sessions
    engine: AsyncEngine
    clock: Clock


def _dialogue(sessions: Sessions, clock: Clock) -> Dialogue:
    return Dialogue(sessions, plugins=[BroadcastAdmin(sessions, {ADMIN, OTHER_ADMIN}, now=clock)])


@pytest.fixture
async def bot(sqlite_url: str) -> AsyncIterator[Bot]:
    engine = make_engine(sqlite_url)
    await migrate.upgrade(engine)
    sessions = make_session_factory(engine)
    await community(sessions)
    clock = Clock()
    yield Bot(_dialogue(sessions, clock), sessions, engine, clock)
    await engine.dispose()


async def press(bot: Bot, user_id: int, data: str, message_id: int = CONTROL) -> Reply:
    """A press as the Telegram handler makes it: the pressed message's id is known to the plugin."""
    token = PRESSED_MESSAGE.set(message_id)
    try:
        return await bot.dialogue.press(user_id, data)
    finally:
        PRESSED_MESSAGE.reset(token)


def _screens(reply: Reply) -> list[Screen]:
    return reply.screens()


def _text(reply: Reply) -> str:
    return "\n".join(s.text for s in _screens(reply))


def _button(reply: Reply, label: str) -> str:
    for screen in _screens(reply):
        for button in screen.buttons():
            if label in button.label:
                return button.data
    raise AssertionError(f"no {label!r} button in {[b.label for s in _screens(reply) for b in s.buttons()]}")


def _labels(reply: Reply) -> list[str]:
    return [b.label for s in _screens(reply) for b in s.buttons()]


async def _broadcasts(sessions: Sessions) -> list[Broadcast]:
    async with sessions() as s:
        return list((await s.execute(select(Broadcast).order_by(Broadcast.id))).scalars())


async def _outbox(sessions: Sessions) -> list[tuple[int, str]]:
    async with sessions() as s:
        rows = (await s.execute(select(OutboxMessage).order_by(OutboxMessage.user_id))).scalars()
        return [(r.user_id, r.status) for r in rows]


async def _drafts(sessions: Sessions) -> list[tuple[int, str]]:
    async with sessions() as s:
        return [(a.user_id, a.payload.get("stage", "")) for a in (await s.execute(select(AdminAction))).scalars()]


async def _preview(bot: Bot, message: str = MESSAGE, admin: int = ADMIN) -> Reply:
    ask = await bot.dialogue.command(admin, "broadcast")
    assert "Send me the message" in _text(ask)
    return await bot.dialogue.text(admin, message)


# -- the whole chat flow ----------------------------------------------------------------------------------


async def test_broadcast_preview_audience_confirm(bot: Bot) -> None:
    ask = await bot.dialogue.command(ADMIN, "broadcast")
    assert "New broadcast" in _text(ask) and "&lt;b&gt;" in _text(ask)
    assert _labels(ask) == [bc.CANCEL]

    reply = await bot.dialogue.text(ADMIN, MESSAGE)
    preview, control = reply.send
    assert preview == Screen(MESSAGE)  # exactly what recipients get: the text as written, no buttons
    assert "Preview" in control.text and "<b>Audience:</b> All subscribers" in control.text
    assert "<b>Recipients:</b> 5 recipients" in control.text
    assert _labels(reply) == [
        "✓ All subscribers",
        "QME track",
        "Hybrid track",
        "California-licensed",
        "By specialty…",
        "✅ Confirm: send to 5",
        "✖️ Cancel",
    ]
    assert all(len(b.data.encode()) <= 64 for b in control.buttons())
    assert await _broadcasts(bot.sessions) == []

    qme = await press(bot, ADMIN, _button(reply, "QME track"))
    assert qme.edit is not None and not qme.send
    assert "QME track" in qme.edit.text and "2 recipients" in qme.edit.text
    assert "✓ QME track" in _labels(qme) and "✅ Confirm: send to 2" in _labels(qme)

    pick = await press(bot, ADMIN, _button(qme, "By specialty"))
    assert "Choose a specialty" in _text(pick)
    labels = _labels(pick)
    assert "Orthopedics (2)" in labels and "PM&R (1)" in labels and "Psychiatry (1)" in labels
    assert "Dermatology (0)" in labels and "‹ Back" in labels
    assert all(len(b.data.encode()) <= 64 for s in _screens(pick) for b in s.buttons())
    back = await press(bot, ADMIN, _button(pick, "Back"))
    assert "QME track" in _text(back)

    ortho = await press(bot, ADMIN, _button(pick, "Orthopedics"))
    assert "<b>Audience:</b> Specialty: Orthopedics" in _text(ortho) and "2 recipients" in _text(ortho)
    assert "✓ Specialty: Orthopedics" in _labels(ortho)

    done = await press(bot, ADMIN, _button(ortho, "Confirm"))
    assert done.notice == "Queued: sending to 2 recipients."
    assert done.edit is not None
    assert "Broadcast #1" in done.edit.text and "Specialty: Orthopedics" in done.edit.text
    assert "Sending…" in done.edit.text and "Sent 0 · failed 0 · left 2" in done.edit.text
    assert _labels(done) == [bc.CANCEL_SENDING]

    [broadcast] = await _broadcasts(bot.sessions)
    assert (broadcast.text, broadcast.audience, broadcast.created_by) == (MESSAGE, "specialty:ortho", ADMIN)
    assert (broadcast.progress_chat_id, broadcast.progress_message_id) == (ADMIN, CONTROL)
    assert [u for u, _ in await _outbox(bot.sessions)] == [1, 4]
    assert await _drafts(bot.sessions) == []

    again = await press(bot, ADMIN, _button(ortho, "Confirm"))  # a second press: queued once only
    assert again.notice == bc.GONE
    assert len(await _broadcasts(bot.sessions)) == 1


@pytest.mark.parametrize(
    ("label", "count"),
    [("All subscribers", 5), ("QME track", 2), ("Hybrid track", 1), ("California-licensed", 2)],
)
async def test_audience_buttons_count_the_right_people(bot: Bot, label: str, count: int) -> None:
    reply = await press(bot, ADMIN, _button(await _preview(bot), label))
    assert f"{count} recipient" in _text(reply)
    done = await press(bot, ADMIN, _button(reply, "Confirm"))
    assert done.notice is not None and f"{count} recipient" in done.notice
    assert len(await _outbox(bot.sessions)) == count


async def test_an_empty_audience_offers_no_confirm(bot: Bot) -> None:
    pick = await press(bot, ADMIN, _button(await _preview(bot), "By specialty"))
    derm = await press(bot, ADMIN, _button(pick, "Dermatology"))
    assert "0 recipients" in _text(derm) and bc.NOBODY in _text(derm)
    assert not any("Confirm" in label for label in _labels(derm))
    ref = _button(derm, "Cancel").removeprefix("bc:no:")
    forged = await press(bot, ADMIN, f"bc:ok:{ref}")
    assert forged.notice == bc.NOBODY_TO_SEND
    assert await _broadcasts(bot.sessions) == []


# -- the message --------------------------------------------------------------------------------------------


async def test_bad_html_is_named_and_nothing_is_queued(bot: Bot) -> None:
    await bot.dialogue.command(ADMIN, "broadcast")
    bad = await bot.dialogue.text(ADMIN, "<b>Exam news <div>soon</div>")
    text = _text(bad)
    assert "cannot be sent as it is" in text and "nothing was queued" in text
    assert "&lt;div&gt; is not a tag Telegram allows" in text and "unclosed &lt;b&gt; tag" in text
    assert "<div>" not in text  # escaped, so the reply itself is valid HTML
    assert _labels(bad) == [bc.CANCEL]
    assert await _broadcasts(bot.sessions) == []
    assert await _drafts(bot.sessions) == [(ADMIN, "text")]  # still waiting for a corrected message

    good = await bot.dialogue.text(ADMIN, "<b>Exam news</b> soon")
    assert good.send[0] == Screen("<b>Exam news</b> soon")


async def test_the_draft_survives_a_restart(bot: Bot) -> None:
    await bot.dialogue.command(ADMIN, "broadcast")
    restarted = _dialogue(bot.sessions, bot.clock)
    reply = await restarted.text(ADMIN, MESSAGE)
    assert reply.send[0] == Screen(MESSAGE)
    assert "Queued" in (await press(bot, ADMIN, _button(reply, "Confirm"))).notice  # type: ignore[operator]


async def test_the_admins_other_text_goes_to_the_flow_when_no_draft_waits(bot: Bot) -> None:
    reply = await bot.dialogue.text(ADMIN, "hello")
    assert "Preview" not in _text(reply)
    preview = await _preview(bot)
    after = await bot.dialogue.text(ADMIN, "another message")  # the draft has its message; this is not claimed
    assert "Preview" not in _text(after)
    assert "Preview" in _text(preview)


# -- cancelling ---------------------------------------------------------------------------------------------


async def test_cancel_before_confirm(bot: Bot) -> None:
    ask = await bot.dialogue.command(ADMIN, "broadcast")
    cancelled = await press(bot, ADMIN, _button(ask, "Cancel"))
    assert cancelled.notice == bc.CANCELLED and cancelled.edit == Screen(bc.CANCELLED)
    assert "Preview" not in _text(await bot.dialogue.text(ADMIN, MESSAGE))  # no longer claimed

    reply = await _preview(bot)
    cancelled = await press(bot, ADMIN, _button(reply, "Cancel"))
    assert cancelled.edit == Screen(bc.CANCELLED)
    stale = await press(bot, ADMIN, _button(reply, "Confirm"))
    assert stale.notice == bc.GONE
    assert await _broadcasts(bot.sessions) == [] and await _drafts(bot.sessions) == []


async def test_a_new_broadcast_replaces_the_draft(bot: Bot) -> None:
    first = await _preview(bot)
    second = await _preview(bot, "second")
    assert (await press(bot, ADMIN, _button(first, "Confirm"))).notice == bc.GONE
    assert (await press(bot, ADMIN, _button(second, "Confirm"))).notice == "Queued: sending to 5 recipients."
    [broadcast] = await _broadcasts(bot.sessions)
    assert broadcast.text == "second"


async def test_cancel_while_sending(bot: Bot) -> None:
    done = await press(bot, ADMIN, _button(await _preview(bot), "Confirm"))
    stop = _button(done, "Cancel broadcast")
    [broadcast] = await _broadcasts(bot.sessions)
    async with bot.sessions() as s, s.begin():  # two were delivered before the press
        await _deliver(s, broadcast.id, 2)

    assert (await press(bot, OTHER_ADMIN, stop)).notice == bc.NOT_YOURS
    stopped = await press(bot, ADMIN, stop)
    assert stopped.notice == f"Broadcast #{broadcast.id} cancelled."
    assert stopped.edit is not None and not stopped.edit.keyboard
    assert "Broadcast cancelled" in stopped.edit.text and "Sent 2 · failed 0 · skipped 3 of 5" in stopped.edit.text
    assert sorted(status for _, status in await _outbox(bot.sessions)) == [
        "sent",
        "sent",
        "skipped",
        "skipped",
        "skipped",
    ]
    async with bot.sessions() as s:
        assert (await outbox.broadcast_counts(s, broadcast.id))["left"] == 0
        finished = await outbox.get_broadcast(s, broadcast.id)
        assert finished is not None and finished.finished_at is not None  # reported here, so the sender won't
        assert await outbox.finish_complete(s) == []

    again = await press(bot, ADMIN, stop)
    assert again.notice == bc.ALREADY_CANCELLED.format(id=broadcast.id) and again.edit is None


async def test_cancel_with_a_message_on_the_wire_leaves_the_report_to_the_sender(bot: Bot) -> None:
    done = await press(bot, ADMIN, _button(await _preview(bot), "Confirm"))
    async with bot.sessions() as s, s.begin():
        await outbox.claim_due(s, datetime.now(UTC), 1, 60)  # a sender holds one row
    stopped = await press(bot, ADMIN, _button(done, "Cancel broadcast"))
    assert stopped.notice == bc.STOPPING.format(id=1, left=1) and stopped.edit is None
    assert sorted(status for _, status in await _outbox(bot.sessions)) == ["in_flight", *["skipped"] * 4]


async def test_cancel_after_the_end_changes_nothing(bot: Bot) -> None:
    done = await press(bot, ADMIN, _button(await _preview(bot), "Confirm"))
    async with bot.sessions() as s, s.begin():
        await _deliver(s, 1, 5)
    stopped = await press(bot, ADMIN, _button(done, "Cancel broadcast"))
    assert stopped.notice == bc.ALREADY_DONE.format(id=1) and stopped.edit is None
    assert [status for _, status in await _outbox(bot.sessions)] == ["sent"] * 5


async def _deliver(session: AsyncSession, broadcast_id: int, how_many: int) -> None:
    """Mark the first rows sent as the sender would."""
    rows = (
        await session.execute(
            select(OutboxMessage).where(OutboxMessage.broadcast_id == broadcast_id).order_by(OutboxMessage.id)
        )
    ).scalars()
    for row in list(rows)[:how_many]:
        row.status = "sent"
        row.message_id = 1


# -- who may press what -------------------------------------------------------------------------------------


async def test_a_physician_is_refused_politely_and_nothing_is_queued(bot: Bot) -> None:
    refused = await bot.dialogue.command(PHYSICIAN, "broadcast")
    assert _text(refused) == bc.NOT_ADMIN
    assert "Preview" not in _text(await bot.dialogue.text(PHYSICIAN, MESSAGE))
    reply = await _preview(bot)
    for data in (_button(reply, "Confirm"), _button(reply, "QME"), "bc:stop:1"):
        assert (await press(bot, PHYSICIAN, data)).notice == bc.NOT_ADMIN
    assert await _broadcasts(bot.sessions) == []
    assert await _drafts(bot.sessions) == [(ADMIN, "preview")]


async def test_forged_stale_and_other_admins_presses_change_nothing(bot: Bot) -> None:
    reply = await _preview(bot)
    confirm = _button(reply, "Confirm")
    ref = confirm.removeprefix("bc:ok:")
    action_id = ref.split(":")[0]
    for data, notice in [
        ("bc:ok:99999:0123abcd", bc.GONE),
        (f"bc:ok:{action_id}:0123abcd", bc.GONE),  # the right row, but not the draft this button was made for
        (f"bc:ok:{action_id}", bc.UNKNOWN_BUTTON),
        ("bc:zz:1", bc.UNKNOWN_BUTTON),
        ("bc:ok:x", bc.UNKNOWN_BUTTON),
        (f"bc:a:{ref}:everyone", bc.UNKNOWN_BUTTON),
        (f"bc:a:{ref}:specialty:nope", bc.UNKNOWN_BUTTON),
        (f"bc:a:{ref}:source:club", bc.UNKNOWN_BUTTON),
        ("bc:stop:99999", bc.NO_SUCH.format(id=99999)),
    ]:
        assert (await press(bot, ADMIN, data)).notice == notice, data
    assert (await press(bot, OTHER_ADMIN, confirm)).notice == bc.NOT_YOURS
    assert (await press(bot, OTHER_ADMIN, _button(reply, "Cancel"))).notice == bc.NOT_YOURS
    assert await _broadcasts(bot.sessions) == []
    assert "All subscribers" in _text(await press(bot, ADMIN, f"bc:v:{ref}"))  # the audience is unchanged

    ask = await bot.dialogue.command(OTHER_ADMIN, "broadcast")  # a draft still waiting for its message
    waiting = _button(ask, "Cancel").removeprefix("bc:no:")
    assert (await press(bot, OTHER_ADMIN, f"bc:ok:{waiting}")).notice == bc.UNKNOWN_BUTTON

    bot.clock.at += timedelta(hours=1, minutes=1)
    expired = await press(bot, ADMIN, confirm)
    assert expired.notice == bc.EXPIRED
    assert await _broadcasts(bot.sessions) == []


# -- end to end through the fake Bot API ----------------------------------------------------------------------


async def test_end_to_end_admin_broadcasts_and_subscribers_receive_it(fake: FakeBotApi, sqlite_url: str) -> None:
    admin = fake.user(ADMIN, "Ada")
    async with RunningBot(fake, sqlite_url, admin_ids=frozenset({ADMIN})) as running:
        await community(make_session_factory(running.engine))
        admin.send("/broadcast")
        await fake.wait_for_message(ADMIN, "Send me the message")
        admin.send(MESSAGE)
        control = await fake.wait_for_message(ADMIN, "Preview")
        preview = fake.messages(ADMIN)[-2]
        assert preview.text == MESSAGE and preview.plain_text.startswith("QME exam news\nThe April window")
        assert "5 recipients" in control.plain_text

        admin.press("QME track")
        await fake.wait_for_message(ADMIN, "2 recipients")
        fake.fail("403", chat_id=4)  # physician 4 blocked the bot
        admin.press("Confirm")
        received = await fake.wait_for_message(1, "QME exam news", timeout=10)
        assert received.text == MESSAGE
        final = await fake.wait_for_message(ADMIN, "Broadcast sent", timeout=10)
        assert final.message_id == control.message_id  # the control message, edited in place
        assert final.plain_text.startswith("Broadcast sent (#1, QME track)\nSent 1 · failed 1 · skipped 0 of 2")
        assert "Failed: bot was blocked by the user (1)" in final.plain_text
        assert not final.buttons()  # the Cancel button goes with the sending
        edits = [c.params["text"] for c in fake.calls_to("editMessageText", ADMIN)]
        assert any("Broadcast #1" in t and "left 2" in t for t in edits)  # Confirm turned it into the progress
        for user_id in (2, 3, 4, 5, 6, 7):
            assert not fake.messages(user_id)
        async with make_session_factory(running.engine)() as s:
            assert not await outbox.is_subscribed(s, 4)


async def test_end_to_end_cancel_while_sending(fake: FakeBotApi, sqlite_url: str) -> None:
    admin = fake.user(ADMIN, "Ada")
    async with RunningBot(fake, sqlite_url, admin_ids=frozenset({ADMIN}), rate_limit=2) as running:
        await community(make_session_factory(running.engine))
        admin.send("/broadcast")
        await fake.wait_for_message(ADMIN, "Send me the message")
        admin.send(MESSAGE)
        control = await fake.wait_for_message(ADMIN, "5 recipients")
        admin.press("Confirm")
        await fake.wait_for_message(1, "QME exam news", timeout=10)  # sending has begun (2 a second)
        admin.press("Cancel broadcast", message_id=control.message_id)
        final = await fake.wait_for_message(ADMIN, "Broadcast cancelled", timeout=10)
        assert final.message_id == control.message_id and not final.buttons()
        await fake.wait_until_idle()
        delivered = [u for u in (1, 2, 3, 4, 6) if fake.messages(u)]
        assert 1 <= len(delivered) < 5
        assert f"Sent {len(delivered)} · failed 0 · skipped {5 - len(delivered)} of 5" in final.plain_text
        async with make_session_factory(running.engine)() as s:
            counts = await outbox.broadcast_counts(s, 1)
        assert (counts["sent"], counts["skipped"], counts["left"]) == (len(delivered), 5 - len(delivered), 0)
