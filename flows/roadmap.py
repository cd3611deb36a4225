"""The tailored roadmap: path and reasons, dated steps, the exam sittings this physician can make, money,
specialty fit, state rules and alternatives, built from answers, facts, the calendar and today's date.

Pure: the caller passes today's date and the calendar; every fee, rule and lead time comes from the facts
data, every date is computed from today and the calendar, and nothing here is formatted for a transport.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from flows.conditions import Answer, evaluate
from flows.definition import FlowDefinition, load_definition
from flows.facts import CONFIDENCE_WORDS, Fact, Facts, ListFact, SpecialtyFit, load_facts
from flows.progress_steps import APPLIED, APPOINTED, COURSE, ELIGIBLE, IME_REPORT, IME_SOURCE, PANEL, PASSED, known
from flows.recommend import Path, Recommendation, recommend
from flows.sittings import Sitting, SittingOption, SittingPlan, plan_sittings


@dataclass(frozen=True)
class Cite:
    source: str
    confidence: str
    checked: date
    stale: bool

    def label(self) -> str:
        words = f"{self.source} ({CONFIDENCE_WORDS[self.confidence]}"
        return words + (f"; last checked on {day(self.checked)})" if self.stale else ")")


@dataclass(frozen=True)
class Item:
    text: str
    cite: Cite | None = None
    due: date | None = None
    """The date the step is due or starts, when it has one."""
    detail: str | None = None
    """The sourced fact behind a step whose text was written for this physician."""


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class CalendarEvent:
    key: str
    title: str
    start: date
    end: date
    """The last day (inclusive) of an all-day event."""
    description: str


@dataclass(frozen=True)
class Roadmap:
    path: Path
    title: str
    why: str
    sitting_lines: tuple[str, ...]
    next_steps: tuple[Item, ...]
    sections: tuple[Section, ...]
    events: tuple[CalendarEvent, ...]
    today: date
    plan: SittingPlan | None = None
    recommendation: Recommendation | None = field(default=None, compare=False)
    states_with_rules: tuple[str, ...] = ()
    """Names of the physician's states that add their own rules (detailed in the "states" section)."""
    done: frozenset[str] = frozenset()
    """The progress steps the physician has ticked (flows.progress_steps keys); the roadmap is built around them."""

    def section(self, key: str) -> Section | None:
        return next((s for s in self.sections if s.key == key), None)


def day(value: date) -> str:
    """19 Feb 2027"""
    return f"{value.day} {value:%b %Y}"


def window(sitting: Sitting) -> str:
    if sitting.first_day == sitting.last_day:
        return day(sitting.first_day)
    if (sitting.first_day.year, sitting.first_day.month) == (sitting.last_day.year, sitting.last_day.month):
        return f"{sitting.first_day.day}-{day(sitting.last_day)}"
    return f"{day(sitting.first_day)} - {day(sitting.last_day)}"


def _month_names(months: Sequence[int]) -> str:
    names = [date(2000, m, 1).strftime("%B") for m in months]
    return " and ".join(names)


class _Builder:
    def __init__(
        self,
        answers: Mapping[str, Answer],
        facts: Facts,
        defn: FlowDefinition,
        today: date,
        done: frozenset[str] = frozenset(),
    ) -> None:
        self.answers = answers
        self.facts = facts
        self.defn = defn
        self.today = today
        self.done = done

    def cite(self, fact: Fact | SpecialtyFit | ListFact) -> Cite:
        return Cite(fact.source, fact.confidence, self.facts.checked_on(fact), self.facts.is_stale(fact, self.today))

    def item(self, fact: Fact, due: date | None = None, text: str | None = None) -> Item:
        """A step citing `fact`; with `text`, the physician's own sentence leads and the fact follows as detail."""
        return Item(text or fact.text, self.cite(fact), due, fact.text if text else None)

    def label(self, key: str) -> str:
        return self.defn.question(key).label_of(self.answers[key]) if key in self.answers else ""

    def picked(self, key: str) -> tuple[str, ...]:
        value = self.answers.get(key)
        if value is None:
            return ()
        return value if isinstance(value, tuple) else (value,)


