"""The .ics file: valid iCalendar, all-day events with exclusive ends, alarms at the reminder hour, stable UIDs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Calendar

from bot.calendar_file import ics_bytes, ics_filename
from flows.roadmap import CalendarEvent

ZONE = ZoneInfo("America/Los_Angeles")
EVENTS = [
    CalendarEvent("deadline", "QME application deadline", date(2027, 2, 19), date(2027, 2, 19), "Forms 100 & 102"),
    CalendarEvent("exam", "QME exam window", date(2027, 4, 5), date(2027, 4, 11), "Pearson VUE"),
]


def _calendar(user_key: str = "u1", days: tuple[int, ...] = (30, 7, 1)) -> Calendar:
    raw = ics_bytes(EVENTS, user_key=user_key, stamp=datetime(2026, 11, 29, tzinfo=UTC), alarm_days=days,
                    alarm_hour=9, zone=ZONE)  # fmt: skip
    return Calendar.from_ical(raw)


def test_events_are_all_day_with_exclusive_ends() -> None:
    cal = _calendar()
    assert str(cal.get("version")) == "2.0" and "medlegal" in str(cal.get("prodid"))
    exam = next(e for e in cal.walk("VEVENT") if str(e.get("summary")) == "QME exam window")
    assert exam.decoded("dtstart") == date(2027, 4, 5)
    assert exam.decoded("dtend") == date(2027, 4, 12)


def test_alarms_fire_the_configured_days_before_at_the_local_hour() -> None:
    deadline = next(e for e in _calendar().walk("VEVENT") if "deadline" in str(e.get("summary")))
    triggers = sorted(a.decoded("trigger") for a in deadline.walk("VALARM"))
    expected = [datetime(2027, 2, 19, 9, tzinfo=ZONE) - timedelta(days=d) for d in (30, 7, 1)]
    assert triggers == sorted(expected)
    assert all(a.decoded("trigger").astimezone(ZONE).hour == 9 for a in deadline.walk("VALARM"))
    assert all(a.decoded("trigger").utcoffset() == timedelta(0) for a in deadline.walk("VALARM"))


def test_uids_are_stable_per_physician_and_event_kind() -> None:
    uids = [str(e.get("uid")) for e in _calendar("abc").walk("VEVENT")]
    assert uids == [str(e.get("uid")) for e in _calendar("abc").walk("VEVENT")]
    assert uids != [str(e.get("uid")) for e in _calendar("xyz").walk("VEVENT")]
    assert len(set(uids)) == len(uids)


def test_no_alarm_days_means_no_alarms_and_the_filename_carries_the_date() -> None:
    assert not list(_calendar(days=()).walk("VALARM"))
    assert ics_filename(date(2026, 11, 29)) == "qme-roadmap-2026-11-29.ics"
