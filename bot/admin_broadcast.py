"""Admin broadcasts in chat: /broadcast asks for the message, previews it, counts the audience, queues on Confirm.

The draft lives in the `admin_actions` table (not in memory), so the prompt, the audience buttons and Confirm
work after a restart and in whichever bot process receives the update. The message is checked as Telegram HTML
before anything is queued. On Confirm the recipients are resolved and the broadcast is written to the outbox
(`db.outbox`) with the control message as its progress message: the sender edits that message in place with
sent / failed / left and the final report, and its "Cancel broadcast" button stops what is not sent yet.
`medlegal broadcast` shares the audience checks and texts defined here.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.screens import PRESSED_MESSAGE, Button, Keyboard, Reply, Screen, esc
from bot.telegram_html import html_problems
from db import outbox
from db import repository as repo
from db.audience import parse_audience, recipients, specialty_counts
from db.models import AdminAction, utcnow
from flows.definition import load_definition

KIND = "broadcast"
ACTION_TTL = timedelta(hours=1)
"""As for the calendar's pending changes (SittingsAdmin drops every admin action older than this)."""

# -- texts (Telegram HTML; anything an admin typed is escaped) -----------------------------------------------
NOT_ADMIN = "Sorry, broadcasts are sent by the community admins, and this command is only for them."
ASK = (
    "📣 <b>New broadcast</b>\n"
    "Send me the message as your next message. Formatting is Telegram HTML: &lt;b&gt;<b>bold</b>&lt;/b&gt;, "
    '&lt;i&gt;<i>italic</i>&lt;/i&gt;, &lt;a href="https://…"&gt;link&lt;/a&gt;, &lt;code&gt;, '
    "&lt;blockquote&gt;, &lt;tg-spoiler&gt;. Write &amp;lt; for a literal &lt;.\n"
    "<i>You will see a preview and the number of recipients before anything is sent.</i>"
)
BAD_HTML = "⚠️ <b>This message cannot be sent as it is</b> (nothing was queued):"
TRY_AGAIN = "Send the corrected message, or press Cancel."
PREVIEW_HEAD = "👆 <b>Preview</b>: the message above is exactly what recipients will see."
PREVIEW_FOOTER = "<i>Nothing is sent until you press Confirm (the preview stays valid for an hour).</i>"
NOBODY = "Nobody in this audience yet: choose another one."
PICK_SPECIALTY = "Choose a specialty (active subscribers in brackets):"
CONFIRM = "✅ Confirm: send to {count}"
CANCEL = "✖️ Cancel"
CANCEL_SENDING = "⏹ Cancel broadcast"
BACK = "‹ Back"
UNKNOWN_BUTTON = "That button is not one I recognise; nothing was changed."
GONE = "This broadcast draft was already sent, cancelled or replaced; nothing more was done."
NOT_YOURS = "This broadcast belongs to another admin; only they can use its buttons. Nothing was changed."
EXPIRED = "This preview is more than an hour old, so it has expired; nothing was sent. Send /broadcast again."
CANCELLED = "Cancelled: nothing was sent."
NOBODY_TO_SEND = "Nobody is in this audience, so nothing was queued; choose another audience."
QUEUED = "Queued: sending to {count}."
NO_SUCH = "There is no broadcast #{id}; nothing was changed."
ALREADY_DONE = "Broadcast #{id} has already finished; there is nothing left to cancel."
ALREADY_CANCELLED = "Broadcast #{id} is already cancelled; nothing more goes out."
STOPPED = "Broadcast #{id} cancelled."
STOPPING = (
    "Broadcast #{id} cancelled: nothing more goes out. The report follows once the messages already on their way "
    "({left}) are done."
)

AUDIENCE_LABELS = {"all": "All subscribers", "qme": "QME track", "hybrid": "Hybrid track", "ca": "California-licensed"}


# -- shared with the CLI ----------------------------------------------------------------------------------
def specialties() -> tuple[tuple[str, str], ...]:
    """(key, label) of the flow's specialty question, in the order physicians see them."""
    return tuple((o.key, o.label) for o in load_definition().question("specialty").options)


def check_audience(text: str, known_specialties: Iterable[str] | None = None) -> str:
    """The audience in its stored form; ValueError with one clear line (an unknown specialty lists the keys)."""
    audience = parse_audience(text)
    kind, _, key = audience.partition(":")
    keys = [k for k, _ in specialties()] if known_specialties is None else list(known_specialties)
    if kind == "specialty" and key not in keys:
        raise ValueError(f"unknown specialty {key!r}; use one of {', '.join(keys)}")
    return audience


