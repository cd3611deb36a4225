"""Golden roadmaps for the six personas of shared/domain/decision.md, with a frozen today and a fixed calendar,
plus the facts rules (sources, confidence, staleness) and the consistency of the data files with each other.

Calendar: a 5-11 Apr 2027 window with a 19 Feb 2027 deadline, and a 4-10 Oct 2027 window with no deadline
(assumed 45 days before, 20 Aug 2027). Today: 29 Nov 2026.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from pydantic import BaseModel

from flows.conditions import AllOf, Answer, AnyOf, Condition, KeyIn, KeyNotIn, Not, Ref
from flows.definition import DATA_DIR, load_definition
from flows.facts import Fact, Facts, load_facts
from flows.recommend import Path
from flows.roadmap import Item, Roadmap, build_roadmap
from flows.sittings import Sitting
from tests.test_recommend import PERSONAS, physician

TODAY = date(2026, 11, 29)
APRIL = Sitting(
    date(2027, 4, 5),
    date(2027, 4, 11),
    date(2027, 2, 19),
    note="7-day computer-based window at Pearson VUE test centers",
    source="DWC exam announcement (test calendar)",
)
OCTOBER = Sitting(date(2027, 10, 4), date(2027, 10, 10), note="", source="DWC (test calendar)")
CALENDAR = [APRIL, OCTOBER]
FACTS = load_facts()
DEFN = load_definition()

ORTHO = "california orthopedic surgeon"
NEPHRO = "texas-only nephrologist"
PMR = "california pm&r physician wanting both"
RESIDENT = "second-year resident"
PSYCH = "california psychiatrist, low paperwork tolerance"
NEVADA = "nevada orthopedic surgeon willing to get a california license"
ANSWERS: dict[str, dict[str, Answer]] = {name: physician(**given) for name, (given, _, _) in PERSONAS.items()}

U_MARKERS = ("assumption", "estimate", "inference", "no official figure")
MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
DAY_MONTH_YEAR = re.compile(rf"\b(\d{{1,2}}) ({MONTHS}) (\d{{4}})\b")
MONTH_YEAR = re.compile(
    r"\b(January|February|March|April|May|June|July|August|September|October|November|December"
    rf"|{MONTHS}) (\d{{4}})\b"
)


def roadmap(name: str, sittings: list[Sitting] | None = None, today: date = TODAY) -> Roadmap:
    return build_roadmap(ANSWERS[name], today, CALENDAR if sittings is None else sittings, facts=FACTS, defn=DEFN)


def items(r: Roadmap) -> Iterator[Item]:
    for section in r.sections:
        yield from section.items
    yield from r.next_steps


def all_text(r: Roadmap) -> str:
    parts = [r.title, r.why, *r.sitting_lines]
    for i in items(r):
        parts += [i.text, i.detail or "", i.cite.label() if i.cite else ""]
    return "\n".join(parts)


def section_texts(r: Roadmap, key: str) -> list[str]:
    section = r.section(key)
    assert section is not None, f"no {key!r} section; sections: {[s.key for s in r.sections]}"
    return [i.text for i in section.items]


def section_facts(r: Roadmap, key: str) -> list[str]:
    """Each item's text with the sourced fact behind it, for order checks that name the facts."""
    section = r.section(key)
    assert section is not None, f"no {key!r} section; sections: {[s.key for s in r.sections]}"
    return [f"{i.text} {i.detail}" if i.detail else i.text for i in section.items]


def position(texts: list[str], phrase: str) -> int:
    hits = [n for n, text in enumerate(texts) if phrase in text]
    assert hits, f"{phrase!r} is in no step:\n" + "\n".join(texts)
    return hits[0]


def assert_in_order(texts: list[str], phrases: list[str]) -> None:
    where = [position(texts, p) for p in phrases]
    assert where == sorted(where), dict(zip(phrases, where, strict=True))


