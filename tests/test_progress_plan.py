"""The progress tracker's pure parts: the roadmap rebuilt from ticked steps, the reminders it drops, the checklist
with its due dates, the weekly nudge's timing and the funnel with its small-cell suppression."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.funnel import FunnelRow, funnel_rows, suppress
from flows.progress import checklist, next_nudge_at, nudge_text
from flows.progress_steps import KEYS, load_steps
from flows.recommend import Path
from flows.reminders import plan_reminders
from flows.roadmap import Roadmap, build_roadmap
from flows.sittings import Sitting, plan_sittings
from tests.test_roadmap import ANSWERS, NEPHRO, ORTHO, PMR, RESIDENT

LA = ZoneInfo("America/Los_Angeles")
TODAY = date(2026, 11, 29)
APRIL = Sitting(date(2027, 4, 5), date(2027, 4, 11), date(2027, 2, 19), note="Pearson VUE", id=1)
OCTOBER = Sitting(date(2027, 10, 4), date(2027, 10, 10), None, id=2)
CALENDAR = [APRIL, OCTOBER]
MARCH = date(2027, 3, 1)  # after April's deadline, before its window


def ortho(done: set[str] = set(), today: date = TODAY) -> Roadmap:  # noqa: B006 - never mutated
    return build_roadmap(ANSWERS[ORTHO], today, CALENDAR, done=done)


def texts(r: Roadmap) -> str:
    return "\n".join([*r.sitting_lines, *(i.text for s in r.sections for i in s.items)])


def reminders(r: Roadmap) -> list[tuple[str, date]]:
    now = datetime.combine(r.today, datetime.min.time(), tzinfo=LA)
    got = plan_reminders(r, user_id=1, now=now, days_before=(30, 7, 1), hour=9, zone=LA, fee=125)
    return sorted({(x.event, x.event_day) for x in got})


# -- the roadmap, rebuilt from what is done ------------------------------------------------------------------


def test_nothing_ticked_is_the_roadmap_as_before() -> None:
    assert build_roadmap(ANSWERS[ORTHO], TODAY, CALENDAR) == ortho(set())


def test_course_done_drops_the_course_and_its_lead_time() -> None:
    before, after = ortho(), ortho({"course"})
    assert "report-writing course" in texts(before) and "planning pace" in before.sitting_lines[0]
    assert "report-writing course" not in texts(after).lower()
    assert after.sitting_lines[0] == (
        "Next exam you can make: 5-11 Apr 2027; apply by 19 Feb 2027: 82 days left to apply, 127 days to the window. "
        "Pearson VUE."
    )
    assert "planning pace" not in " ".join(after.sitting_lines)
    assert "course" not in {e.key for e in after.events} and "course" in {e.key for e in before.events}
    assert after.plan is not None and after.plan.next is not None and after.plan.next.sitting == APRIL
    assert reminders(after) == reminders(before)  # reminders never timed the course


def test_a_filed_application_keeps_the_window_applied_for_and_drops_deadline_reminders() -> None:
    missed = ortho(today=MARCH)
    assert missed.plan is not None and missed.plan.next is not None and missed.plan.next.sitting == OCTOBER
    applied = ortho({"applied"}, today=MARCH)
    assert applied.plan is not None and applied.plan.next is not None and applied.plan.next.sitting == APRIL
    assert applied.sitting_lines[0].startswith("Next exam you can make: 5-11 Apr 2027; you have applied, 35 days")
    assert "File QME Form 100" not in texts(applied) and "deadline" not in {e.key for e in applied.events}
    assert "The one after: 4-10 Oct 2027; apply by 20 Aug 2027" in " ".join(applied.sitting_lines)  # if needed
    deadlines = [d for event, d in reminders(ortho({"applied"})) if event == "deadline"]
    assert deadlines == [date(2027, 8, 20)]  # April's deadline reminders go; October's stay
    assert [d for event, d in reminders(ortho()) if event == "deadline"] == [date(2027, 2, 19), date(2027, 8, 20)]


def test_exam_passed_removes_sittings_and_brings_appointment_steps_forward() -> None:
    passed = ortho({"eligible", "course", "applied", "passed"})
    assert passed.plan is None and passed.sitting_lines == () and passed.section("sittings") is None
    assert passed.events == ()
    assert passed.next_steps[0].text.startswith("You passed: pay the annual QME fee")
    assert reminders(passed) == []
    appointed = ortho({"course", "passed", "appointed"})
    assert appointed.next_steps[0].text.startswith("List your offices and availability")
    course_left = ortho({"passed"})
    assert course_left.next_steps[0].text.startswith("Finish the 16-hour report-writing course: it is required")


def test_ime_steps_drop_once_done_and_unknown_keys_are_ignored() -> None:
    nephro = build_roadmap(ANSWERS[NEPHRO], TODAY, CALENDAR, done={"ime_source", "ime_report", "bogus"})
    assert nephro.done == frozenset({"ime_source", "ime_report"})
    section = nephro.section("ime_steps")
    assert section is not None
    steps = " ".join(i.text for i in section.items)
    assert "Work comes from IME companies" not in steps and "AMA Guides" not in steps
    fresh = build_roadmap(ANSWERS[NEPHRO], TODAY, CALENDAR).section("ime_steps")
    assert fresh is not None and "Work comes from IME companies" in " ".join(i.text for i in fresh.items)


# -- the checklist -------------------------------------------------------------------------------------------


def test_ortho_checklist_after_two_ticks_points_at_the_application_deadline() -> None:
    done = {"eligible": TODAY, "course": TODAY}
    items = checklist(ortho(set(done)), done)
    assert [t.step.key for t in items.ticks] == ["eligible", "course", "applied", "passed", "appointed", "panel"]
    assert items.done_count == 2
    (nxt,) = items.next
    assert nxt.step.key == "applied" and nxt.due == date(2027, 2, 19)
    assert nxt.line(TODAY) == (
        "File QME Forms 100 and 102 with the exam fee. Due 19 Feb 2027 (82 days left): "
        "the application deadline of the 5-11 Apr 2027 window."
    )


def test_checklist_due_dates_follow_the_calendar() -> None:
    first = checklist(ortho(), {}).next[0]
    assert (first.step.key, first.due) == ("eligible", date(2027, 2, 19))
    course = checklist(ortho({"eligible"}), {"eligible": TODAY}).next[0]
    assert (course.step.key, course.due) == ("course", date(2027, 4, 4))
    done = {k: TODAY for k in ("eligible", "course", "applied")}
    exam = checklist(ortho(set(done)), done).next[0]
    assert (exam.step.key, exam.due) == ("passed", date(2027, 4, 5))
    empty = build_roadmap(ANSWERS[ORTHO], TODAY, [], done=set())
    undated = checklist(empty, {}).next[0]
    assert undated.due is None and "No fixed date: before you apply for the next exam." in undated.line(TODAY)


def test_checklist_by_path() -> None:
    hybrid = checklist(build_roadmap(ANSWERS[PMR], TODAY, CALENDAR), {})
    assert [n.step.key for n in hybrid.next] == ["eligible", "ime_source"]
    assert len(hybrid.ticks) == len(KEYS)
    ime = checklist(build_roadmap(ANSWERS[NEPHRO], TODAY, CALENDAR), {})
    assert [t.step.key for t in ime.ticks] == ["ime_source", "ime_report"]
    resident = build_roadmap(ANSWERS[RESIDENT], TODAY, CALENDAR)
    assert resident.path is Path.NOT_YET and checklist(resident, {}).ticks == ()
    all_done = {k: TODAY for k in ("ime_source", "ime_report")}
    assert checklist(build_roadmap(ANSWERS[NEPHRO], TODAY, CALENDAR, done=set(all_done)), all_done).next == ()


def test_nudge_text_names_the_next_step_and_the_count() -> None:
    done = {"eligible": TODAY}
    text = nudge_text(checklist(ortho(set(done)), done), TODAY)
    assert "Finish the 16-hour report-writing course" in text and "Due 4 Apr 2027" in text
    assert "1 of 6 steps done" in text


# -- the weekly nudge's timing ---------------------------------------------------------------------------------


def test_next_nudge_is_a_week_later_at_the_local_hour() -> None:
    anchor = datetime(2026, 11, 29, 15, 30, tzinfo=LA)
    assert next_nudge_at(anchor, LA, 9) == datetime(2026, 12, 7, 9, tzinfo=LA)
    assert next_nudge_at(datetime(2026, 12, 7, 9, tzinfo=LA), LA, 9) == datetime(2026, 12, 14, 9, tzinfo=LA)
    # across the spring daylight-saving change 9:00 stays 9:00 on the wall clock
    assert next_nudge_at(datetime(2027, 3, 8, 9, tzinfo=LA), LA, 9) == datetime(2027, 3, 15, 9, tzinfo=LA)


@settings(max_examples=60, deadline=None)
@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2030, 1, 1)), st.integers(0, 23))
def test_nudges_are_never_less_than_a_week_apart(naive: datetime, hour: int) -> None:
    anchor = naive.replace(tzinfo=LA)
    at = next_nudge_at(anchor, LA, hour)
    assert at - anchor >= timedelta(days=7)
    assert at - anchor < timedelta(days=8, hours=2)
    assert at.astimezone(LA).hour == hour or at.astimezone(LA).fold  # the wall-clock hour (DST gaps aside)


# -- the funnel ------------------------------------------------------------------------------------------------


def test_funnel_counts_each_physician_once_per_track() -> None:
    rows = funnel_rows(
        [("qme", set()), ("qme", {"eligible"}), ("hybrid", {"eligible", "ime_source"}), ("ime", set()),
         ("not_yet", set()), ("qme", set(k for k in KEYS if k.startswith(("e", "c", "a", "p"))))]
    )  # fmt: skip
    count = {r.key: r.count for r in rows}
    assert count["qme_total"] == 4 and count["ime_total"] == 2
    assert count["eligible"] == 1 and count["course"] == 2 and count["qme_done"] == 1
    assert count["ime_source"] == 1 and count["ime_report"] == 1
    labels = {r.key: r.label for r in rows}
    assert labels["applied"] == load_steps().get("applied").label  # type: ignore[union-attr]
    for track in ("qme", "ime"):
        cells = [r.count for r in rows if r.track == track and not r.key.endswith("_total")]
        assert sum(cells) == count[f"{track}_total"]


def test_suppression_hides_small_counts_and_one_more_when_needed() -> None:
    shown = {s.row.key: s.text for s in suppress(_rows([12, 3, 9, 7, 0, 6, 0], total=37), 5)}
    # 3 and the two zeros are hidden; their sum 3 is not 3 x 4, so no complementary cell is needed
    assert shown == {"eligible": "12", "course": "<5", "applied": "9", "passed": "7", "appointed": "<5",
                     "panel": "6", "qme_done": "<5", "qme_total": "37"}  # fmt: skip
    single = {s.row.key: s.text for s in suppress(_rows([12, 3, 9, 7, 8, 6, 5], total=50), 5)}
    assert single["course"] == "<5" and single["qme_done"] == "≥5"  # the smallest other cell hides it
    small = {s.row.key: s.text for s in suppress(_rows([1, 2, 0, 0, 0, 0, 0], total=3), 5)}
    assert set(small.values()) == {"<5"}


def _rows(counts: list[int], total: int) -> list[FunnelRow]:
    keys = ["eligible", "course", "applied", "passed", "appointed", "panel", "qme_done"]
    return [FunnelRow("qme", k, k, c) for k, c in zip(keys, counts, strict=True)] + [
        FunnelRow("qme", "qme_total", "Total", total)
    ]


def _possible(ranges: list[tuple[int, int]], target: int, i: int) -> set[int]:
    """Values cell i can take when every cell lies in its range and all add up to `target` (subset-sum DP)."""
    sums = {0}
    for j, (lo, hi) in enumerate(ranges):
        if j != i:
            sums = {s + v for s in sums for v in range(lo, hi + 1) if s + v <= target}
    lo, hi = ranges[i]
    return {v for v in range(lo, hi + 1) if target - v in sums}


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=7, max_size=7), st.integers(3, 6))
def test_no_suppressed_count_can_be_worked_out(counts: list[int], k: int) -> None:
    total = sum(counts)
    shown = suppress(_rows(counts, total), k)
    by_key = {s.row.key: s.text for s in shown}
    for s in shown:  # nothing shown is untrue
        if s.text == f"<{k}":
            assert s.row.count < k
        elif s.text == f"≥{k}":
            assert s.row.count >= k
        else:
            assert int(s.text) == s.row.count and s.row.count >= k
    if not by_key["qme_total"].isdigit():
        return  # the total is withheld: nothing to subtract from
    cells = [s for s in shown if s.row.key != "qme_total"]
    hidden = [s for s in cells if not s.text.isdigit()]
    target = total - sum(s.row.count for s in cells if s.text.isdigit())
    ranges = [(0, k - 1) if s.text == f"<{k}" else (k, target) for s in hidden]
    for i, s in enumerate(hidden):
        if s.text == f"<{k}" and s.row.count > 0:
            assert len(_possible(ranges, target, i)) > 1, (counts, k, by_key)


@pytest.mark.parametrize("k", [3, 5])
def test_suppression_uses_the_configured_k(k: int) -> None:
    texts_shown = {s.text for s in suppress(_rows([4, 0, 0, 0, 0, 0, 10], total=14), k)}
    assert f"<{k}" in texts_shown


def test_applied_lifts_only_the_first_windows_deadline() -> None:
    late = Sitting(date(2027, 10, 4), date(2027, 10, 10), date(2027, 2, 25), id=3)  # an odd, early deadline
    plan = plan_sittings([APRIL, late], MARCH, course_lead_days=21, default_gap_days=45, applied=True)
    assert plan.next is not None and plan.next.sitting == APRIL
    assert plan.following is None  # October's own deadline has passed and still counts
    assert plan_sittings([APRIL, late], MARCH, course_lead_days=21, default_gap_days=45).next is None