def audience_label(audience: str) -> str:
    """How an audience is named to admins: 'QME track', 'Specialty: Orthopedics'."""
    if audience in AUDIENCE_LABELS:
        return AUDIENCE_LABELS[audience]
    kind, _, key = audience.partition(":")
    if kind == "specialty":
        return f"Specialty: {dict(specialties()).get(key, key)}"
    return audience


def count_text(count: int) -> str:
    return f"{count:,} recipient{'' if count == 1 else 's'}"


def progress_text(broadcast_id: int, audience: str, counts: dict[str, int]) -> str:
    """The control message while a broadcast sends: right after Confirm, then as the sender keeps it current."""
    skipped = counts.get("skipped", 0)
    return (
        f"📣 <b>Broadcast #{broadcast_id}</b> ({esc(audience_label(audience))})\n<b>Sending…</b>\n"
        f"Sent {counts.get('sent', 0)} · failed {counts.get('failed', 0)} · left {counts.get('left', 0)}"
        + (f" · skipped {skipped}" if skipped else "")
    )


def report_text(broadcast_id: int, audience: str, counts: dict[str, int], *, cancelled: bool = False) -> str:
    """The outcome and the counts: the whole report on a Cancel press that left nothing on the wire, the head of
    the sender's final report (`bot.sender.final_report`) otherwise."""
    title = "Broadcast cancelled" if cancelled else "Broadcast sent"
    lines = [
        f"<b>{title}</b> (#{broadcast_id}, {esc(audience_label(audience))})",
        f"Sent {counts.get('sent', 0)} · failed {counts.get('failed', 0)} · skipped {counts.get('skipped', 0)}"
        f" of {counts.get('total', 0)}",
    ]
    return "\n".join(lines)


# -- screens ----------------------------------------------------------------------------------------------
def _ask_screen(ref: str) -> Screen:
    return Screen(ASK, ((Button(CANCEL, f"bc:no:{ref}"),),))


def _audience_keyboard(ref: str, audience: str, count: int) -> Keyboard:
    def choice(key: str) -> Button:
        mark = "✓ " if key == audience else ""
        return Button(mark + AUDIENCE_LABELS[key], f"bc:a:{ref}:{key}")

    by_specialty = f"✓ {audience_label(audience)}" if audience.startswith("specialty:") else "By specialty…"
    rows: list[tuple[Button, ...]] = [
        (choice("all"), choice("qme")),
        (choice("hybrid"), choice("ca")),
        (Button(by_specialty, f"bc:sp:{ref}"),),
    ]
    last = [Button(CANCEL, f"bc:no:{ref}")]
    if count:
        last.insert(0, Button(CONFIRM.format(count=f"{count:,}"), f"bc:ok:{ref}"))
    rows.append(tuple(last))
    return tuple(rows)


def _control_text(audience: str, count: int) -> str:
    lines = [
        PREVIEW_HEAD,
        f"<b>Audience:</b> {esc(audience_label(audience))}",
        f"<b>Recipients:</b> {count_text(count)}" + ("" if count else f" · {NOBODY}"),
        "",
        PREVIEW_FOOTER,
    ]
    return "\n".join(lines)


def _control_screen(ref: str, audience: str, count: int) -> Screen:
    return Screen(_control_text(audience, count), _audience_keyboard(ref, audience, count))


def _specialty_screen(
    ref: str, audience: str, count: int, options: Sequence[tuple[str, str]], counts: dict[str, int]
) -> Screen:
    buttons = [Button(f"{label} ({counts.get(key, 0):,})", f"bc:a:{ref}:specialty:{key}") for key, label in options]
    rows = [tuple(buttons[i : i + 2]) for i in range(0, len(buttons), 2)]
    rows.append((Button(BACK, f"bc:v:{ref}"), Button(CANCEL, f"bc:no:{ref}")))
    return Screen(f"{_control_text(audience, count)}\n\n{PICK_SPECIALTY}", tuple(rows))


def sending_screen(broadcast_id: int, audience: str, counts: dict[str, int]) -> Screen:
    return Screen(
        progress_text(broadcast_id, audience, counts), ((Button(CANCEL_SENDING, f"bc:stop:{broadcast_id}"),),)
    )


_DRAFT = re.compile(r"^bc:(ok|no|sp|v):([0-9]{1,12}):([0-9a-f]{8})$")
_AUDIENCE = re.compile(r"^bc:a:([0-9]{1,12}):([0-9a-f]{8}):([a-z0-9_:]{1,40})$")


def _new_draft(stage: str, **fields: str) -> dict[str, Any]:
    """A draft's payload; its nonce goes into every button, so a button of a replaced draft never matches a
    newer one that reused the row id (SQLite hands out a deleted row's id again)."""
    return {"stage": stage, "nonce": secrets.token_hex(4), **fields}