QME_ORDER = [
    "Confirm eligibility now.",  # California license
    "MD/DO: board certification",
    "File QME Form 100 (application) and Form 102 (exam registration) with the $125 fee by",
    "-hour report-writing course",
    "Sit the exam in the",
    "DWC bills the annual QME fee",
    "Panels name 3 QMEs",
    "Reappointment every 2 years",
]
IME_ORDER = [FACTS.ime.license.text, FACTS.ime.insurance.text, "CIME", FACTS.ime.referrals.text]


# -- golden personas ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PERSONAS))
def test_path_title_and_why(name: str) -> None:
    r = roadmap(name)
    path = PERSONAS[name][1]
    assert r.path is path
    assert r.title == DEFN.rules.paths[path.value].title
    assert r.today == TODAY
    assert r.why and "{" not in r.why and "(-)" not in r.why
    assert 1 <= r.why.count(". ") + 1 <= 4, "two or three sentences"
    assert r.next_steps


def test_ortho_is_qme_with_every_step_in_order() -> None:
    r = roadmap(ORTHO)
    assert r.path is Path.QME
    assert r.why.startswith("You want predictable volume")
    assert [s.key for s in r.sections] == ["qme_steps", "sittings", "money", "fit"]
    steps = section_texts(r, "qme_steps")
    assert_in_order(steps, QME_ORDER)
    apply = steps[position(steps, "File QME Form 100")]
    assert "by 19 Feb 2027: 82 days left to apply." in apply
    assert "assumed" not in apply
    course = steps[position(steps, "report-writing course")]
    assert f"{FACTS.course.hours}-hour" in course and "by 4 Apr 2027" in course
    assert "Sit the exam in the 5-11 Apr 2027 window." in steps
    assert not any("California license, aiming" in s for s in steps)
    assert r.section("ime_steps") is None and r.section("states") is None and r.section("alternatives") is None


def test_ortho_sitting_chosen_and_deadlines() -> None:
    r = roadmap(ORTHO)
    assert r.plan is not None and r.plan.next is not None and r.plan.following is not None
    assert r.plan.next.sitting == APRIL
    assert r.plan.following.sitting == OCTOBER
    assert r.plan.missed == ()
    first, second = r.sitting_lines
    assert first.startswith("Next exam you can make: 5-11 Apr 2027; apply by 19 Feb 2027")
    assert "82 days left" in first and "127 days to the window" in first
    assert "there is time to finish it first" in first and "an assumption" in first
    assert APRIL.note in first
    assert second.startswith("The one after: 4-10 Oct 2027; apply by 20 Aug 2027 (assumed 45 days before the window)")
    assert "264 days left" in second and "309 days to the window" in second
    assert section_texts(r, "sittings") == list(r.sitting_lines)


def test_ortho_next_steps_are_the_dated_ones() -> None:
    r = roadmap(ORTHO)
    assert [i.due for i in r.next_steps] == [date(2027, 2, 19), date(2027, 4, 4), date(2027, 4, 5)]
    assert r.next_steps[0].text.startswith("File QME Form 100")
    assert all(i.due is not None and i.due >= TODAY for i in r.next_steps)


def test_ortho_calendar_events() -> None:
    events = {e.key: e for e in roadmap(ORTHO).events}
    assert list(events) == ["deadline", "course", "exam"]
    assert (events["deadline"].start, events["deadline"].end) == (date(2027, 2, 19), date(2027, 2, 19))
    assert "assumed" not in events["deadline"].title
    assert f"${FACTS.exam.fee.amount}" in events["deadline"].description
    assert (events["course"].start, events["course"].end) == (date(2027, 4, 4), date(2027, 4, 4))
    assert events["course"].start == APRIL.first_day - timedelta(days=1)
    assert (events["exam"].start, events["exam"].end) == (APRIL.first_day, APRIL.last_day)
    assert APRIL.source in events["exam"].description