def build_roadmap(
    answers: Mapping[str, Answer],
    today: date,
    sittings: Iterable[Sitting],
    *,
    facts: Facts | None = None,
    defn: FlowDefinition | None = None,
    recommendation: Recommendation | None = None,
    done: Collection[str] = (),
) -> Roadmap:
    """The roadmap for today; `done` holds the progress steps already ticked, which drop out of the roadmap.

    Course done: no course lead time, only the application deadline decides the next sitting. Application filed:
    its deadline no longer matters (the next window is the one applied for). Exam passed: no sittings at all, and
    the appointment steps come forward.
    """
    facts = facts or load_facts()
    defn = defn or load_definition()
    rec = recommendation or recommend(answers, defn)
    ticked = known(done)
    b = _Builder(answers, facts, defn, today, ticked)
    qme = rec.path in {Path.QME, Path.HYBRID}
    ime = rec.path in {Path.IME, Path.HYBRID}

    plan: SittingPlan | None = None
    license_ready: date | None = None
    if qme and PASSED not in ticked:
        if answers.get("ca_license") == "willing" and APPLIED not in ticked:
            license_ready = today + timedelta(days=facts.ca_license.lead.days)
        plan = plan_sittings(
            sittings,
            today,
            ready_on=license_ready,
            course_lead_days=0 if COURSE in ticked else facts.course.lead.days,
            default_gap_days=facts.exam.deadline_gap.days,
            applied=APPLIED in ticked,
        )

    sections: list[Section] = []
    qme_steps = (_qme_steps(b, plan, license_ready) if PASSED not in ticked else _appointment_steps(b)) if qme else []
    ime_steps = _ime_steps(b, rec.path is Path.HYBRID) if ime else []
    if rec.path is Path.NOT_YET:
        not_yet = [Item(text, b.cite(facts.not_yet)) for text in facts.not_yet.steps]
        sections.append(Section("steps", "What to do now", tuple(not_yet)))
    if qme_steps:
        sections.append(Section("qme_steps", "QME steps", tuple(qme_steps)))
    if ime_steps:
        title = "IME steps (start now, while QME is in the works)" if rec.path is Path.HYBRID else "IME steps"
        sections.append(Section("ime_steps", title, tuple(ime_steps)))
    sitting_items = _sitting_items(b, plan, license_ready) if plan is not None else ()
    if plan is not None:
        sections.append(Section("sittings", "QME exam sittings", sitting_items))

    if rec.path is not Path.NOT_YET:
        sections.append(Section("money", "Money", tuple(_money(b, qme, ime))))
        sections.append(Section("fit", "Your specialty and case types", tuple(_fit(b, qme, ime))))
    if ime:
        rules = _state_rules(b)
        if rules:
            sections.append(Section("states", "State rules where you are licensed", tuple(rules)))
    if rec.path is Path.NOT_YET or evaluate(facts.alternatives.show_when, answers, defn.conditions) is True:
        alternatives = tuple(Item(text, b.cite(facts.alternatives)) for text in facts.alternatives.items)
        sections.append(Section("alternatives", "Other medical-legal work to consider", alternatives))

    dated = sorted(
        (i for s in sections for i in s.items if i.due is not None and i.due >= today), key=lambda i: i.due or today
    )
    # Dated steps first; then the undated steps written for this physician (they carry a fact as detail).
    actions = [i for s in sections for i in s.items if i.due is None and i.detail is not None]
    picked = (dated + actions)[:3]
    ime_now = [i for i in (ime_steps[:1] if rec.path is Path.HYBRID else []) if i.detail is not None]
    if ime_now and ime_now[0] not in picked:
        picked = [*picked[:2], ime_now[0]]  # a hybrid roadmap starts IMEs while the QME route runs
    first_steps = tuple(picked) or (sections[0].items[:3] if sections else ())
    return Roadmap(
        path=rec.path,
        title=defn.rules.paths[rec.path.value].title,
        why=_why(b, rec),
        sitting_lines=tuple(item.text for item in sitting_items),
        next_steps=first_steps,
        sections=tuple(sections),
        events=tuple(_events(b, plan, license_ready)),
        today=today,
        plan=plan,
        recommendation=rec,
        states_with_rules=tuple(rule.name for key in b.picked("other_states") if (rule := facts.state(key)))
        if ime
        else (),
        done=ticked,
    )


