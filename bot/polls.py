"""/polls for physicians: answer community polls with one tap (or toggles and Done), change the answer while the
poll is open, and see the peer figures once enough physicians answered.

Peer figures come from the poll's daily snapshot (db.polls.snapshot), never from live counts, so two looks a
minute apart cannot differ by one person's answer; the snapshot holds the figures `medlegal export` publishes for
the poll (whole months that have ended, flows/aggregate.py's rule), so nothing in chat can be combined with an
export to tell more than either alone. Counts below k show as "<k" (flows.polls.peer_figures).
Buttons carry the poll's id and, for multiple choice, the selection so far as a bitmask: no draft is stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.published import published
from bot.screens import Button, Reply, Screen, esc
from db import polls as store
from db import repository as repo
from db.models import PollRow
from flows.polls import Poll, PollOption, effective_k, from_mask, peer_figures, to_mask

HEADER = "<b>Community polls</b>"
INTRO = "Tap a poll to answer. Answers count only in totals, never by name; you can change yours while a poll is open."
NONE_OPEN = "There is no open poll right now. Thank you for looking!"
ALL_ANSWERED = "You have answered every open poll. Thank you! Tap one to see how peers answered or to change yours."
ANSWERED_HEADER = "Already answered:"
SINGLE_HINT = "Tap one answer."
MULTI_HINT = "Tap all that apply, then Done."
CHANGE_HINT = "Your answer is marked; tap to change it."
DONE = "✅ Done"
CHANGE = "✏️ Change my answer"
OTHER_POLLS = "📊 Other polls"
SAVED = "Saved."
PICK_ONE = "Tap at least one option, then Done."
CLOSED = "This poll is closed, so answers can no longer change."
UNKNOWN_POLL = "That poll no longer exists."
UNKNOWN_BUTTON = "I didn't recognise that button. Send /polls for the open polls."
NOT_ANSWERED = "Answer the poll first; the peer figures follow."
WAIT_FOR_K = (
    "Results appear once {k} physicians have answered in a month that has ended, as in the community's published "
    "figures (refreshed once a day)."
)
FIGURES_HEADER = "<b>How peers answered</b> <i>(as of {day}; refreshed once a day)</i>"
MULTI_NOTE = "<i>Physicians could choose several answers, so the shares add up to more than 100%.</i>"
WITHHELD_NOTE = "<i>Withheld: shown otherwise, a count below {k} could be worked out from the others.</i>"

UTC_ZONE = ZoneInfo("UTC")
_PRESS = re.compile(r"^pq:(?:(l)|([or]):([0-9]{1,9})|([atd]):([0-9]{1,9}):([0-9]{1,5}))$")


def as_poll(row: PollRow) -> Poll:
    """The stored poll as the pure model (stored polls were validated when they were added)."""
    return Poll.model_construct(
        key=row.key,
        question=row.question,
        options=tuple(PollOption.model_construct(key=str(o["key"]), label=str(o["label"])) for o in row.options),
        choice="multiple" if row.choice == "multiple" else "single",
        status="open" if row.status == "open" else "closed",
        opens=row.opens_on,
        closes=row.closes_on,
    )


def short(text: str, limit: int = 56) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def figures_text(poll: Poll, snap: store.Snapshot, k: int) -> str:
    """The peer figures as the physician sees them ("31% of 214 physicians chose ...")."""
    k = effective_k(k)
    figures = peer_figures(poll, snap.counts, snap.respondents, k)
    if figures.withheld:
        return WAIT_FOR_K.format(k=k)
    lines = [FIGURES_HEADER.format(day=snap.taken_on.isoformat())]
    of = f"of {figures.respondents:,} physicians chose"
    for cell in figures.cells:
        if cell.count is None and not cell.below_k:
            lines.append(f"• withheld: <b>{esc(cell.label)}</b>")
        else:
            lines.append(f"• {esc(cell.shown(k))} {of} <b>{esc(cell.label)}</b>")
    if poll.multi:
        lines.append(MULTI_NOTE)
    if any(c.count is None and not c.below_k for c in figures.cells):
        lines.append(WITHHELD_NOTE.format(k=k))
    return "\n".join(lines)


def poll_selection(picked: Sequence[Button], shown: Sequence[Button]) -> str:
    """The Done press that answers a multiple-choice poll with exactly the picked options (the console's "1,3").

    Each toggle button carries the selection it would make (the current one with its option flipped), and Done
    carries the current one, so an option's bit is the difference between the two.
    """
    done = next((m for b in shown if (m := re.fullmatch(r"pq:d:([0-9]+):([0-9]+)", b.data))), None)
    if done is None:
        return "?"
    current, mask = int(done.group(2)), 0
    for button in picked:
        toggled = button.data.rsplit(":", 1)[1]
        mask |= int(toggled) ^ current if toggled.isdigit() else 0
    return f"pq:d:{done.group(1)}:{mask}"


class PollsPlugin:
    """The `Plugin` (bot.dialogue) physicians use to answer community polls."""

    commands = frozenset({"polls"})
    verbs = frozenset({"pq"})

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        today: Callable[[], date],
        k_min: Callable[[], int],
        zone: ZoneInfo = UTC_ZONE,
    ) -> None:
        self.zone = zone
        self.sessions = sessions
        self.today = today
        self.k_min = k_min

    async def command(self, user_id: int, name: str, args: str) -> Reply:
        async with self.sessions() as session:
            return Reply(send=[await self._list(session, user_id)])

    async def text(self, user_id: int, text: str) -> Reply | None:
        return None

    async def press(self, user_id: int, data: str) -> Reply:
        match = _PRESS.match(data)
        if match is None:
            return Reply(notice=UNKNOWN_BUTTON)
        async with self.sessions() as session, session.begin():
            if match.group(1):
                return Reply(edit=await self._list(session, user_id))
            verb = match.group(2) or match.group(4)
            poll_id = int(match.group(3) or match.group(5))
            row = await store.get_poll(session, poll_id)
            if row is None:
                return Reply(notice=UNKNOWN_POLL, edit=await self._list(session, user_id))
            poll = as_poll(row)
            if verb == "o":
                return Reply(edit=await self._question(session, user_id, row.id, poll))
            if verb == "r":
                return await self._results(session, user_id, row.id, poll)
            value = int(match.group(6))
            if verb == "t":
                if not poll.is_open(self.today()):
                    return await self._closed(session, user_id, row.id, poll)
                return Reply(edit=self._question_screen(row.id, poll, from_mask(poll, value)))
            return await self._answer(session, user_id, row.id, poll, verb, value)

    # -- screens ----------------------------------------------------------------------------------------
    async def _list(self, session: AsyncSession, user_id: int) -> Screen:
        today = self.today()
        open_polls = [(row.id, as_poll(row)) for row in await store.list_polls(session)]
        open_polls = [(pid, p) for pid, p in open_polls if p.is_open(today)]
        if not open_polls:
            return Screen(NONE_OPEN)
        answered = await store.answered_polls(session, user_id)
        fresh = [(pid, p) for pid, p in open_polls if pid not in answered]
        done = [(pid, p) for pid, p in open_polls if pid in answered]
        lines = [HEADER, INTRO if fresh else ALL_ANSWERED]
        rows = [(Button(short(p.question), f"pq:o:{pid}"),) for pid, p in fresh]
        if fresh and done:
            lines.append(f"<i>{ANSWERED_HEADER} {len(done)}</i>")
        rows += [(Button("✓ " + short(p.question), f"pq:r:{pid}"),) for pid, p in done]
        return Screen("\n".join(lines), tuple(rows))

    def _question_screen(self, poll_id: int, poll: Poll, chosen: tuple[str, ...], *, answered: bool = False) -> Screen:
        lines = [f"📊 <b>{esc(poll.question)}</b>", MULTI_HINT if poll.multi else SINGLE_HINT]
        if answered:
            lines.append(f"<i>{CHANGE_HINT}</i>")
        buttons = []
        for index, option in enumerate(poll.options):
            if poll.multi:
                mark = "☑️ " if option.key in chosen else "⬜ "
                mask = to_mask(poll, set(chosen) ^ {option.key})
                buttons.append((Button(mark + option.label, f"pq:t:{poll_id}:{mask}"),))
            else:
                mark = "✓ " if option.key in chosen else ""
                buttons.append((Button(mark + option.label, f"pq:a:{poll_id}:{index}"),))
        if poll.multi:
            buttons.append((Button(DONE, f"pq:d:{poll_id}:{to_mask(poll, chosen)}"),))
        return Screen("\n".join(lines), tuple(buttons))

    async def _question(self, session: AsyncSession, user_id: int, poll_id: int, poll: Poll) -> Screen:
        if not poll.is_open(self.today()):
            return (await self._closed(session, user_id, poll_id, poll)).edit or Screen(CLOSED)
        chosen = await store.choices(session, poll_id, user_id)
        return self._question_screen(poll_id, poll, chosen, answered=bool(chosen))

    async def _results_screen(
        self, session: AsyncSession, poll_id: int, poll: Poll, chosen: tuple[str, ...], *, note: str = ""
    ) -> Screen:
        snap = await store.snapshot(session, poll_id, self.today(), lambda: self._published(session, poll.key))
        mine = ", ".join(poll.label_of(k) for k in chosen)
        lines = [f"📊 <b>{esc(poll.question)}</b>"]
        if note:
            lines.append(f"<i>{esc(note)}</i>")
        lines += [f"Your answer: <b>{esc(mine)}</b>", "", figures_text(poll, snap, self.k_min())]
        rows: list[tuple[Button, ...]] = []
        if poll.is_open(self.today()):
            rows.append((Button(CHANGE, f"pq:o:{poll_id}"),))
        rows.append((Button(OTHER_POLLS, "pq:l"),))
        return Screen("\n".join(lines), tuple(rows))

    async def _published(self, session: AsyncSession, key: str) -> tuple[dict[str, int], int]:
        """The export's figures for the poll: shown counts (withheld ones left out) and respondents."""
        figures = await published(session, self.zone, effective_k(self.k_min()), self.today(), key)
        counts = {option: row.count for (_, option), row in figures.rows.items() if row.count is not None}
        return counts, figures.respondents(key) or 0

    async def _results(self, session: AsyncSession, user_id: int, poll_id: int, poll: Poll) -> Reply:
        chosen = await store.choices(session, poll_id, user_id)
        if not chosen:
            if not poll.is_open(self.today()):
                return Reply(notice=CLOSED, edit=Screen(f"📊 <b>{esc(poll.question)}</b>\n{CLOSED}"))
            return Reply(notice=NOT_ANSWERED, edit=self._question_screen(poll_id, poll, ()))
        return Reply(edit=await self._results_screen(session, poll_id, poll, chosen))

    async def _closed(self, session: AsyncSession, user_id: int, poll_id: int, poll: Poll) -> Reply:
        chosen = await store.choices(session, poll_id, user_id)
        if not chosen:
            return Reply(notice=CLOSED, edit=Screen(f"📊 <b>{esc(poll.question)}</b>\n{CLOSED}"))
        return Reply(notice=CLOSED, edit=await self._results_screen(session, poll_id, poll, chosen, note=CLOSED))

    # -- answering --------------------------------------------------------------------------------------
    async def _answer(
        self, session: AsyncSession, user_id: int, poll_id: int, poll: Poll, verb: str, value: int
    ) -> Reply:
        if not poll.is_open(self.today()):
            return await self._closed(session, user_id, poll_id, poll)
        if verb == "a":
            if poll.multi or value >= len(poll.options):
                return Reply(notice=UNKNOWN_BUTTON)
            chosen: tuple[str, ...] = (poll.options[value].key,)
        else:
            if not poll.multi or value >> len(poll.options):
                return Reply(notice=UNKNOWN_BUTTON)
            chosen = from_mask(poll, value)
            if not chosen:
                return Reply(notice=PICK_ONE)
        await repo.lock_user(session, user_id)
        await store.set_answer(session, poll_id, user_id, chosen, self.today())
        return Reply(notice=SAVED, edit=await self._results_screen(session, poll_id, poll, chosen))
