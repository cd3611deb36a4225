"""Which exam reminders a physician should get, and when: a pure function of their roadmap and the clock.

Reminders cover the application deadline and the first day of each sitting on the physician's own roadmap (the
next one they can make and the one after it); sittings they cannot make and IME-only roadmaps get none. The
roadmap is built from the progress steps ticked, so a filed application drops the reminders of its deadline and a
passed exam drops them all (its roadmap has no sittings). Each
reminder goes out a configured number of days before, at a local hour in the configured zone, so a
daylight-saving change moves nothing: 9:00 stays 9:00 on the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flows.progress_steps import APPLIED
from flows.roadmap import Roadmap, day, window
from flows.sittings import SittingOption

_Describe = Callable[[int], str]
"""Reminder text for a number of days before the event."""


@dataclass(frozen=True)
class Reminder:
    key: str
    """Stable identity: the same reminder computed twice (or by two processes) is queued once."""
    send_at: datetime
    """Aware datetime in the configured zone."""
    event: str
    """"deadline" or "window"."""
    event_day: date
    days_before: int
    text: str
    sitting_id: int | None


def _options(roadmap: Roadmap) -> list[SittingOption]:
    plan = roadmap.plan
    if plan is None:
        return []
    return [o for o in (plan.next, plan.following) if o is not None]


def plan_reminders(
    roadmap: Roadmap,
    *,
    user_id: int,
    now: datetime,
    days_before: Sequence[int],
    hour: int,
    zone: ZoneInfo,
    fee: int,
    late_grace: timedelta = timedelta(hours=12),
) -> list[Reminder]:
    """Reminders still to send, earliest first.

    One whose time passed less than `late_grace` ago is kept (a scheduler that was down for a moment catches up);
    older ones, and any whose event is already over, are dropped rather than sent late.
    """
    local_now = now.astimezone(zone)
    reminders: list[Reminder] = []
    for option in _options(roadmap):
        sitting = option.sitting
        events = [
            ("deadline", option.deadline, _deadline_text(option, fee)),
            ("window", sitting.first_day, _window_text(option)),
        ]
        if APPLIED in roadmap.done and roadmap.plan is not None and option is roadmap.plan.next:
            events = events[1:]  # filed for this window: its deadline no longer concerns the physician
        for event, event_day, describe in events:
            if event_day < local_now.date():
                continue
            for days in sorted(set(days_before), reverse=True):
                send_at = datetime.combine(event_day - timedelta(days=days), time(hour), tzinfo=zone)
                if send_at < local_now - late_grace:
                    continue
                key = f"r:{user_id}:{sitting.id or 0}:{event}:{event_day.isoformat()}:{days}"
                reminders.append(Reminder(key, send_at, event, event_day, days, describe(days), sitting.id))
    return sorted(reminders, key=lambda r: (r.send_at, r.key))


def _when(days: int) -> str:
    return "today" if days == 0 else ("tomorrow" if days == 1 else f"in {days} days")


def _deadline_text(option: SittingOption, fee: int) -> _Describe:
    assumed = " (assumed: check the exam packet for the exact date)" if option.deadline_assumed else ""

    def text(days: int) -> str:
        return (
            f"Reminder: the QME exam application deadline is {_when(days)}, {day(option.deadline)}{assumed}, "
            f"for the {window(option.sitting)} window. File Forms 100 and 102 with the ${fee} fee."
        )

    return text


def _window_text(option: SittingOption) -> _Describe:
    def text(days: int) -> str:
        return f"Reminder: the QME exam window {window(option.sitting)} opens {_when(days)}. Good luck!"

    return text


def keys(reminders: Iterable[Reminder]) -> set[str]:
    return {r.key for r in reminders}