def _why(b: _Builder, rec: Recommendation) -> str:
    """Two or three sentences tied to the physician's answers."""
    reasons = [r for r in rec.reasons[:3]]
    if not reasons:
        return b.defn.rules.paths[rec.path.value].summary
    first = reasons[0][:1].upper() + reasons[0][1:]
    joined = (
        first
        if len(reasons) == 1
        else f"{first}, " + ", ".join(reasons[1:-1]) + (", and " if len(reasons) > 2 else " and ") + reasons[-1]
    )
    if len(reasons) == 2:
        joined = f"{first} and {reasons[1]}"
    sentences = [joined + "."]
    if rec.path is Path.NOT_YET:
        if rec.blockers and rec.blockers != rec.reasons:
            sentences.append(rec.blockers[0])
    else:
        sentences.append(b.defn.rules.paths[rec.path.value].summary)
        if rec.ruled_out is not None and rec.blockers:
            out = b.defn.rules.paths[rec.ruled_out.value].title
            sentences.append(f"{out} is out for now: {rec.blockers[0]}.")
    return " ".join(sentences)


def _eligibility_fact(b: _Builder) -> Fact:
    profession = b.answers.get("profession")
    if profession in {"md", "do"}:
        return b.facts.eligibility.md_do
    if profession == "psychologist":
        return b.facts.eligibility.psychologist
    return b.facts.eligibility.other


def _qme_steps(b: _Builder, plan: SittingPlan | None, license_ready: date | None) -> list[Item]:
    f = b.facts
    steps: list[Item] = []
    nxt = plan.next if plan else None
    if license_ready is not None:
        steps.append(
            b.item(
                f.ca_license.lead,
                license_ready,
                f"Get your California license, aiming for {day(license_ready)} (our planning assumption).",
            )
        )
    if ELIGIBLE not in b.done:
        steps.append(b.item(f.eligibility.license, None, "Confirm eligibility now."))
        steps.append(b.item(_eligibility_fact(b)))
        steps.append(b.item(f.eligibility.treatment))
    if b.answers.get("profession") == "dc" and APPLIED not in b.done:
        steps.append(b.item(f.course.chiropractor))
    apply = None if APPLIED in b.done else _application_step(b, nxt)
    course = None if COURSE in b.done else _course_step(b, nxt)
    # Chronological when both are dated; otherwise the course first, so it is done while waiting for a window.
    pair = [s for s in (course, apply) if s is not None]
    if apply is not None and course is not None and apply.due is not None and course.due is not None:
        pair = [apply, course] if apply.due <= course.due else [course, apply]
    steps += pair
    steps.append(b.item(f.exam.review))
    if nxt is not None:
        text = f"Sit the exam in the {window(nxt.sitting)} window."
        steps.append(b.item(f.exam.format, nxt.sitting.first_day, text))
    else:
        steps.append(b.item(f.exam.format, None, "Sit the exam in the next window."))
    steps.append(b.item(f.exam.pass_rate))
    steps.append(b.item(f.appointment.fees))
    steps.append(b.item(f.appointment.offices))
    steps.append(b.item(f.appointment.panels))
    steps.append(b.item(f.reappointment))
    return steps


def _appointment_steps(b: _Builder) -> list[Item]:
    """After the exam: the steps written for this physician, so they lead the roadmap's next steps."""
    f = b.facts
    steps: list[Item] = []
    if COURSE not in b.done:
        text = f"Finish the {f.course.hours}-hour report-writing course: it is required before appointment."
        steps.append(b.item(f.course, None, text))
    if APPOINTED not in b.done:
        text = "You passed: pay the annual QME fee DWC bills you and file SFI Form 124 to join the roster."
        steps.append(b.item(f.appointment.fees, None, text))
    steps.append(b.item(f.appointment.offices))
    if PANEL not in b.done:
        text = "List your offices and availability with DWC; panels are then drawn at random."
        steps.append(b.item(f.appointment.panels, None, text))
    steps.append(b.item(f.appointment.time))
    steps.append(b.item(f.reappointment))
    return steps