def test_ortho_without_future_sittings_invents_no_date() -> None:
    past = [Sitting(date(2024, 4, 6), date(2024, 4, 12)), Sitting(date(2014, 10, 18), date(2014, 10, 18))]
    for calendar in ([], past):
        r = roadmap(ORTHO, calendar)
        assert r.plan is not None and r.plan.next is None and not r.plan.known
        (line,) = r.sitting_lines
        assert "has not been announced yet" in line
        assert "April and October" in line
        assert FACTS.meta.dwc_qme_page in line
        steps = section_texts(r, "qme_steps")
        assert "Sit the exam in the next window." in steps
        assert any("When DWC announces the next window" in s and "$125 fee" in s for s in steps)
        assert all(i.due is None for i in items(r))
        text = all_text(r)
        # Only the facts' own historical dates appear: nothing on or after today, no month of a future year.
        for d, mon, year in DAY_MONTH_YEAR.findall(text):
            assert date(int(year), list(MONTHS.split("|")).index(mon) + 1, int(d)) < TODAY, f"{d} {mon} {year}"
        for _, year in MONTH_YEAR.findall(text):
            assert int(year) <= TODAY.year, year
        assert "2027" not in text
        events = r.events
        assert [e.key for e in events] == ["check-2027-01", "check-2027-07"]
        assert [(e.start, e.end) for e in events] == [(date(2027, 1, 5),) * 2, (date(2027, 7, 5),) * 2]
        assert all(e.title == "Check the DWC QME page for the next exam announcement" for e in events)


def test_ortho_check_events_never_fall_on_or_before_today() -> None:
    r = roadmap(ORTHO, [], today=date(2027, 1, 5))
    assert [e.start for e in r.events] == [date(2027, 7, 5), date(2028, 1, 5)]


def test_ortho_money_has_the_official_fees_and_sources() -> None:
    r = roadmap(ORTHO)
    money = r.section("money")
    assert money is not None
    schedule = next(i for i in money.items if "ML201" in i.text)
    for code, amount in [
        ("ML201", "$2,015.00"),
        ("ML202", "$1,316.25"),
        ("ML203", "$650.00"),
        ("ML204", "$455.00 per hour"),
        ("ML205", "$325.00"),
        ("ML200", "$503.75"),
        ("MLPRR", "$3.00 per page"),
    ]:
        assert re.search(rf"{code} [^;]*{re.escape(amount)}", schedule.text), (code, amount)
    assert schedule.cite is not None and schedule.cite.source == FACTS.fees.source
    texts = [i.text for i in money.items]
    assert FACTS.ime.fees.text in texts and FACTS.ime.poll.text in texts and FACTS.fees.modifiers.text in texts
    assert all(i.cite is not None and i.cite.source for i in money.items)


def test_ortho_specialty_fit_and_case_types() -> None:
    fit = section_texts(roadmap(ORTHO), "fit")
    ortho = FACTS.specialty("ortho")
    assert ortho is not None
    assert ortho.qme in fit and ortho.ime not in fit  # QME only: no IME fit line
    wc = next(c for c in FACTS.case_types if c.key == "wc")
    assert wc.text in fit and FACTS.case_poll.text in fit


def test_texas_nephrologist_is_ime_with_texas_rules() -> None:
    r = roadmap(NEPHRO)
    assert r.path is Path.IME
    assert [s.key for s in r.sections] == ["ime_steps", "money", "fit", "states"]
    assert_in_order(section_facts(r, "ime_steps"), IME_ORDER)
    texas = FACTS.state("TX")
    assert texas is not None
    assert section_texts(r, "states") == [texas.text]
    assert "Designated Doctors" in texas.text
    assert r.plan is None and r.sitting_lines == () and r.events == ()
    assert "ML201" not in all_text(r)  # no QME fee schedule for an IME-only path
    assert FACTS.ime.california.text not in section_texts(r, "ime_steps")
    assert "is out for now" in r.why and "California license" in r.why
    nephro = FACTS.specialty("nephro")
    assert nephro is not None and nephro.ime in section_texts(r, "fit")


