"""Which reminders a physician gets, and when: pure, with a frozen clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.conditions import Answer
from flows.reminders import Reminder, plan_reminders
from flows.roadmap import build_roadmap
from flows.sittings import Sitting

LA = ZoneInfo("America/Los_Angeles")
ORTHO: dict[str, Answer] = {
    "profession": "md", "ca_license": "active", "other_states": ("none",), "board": "certified",
    "stage": "established", "treatment_share": "third_plus", "specialty": "ortho", "income_style": "predictable",
    "hours": "10to20", "paperwork": "high", "admin_support": "yes", "testimony": "comfortable",
    "in_person_ca": "yes", "case_types": ("wc",),
}  # fmt: skip
NEPHRO: dict[str, Answer] = {
    "profession": "md", "ca_license": "no", "other_states": ("TX",), "board": "certified", "stage": "established",
    "specialty": "nephro", "income_style": "ceiling", "hours": "10to20", "paperwork": "low", "admin_support": "no",
    "testimony": "occasionally", "case_types": ("pi", "ltd"),
}  # fmt: skip
APRIL = Sitting(date(2027, 4, 5), date(2027, 4, 11), date(2027, 2, 19), id=1)
OCTOBER = Sitting(date(2027, 10, 4), date(2027, 10, 10), None, id=2)


def reminders(answers: dict[str, Answer], now: datetime, sittings: list[Sitting], **kw: object) -> list[Reminder]:
    roadmap = build_roadmap(answers, now.astimezone(LA).date(), sittings)
    options = {"days_before": (30, 7, 1), "hour": 9, "zone": LA, "fee": 125} | kw
    return plan_reminders(roadmap, user_id=7, now=now, **options)  # type: ignore[arg-type]


def test_deadline_and_window_reminders_of_both_sittings_on_the_roadmap() -> None:
    got = reminders(ORTHO, datetime(2026, 11, 29, 12, tzinfo=LA), [APRIL, OCTOBER])
    assert [(r.event, r.event_day, r.days_before) for r in got[:6]] == [
        ("deadline", date(2027, 2, 19), 30),
        ("deadline", date(2027, 2, 19), 7),
        ("deadline", date(2027, 2, 18) + timedelta(days=1), 1),
        ("window", date(2027, 4, 5), 30),
        ("window", date(2027, 4, 5), 7),
        ("window", date(2027, 4, 5), 1),
    ]
    assert len(got) == 12  # the October window (assumed deadline 20 Aug) is on the roadmap too
    assert all(r.send_at.hour == 9 and r.send_at.tzinfo == LA for r in got)
    assert "assumed" in next(r.text for r in got if r.sitting_id == 2 and r.event == "deadline")
    assert "$125" in got[0].text and "19 Feb 2027" in got[0].text


def test_local_hour_holds_across_daylight_saving() -> None:
    got = reminders(ORTHO, datetime(2026, 11, 29, 12, tzinfo=LA), [APRIL])
    window = [r for r in got if r.event == "window"]
    offsets = {r.days_before: r.send_at.utcoffset() for r in window}
    assert offsets[30] == timedelta(hours=-8)  # 6 Mar 2027, standard time
    assert offsets[7] == timedelta(hours=-7)  # 29 Mar 2027, daylight time
    assert all(r.send_at.astimezone(LA).hour == 9 for r in window)
    utc_hours = {r.send_at.astimezone(UTC).hour for r in window}
    assert utc_hours == {16, 17}, "same wall-clock hour, different UTC hour: nothing doubled or skipped"


def test_ime_only_and_unmakeable_sittings_get_nothing() -> None:
    assert reminders(NEPHRO, datetime(2026, 11, 29, 12, tzinfo=LA), [APRIL, OCTOBER]) == []
    after_deadline = reminders(ORTHO, datetime(2027, 2, 25, 12, tzinfo=LA), [APRIL])
    assert after_deadline == []  # the April deadline passed: the window is not on the roadmap any more
    assert reminders(ORTHO, datetime(2026, 11, 29, 12, tzinfo=LA), []) == []


def test_past_reminders_are_dropped_but_a_short_outage_catches_up() -> None:
    at = datetime(2027, 2, 12, 9, tzinfo=LA)  # the 7-day deadline reminder's time
    just_after = reminders(ORTHO, at + timedelta(hours=2), [APRIL])
    assert ("deadline", 7) in [(r.event, r.days_before) for r in just_after]
    next_day = reminders(ORTHO, at + timedelta(days=1), [APRIL])
    assert ("deadline", 7) not in [(r.event, r.days_before) for r in next_day]
    assert ("deadline", 1) in [(r.event, r.days_before) for r in next_day]


def test_keys_are_stable_and_change_when_the_date_changes() -> None:
    now = datetime(2026, 11, 29, 12, tzinfo=LA)
    first = {r.key for r in reminders(ORTHO, now, [APRIL])}
    assert first == {r.key for r in reminders(ORTHO, now + timedelta(hours=1), [APRIL])}
    moved = Sitting(APRIL.first_day, APRIL.last_day, date(2027, 2, 20), id=1)
    second = {r.key for r in reminders(ORTHO, now, [moved])}
    assert {k for k in first if ":deadline:" in k}.isdisjoint(second)
    assert {k for k in first if ":window:" in k} <= second


@settings(max_examples=150, deadline=None)
@given(
    offset=st.integers(min_value=0, max_value=400),
    hour=st.integers(min_value=0, max_value=23),
    days=st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=4),
)
def test_reminders_are_never_in_the_past_and_never_for_a_missed_sitting(
    offset: int, hour: int, days: list[int]
) -> None:
    now = datetime(2026, 6, 1, 12, tzinfo=LA) + timedelta(days=offset)
    got = reminders(ORTHO, now, [APRIL, OCTOBER], days_before=tuple(days), hour=hour)
    roadmap = build_roadmap(ORTHO, now.date(), [APRIL, OCTOBER])
    makeable = {o.sitting.id for o in (roadmap.plan.next, roadmap.plan.following) if o} if roadmap.plan else set()
    assert {r.sitting_id for r in got} <= makeable
    assert len({r.key for r in got}) == len(got)
    for r in got:
        assert r.send_at >= now - timedelta(hours=12)
        assert r.event_day >= now.date()
        assert r.send_at.astimezone(LA).hour == hour or r.send_at.astimezone(LA).hour == (hour + 1) % 24
