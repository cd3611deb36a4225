"""The physician's own deadlines as an .ics calendar (RFC 5545, built with icalendar), with alarms."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from icalendar import Alarm, Calendar, Event

from flows.roadmap import CalendarEvent

PRODID = "-//medlegal//QME and IME roadmap//EN"


def ics_bytes(
    events: Iterable[CalendarEvent],
    *,
    user_key: str,
    stamp: datetime,
    alarm_days: Sequence[int],
    alarm_hour: int,
    zone: ZoneInfo,
) -> bytes:
    """All-day events with an alarm `alarm_days` before each, at `alarm_hour` local time.

    UIDs are stable per physician and event kind, so importing an updated file replaces the old entries.
    """
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", "QME roadmap")
    for item in events:
        event = Event()
        event.add("uid", f"{item.key}-{user_key}@medlegal")
        event.add("dtstamp", stamp)
        event.add("summary", item.title)
        event.add("description", item.description)
        event.add("dtstart", item.start)
        event.add("dtend", item.end + timedelta(days=1))  # DTEND of an all-day event is exclusive
        event.add("transp", "TRANSPARENT")
        for days in sorted(set(alarm_days), reverse=True):
            alarm = Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("description", f"{item.title} ({_when(days)})")
            at = datetime.combine(item.start - timedelta(days=days), time(alarm_hour), tzinfo=zone)
            # RFC 5545: an absolute trigger is a UTC DATE-TIME
            alarm.add("trigger", at.astimezone(UTC), parameters={"VALUE": "DATE-TIME"})
            event.add_component(alarm)
        cal.add_component(event)
    return bytes(cal.to_ical())


def _when(days: int) -> str:
    return "today" if days == 0 else ("tomorrow" if days == 1 else f"in {days} days")


def ics_filename(today: date) -> str:
    return f"qme-roadmap-{today.isoformat()}.ics"