def test_pmr_physician_gets_both_paths_and_no_nevada_rule() -> None:
    r = roadmap(PMR)
    assert r.path is Path.HYBRID
    assert [s.key for s in r.sections] == ["qme_steps", "ime_steps", "sittings", "money", "fit"]
    assert_in_order(section_texts(r, "qme_steps"), QME_ORDER)
    assert_in_order(section_facts(r, "ime_steps"), IME_ORDER)
    ime = r.section("ime_steps")
    assert ime is not None and "start now" in ime.title
    assert FACTS.state("NV") is None, "the data has no Nevada rule"
    assert r.section("states") is None
    assert next(i.text for i in items(r) if "Nevada" in i.text).startswith("Start taking IMEs now")
    assert r.plan is not None and r.plan.next is not None and r.plan.next.sitting == APRIL
    assert "apply by 19 Feb 2027" in r.sitting_lines[0] and "82 days left" in r.sitting_lines[0]
    pmr = FACTS.specialty("pmr")
    assert pmr is not None
    fit = section_texts(r, "fit")
    assert pmr.qme in fit and pmr.ime in fit
    assert "ML201" in all_text(r) and FACTS.ime.fees.text in all_text(r)


def test_resident_is_not_yet_with_what_to_do_now_and_alternatives() -> None:
    r = roadmap(RESIDENT)
    assert r.path is Path.NOT_YET
    assert [s.key for s in r.sections] == ["steps", "alternatives"]
    assert section_texts(r, "steps") == list(FACTS.not_yet.steps)
    assert section_texts(r, "alternatives") == list(FACTS.alternatives.items)
    steps = " ".join(section_texts(r, "steps"))
    for phrase in ("Finish residency", "board eligible", "report-writing habit", "Shadow an evaluator"):
        assert phrase in steps
    alternatives = " ".join(section_texts(r, "alternatives"))
    for phrase in ("Expert witness", "Peer chart review", "Medical directorships"):
        assert phrase in alternatives
    assert [i.text for i in r.next_steps] == list(FACTS.not_yet.steps)
    assert r.plan is None and r.sitting_lines == () and r.events == ()
    assert "in training" in r.why


def test_psychiatrist_with_low_paperwork_tolerance_is_ime() -> None:
    r = roadmap(PSYCH)
    assert r.path is Path.IME
    assert [s.key for s in r.sections] == ["ime_steps", "money", "fit"]
    steps = section_texts(r, "ime_steps")
    assert_in_order(steps, IME_ORDER)
    assert FACTS.ime.california.text in steps  # a California IME practice is mostly non-workers'-comp
    assert r.plan is None and r.sitting_lines == () and r.events == ()
    assert "paperwork light" in r.why
    psych = FACTS.specialty("psychiatry")
    assert psych is not None
    fit = section_texts(r, "fit")
    assert psych.ime in fit and psych.qme not in fit
    for key in ("pi", "ffd"):
        assert next(c.text for c in FACTS.case_types if c.key == key) in fit
    assert "ML201" not in all_text(r)


