"""The QME exam calendar kept by admins: /sittings, /sitting_add, /sitting_edit, /sitting_remove.

Every change is previewed exactly as it will be stored and waits for Confirm in the `admin_actions` table (not
in memory), so the button still works after a restart and in whichever bot process receives the press. The
`medlegal sittings` command shares the validation and the formats defined here.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.exam_calendar import as_sitting, stored_sittings
from bot.screens import Button, Reply, Screen, esc
from db import repository as repo
from db.models import utcnow
from flows.sittings import Sitting, parse_day, sitting_problems

HORIZON_DAYS = 90
"""When no window starts further ahead than this, admins are told the calendar needs the next one."""
ACTION_TTL = timedelta(hours=1)
NOTE_MAX = 300
SOURCE_MAX = 500

# -- texts (Telegram HTML; anything an admin typed is escaped) -----------------------------------------------
NOT_ADMIN = "Sorry, the exam calendar is kept by the community admins, and this command is only for them."
USAGE = (
    "<b>Manage the calendar</b> (dates YYYY-MM-DD; every change is shown first and waits for Confirm)\n"
    "/sitting_add FIRST LAST [DEADLINE] | NOTE | SOURCE\n"
    "  e.g. /sitting_add 2027-04-05 2027-04-11 2027-02-19 | Pearson VUE, computer-based | https://www.dir.ca.gov/…\n"
    "/sitting_edit ID field=value … (fields: first, last, deadline, note, source; deadline=- clears it)\n"
    "/sitting_remove ID"
)
USAGE_ADD = "Usage: /sitting_add FIRST LAST [DEADLINE] | NOTE | SOURCE, dates as YYYY-MM-DD"
USAGE_EDIT = "Usage: /sitting_edit ID field=value …, fields first, last, deadline (- clears it), note, source"
USAGE_REMOVE = "Usage: /sitting_remove ID (the number /sittings shows)"
NOT_QUEUED = "Nothing changed: {problem}."
SHORT_CALENDAR = "no sitting is known more than {days} days ahead: add the next one"
CALENDAR_SHORT_CHAT = (
    "⚠️ <b>The calendar needs updating.</b> No sitting is known more than {days} days ahead: add the next one with "
    "/sitting_add when DWC announces it (usually about three months before the window)."
)
CONFIRM = "✅ Confirm"
CANCEL = "✖️ Cancel"
PREVIEW_FOOTER = "<i>Nothing is saved until you press Confirm (it stays valid for an hour).</i>"
UNKNOWN_BUTTON = "That button is not one I recognise; nothing was changed."
GONE = "This change was already confirmed, cancelled or replaced; nothing more was done."
NOT_YOURS = "This change was asked for by another admin; only they can confirm it. Nothing was changed."
EXPIRED = "This preview is more than an hour old, so it has expired; nothing was changed. Send the command again."
CANCELLED = "Cancelled: the exam calendar is unchanged."
CHANGED_SINCE = "Exam window #{id} changed since this preview, so nothing was saved; send the command again."
SAVED = "Saved."


# -- shared with the CLI ----------------------------------------------------------------------------------
def calendar_is_short(sittings: Iterable[Sitting], today: date) -> bool:
    """True when no window starts more than HORIZON_DAYS after today: DWC announces about three months ahead."""
    horizon = today + timedelta(days=HORIZON_DAYS)
    return not any(s.first_day > horizon for s in sittings)


def clean_text(text: str) -> str:
    """One line, single spaces: notes and sources are shown inline in lists and previews."""
    return " ".join(text.split())


def problems_with(
    sitting: Sitting, today: date, existing: Iterable[Sitting] = (), *, dates_changed: bool = True
) -> list[str]:
    """What stops this window from being stored; [] when it may be.

    The date rules (flows.sittings.sitting_problems) apply to dates being entered; fixing only the note or the
    source of a past window is allowed.
    """
    problems = sitting_problems(sitting.first_day, sitting.last_day, sitting.deadline, today) if dates_changed else []
    if len(sitting.note) > NOTE_MAX:
        problems.append(f"the note is longer than {NOTE_MAX} characters")
    if len(sitting.source) > SOURCE_MAX:
        problems.append(f"the source is longer than {SOURCE_MAX} characters")
    for other in existing:
        same = (other.first_day, other.last_day) == (sitting.first_day, sitting.last_day)
        if same and other.id != sitting.id:
            problems.append(f"window #{other.id} already has these dates")
    return problems


def dates_moved(before: Sitting, after: Sitting) -> bool:
    """Whether an edit touches the dates (then the date rules apply, as for a new window)."""
    return (before.first_day, before.last_day, before.deadline) != (after.first_day, after.last_day, after.deadline)


def window_line(sitting: Sitting) -> str:
    """`ID  FIRST..LAST  deadline DEADLINE  NOTE`, the `medlegal sittings list` format (shared/interfaces.md)."""
    deadline = sitting.deadline.isoformat() if sitting.deadline else "-"
    line = f"{sitting.id}  {sitting.first_day.isoformat()}..{sitting.last_day.isoformat()}  deadline {deadline}"
    return f"{line}  {sitting.note}" if sitting.note else line


def short_calendar_hint() -> str:
    return SHORT_CALENDAR.format(days=HORIZON_DAYS)


# -- parsing the chat commands ----------------------------------------------------------------------------
class InputError(ValueError):
    """A command an admin typed that cannot be used; the message is one line for the chat."""


FIELDS = {"first": "first_day", "last": "last_day", "deadline": "deadline", "note": "note", "source": "source"}
_FIELD = re.compile(r"(?:^|\s)(first|last|deadline|note|source)=", re.IGNORECASE)
_STRAY = re.compile(r"(\w+)=")


def _day(text: str) -> date:
    try:
        return parse_day(text)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _sitting_id(text: str, usage: str) -> int:
    text = text.strip().lstrip("#")
    if not text.isdigit() or len(text) > 9:
        raise InputError(usage)
    return int(text)


def parse_add(args: str) -> Sitting:
    """`FIRST LAST [DEADLINE] | NOTE | SOURCE` (a deadline of "-" means none was announced)."""
    parts = args.split("|", 2)
    days = parts[0].split()
    if len(days) not in (2, 3):
        raise InputError(USAGE_ADD)
    first_day, last_day = _day(days[0]), _day(days[1])  # in the order typed, so an error names the first bad one
    return Sitting(
        first_day=first_day,
        last_day=last_day,
        deadline=_day(days[2]) if len(days) == 3 and days[2] != "-" else None,
        note=clean_text(parts[1]) if len(parts) > 1 else "",
        source=clean_text(parts[2]) if len(parts) > 2 else "",
    )


def parse_edit(args: str) -> tuple[int, dict[str, Any]]:
    """`ID field=value …` into the id and the Sitting fields to change; a value runs up to the next field."""
    head, _, rest = args.strip().partition(" ")
    if not head:
        raise InputError(USAGE_EDIT)
    sitting_id = _sitting_id(head, USAGE_EDIT)
    found = list(_FIELD.finditer(rest))
    before = rest[: found[0].start()] if found else rest
    if before.strip():
        stray = _STRAY.search(before)
        if stray:
            raise InputError(f"unknown field {stray.group(1)!r}; use first, last, deadline, note or source")
        raise InputError(USAGE_EDIT)
    if not found:
        raise InputError(USAGE_EDIT)
    changes: dict[str, Any] = {}
    for i, match in enumerate(found):
        name = FIELDS[match.group(1).lower()]
        end = found[i + 1].start() if i + 1 < len(found) else len(rest)
        value = rest[match.end() : end].strip()
        if name in changes:
            raise InputError(f"{match.group(1).lower()} is given twice")
        if name in {"first_day", "last_day"}:
            changes[name] = _day(value)
        elif name == "deadline":
            changes[name] = None if value in {"-", ""} else _day(value)
        else:
            changes[name] = clean_text(value)
    return sitting_id, changes


# -- payloads of pending actions --------------------------------------------------------------------------
def _encode(sitting: Sitting) -> dict[str, Any]:
    return {
        "id": sitting.id,
        "first_day": sitting.first_day.isoformat(),
        "last_day": sitting.last_day.isoformat(),
        "deadline": sitting.deadline.isoformat() if sitting.deadline else None,
        "note": sitting.note,
        "source": sitting.source,
    }


def _decode(data: dict[str, Any]) -> Sitting:
    return Sitting(
        first_day=date.fromisoformat(data["first_day"]),
        last_day=date.fromisoformat(data["last_day"]),
        deadline=date.fromisoformat(data["deadline"]) if data["deadline"] else None,
        note=str(data["note"]),
        source=str(data["source"]),
        id=int(data["id"]) if data["id"] is not None else None,
    )


@dataclass(frozen=True)
class _Change:
    kind: str  # add, edit or remove
    before: Sitting | None
    after: Sitting | None


def _change_from(kind: str, payload: dict[str, Any]) -> _Change:
    """The stored action back as a change; ValueError (or KeyError, TypeError) when it is not one we wrote."""
    before = _decode(payload["before"]) if payload.get("before") else None
    after = _decode(payload["after"]) if payload.get("after") else None
    needs = {"add": (False, True), "edit": (True, True), "remove": (True, False)}
    if kind not in needs or needs[kind] != (before is not None, after is not None):
        raise ValueError(f"not a sitting change: {kind}")
    if before is not None and before.id is None:
        raise ValueError("the window to change has no id")
    return _Change(kind, before, after)


# -- screens ----------------------------------------------------------------------------------------------
def _span(sitting: Sitting) -> str:
    days = (sitting.last_day - sitting.first_day).days + 1
    return f"{sitting.first_day.isoformat()}..{sitting.last_day.isoformat()} ({days} day{'s' if days > 1 else ''})"


def _deadline(sitting: Sitting) -> str:
    if sitting.deadline is None:
        return "none announced (the roadmap assumes one and says so)"
    return sitting.deadline.isoformat()


def _fields(sitting: Sitting, was: Sitting | None = None) -> list[str]:
    """The window as it will be stored; with `was`, each changed field says what it replaces."""

    def shown(s: Sitting) -> list[tuple[str, str]]:
        return [
            ("Window", _span(s)),
            ("Application deadline", _deadline(s)),
            ("Note", s.note or "-"),
            ("Source", s.source or "-"),
        ]

    old_values = [value for _, value in shown(was)] if was is not None else None
    lines = []
    for i, (label, value) in enumerate(shown(sitting)):
        line = f"<b>{label}:</b> {esc(value)}"
        if old_values is not None and old_values[i] != value:
            line += f" <i>(was {esc(old_values[i])})</i>"
        lines.append(line)
    return lines


def _listing_line(sitting: Sitting, today: date) -> str:
    deadline = sitting.deadline.isoformat() if sitting.deadline else "none announced"
    mark = f"🗓 in {(sitting.first_day - today).days} days" if sitting.first_day > today else "⏳ in progress"
    line = f"{mark} · <b>#{sitting.id}</b> {sitting.first_day.isoformat()}..{sitting.last_day.isoformat()}"
    line += f" · deadline {deadline}"
    if sitting.note:
        line += f" · {esc(sitting.note)}"
    if sitting.source:
        line += f"\n    <i>source: {esc(sitting.source)}</i>"
    return line


def calendar_screen(sittings: list[Sitting], today: date) -> Screen:
    """The /sittings message: current and future windows first, then the past ones as a count, then usage."""
    ahead = [s for s in sittings if s.last_day >= today]
    past = [s for s in sittings if s.last_day < today]
    lines = [f"<b>QME exam calendar</b> (today is {today.isoformat()})", ""]
    lines += [_listing_line(s, today) for s in ahead] or ["No exam window from today on is in the calendar."]
    if past:
        ids = ", ".join(f"#{s.id}" for s in past)
        lines.append(f"Past windows: {len(past)} ({ids}); /sitting_edit and /sitting_remove take their numbers too.")
    if calendar_is_short(sittings, today):
        lines += ["", CALENDAR_SHORT_CHAT.format(days=HORIZON_DAYS)]
    lines += ["", USAGE]
    return Screen("\n".join(lines))


def _keyboard(action_id: int, nonce: str) -> tuple[tuple[Button, ...], ...]:
    return ((Button(CONFIRM, f"sit:ok:{action_id}:{nonce}"), Button(CANCEL, f"sit:no:{action_id}:{nonce}")),)


def _preview(change: _Change, action_id: int, nonce: str) -> Screen:
    if change.kind == "add":
        assert change.after is not None
        lines = ["<b>Add this exam window?</b>", *_fields(change.after)]
    elif change.kind == "edit":
        assert change.before is not None and change.after is not None
        lines = [f"<b>Change exam window #{change.before.id} to this?</b>", *_fields(change.after, change.before)]
    else:
        assert change.before is not None
        lines = [f"<b>Remove exam window #{change.before.id}?</b>", *_fields(change.before)]
    return Screen("\n".join([*lines, "", PREVIEW_FOOTER]), _keyboard(action_id, nonce))


def _done(change: _Change, stored: Sitting) -> Screen:
    verb = {"add": "Added", "edit": "Updated", "remove": "Removed"}[change.kind]
    return Screen("\n".join([f"✅ <b>{verb} exam window #{stored.id}</b>", *_fields(stored)]))


def _refusal(problems: list[str]) -> Reply:
    return Reply(send=[Screen(esc(NOT_QUEUED.format(problem="; ".join(problems))))])


_PRESS = re.compile(r"^sit:(ok|no):([0-9]{1,12}):([0-9a-f]{8})$")


class SittingsAdmin:
    """The `Plugin` (bot.dialogue) for admins who keep the exam calendar current."""

    commands = frozenset({"sittings", "sitting_add", "sitting_edit", "sitting_remove"})
    verbs = frozenset({"sit"})

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        admin_ids: Iterable[int],
        today: Callable[[], date],
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.admin_ids = frozenset(admin_ids)
        self.today = today
        self.now = now

    # -- Plugin -----------------------------------------------------------------------------------------
    async def command(self, user_id: int, name: str, args: str) -> Reply:
        if user_id not in self.admin_ids:
            return Reply(send=[Screen(esc(NOT_ADMIN))])
        try:
            if name == "sittings":
                async with self.sessions() as session:
                    return Reply(send=[calendar_screen(await stored_sittings(session), self.today())])
            if name == "sitting_add":
                return await self._queue_add(user_id, parse_add(args))
            if name == "sitting_edit":
                return await self._queue_edit(user_id, *parse_edit(args))
            if name == "sitting_remove":
                return await self._queue_remove(user_id, _sitting_id(args, USAGE_REMOVE))
        except InputError as exc:
            return _refusal([str(exc)])
        return Reply(send=[Screen(USAGE)])

    async def press(self, user_id: int, data: str) -> Reply:
        if user_id not in self.admin_ids:
            return Reply(notice=NOT_ADMIN)
        match = _PRESS.match(data)
        if match is None:
            return Reply(notice=UNKNOWN_BUTTON)
        confirmed, action_id, nonce = match.group(1) == "ok", int(match.group(2)), match.group(3)
        async with self.sessions() as session, session.begin():
            return await self._decide(session, user_id, action_id, nonce, confirmed)

    async def text(self, user_id: int, text: str) -> Reply | None:
        return None  # the commands take their input inline

    # -- queueing ---------------------------------------------------------------------------------------
    async def _queue(self, session: AsyncSession, user_id: int, change: _Change) -> Reply:
        await repo.lock_user(session, user_id)
        await repo.drop_admin_actions_before(session, self.now() - ACTION_TTL)
        # The nonce goes into the buttons: SQLite can reuse a deleted action's id, and an old Confirm must not
        # match a newer action.
        nonce = secrets.token_hex(4)
        payload = {
            "before": _encode(change.before) if change.before else None,
            "after": _encode(change.after) if change.after else None,
            "nonce": nonce,
        }
        action_id = await repo.add_admin_action(session, user_id, change.kind, payload)
        return Reply(send=[_preview(change, action_id, nonce)])

    async def _queue_add(self, user_id: int, sitting: Sitting) -> Reply:
        async with self.sessions() as session, session.begin():
            problems = problems_with(sitting, self.today(), await stored_sittings(session))
            if problems:
                return _refusal(problems)
            return await self._queue(session, user_id, _Change("add", None, sitting))

    async def _queue_edit(self, user_id: int, sitting_id: int, changes: dict[str, Any]) -> Reply:
        async with self.sessions() as session, session.begin():
            row = await repo.get_sitting(session, sitting_id)
            if row is None:
                return _refusal([f"there is no exam window #{sitting_id} (/sittings lists them)"])
            before = as_sitting(row)
            after = replace(before, **changes)
            if after == before:
                return _refusal([f"exam window #{sitting_id} already looks like that"])
            existing = await stored_sittings(session)
            problems = problems_with(after, self.today(), existing, dates_changed=dates_moved(before, after))
            if problems:
                return _refusal(problems)
            return await self._queue(session, user_id, _Change("edit", before, after))

    async def _queue_remove(self, user_id: int, sitting_id: int) -> Reply:
        async with self.sessions() as session, session.begin():
            row = await repo.get_sitting(session, sitting_id)
            if row is None:
                return _refusal([f"there is no exam window #{sitting_id} (/sittings lists them)"])
            return await self._queue(session, user_id, _Change("remove", as_sitting(row), None))

    # -- confirming -------------------------------------------------------------------------------------
    async def _decide(self, session: AsyncSession, user_id: int, action_id: int, nonce: str, confirmed: bool) -> Reply:
        action = await repo.get_admin_action(session, action_id)
        if action is None or action.payload.get("nonce") != nonce:
            return Reply(notice=GONE, edit=Screen(GONE))
        if action.user_id != user_id:
            return Reply(notice=NOT_YOURS)
        if not await repo.take_admin_action(session, action_id):
            return Reply(notice=GONE, edit=Screen(GONE))
        if self.now() - action.created_at > ACTION_TTL:
            return Reply(notice=EXPIRED, edit=Screen(EXPIRED))
        try:
            change = _change_from(action.kind, action.payload)
        except (KeyError, TypeError, ValueError):
            return Reply(notice=GONE, edit=Screen(GONE))
        if not confirmed:
            return Reply(notice=CANCELLED, edit=Screen(CANCELLED))
        return await self._apply(session, change)

    async def _apply(self, session: AsyncSession, change: _Change) -> Reply:
        """Store the previewed change, checked again: the calendar or the date may have moved since."""
        existing = await stored_sittings(session)
        if change.kind == "add":
            assert change.after is not None
            problems = problems_with(change.after, self.today(), existing)
            if problems:
                return self._not_saved(problems)
            new = change.after
            row = await repo.add_sitting(
                session,
                first_day=new.first_day,
                last_day=new.last_day,
                deadline=new.deadline,
                note=new.note,
                source=new.source,
            )
            return Reply(notice=SAVED, edit=_done(change, as_sitting(row)))
        assert change.before is not None and change.before.id is not None
        sitting_id = change.before.id
        current = await repo.get_sitting(session, sitting_id, for_update=True)
        if current is None or as_sitting(current) != change.before:
            text = CHANGED_SINCE.format(id=sitting_id)
            return Reply(notice=text, edit=Screen(esc(text)))
        if change.kind == "remove":
            await repo.remove_sitting(session, sitting_id)
            return Reply(notice=SAVED, edit=_done(change, change.before))
        assert change.after is not None
        after, before = change.after, change.before
        problems = problems_with(after, self.today(), existing, dates_changed=dates_moved(before, after))
        if problems:
            return self._not_saved(problems)
        updated = await repo.update_sitting(
            session,
            sitting_id,
            first_day=after.first_day,
            last_day=after.last_day,
            deadline=after.deadline,
            note=after.note,
            source=after.source,
        )
        assert updated is not None  # locked above
        return Reply(notice=SAVED, edit=_done(change, as_sitting(updated)))

    @staticmethod
    def _not_saved(problems: list[str]) -> Reply:
        text = f"Not saved: {'; '.join(problems)}."
        return Reply(notice=text[:200], edit=Screen(esc(text)))
