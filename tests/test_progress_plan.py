"""The progress tracker's pure parts: the roadmap rebuilt from ticked steps, the reminders it drops, the checklist
with its due dates, the weekly nudge's timing and the funnel with its small-cell suppression."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.funnel import position
from flows.progress import NextStep, checklist, next_nudge_at, nudge_text
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


def test_funnel_position_is_the_first_step_not_ticked() -> None:
    """The funnel's counting rule itself lives in flows/aggregate.py (polls progress.qme/ime, see bot.export_data)."""
    assert position("qme", set()) == "eligible"
    assert position("qme", {"eligible", "applied"}) == "course"  # a skipped step is still the next one
    assert position("ime", {"ime_source"}) == "ime_report"
    assert position("qme", set(KEYS)) == "qme_done" and position("ime", set(KEYS)) == "ime_done"


def test_applied_lifts_only_the_first_windows_deadline() -> None:
    late = Sitting(date(2027, 10, 4), date(2027, 10, 10), date(2027, 2, 25), id=3)  # an odd, early deadline
    plan = plan_sittings([APRIL, late], MARCH, course_lead_days=21, default_gap_days=45, applied=True)
    assert plan.next is not None and plan.next.sitting == APRIL
    assert plan.following is None  # October's own deadline has passed and still counts
    assert plan_sittings([APRIL, late], MARCH, course_lead_days=21, default_gap_days=45).next is None


def test_every_undated_step_reads_as_one_sentence() -> None:
    """The line adds "No fixed date:" itself; the data says only why (once said twice for the IME steps)."""
    for step in load_steps().steps:
        line = NextStep(step, None, step.undated).line(TODAY)
        assert line.lower().count("no fixed date") == 1, line
