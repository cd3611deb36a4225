"""QME exam sittings: which window a physician can realistically make, as a pure function of dates.

A sitting is a testing window (first and last day) with an application deadline (Forms 100 and 102 received or
postmarked). Where the calendar gives no deadline, the facts data gives the gap to assume, and the roadmap says
it is assumed. Source of these rules: shared/domain/decision.md, "Roadmap timing".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class Sitting:
    first_day: date
    last_day: date
    deadline: date | None = None
    note: str = ""
    source: str = ""
    id: int | None = None


@dataclass(frozen=True)
class SittingOption:
    """One future sitting, seen from one physician's today."""

    sitting: Sitting
    deadline: date
    deadline_assumed: bool
    makeable: bool
    why_not: str | None
    days_to_deadline: int
    days_to_window: int
    course_in_time: bool
    """Whether the report-writing course (recommended before the exam, required before appointment) fits first."""


@dataclass(frozen=True)
class SittingPlan:
    next: SittingOption | None
    """The first sitting this physician can still apply for."""
    following: SittingOption | None
    """The makeable sitting after `next`."""
    missed: tuple[SittingOption, ...]
    """Announced sittings before `next` that cannot be made (deadline passed or prerequisites not ready)."""

    @property
    def known(self) -> bool:
        return self.next is not None or bool(self.missed)


def effective_deadline(sitting: Sitting, default_gap_days: int) -> tuple[date, bool]:
    """The application deadline, or the assumed one (a fixed number of days before the window) and True."""
    if sitting.deadline is not None:
        return sitting.deadline, False
    return sitting.first_day - timedelta(days=default_gap_days), True


def plan_sittings(
    sittings: Iterable[Sitting],
    today: date,
    *,
    ready_on: date | None = None,
    course_lead_days: int,
    default_gap_days: int,
    applied: bool = False,
) -> SittingPlan:
    """Choose the next makeable sitting and the one after it.

    `ready_on` is the first day the physician can file an application (today, or later when a California license
    has to come first). The course never rules a sitting out: it is required before appointment, not the exam.
    With `applied` (the physician has filed for the first window still to open) that window's deadline no longer
    rules it out; later windows still need theirs.
    """
    ready = max(today, ready_on or today)
    options: list[SittingOption] = []
    for sitting in sorted(sittings, key=lambda s: (s.first_day, s.last_day)):
        if sitting.first_day <= today:
            continue
        deadline, assumed = effective_deadline(sitting, default_gap_days)
        if applied and not options:
            why = None
        elif deadline < today:
            why = "its application deadline has passed"
        elif deadline < ready:
            why = "your California license would not be in hand by its application deadline"
        else:
            why = None
        options.append(
            SittingOption(
                sitting=sitting,
                deadline=deadline,
                deadline_assumed=assumed,
                makeable=why is None,
                why_not=why,
                days_to_deadline=(deadline - today).days,
                days_to_window=(sitting.first_day - today).days,
                course_in_time=today + timedelta(days=course_lead_days) <= sitting.first_day,
            )
        )
    makeable = [o for o in options if o.makeable]
    first = makeable[0] if makeable else None
    second = makeable[1] if len(makeable) > 1 else None
    missed = tuple(
        o for o in options if not o.makeable and (first is None or o.sitting.first_day < first.sitting.first_day)
    )
    return SittingPlan(first, second, missed)


def sitting_problems(first_day: date, last_day: date, deadline: date | None, today: date) -> list[str]:
    """What is wrong with a sitting an admin enters, in words an admin can act on; [] when it is fine."""
    problems: list[str] = []
    if first_day <= today:
        problems.append(f"the window must start after today ({today.isoformat()})")
    if last_day < first_day:
        problems.append("the last day is before the first day")
    if (last_day - first_day).days > 60:
        problems.append("the window is longer than 60 days; check the dates")
    if deadline is not None and deadline >= first_day:
        problems.append("the application deadline must be before the window opens")
    return problems


def parse_day(text: str) -> date:
    """An ISO date (YYYY-MM-DD); ValueError with a readable message otherwise."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a date; use YYYY-MM-DD, e.g. 2027-04-05") from None
