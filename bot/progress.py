"""/progress: the physician's checklist toward their first case, and /funnel: the admins' view of it in aggregate.

One tap ticks or unticks a step (the button carries the state it asks for, so a double tap or an old message
changes nothing twice); the roadmap, the exam reminders and the weekly nudge are all recomputed from the ticked
steps. Plugged into the `Dialogue` (bot.dialogue.Plugin), so Telegram and `medlegal chat` both offer it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.exam_calendar import stored_sittings
from bot.export_data import PROGRESS_PREFIX
from bot.published import Published, published
from bot.screens import Button, Reply, Screen, esc
from bot.settings import Settings
from db import progress as store
from db import repository as repo
from db.models import utcnow
from flows.engine import FlowEngine, restore
from flows.funnel import TRACK_TITLES
from flows.progress import Checklist, checklist
from flows.progress_steps import load_steps
from flows.recommend import Path
from flows.roadmap import Roadmap, build_roadmap, day
from flows.sittings import Sitting

# -- texts (Telegram HTML) ----------------------------------------------------------------------------------
NO_ROADMAP = "Your checklist appears once you've answered the questions: send /start to begin or resume."
NOT_YET = (
    "Your recommendation for now is <b>not yet</b>, so there is no checklist to tick yet: finishing your training "
    "comes first (/roadmap says what helps meanwhile). When your situation changes, /restart the questions and your "
    "checklist will be here."
)
INTRO = "Tap a step when it's done (tap again to untick). Your roadmap and reminders follow what you tick."
NEXT = "<b>What comes next</b>"
ALL_DONE = "🎉 Every step is ticked. Congratulations on your first case!"
NUDGE_ON = "🔔 Weekly nudge is on: once a week I'll remind you of your next open step."
NUDGE_OFF = "🔕 Weekly nudge is off: turn it on for a reminder of your next open step once a week."
NUDGE_ON_BUTTON = "🔔 Nudge me weekly"
NUDGE_OFF_BUTTON = "🔕 Stop weekly nudge"
NUDGES_STOPPED = "🔕 Weekly nudges are off. /progress turns them back on."
OPEN_BUTTON = "✅ My progress"
STALE = "That step isn't on your current checklist. Here it is as it stands."
UNKNOWN_BUTTON = "I didn't recognise that button. Here is your checklist."
NOT_ADMIN = "Sorry, the progress funnel is for the community admins only."
TICKED = "Ticked: {label}"
UNTICKED = "Unticked: {label}"

_PRESS = re.compile(r"^prg:(?:(t):([a-z_]{1,32}):([01])|(n):([01])|(o)|(s))$")


def open_button() -> Button:
    """The roadmap's way in to the checklist."""
    return Button(OPEN_BUTTON, "prg:o")


def nudge_buttons() -> list[list[dict[str, str]]]:
    """The nudge message's buttons, in the outbox's JSON form."""
    return [[{"text": OPEN_BUTTON, "callback_data": "prg:o"}], [{"text": NUDGE_OFF_BUTTON, "callback_data": "prg:s"}]]


async def roadmap_for(
    session: AsyncSession,
    user_id: int,
    engine: FlowEngine,
    today: date,
    sittings: list[Sitting] | None = None,
) -> tuple[Roadmap, dict[str, date]] | None:
    """The physician's roadmap built from their ticked steps (and those steps), or None before a recommendation."""
    latest = await repo.latest_flow(session, user_id)
    if latest is None or latest.status != "completed":
        return None
    state = restore(engine, latest.answers, None)
    if not state.complete:
        return None
    done = await store.done_steps(session, user_id)
    calendar = sittings if sittings is not None else await stored_sittings(session)
    return build_roadmap(state.answers, today, calendar, defn=engine.defn, done=done), done


def checklist_screen(items: Checklist, title: str, today: date, nudging: bool) -> Screen:
    lines = [f"<b>Your progress: {esc(title)}</b>", esc(INTRO), ""]
    buttons: list[tuple[Button, ...]] = []
    for tick in items.ticks:
        mark = "✅" if tick.done_on is not None else "⬜"
        when = f" · {esc(day(tick.done_on))}" if tick.done_on is not None else ""
        lines.append(f"{mark} {esc(tick.step.label)}{when}")
        wanted = "0" if tick.done_on is not None else "1"
        buttons.append((Button(f"{mark} {tick.step.label}", f"prg:t:{tick.step.key}:{wanted}"),))
    lines += ["", NEXT] if items.next else ["", esc(ALL_DONE)]
    for upcoming in items.next:
        lines.append(f"• {esc(upcoming.line(today))}")
    lines += [
        "",
        f"{items.done_count} of {len(items.ticks)} steps done. /roadmap shows your roadmap recomputed from them.",
        esc(NUDGE_ON if nudging else NUDGE_OFF),
    ]
    toggle = Button(NUDGE_OFF_BUTTON, "prg:n:0") if nudging else Button(NUDGE_ON_BUTTON, "prg:n:1")
    buttons.append((toggle,))
    return Screen("\n".join(lines), tuple(buttons))


