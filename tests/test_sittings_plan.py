"""The QME exam sitting computation as a pure function of dates: unit tests and properties over random calendars.

Rules under test: shared/domain/decision.md, "Roadmap timing" (a sitting is a window with an application
deadline; a missing deadline is assumed a fixed gap before the window; a California license to come first moves
the first day one can apply; the course never rules a sitting out).
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.conditions import Answer
from flows.facts import load_facts
from flows.roadmap import build_roadmap, day, window
from flows.sittings import Sitting, SittingPlan, effective_deadline, parse_day, plan_sittings, sitting_problems
from tests.test_recommend import PERSONAS, physician

TODAY = date(2026, 11, 29)
LEAD = 21
GAP = 45
APRIL = Sitting(date(2027, 4, 5), date(2027, 4, 11), date(2027, 2, 19), note="7-day window", source="test")
OCTOBER = Sitting(date(2027, 10, 4), date(2027, 10, 10))

SETTINGS = settings(
    max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def plan(
    sittings: list[Sitting], today: date = TODAY, *, ready_on: date | None = None, lead: int = LEAD, gap: int = GAP
) -> SittingPlan:
    return plan_sittings(sittings, today, ready_on=ready_on, course_lead_days=lead, default_gap_days=gap)


def days(n: int) -> timedelta:
    return timedelta(days=n)


# -- plan_sittings: unit tests --------------------------------------------------------------------------------


def test_no_sittings_is_unknown() -> None:
    p = plan([])
    assert p.next is None and p.following is None and p.missed == ()
    assert not p.known


def test_next_and_following_with_days_left() -> None:
    p = plan([OCTOBER, APRIL])  # order of the calendar does not matter
    assert p.next is not None and p.following is not None
    assert p.next.sitting == APRIL
    assert (p.next.deadline, p.next.deadline_assumed) == (date(2027, 2, 19), False)
    assert (p.next.days_to_deadline, p.next.days_to_window) == (82, 127)
    assert p.next.makeable and p.next.why_not is None and p.next.course_in_time
    assert p.following.sitting == OCTOBER
    assert p.missed == ()
    assert p.known


def test_past_windows_are_ignored() -> None:
    past = Sitting(date(2024, 4, 6), date(2024, 4, 12))
    recent = Sitting(TODAY - days(10), TODAY - days(4), TODAY - days(60))
    p = plan([past, recent, APRIL])
    assert p.next is not None and p.next.sitting == APRIL
    assert p.missed == ()
    assert not plan([past, recent]).known


def test_a_window_that_started_today_is_ignored_even_while_open() -> None:
    open_now = Sitting(TODAY, TODAY + days(6), TODAY - days(45))
    p = plan([open_now])
    assert p.next is None and p.missed == () and not p.known
    tomorrow = Sitting(TODAY + days(1), TODAY + days(7), TODAY)
    p = plan([tomorrow])
    assert p.next is not None and p.next.sitting == tomorrow
    assert p.next.days_to_deadline == 0 and p.next.days_to_window == 1


def test_deadline_passed_is_missed_with_the_reason() -> None:
    soon = Sitting(TODAY + days(20), TODAY + days(26), TODAY - days(1))
    p = plan([soon, APRIL])
    assert [m.sitting for m in p.missed] == [soon]
    missed = p.missed[0]
    assert not missed.makeable
    assert missed.why_not == "its application deadline has passed"
    assert missed.days_to_deadline == -1
    assert p.next is not None and p.next.sitting == APRIL


def test_deadline_today_is_still_makeable() -> None:
    p = plan([Sitting(TODAY + days(30), TODAY + days(36), TODAY)])
    assert p.next is not None and p.next.days_to_deadline == 0 and p.missed == ()


def test_assumed_deadline_is_first_day_minus_the_gap() -> None:
    assert effective_deadline(OCTOBER, GAP) == (date(2027, 8, 20), True)
    assert effective_deadline(APRIL, GAP) == (date(2027, 2, 19), False)
    p = plan([OCTOBER], gap=37)
    assert p.next is not None
    assert p.next.deadline == OCTOBER.first_day - days(37)
    assert p.next.deadline_assumed


def test_assumed_deadline_can_be_missed() -> None:
    window_in_40_days = Sitting(TODAY + days(40), TODAY + days(46))
    p = plan([window_in_40_days])
    assert p.next is None
    assert [m.why_not for m in p.missed] == ["its application deadline has passed"]
    assert p.missed[0].deadline_assumed and p.missed[0].deadline == TODAY - days(5)
    assert p.known


def test_ready_later_than_a_deadline_is_missed_with_the_license_reason() -> None:
    ready = TODAY + days(120)  # 29 Mar 2027: after the 19 Feb deadline of the April window
    p = plan([APRIL, OCTOBER], ready_on=ready)
    assert [m.sitting for m in p.missed] == [APRIL]
    assert p.missed[0].why_not == "your California license would not be in hand by its application deadline"
    assert p.next is not None and p.next.sitting == OCTOBER
    assert p.next.deadline >= ready
    assert p.following is None


def test_ready_on_the_deadline_day_is_makeable() -> None:
    p = plan([APRIL], ready_on=APRIL.deadline)
    assert p.next is not None and p.next.sitting == APRIL
    p = plan([APRIL], ready_on=date(2027, 2, 20))
    assert p.next is None and len(p.missed) == 1


def test_ready_on_before_today_counts_as_today() -> None:
    assert plan([APRIL], ready_on=TODAY - days(400)) == plan([APRIL])


def test_following_is_the_next_makeable_after_next() -> None:
    a = Sitting(TODAY + days(10), TODAY + days(12), TODAY - days(1))  # deadline passed
    b = Sitting(TODAY + days(100), TODAY + days(106), TODAY + days(50))
    c = Sitting(TODAY + days(200), TODAY + days(206), TODAY + days(150))
    d = Sitting(TODAY + days(300), TODAY + days(306), TODAY + days(250))
    p = plan([d, c, b, a])
    assert p.next is not None and p.following is not None
    assert (p.next.sitting, p.following.sitting) == (b, c)
    assert [m.sitting for m in p.missed] == [a]


def test_following_skips_an_unmakeable_sitting_in_between() -> None:
    # An odd calendar: the middle window's deadline has passed although it opens after the first one.
    first = Sitting(TODAY + days(100), TODAY + days(106), TODAY + days(50))
    odd = Sitting(TODAY + days(150), TODAY + days(156), TODAY - days(1))
    third = Sitting(TODAY + days(300), TODAY + days(306), TODAY + days(250))
    p = plan([first, odd, third])
    assert p.next is not None and p.following is not None
    assert (p.next.sitting, p.following.sitting) == (first, third)
    assert p.missed == ()  # only sittings before `next` are reported as missed


@pytest.mark.parametrize(("gap_to_window", "in_time"), [(LEAD + 1, True), (LEAD, True), (LEAD - 1, False), (1, False)])
def test_course_in_time_boundary(gap_to_window: int, in_time: bool) -> None:
    first_day = TODAY + days(gap_to_window)
    p = plan([Sitting(first_day, first_day + days(6), TODAY)])
    assert p.next is not None
    assert p.next.course_in_time is in_time
    assert p.next.makeable  # the course never rules a sitting out


def test_no_makeable_sitting_keeps_the_missed_ones() -> None:
    a = Sitting(TODAY + days(10), TODAY + days(12), TODAY - days(3))
    b = Sitting(TODAY + days(30), TODAY + days(32), TODAY - days(1))
    p = plan([b, a])
    assert p.next is None and p.following is None
    assert [m.sitting for m in p.missed] == [a, b]
    assert p.known


# -- sitting_problems and parse_day ---------------------------------------------------------------------------


def test_a_good_sitting_has_no_problems() -> None:
    assert sitting_problems(APRIL.first_day, APRIL.last_day, APRIL.deadline, TODAY) == []
    assert sitting_problems(OCTOBER.first_day, OCTOBER.last_day, None, TODAY) == []
    one_day = TODAY + days(1)
    assert sitting_problems(one_day, one_day, TODAY, TODAY) == []


@pytest.mark.parametrize(
    ("first", "last", "deadline", "problem"),
    [
        (TODAY, TODAY + days(6), None, "the window must start after today (2026-11-29)"),
        (TODAY - days(30), TODAY - days(24), None, "the window must start after today (2026-11-29)"),
        (TODAY + days(10), TODAY + days(9), None, "the last day is before the first day"),
        (TODAY + days(10), TODAY + days(71), None, "the window is longer than 60 days; check the dates"),
        (
            TODAY + days(10),
            TODAY + days(16),
            TODAY + days(10),
            "the application deadline must be before the window opens",
        ),
        (
            TODAY + days(10),
            TODAY + days(16),
            TODAY + days(11),
            "the application deadline must be before the window opens",
        ),
    ],
    ids=["starts-today", "in-the-past", "ends-before-start", "too-long", "deadline-on-first-day", "deadline-after"],
)
def test_sitting_problems(first: date, last: date, deadline: date | None, problem: str) -> None:
    assert problem in sitting_problems(first, last, deadline, TODAY)


def test_a_window_of_exactly_60_days_is_accepted() -> None:
    first = TODAY + days(10)
    assert sitting_problems(first, first + days(60), None, TODAY) == []
    assert sitting_problems(first, first + days(61), None, TODAY) != []


def test_sitting_problems_lists_every_problem() -> None:
    problems = sitting_problems(TODAY, TODAY - days(1), TODAY + days(5), TODAY)
    assert len(problems) == 3


def test_parse_day() -> None:
    assert parse_day("2027-04-05") == date(2027, 4, 5)
    assert parse_day("  2027-04-05\n") == date(2027, 4, 5)


@pytest.mark.parametrize("text", ["", "tomorrow", "2027-02-30", "05/04/2027", "2027-13-01", " 5 Apr 2027 "])
def test_parse_day_rejects_with_a_readable_message(text: str) -> None:
    with pytest.raises(ValueError, match="is not a date; use YYYY-MM-DD") as caught:
        parse_day(text)
    assert repr(text.strip()) in str(caught.value)


# -- properties -----------------------------------------------------------------------------------------------

DAYS = st.dates(min_value=date(2020, 1, 1), max_value=date(2034, 12, 31))


@st.composite
def sittings_around(draw: st.DrawFn, today: date) -> list[Sitting]:
    """A calendar of up to 6 windows from two years before to two years after `today`, some without deadline."""
    out: list[Sitting] = []
    for _ in range(draw(st.integers(0, 6))):
        first = today + days(draw(st.integers(-730, 730)))
        last = first + days(draw(st.integers(0, 14)))
        gap = draw(st.none() | st.integers(0, 150))
        out.append(Sitting(first, last, None if gap is None else first - days(gap)))
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[date, list[Sitting], date | None, int, int]:
    today = draw(DAYS)
    ready_on = draw(st.none() | st.integers(0, 400).map(lambda n: today + days(n)))
    return today, draw(sittings_around(today)), ready_on, draw(st.integers(0, 120)), draw(st.integers(0, 120))


@SETTINGS
@given(scenarios())
def test_plan_properties(scenario: tuple[date, list[Sitting], date | None, int, int]) -> None:
    today, sittings, ready_on, lead, gap = scenario
    p = plan(sittings, today, ready_on=ready_on, lead=lead, gap=gap)
    ready = ready_on or today
    future = [s for s in sittings if s.first_day > today]
    for option in filter(None, (p.next, *p.missed, p.following)):
        assert option.sitting.first_day > today
        assert option.days_to_window == (option.sitting.first_day - today).days > 0
        assert option.days_to_deadline == (option.deadline - today).days
        assert option.course_in_time is (today + days(lead) <= option.sitting.first_day)
        assert option.deadline_assumed is (option.sitting.deadline is None)
        assert option.deadline == (option.sitting.deadline or option.sitting.first_day - days(gap))
    for option in filter(None, (p.next, p.following)):
        assert option.makeable and option.why_not is None
        assert option.deadline >= today, "the chosen sitting's deadline is never in the past"
        assert option.deadline >= ready, "nor before the physician can apply"
    for option in p.missed:
        assert not option.makeable and option.why_not
        assert option.deadline < ready
    if p.next is not None:
        # The first future window whose deadline can be met is the one chosen.
        makeable = [s for s in future if effective_deadline(s, gap)[0] >= ready]
        assert p.next.sitting.first_day == min(s.first_day for s in makeable)
        assert all(m.sitting.first_day < p.next.sitting.first_day for m in p.missed)
        if p.following is not None:
            assert p.following.sitting.first_day >= p.next.sitting.first_day
            if len({s.first_day for s in future}) == len(future):
                assert p.following.sitting.first_day > p.next.sitting.first_day
            later = [s for s in makeable if s.first_day > p.next.sitting.first_day]
            assert not later or p.following.sitting.first_day <= min(s.first_day for s in later)
    else:
        assert p.following is None
        assert not any(effective_deadline(s, gap)[0] >= ready for s in future)
        assert len(p.missed) == len(future)
    assert p.known is bool(future)


@SETTINGS
@given(DAYS, st.none() | st.integers(0, 400), st.integers(0, 120))
def test_no_sittings_means_nothing_is_planned(today: date, ready_in: int | None, lead: int) -> None:
    ready_on = None if ready_in is None else today + days(ready_in)
    p = plan([], today, ready_on=ready_on, lead=lead)
    assert p == SittingPlan(None, None, ())
    assert not p.known


@SETTINGS
@given(DAYS, st.lists(st.integers(1, 700), min_size=2, max_size=6, unique=True))
def test_following_starts_after_next_when_windows_differ(today: date, offsets: list[int]) -> None:
    sittings = [Sitting(today + days(n), today + days(n + 6)) for n in offsets]
    p = plan(sittings, today, gap=0)
    assert p.next is not None and p.following is not None
    assert p.following.sitting.first_day > p.next.sitting.first_day
    assert p.next.sitting.first_day == today + days(min(offsets))
    assert p.following.sitting.first_day == today + days(sorted(offsets)[1])


# -- no sitting in the calendar means no exam date in the roadmap ---------------------------------------------

QME_PERSONAS: dict[str, dict[str, Answer]] = {
    name: physician(**PERSONAS[name][0])
    for name in (
        "california orthopedic surgeon",
        "california pm&r physician wanting both",
        "nevada orthopedic surgeon willing to get a california license",
    )
}
DATE_WORDS = re.compile(r"\b\d{1,2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4}\b")
FACTS = load_facts()


def roadmap_texts(answers: dict[str, Answer], today: date, sittings: list[Sitting]) -> tuple[str, list[str]]:
    r = build_roadmap(answers, today, sittings, facts=FACTS)
    texts = [r.why, *r.sitting_lines]
    texts += [
        part for s in r.sections for i in s.items for part in (i.text, i.detail, i.cite and i.cite.label()) if part
    ]
    texts += [i.text for i in r.next_steps]
    keys = [e.key for e in r.events]
    return "\n".join(texts), keys


@st.composite
def past_calendars(draw: st.DrawFn) -> tuple[date, list[Sitting]]:
    """Today and a calendar where no window opens after today (some may straddle it)."""
    today = draw(DAYS)
    out: list[Sitting] = []
    for _ in range(draw(st.integers(1, 5))):
        first = today - days(draw(st.integers(0, 900)))
        last = first + days(draw(st.integers(0, 14)))
        gap = draw(st.none() | st.integers(0, 150))
        out.append(Sitting(first, last, None if gap is None else first - days(gap), note="", source="test"))
    return today, out


@settings(SETTINGS, max_examples=100)
@given(st.sampled_from(sorted(QME_PERSONAS)), past_calendars())
def test_no_future_sitting_means_no_exam_date_in_the_roadmap(name: str, calendar: tuple[date, list[Sitting]]) -> None:
    today, sittings = calendar
    answers = QME_PERSONAS[name]
    text, keys = roadmap_texts(answers, today, sittings)
    baseline, _ = roadmap_texts(answers, today, [])
    # The dates the calendar would print; a date the roadmap says anyway (a fact's own date) is not from it.
    printed = {day(s.first_day) for s in sittings} | {day(s.last_day) for s in sittings}
    printed |= {window(s) for s in sittings}
    printed |= {day(s.deadline) for s in sittings if s.deadline is not None}
    printed |= {day(effective_deadline(s, FACTS.exam.deadline_gap.days)[0]) for s in sittings}
    leaked = {words for words in printed if words in text and words not in baseline}
    assert not leaked, f"the roadmap shows dates of past sittings: {sorted(leaked)}"
    assert not {"exam", "deadline", "course"} & set(keys), keys
    assert all(k.startswith("check-") or k == "license" for k in keys), keys
    assert sum(k.startswith("check-") for k in keys) == len(FACTS.exam.announcement.check_months)
    # Every date the roadmap shows is either a fact's own (historical) date or a step of the physician's own.
    extra = set(DATE_WORDS.findall(text)) - set(DATE_WORDS.findall(baseline))
    assert not extra, f"dates that appear only because of the calendar: {sorted(extra)}"