def test_nevada_surgeon_gets_the_license_first_and_a_sitting_after_it() -> None:
    r = roadmap(NEVADA)
    assert r.path is Path.HYBRID
    ready = TODAY + timedelta(days=FACTS.ca_license.lead.days)
    assert ready == date(2027, 3, 29)
    steps = section_texts(r, "qme_steps")
    assert steps[0] == "Get your California license, aiming for 29 Mar 2027 (our planning assumption)."
    qme = r.section("qme_steps")
    assert qme is not None and qme.items[0].due == ready
    assert_in_order(steps, QME_ORDER)
    assert_in_order(section_facts(r, "ime_steps"), IME_ORDER)
    assert r.section("states") is None  # no Nevada rule in the data
    plan = r.plan
    assert plan is not None and plan.next is not None
    assert [m.sitting for m in plan.missed] == [APRIL]
    assert plan.next.sitting == OCTOBER and plan.following is None
    assert plan.next.deadline >= ready
    assert all(o.deadline < ready for o in plan.missed)
    lines = r.sitting_lines
    assert lines[0].startswith(f"Counting about {FACTS.ca_license.lead.days} days for your California license")
    assert "apply from 29 Mar 2027" in lines[0]
    assert lines[1] == (
        "The 5-11 Apr 2027 window can't be made: your California license would not be in hand by its application "
        "deadline (19 Feb 2027)."
    )
    assert lines[2].startswith("Next exam you can make: 4-10 Oct 2027; apply by 20 Aug 2027 (assumed")
    assert "has not been announced yet" in lines[3] and "April and October" in lines[3]
    assert "by 20 Aug 2027 (assumed 45 days before the window: check the exam packet)" in " ".join(steps)
    assert "Sit the exam in the 4-10 Oct 2027 window." in steps
    assert [i.due for i in r.next_steps] == [ready, date(2027, 8, 20), None]
    assert r.next_steps[2].text.startswith("Start taking IMEs now where you are licensed (Nevada)")
    events = {e.key: e for e in r.events}
    assert list(events) == ["license", "deadline", "course", "exam"]
    assert events["license"].start == ready
    assert events["deadline"].start == date(2027, 8, 20) and "assumed" in events["deadline"].title
    assert (events["exam"].start, events["exam"].end) == (OCTOBER.first_day, OCTOBER.last_day)


def test_nevada_surgeon_without_a_calendar_starts_with_the_license_step() -> None:
    r = roadmap(NEVADA, [])
    assert [i.text for i in r.next_steps] == [
        "Get your California license, aiming for 29 Mar 2027 (our planning assumption).",
        "Confirm eligibility now.",
        "Start taking IMEs now where you are licensed (Nevada), while the QME exam route runs its course.",
    ]
    assert [e.key for e in r.events] == ["check-2027-01", "license", "check-2027-07"]
    assert "has not been announced yet" in r.sitting_lines[-1]


def test_alternatives_show_when_the_path_fits_poorly() -> None:
    little_time = physician(**(PERSONAS[ORTHO][0] | {"hours": "lt5"}))
    r = build_roadmap(little_time, TODAY, CALENDAR)
    assert section_texts(r, "alternatives") == list(FACTS.alternatives.items)
    no_testimony = physician(**(PERSONAS[PSYCH][0] | {"testimony": "rather_not"}))
    assert build_roadmap(no_testimony, TODAY, CALENDAR).section("alternatives") is not None


def test_the_course_is_never_a_reason_to_skip_a_sitting() -> None:
    soon = Sitting(TODAY + timedelta(days=10), TODAY + timedelta(days=16), TODAY + timedelta(days=2))
    r = roadmap(ORTHO, [soon])
    assert r.plan is not None and r.plan.next is not None and r.plan.next.sitting == soon
    assert not r.plan.next.course_in_time
    assert "needed only before appointment" in r.sitting_lines[0]
    steps = section_texts(r, "qme_steps")
    assert any("after the" in s and "required before appointment, not for the exam" in s for s in steps)
    assert "course" not in [e.key for e in r.events]


def test_a_deadline_of_today_reads_well() -> None:
    today = date(2027, 2, 19)
    r = roadmap(ORTHO, today=today)
    assert r.plan is not None and r.plan.next is not None and r.plan.next.days_to_deadline == 0
    assert "today left" not in all_text(r)
    assert "today is the last day to apply" in r.sitting_lines[0]


def test_a_window_missed_on_an_assumed_deadline_says_so() -> None:
    today = date(2027, 9, 1)  # after 20 Aug 2027, the assumed deadline of the October window
    r = roadmap(ORTHO, today=today)
    assert r.plan is not None and r.plan.next is None and [m.sitting for m in r.plan.missed] == [OCTOBER]
    missed = next(line for line in r.sitting_lines if "can't be made" in line)
    assert "assumed" in missed


# -- sources, confidence and staleness -------------------------------------------------------------------------