def funnel_screen(figures: Published) -> Screen:
    """The export's funnel polls (progress.qme, progress.ime) as `medlegal export` writes them."""
    k = figures.export.k
    lines = [
        f"<b>Progress funnel</b>, {esc(figures.period)}",
        esc(f"Physicians who finished the questions, by the first step of their track not ticked yet, as "
            f"`medlegal export` counts them. Counts below {k} show as <{k}, and so does any count that would let "
            "someone work one out; the month under way is not counted yet."),
    ]  # fmt: skip
    steps = load_steps()
    for track in ("qme", "ime"):
        poll = PROGRESS_PREFIX + track
        lines += ["", f"<b>{esc(TRACK_TITLES[track])}</b>"]
        if figures.respondents(poll) is None:
            lines.append(esc(f"Withheld: fewer than {k} physicians in a month, or their figures would show one."))
            continue
        keys = [*(s.key for s in steps.steps if s.track == track), f"{track}_done"]
        labels = {s.key: s.label for s in steps.steps} | {f"{track}_done": "All steps done"}
        lines += [f"• {esc(labels[key])}: {esc(figures.text(poll, key))}" for key in keys]
    return Screen("\n".join(lines))


class ProgressTracker:
    """The `Plugin` (bot.dialogue) behind /progress, its buttons, and the admins' /funnel."""

    commands = frozenset({"progress", "funnel"})
    verbs = frozenset({"prg"})

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        engine: FlowEngine | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.engine = engine or FlowEngine()
        self.now = now

    async def command(self, user_id: int, name: str, args: str) -> Reply:
        if name == "funnel":
            if not self.settings.is_admin(user_id):
                return Reply(send=[Screen(esc(NOT_ADMIN))])
            settings = self.settings
            async with self.sessions() as session:
                polls = (PROGRESS_PREFIX + "qme", PROGRESS_PREFIX + "ime")
                figures = await published(session, settings.zone, settings.k_min, settings.current_date(), *polls)
            return Reply(send=[funnel_screen(figures)])
        async with self.sessions() as session, session.begin():
            return Reply(send=[await self._screen(session, user_id)])

    async def press(self, user_id: int, data: str) -> Reply:
        match = _PRESS.match(data)
        async with self.sessions() as session, session.begin():
            if match is None:
                return Reply(notice=UNKNOWN_BUTTON, send=[await self._screen(session, user_id)])
            verb = next(g for g in (match.group(1), match.group(4), match.group(6), match.group(7)) if g)
            if verb == "o":
                return Reply(send=[await self._screen(session, user_id)])
            if verb == "s":
                await repo.lock_user(session, user_id)
                await store.set_nudges(session, user_id, False, self.now())
                return Reply(notice=NUDGES_STOPPED, send=[Screen(esc(NUDGES_STOPPED))])
            if verb == "n":
                await repo.lock_user(session, user_id)
                await store.set_nudges(session, user_id, match.group(5) == "1", self.now())
                return Reply(edit=await self._screen(session, user_id))
            return await self._tick(session, user_id, match.group(2), match.group(3) == "1")

    async def text(self, user_id: int, text: str) -> Reply | None:
        return None  # everything here is a tap

    async def _tick(self, session: AsyncSession, user_id: int, key: str, done: bool) -> Reply:
        await repo.lock_user(session, user_id)
        today = self.settings.current_date()
        built = await roadmap_for(session, user_id, self.engine, today)
        step = load_steps().get(key)
        if built is None or step is None or step not in load_steps().for_path(built[0].path):
            return Reply(notice=STALE, send=[await self._screen(session, user_id)])
        await store.set_step(session, user_id, key, done, today)
        notice = (TICKED if done else UNTICKED).format(label=step.label)
        return Reply(notice=notice, edit=await self._screen(session, user_id))

    async def _screen(self, session: AsyncSession, user_id: int) -> Screen:
        today = self.settings.current_date()
        built = await roadmap_for(session, user_id, self.engine, today)
        if built is None:
            return Screen(esc(NO_ROADMAP))
        roadmap, done = built
        if roadmap.path is Path.NOT_YET:
            return Screen(NOT_YET)
        return checklist_screen(checklist(roadmap, done), roadmap.title, today, await store.nudges_on(session, user_id))
