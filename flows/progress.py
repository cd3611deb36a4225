"""The progress checklist: which steps a physician has ticked, and what comes next with the date it is due.

Pure: the caller passes the roadmap (built with the same ticked steps, so its sitting plan already reflects them)
and the day each step was ticked. Due dates come from the roadmap's sitting plan (an application deadline, a
window's first day); a step the calendar and the facts do not date says why instead of inventing a date.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flows.progress_steps import APPLIED, COURSE, ELIGIBLE, PASSED, Step, Steps, load_steps, tracks
from flows.recommend import Path
from flows.roadmap import Roadmap, day, window

NUDGE_EVERY = timedelta(days=7)


@dataclass(frozen=True)
class Tick:
    step: Step
    done_on: date | None


@dataclass(frozen=True)
class NextStep:
    step: Step
    due: date | None
    why: str
    """What the date is (or, without one, why there is none)."""

    def line(self, today: date) -> str:
        """ "Confirm ...: due 19 Feb 2027 (82 days), the application deadline of the 5-11 Apr 2027 window." """
        if self.due is None:
            return f"{self.step.todo} No fixed date: {self.why}."
        left = (self.due - today).days
        when = "today" if left == 0 else (f"{left} day{'' if left == 1 else 's'} left" if left > 0 else "overdue")
        return f"{self.step.todo} Due {day(self.due)} ({when}): {self.why}."


@dataclass(frozen=True)
class Checklist:
    path: Path
    ticks: tuple[Tick, ...]
    next: tuple[NextStep, ...]
    """The first open step of each track (QME and IME for a hybrid roadmap); empty when all are done."""

    @property
    def done_count(self) -> int:
        return sum(1 for t in self.ticks if t.done_on is not None)


def checklist(roadmap: Roadmap, done: Mapping[str, date], steps: Steps | None = None) -> Checklist:
    steps = steps or load_steps()
    applicable = steps.for_path(roadmap.path)
    ticks = tuple(Tick(s, done.get(s.key)) for s in applicable)
    upcoming: list[NextStep] = []
    for track in tracks(roadmap.path):
        open_step = next((t.step for t in ticks if t.step.track == track and t.done_on is None), None)
        if open_step is not None:
            due, why = _due(open_step, roadmap)
            upcoming.append(NextStep(open_step, due, why))
    return Checklist(roadmap.path, ticks, tuple(upcoming))


def _due(step: Step, roadmap: Roadmap) -> tuple[date | None, str]:
    """The date a step is due, from the roadmap's next sitting, with what that date is."""
    plan = roadmap.plan
    nxt = plan.next if plan is not None else None
    if nxt is None or step.key not in {ELIGIBLE, COURSE, APPLIED, PASSED} or PASSED in roadmap.done:
        return None, step.undated
    where = f"the {window(nxt.sitting)} window"
    assumed = " (assumed: check the exam packet)" if nxt.deadline_assumed else ""
    if step.key == ELIGIBLE:
        return nxt.deadline, f"you need it to apply by the deadline of {where}{assumed}"
    if step.key == APPLIED:
        return nxt.deadline, f"the application deadline of {where}{assumed}"
    if step.key == PASSED:
        return nxt.sitting.first_day, f"{where} opens"
    if nxt.course_in_time:
        return nxt.sitting.first_day - timedelta(days=1), f"before {where}, whose exam tests the same material"
    return None, f"{step.undated}; at our planning pace it won't fit before {where}"


# -- the weekly nudge -------------------------------------------------------------------------------------


def next_nudge_at(anchor: datetime, zone: ZoneInfo, hour: int) -> datetime:
    """The first `hour`:00 local time at least a week after `anchor` (the last nudge, or when nudges were turned
    on): a physician never gets two nudges less than a week apart, and each lands at a sensible local hour."""
    earliest = (anchor + NUDGE_EVERY).astimezone(zone)
    at = datetime.combine(earliest.date(), time(hour), tzinfo=zone)
    return at if at >= earliest else datetime.combine(earliest.date() + timedelta(days=1), time(hour), tzinfo=zone)


def nudge_text(items: Checklist, today: date) -> str:
    """The nudge's words (plain text: the sender escapes nothing, so the caller escapes for HTML)."""
    lines = ["Your next step toward medical-legal work:"]
    lines += [f"• {n.line(today)}" for n in items.next]
    lines.append(f"{items.done_count} of {len(items.ticks)} steps done. Tick what you finish on /progress.")
    return "\n".join(lines)