ALL_ROADMAPS = [(name, cal) for name in PERSONAS for cal in ("calendar", "none")]


@pytest.mark.parametrize(("name", "calendar"), ALL_ROADMAPS)
def test_every_cite_is_sourced_and_uncertain_facts_are_worded_as_such(name: str, calendar: str) -> None:
    r = roadmap(name, CALENDAR if calendar == "calendar" else [])
    for i in items(r):
        assert i.text.strip() and "{" not in i.text
        if i.cite is None:
            continue
        assert i.cite.confidence in {"C", "S", "U"}
        assert i.cite.source.strip()
        assert i.cite.checked == FACTS.meta.checked
        assert not i.cite.stale and "last checked on" not in i.cite.label()
        if i.cite.confidence == "U":
            words = f"{i.text} {i.detail or ''}".lower()
            assert any(m in words for m in U_MARKERS), f"an uncertain fact reads as fact: {i.text}"


@pytest.mark.parametrize("name", list(PERSONAS))
def test_stale_facts_say_last_checked_on(name: str) -> None:
    late = FACTS.meta.checked + timedelta(days=FACTS.meta.max_age_days + 1)
    r = roadmap(name, today=late)
    cites = [i.cite for i in items(r) if i.cite is not None]
    assert cites
    for cite in cites:
        assert cite.stale
        assert cite.label().endswith("; last checked on 29 Nov 2026)"), cite.label()
    # On the last day the data allows, nothing is stale yet.
    edge = FACTS.meta.checked + timedelta(days=FACTS.meta.max_age_days)
    assert all(i.cite is None or not i.cite.stale for i in items(roadmap(name, today=edge)))


def test_a_fact_with_its_own_checked_date_goes_stale_on_its_own() -> None:
    old = FACTS.meta.checked - timedelta(days=FACTS.meta.max_age_days + 1)
    gap = FACTS.exam.deadline_gap.model_copy(update={"checked": old})
    facts = FACTS.model_copy(update={"exam": FACTS.exam.model_copy(update={"deadline_gap": gap})})
    r = build_roadmap(ANSWERS[ORTHO], TODAY, CALENDAR, facts=facts, defn=DEFN)
    stale = [i for i in items(r) if i.cite is not None and i.cite.stale]
    assert stale and all(i.text.startswith("File QME Form 100") for i in stale)
    assert all(i.cite is not None and i.cite.label().endswith("last checked on 1 Jun 2026)") for i in stale)


def facts_in(model: BaseModel, where: str = "facts") -> Iterator[tuple[str, BaseModel]]:
    """Every sub-model of the facts that carries a confidence mark, with its dotted path."""
    if "confidence" in type(model).model_fields:
        yield where, model
    for name in type(model).model_fields:
        value = getattr(model, name)
        values = value if isinstance(value, tuple) else (value,)
        for n, v in enumerate(values):
            if isinstance(v, BaseModel):
                yield from facts_in(v, f"{where}.{name}" + (f"[{n}]" if isinstance(value, tuple) else ""))


def test_every_fact_has_a_source_and_a_known_confidence() -> None:
    found = dict(facts_in(FACTS))
    assert len(found) > 30
    for where, fact in found.items():
        assert getattr(fact, "confidence", None) in {"C", "S", "U"}, where
        assert str(getattr(fact, "source", "")).strip(), where


def test_uncertain_facts_in_the_data_say_they_are_uncertain() -> None:
    uncertain = {where: fact for where, fact in facts_in(FACTS) if getattr(fact, "confidence", None) == "U"}
    assert "facts.ca_license.lead" in uncertain and "facts.course.lead" in uncertain
    for where, fact in uncertain.items():
        texts = [getattr(fact, k) for k in ("text", "qme", "ime") if isinstance(getattr(fact, k, None), str)]
        texts += [t for k in ("items", "steps") for t in getattr(fact, k, ())]
        assert texts, where
        for text in texts:
            assert any(m in text.lower() for m in U_MARKERS), f"{where} is marked U but reads as fact: {text}"