def _application_step(b: _Builder, nxt: SittingOption | None) -> Item:
    f = b.facts
    fee = f.exam.fee.amount
    if nxt is None:
        text = f"When DWC announces the next window, file QME Forms 100 and 102 with the ${fee} fee by its deadline."
        return b.item(f.exam.deadline_gap, None, text)
    gap = f.exam.deadline_gap.days
    assumed = f" (assumed {gap} days before the window: check the exam packet)" if nxt.deadline_assumed else ""
    text = (
        f"File QME Form 100 (application) and Form 102 (exam registration) with the ${fee} fee by "
        f"{day(nxt.deadline)}{assumed}: {_left(nxt.days_to_deadline, 'to apply')}."
    )
    return b.item(f.exam.deadline_gap, nxt.deadline, text)


def _course_step(b: _Builder, nxt: SittingOption | None) -> Item:
    f = b.facts
    hours = f.course.hours
    if nxt is None:
        return b.item(
            f.course, None, f"Take the {hours}-hour report-writing course while you wait for the next exam window."
        )
    if nxt.course_in_time:
        by = nxt.sitting.first_day - timedelta(days=1)
        text = (
            f"Finish the {hours}-hour report-writing course by {day(by)}, before the exam that tests the same material."
        )
        return b.item(f.course, by, text)
    text = (
        f"Take the {hours}-hour report-writing course after the {window(nxt.sitting)} exam if you can't fit it in "
        "before; it is required before appointment, not for the exam."
    )
    return b.item(f.course, None, text)


def _ime_steps(b: _Builder, hybrid: bool) -> list[Item]:
    f = b.facts
    where = _licensed_states(b)
    if hybrid and where:
        text = f"Start taking IMEs now where you are licensed ({where}), while the QME exam route runs its course."
        first = b.item(f.ime.license, None, text)
    else:
        first = b.item(f.ime.license)
    steps = [first, b.item(f.ime.insurance)]
    if IME_REPORT not in b.done:
        steps.append(b.item(f.ime.reports))
    if IME_SOURCE not in b.done:
        steps.append(b.item(f.ime.referrals))
        steps.append(b.item(f.ime.lead))
    if b.answers.get("ca_license") == "active" or hybrid:
        steps.append(b.item(f.ime.california))
    return steps


def _licensed_states(b: _Builder) -> str:
    """The states the physician holds a license in, in words ("California, Nevada")."""
    names = ["California"] if b.answers.get("ca_license") == "active" else []
    names += [b.defn.question("other_states").label_of(k) for k in b.picked("other_states") if k != "none"]
    return ", ".join(names)


def _state_rules(b: _Builder) -> list[Item]:
    rules = []
    for key in b.picked("other_states"):
        rule = b.facts.state(key)
        if rule is not None:
            rules.append(b.item(rule))
    return rules


def _sitting_items(b: _Builder, plan: SittingPlan, license_ready: date | None) -> tuple[Item, ...]:
    f = b.facts
    items: list[Item] = []
    if license_ready is not None:
        text = (
            f"Counting about {f.ca_license.lead.days} days for your California license (our planning assumption), "
            f"you could apply from {day(license_ready)}."
        )
        items.append(Item(text, b.cite(f.ca_license.lead)))
    for missed in plan.missed:
        assumed = (
            f"; that deadline is assumed {f.exam.deadline_gap.days} days before the window, so check the exam packet"
            if missed.deadline_assumed
            else ""
        )
        why = f"{missed.why_not} ({day(missed.deadline)}{assumed})"
        items.append(Item(f"The {window(missed.sitting)} window can't be made: {why}."))
    if plan.next is not None:
        items.append(Item("Next exam you can make: " + _option_line(b, plan.next, applied=APPLIED in b.done)))
        if plan.following is not None:
            items.append(Item("The one after: " + _option_line(b, plan.following)))
        else:
            months = _month_names(f.exam.frequency.months)
            text = f"The window after that has not been announced yet; the exam has run in {months}."
            items.append(Item(text, b.cite(f.exam.frequency)))
    else:
        text = (
            f"The next exam window has not been announced yet. {f.exam.frequency.text} {f.exam.announcement.text} "
            f"Check the DWC QME page: {f.meta.dwc_qme_page}"
        )
        items.append(Item(text, b.cite(f.exam.announcement)))
    return tuple(items)