def _ref(action_id: int, payload: dict[str, Any]) -> str:
    return f"{action_id}:{payload['nonce']}"


_STOP = re.compile(r"^bc:stop:([0-9]{1,12})$")


class BroadcastAdmin:
    """The `Plugin` (bot.dialogue) for admins who send a message to the community's subscribers."""

    commands = frozenset({"broadcast"})
    verbs = frozenset({"bc"})

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        admin_ids: Iterable[int],
        specialty_options: Sequence[tuple[str, str]] | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.admin_ids = frozenset(admin_ids)
        self.specialty_options = tuple(specialties() if specialty_options is None else specialty_options)
        self.now = now

    # -- Plugin -----------------------------------------------------------------------------------------
    async def command(self, user_id: int, name: str, args: str) -> Reply:
        if user_id not in self.admin_ids:
            return Reply(send=[Screen(esc(NOT_ADMIN))])
        async with self.sessions() as session, session.begin():
            await repo.lock_user(session, user_id)
            await repo.drop_admin_actions_before(session, self.now() - ACTION_TTL)
            await self._drop_drafts(session, user_id)
            draft = _new_draft("text")
            action_id = await repo.add_admin_action(session, user_id, KIND, draft)
        return Reply(send=[_ask_screen(_ref(action_id, draft))])

    async def text(self, user_id: int, text: str) -> Reply | None:
        """Claim the admin's message while a draft waits for it; everyone else's text goes to the flow."""
        if user_id not in self.admin_ids:
            return None
        async with self.sessions() as session, session.begin():
            await repo.lock_user(session, user_id)
            waiting = await self._waiting_draft(session, user_id)
            if waiting is None:
                return None
            waiting_id, ref = waiting
            problems = html_problems(text)
            if problems:
                lines = [BAD_HTML, *(f"• {esc(p)}" for p in problems), "", TRY_AGAIN]
                return Reply(send=[Screen("\n".join(lines), _ask_screen(ref).keyboard)])
            await repo.take_admin_action(session, waiting_id)
            draft = _new_draft("preview", text=text, audience="all")
            action_id = await repo.add_admin_action(session, user_id, KIND, draft)
            count = len(await recipients(session, "all"))
        return Reply(send=[Screen(text), _control_screen(_ref(action_id, draft), "all", count)])

    async def press(self, user_id: int, data: str) -> Reply:
        if user_id not in self.admin_ids:
            return Reply(notice=NOT_ADMIN)
        if match := _STOP.match(data):
            return await self._stop(user_id, int(match.group(1)))
        if match := _AUDIENCE.match(data):
            action_id, nonce, verb, arg = int(match.group(1)), match.group(2), "a", match.group(3)
        elif match := _DRAFT.match(data):
            action_id, nonce, verb, arg = int(match.group(2)), match.group(3), match.group(1), ""
        else:
            return Reply(notice=UNKNOWN_BUTTON)
        async with self.sessions() as session, session.begin():
            return await self._on_draft(session, user_id, action_id, nonce, verb, arg)

    # -- drafts -----------------------------------------------------------------------------------------
    async def _drafts(self, session: AsyncSession, user_id: int) -> list[AdminAction]:
        stmt = select(AdminAction).where(AdminAction.user_id == user_id, AdminAction.kind == KIND)
        return list((await session.execute(stmt.order_by(AdminAction.id))).scalars())

    async def _drop_drafts(self, session: AsyncSession, user_id: int) -> None:
        """One draft per admin: a new /broadcast replaces the previous one, whose buttons then say so."""
        await session.execute(
            delete(AdminAction).where(AdminAction.user_id == user_id, AdminAction.kind == KIND),
            execution_options={"synchronize_session": False},
        )

    async def _waiting_draft(self, session: AsyncSession, user_id: int) -> tuple[int, str] | None:
        """The id and button reference of the admin's draft that still waits for its message, if any."""
        for row in reversed(await self._drafts(session, user_id)):
            payload = row.payload or {}
            if payload.get("stage") == "text" and "nonce" in payload and not self._expired(row.created_at):
                return row.id, _ref(row.id, payload)
        return None

    async def _set_payload(self, session: AsyncSession, action_id: int, payload: dict[str, Any]) -> None:
        await session.execute(
            update(AdminAction).where(AdminAction.id == action_id).values(payload=payload),
            execution_options={"synchronize_session": False},
        )

    def _expired(self, created_at: datetime) -> bool:
        created = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)  # SQLite: naive UTC
        return self.now() - created > ACTION_TTL

    async def _on_draft(
        self, session: AsyncSession, user_id: int, action_id: int, nonce: str, verb: str, arg: str
    ) -> Reply:
        action = await repo.get_admin_action(session, action_id)
        if action is None or action.kind != KIND or action.payload.get("nonce") != nonce:
            return Reply(notice=GONE, edit=Screen(GONE))
        if action.user_id != user_id:
            return Reply(notice=NOT_YOURS)
        if self._expired(action.created_at):
            await repo.take_admin_action(session, action_id)
            return Reply(notice=EXPIRED, edit=Screen(EXPIRED))
        if verb == "no":
            await repo.take_admin_action(session, action_id)
            return Reply(notice=CANCELLED, edit=Screen(CANCELLED))
        payload = action.payload
        text, audience = payload.get("text"), payload.get("audience")
        if payload.get("stage") != "preview" or not isinstance(text, str) or not isinstance(audience, str):
            return Reply(notice=UNKNOWN_BUTTON)  # a preview button on a draft that waits for its message: forged
        ref = _ref(action_id, payload)
        if verb == "a":
            try:
                audience = check_audience(arg, [k for k, _ in self.specialty_options])
            except ValueError:
                return Reply(notice=UNKNOWN_BUTTON)
            if audience.startswith("source:"):  # the chat offers no start-link audiences (the CLI does)
                return Reply(notice=UNKNOWN_BUTTON)
            await self._set_payload(session, action_id, {**payload, "audience": audience})
            count = len(await recipients(session, audience))
            return Reply(edit=_control_screen(ref, audience, count))
        count = len(await recipients(session, audience))
        if verb == "v":
            return Reply(edit=_control_screen(ref, audience, count))
        if verb == "sp":
            counts = await specialty_counts(session)
            return Reply(edit=_specialty_screen(ref, audience, count, self.specialty_options, counts))
        return await self._confirm(session, user_id, action_id, ref, text, audience)

    async def _confirm(
        self, session: AsyncSession, user_id: int, action_id: int, ref: str, text: str, audience: str
    ) -> Reply:
        """Queue the broadcast, recipients resolved now; the pressed control message becomes its progress."""
        if html_problems(text):  # checked when it arrived; a stored draft is not trusted blindly
            await repo.take_admin_action(session, action_id)
            return Reply(notice=GONE, edit=Screen(GONE))
        people = await recipients(session, audience)
        if not people:
            return Reply(notice=NOBODY_TO_SEND, edit=_control_screen(ref, audience, 0))
        if not await repo.take_admin_action(session, action_id):
            return Reply(notice=GONE, edit=Screen(GONE))
        broadcast = await outbox.queue_broadcast(
            session,
            text=text,
            audience=audience,
            created_by=user_id,
            recipients=people,
            progress_chat_id=user_id,
            progress_message_id=PRESSED_MESSAGE.get(),
        )
        stop = sending_screen(broadcast.id, audience, {}).keyboard
        broadcast.progress_buttons = [[{"text": b.label, "callback_data": b.data} for b in row] for row in stop]
        await session.flush()
        counts = {"sent": 0, "failed": 0, "skipped": 0, "left": len(people)}
        return Reply(
            notice=QUEUED.format(count=count_text(len(people))),
            edit=sending_screen(broadcast.id, audience, counts),
        )

    # -- a broadcast being sent -------------------------------------------------------------------------
    async def _stop(self, user_id: int, broadcast_id: int) -> Reply:
        """Skip what is not sent yet. The report replaces the progress at once when nothing is on the wire;
        otherwise the sender writes it when the last message resolves (an edit from here could overwrite it)."""
        async with self.sessions() as session, session.begin():
            broadcast = await outbox.get_broadcast(session, broadcast_id)
            if broadcast is None:
                return Reply(notice=NO_SUCH.format(id=broadcast_id))
            if broadcast.created_by != user_id:
                return Reply(notice=NOT_YOURS)
            if broadcast.status == "cancelled":
                return Reply(notice=ALREADY_CANCELLED.format(id=broadcast_id))
            if broadcast.status != "queued" or not (await outbox.broadcast_counts(session, broadcast_id))["left"]:
                return Reply(notice=ALREADY_DONE.format(id=broadcast_id))
            await outbox.cancel_broadcast(session, broadcast_id)
            counts = await outbox.broadcast_counts(session, broadcast_id)
            if not counts["left"]:
                # Finished here, in the cancel's transaction, so the sender does not report it a second time.
                await outbox.finish_complete(session, only=broadcast_id)
        if counts["left"]:
            return Reply(notice=STOPPING.format(id=broadcast_id, left=counts["left"]))
        report = report_text(broadcast_id, broadcast.audience, counts, cancelled=True)
        return Reply(notice=STOPPED.format(id=broadcast_id), edit=Screen(report))