def test_uncertain_facts_in_the_raw_toml_say_so() -> None:
    """The same rule read straight from the file, so a fact the model does not know about is checked too."""
    with (DATA_DIR / "facts.toml").open("rb") as fh:
        raw = tomllib.load(fh)

    def walk(node: object, where: str) -> Iterator[tuple[str, dict[str, object]]]:
        if isinstance(node, dict):
            if node.get("confidence") == "U":
                yield where, node
            for key, value in node.items():
                yield from walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for n, value in enumerate(node):
                yield from walk(value, f"{where}[{n}]")

    found = list(walk(raw, "facts"))
    assert found
    for where, node in found:
        text = str(node.get("text", "")) + str(node.get("qme", "")) + str(node.get("ime", ""))
        assert any(m in text.lower() for m in U_MARKERS), f"{where}: {text}"


def test_fees_match_the_official_schedule() -> None:
    amounts = {c.code: c.amount for c in FACTS.fees.codes}
    assert amounts["ML201"] == 2015.00
    assert amounts["ML202"] == 1316.25
    assert amounts["ML203"] == 650.00
    assert amounts["ML204"] == 455.00
    assert FACTS.fees.confidence == "C"
    assert FACTS.exam.fee.amount == 125


# -- the data files agree with each other ---------------------------------------------------------------------


def options(key: str) -> list[str]:
    return [o.key for o in DEFN.question(key).options]


def test_every_specialty_option_has_exactly_one_fit_entry() -> None:
    for key in options("specialty"):
        entries = [fit for fit in FACTS.specialties if key in fit.keys]
        assert len(entries) == 1, f"specialty {key!r} has {len(entries)} entries in facts.specialties"
    listed = [k for fit in FACTS.specialties for k in fit.keys]
    assert sorted(listed) == sorted(set(listed))
    assert set(listed) <= set(options("specialty")), set(listed) - set(options("specialty"))


def test_every_case_type_option_has_a_facts_entry() -> None:
    keys = [c.key for c in FACTS.case_types]
    assert sorted(keys) == sorted(set(keys))
    assert set(options("case_types")) == set(keys)


def test_every_state_rule_is_an_option_of_other_states() -> None:
    state_options = set(options("other_states"))
    keys = [rule.key for rule in FACTS.states]
    assert sorted(keys) == sorted(set(keys))
    assert set(keys) <= state_options - {"another", "none"}
    labels = {o.key: o.label for o in DEFN.question("other_states").options}
    for rule in FACTS.states:
        assert rule.name == labels[rule.key]
        assert rule.text.startswith(rule.name + ":")


def names_in(cond: Condition) -> Iterator[tuple[str, str | None]]:
    """(question key, option key) pairs, and (condition name, None) for references."""
    if isinstance(cond, KeyIn | KeyNotIn):
        for value in cond.values:
            yield cond.key, value
    elif isinstance(cond, AllOf | AnyOf):
        for part in cond.parts:
            yield from names_in(part)
    elif isinstance(cond, Not):
        yield from names_in(cond.part)
    elif isinstance(cond, Ref):
        yield cond.name, None


def test_alternatives_show_when_names_existing_questions_and_options() -> None:
    named = list(names_in(FACTS.alternatives.show_when))
    assert named
    for key, option in named:
        if option is None:
            assert key in DEFN.conditions, f"unknown condition {key!r}"
        else:
            assert DEFN.has_question(key), f"unknown question {key!r}"
            assert option in options(key), f"{key} has no option {option!r}"


def test_the_not_yet_and_alternatives_lists_are_not_empty() -> None:
    assert FACTS.not_yet.steps and FACTS.alternatives.items
    assert set(FACTS.exam.frequency.months) == {4, 10}
    assert set(FACTS.exam.announcement.check_months) == {1, 7}


def test_facts_load_and_validate() -> None:
    assert isinstance(load_facts(), Facts)
    assert isinstance(FACTS.exam.fee, Fact)