def _left(days: int, what: str) -> str:
    if days == 0:
        return f"today is the last day {what}"
    return f"{days} day{'' if days == 1 else 's'} left {what}"


def _option_line(b: _Builder, option: SittingOption, *, applied: bool = False) -> str:
    f = b.facts
    assumed = f" (assumed {f.exam.deadline_gap.days} days before the window)" if option.deadline_assumed else ""
    lead = f.course.lead.days
    course = (
        ""
        if COURSE in b.done
        else f" At our planning pace of about {lead} days for the {f.course.hours}-hour course (an assumption), "
        "there is time to finish it first."
        if option.course_in_time
        else f" At our planning pace of about {lead} days, the {f.course.hours}-hour course won't fit before the "
        "exam; it is needed only before appointment."
    )
    note = option.sitting.note.rstrip(".")
    apply = (
        "you have applied"
        if applied
        else f"apply by {day(option.deadline)}{assumed}: {_left(option.days_to_deadline, 'to apply')}"
    )
    return f"{window(option.sitting)}; {apply}, {option.days_to_window} days to the window.{course}" + (
        f" {note}." if note else ""
    )


def _money(b: _Builder, qme: bool, ime: bool) -> list[Item]:
    f = b.facts
    items: list[Item] = []
    if qme:
        codes = "; ".join(f"{c.code} {c.label} ${c.amount:,.2f} {c.unit}" for c in f.fees.codes)
        items.append(Item(f"{f.fees.text} {codes}.", b.cite(f.fees)))
        items.append(b.item(f.fees.modifiers))
    items.append(b.item(f.ime.fees))
    items.append(b.item(f.ime.poll))
    return items


def _fit(b: _Builder, qme: bool, ime: bool) -> list[Item]:
    f = b.facts
    items: list[Item] = []
    specialty = b.answers.get("specialty")
    fit = f.specialty(specialty) if isinstance(specialty, str) else None
    if fit is not None:
        if qme:
            items.append(Item(fit.qme, b.cite(fit)))
        if ime:
            items.append(Item(fit.ime, b.cite(fit)))
    for key in b.picked("case_types"):
        case = next((c for c in f.case_types if c.key == key), None)
        if case is not None:
            items.append(Item(case.text))
    if b.picked("case_types"):
        items.append(b.item(f.case_poll))
    return items


def _events(b: _Builder, plan: SittingPlan | None, license_ready: date | None) -> list[CalendarEvent]:
    if plan is None:
        return []
    f = b.facts
    events: list[CalendarEvent] = []
    if license_ready is not None:
        events.append(
            CalendarEvent(
                "license", "Aim to hold your California license", license_ready, license_ready, f.ca_license.lead.text
            )
        )
    nxt = plan.next
    if nxt is not None:
        s = nxt.sitting
        if nxt.course_in_time and COURSE not in b.done:
            by = s.first_day - timedelta(days=1)
            events.append(
                CalendarEvent(
                    "course", f"Finish the {f.course.hours}-hour QME report-writing course", by, by, f.course.text
                )
            )
        assumed = " (assumed; check the exam packet)" if nxt.deadline_assumed else ""
        if APPLIED not in b.done:
            events.append(
                CalendarEvent(
                    "deadline",
                    "QME application deadline: Forms 100 and 102" + assumed,
                    nxt.deadline,
                    nxt.deadline,
                    f"{f.exam.deadline_gap.text} Exam fee ${f.exam.fee.amount}. {f.meta.dwc_qme_page}",
                )
            )
        events.append(
            CalendarEvent(
                "exam",
                "QME competency exam window",
                s.first_day,
                s.last_day,
                f"{f.exam.format.text} {s.note} {s.source}".strip(),
            )
        )
    else:
        for month in f.exam.announcement.check_months:
            year = b.today.year + (1 if date(b.today.year, month, f.exam.announcement.check_day) <= b.today else 0)
            check = date(year, month, f.exam.announcement.check_day)
            events.append(
                CalendarEvent(
                    f"check-{year}-{month:02d}",
                    "Check the DWC QME page for the next exam announcement",
                    check,
                    check,
                    f"{f.exam.announcement.text} {f.meta.dwc_qme_page}",
                )
            )
    return sorted(events, key=lambda e: e.start)
