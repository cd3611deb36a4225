"""`/estimate`: what QME and IME work could gross a month and a year, with every figure's source.

The estimator stores nothing: the physician's inputs travel in the buttons' callback data (a short token), and
the hours and specialty come from their decision-flow answers when they gave them. So there is nothing for
/delete_me to erase, and old buttons keep working after a restart. The arithmetic is `flows.estimate`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.screens import Button, Document, Keyboard, Reply, Screen, esc
from db import repository as repo
from flows.definition import load_definition
from flows.estimate import Assumptions, Estimate, Inputs, cwci_pages, estimate, fee, load_assumptions
from flows.facts import Fact, Facts, load_facts

VERB = "es"
_DATA = re.compile(
    r"^es:([HEPMGTRC]):"  # the screen
    r"([0-9]{1,3})\.([0-9]{1,2})-([0-9]{1,2})\.([a-z])\.([0-9]{1,5})\.([0-9]{1,2})\.([0-9]{1,3})\.([a-z]{1,8}|_)"
    r":([sr])$"  # s: setting up (the next question follows), r: back to the result
)

# -- texts ------------------------------------------------------------------------------------------------------
TITLE = "💵 <b>Income estimate: QME and IME</b>"
NOT_ADVICE = (
    "<i>This is an estimate, not advice: gross fees before overhead, IME-company shares, unpaid or disputed bills "
    "and the annual QME fee, from the figures and assumptions below. Check current fees on the DWC site.</i>"
)
ASK_HOURS = "How many hours a week would you give to medical-legal work?"
ASK_EVAL = (
    "How long does a comprehensive evaluation take you in all: reviewing records, the exam and writing the report?\n"
    "<i>{why}. We propose {low}-{high} h: that is our own assumption, not a sourced figure.</i>"
)
ASK_PANELS = (
    "How many new QME evaluations (panels) a month do you expect?\n<i>{why} ({source}). "
    "Choose a number to cap the estimate, or let your hours decide.</i>"
)
ASK_MIX = "Which case mix fits you?"
ASK_PAGES = (
    "Record pages beyond the 200 included, per comprehensive evaluation (paid ${rate:.2f} a page, MLPRR)?\n"
    "<i>About {cwci:.0f} is our arithmetic on CWCI's figures: {share:.1f}% of comprehensive exams carried a page "
    "charge, averaging ${average:,.0f}.</i>"
)
ASK_TESTIMONY = "Hours of testimony (depositions) a month, paid at ML204 and taken out of your hours?"
ALL_HOURS = "As many as my hours allow"
OUR_ASSUMPTION = " (our assumption)"
CHART = "📈 Chart: QME vs IME by hours a week"
CHART_SENT = "Chart sent."
CHART_CAPTION = "QME vs IME gross a month by hours a week (an estimate, not advice)."
STALE = "That estimator button is out of date or not one I made; nothing was changed. Send /estimate to start again."


def _money(value: float) -> str:
    """A fee as the schedule states it: whole dollars, or with cents when it has them."""
    return f"${value:,.0f}" if value == int(value) else f"${value:,.2f}"


def _range(low: float, high: float) -> str:
    """An estimated range, rounded to $100 so it does not look more precise than it is."""
    lo, hi = round(low, -2), round(high, -2)
    return f"${lo:,.0f}" if lo == hi else f"${lo:,.0f}-${hi:,.0f}"


def _day(value: date) -> str:
    return f"{value.day} {value:%b %Y}"


# -- the token the buttons carry --------------------------------------------------------------------------------
def token(inputs: Inputs) -> str:
    low, high = (int(x) for x in inputs.eval_hours)
    mods = "".join(sorted(inputs.modifiers)) or "_"
    return (
        f"{int(inputs.hours_per_week)}.{low}-{high}.{inputs.mix}.{inputs.pages}.{int(inputs.testimony_hours)}."
        f"{inputs.panel_cap}.{mods}"
    )


def _data(screen: str, inputs: Inputs, mode: str) -> str:
    return f"{VERB}:{screen}:{token(inputs)}:{mode}"


def parse(data: str, assumptions: Assumptions, facts: Facts, specialty: str | None) -> tuple[str, Inputs, str] | None:
    """(screen, inputs, mode) from callback data; None for anything the estimator would not have made."""
    match = _DATA.match(data)
    if match is None:
        return None
    screen, hours, low, high, mix, pages, testimony, cap, mods, mode = match.groups()
    modifiers = frozenset() if mods == "_" else frozenset(mods)
    known = {m.key for m in facts.estimator.modifiers.items}
    c = assumptions.choices
    pair = (int(low), int(high))
    pairs = {*assumptions.eval_hours.choices, assumptions.eval_hours.for_specialty(specialty)}
    if (
        int(hours) > max(c.hours)
        or pair not in pairs
        or assumptions.mix(mix) is None
        or not modifiers <= known
        or int(testimony) not in c.testimony
        or int(cap) not in c.panels
        or int(pages) > max(c.pages)
    ):
        return None
    inputs = Inputs(
        hours_per_week=float(hours),
        eval_hours=(float(pair[0]), float(pair[1])),
        mix=mix,
        pages=int(pages),
        testimony_hours=float(testimony),
        modifiers=modifiers,
        panel_cap=int(cap),
        specialty=specialty,
    )
    return screen, inputs, mode


# -- screens ----------------------------------------------------------------------------------------------------
_SEQUENCE = "HEPR"


def _then(screen: str, mode: str) -> str:
    return _SEQUENCE[_SEQUENCE.index(screen) + 1] if mode == "s" and screen in "HEP" else "R"


def _rows(buttons: list[Button], width: int) -> Keyboard:
    return tuple(tuple(buttons[i : i + width]) for i in range(0, len(buttons), width))


class EstimatorScreens:
    """Builds the estimator's screens from the facts, the assumptions and the physician's inputs."""

    def __init__(self, facts: Facts, assumptions: Assumptions, today: date) -> None:
        self.facts = facts
        self.a = assumptions
        self.today = today

    def defaults(self, answers: dict[str, object]) -> tuple[Inputs, str | None]:
        """Inputs proposed from the flow's answers; the note says what was reused (None: ask the hours)."""
        specialty = answers.get("specialty")
        specialty = specialty if isinstance(specialty, str) else None
        band = answers.get("hours")
        hours = self.a.hours_from_flow.hours_for(band) if isinstance(band, str) else None
        fit = self.facts.estimator.modifiers.items
        psych = {"psychiatry", "psychology"}
        mods = frozenset(m.key for m in fit if m.key == "p" and specialty in psych)
        low, high = self.a.eval_hours.for_specialty(specialty)
        inputs = Inputs(
            hours_per_week=float(hours or 0),
            eval_hours=(float(low), float(high)),
            mix=self.a.mixes[0].key,
            pages=round(cwci_pages(self.facts, "comprehensive")),
            testimony_hours=0.0,
            modifiers=mods,
            panel_cap=0,
            specialty=specialty,
        )
        note = None
        if hours is not None and isinstance(band, str):
            label = load_definition().question("hours").label_of(band)
            note = self.a.hours_from_flow.text.format(band=label, hours=hours)
        return inputs, note

    def screen(self, name: str, inputs: Inputs, mode: str) -> Screen:
        then = _then(name, mode)
        c = self.a.choices
        if name == "H":
            buttons = [
                Button(f"{h} h", _data(then, replace(inputs, hours_per_week=float(h)), mode)) for h in c.hours if h
            ]
            return Screen(f"{TITLE}\n{ASK_HOURS}", _rows(buttons, 5))
        if name == "E":
            proposed = self.a.eval_hours.for_specialty(inputs.specialty)
            pairs = list(dict.fromkeys([*self.a.eval_hours.choices, proposed]))
            buttons = [
                Button(
                    f"{lo}-{hi} h" + (OUR_ASSUMPTION if (lo, hi) == proposed else ""),
                    _data(then, replace(inputs, eval_hours=(float(lo), float(hi))), mode),
                )
                for lo, hi in sorted(pairs)
            ]
            why = self.facts.estimator.eval_time.text.rstrip(".")
            if inputs.specialty in {"psychiatry", "psychology"}:
                why += ". " + self.facts.estimator.psych_exam_day.text.rstrip(".")
            text = ASK_EVAL.format(why=esc(why), low=proposed[0], high=proposed[1])
            return Screen(f"{TITLE}\n{text}", _rows(buttons, 3))
        if name == "P":
            panels = self.facts.estimator.panels
            buttons = [
                Button(ALL_HOURS if n == 0 else str(n), _data(then, replace(inputs, panel_cap=n), mode))
                for n in c.panels
            ]
            text = ASK_PANELS.format(why=esc(panels.text.rstrip(".")), source=esc(panels.source))
            return Screen(f"{TITLE}\n{text}", ((buttons[0],), *_rows(buttons[1:], 5)))
        if name == "M":
            buttons = [Button(m.label, _data("R", replace(inputs, mix=m.key), "r")) for m in self.a.mixes]
            lines = [ASK_MIX, *(f"• <b>{esc(m.label)}</b>: {esc(m.text)}" for m in self.a.mixes)]
            return Screen(f"{TITLE}\n" + "\n".join(lines), _rows(buttons, 1))
        if name == "G":
            cwci = round(cwci_pages(self.facts, "comprehensive"))
            values = sorted({*c.pages, cwci})
            buttons = [
                Button(f"≈{p} (CWCI)" if p == cwci else str(p), _data("R", replace(inputs, pages=p), "r"))
                for p in values
            ]
            charges = self.facts.estimator.pages.comprehensive
            text = ASK_PAGES.format(
                rate=fee(self.facts, "MLPRR").amount, cwci=cwci, share=charges.percent, average=charges.average
            )
            return Screen(f"{TITLE}\n{text}", _rows(buttons, 3))
        if name == "T":
            buttons = [
                Button(f"{t} h", _data("R", replace(inputs, testimony_hours=float(t)), "r")) for t in c.testimony
            ]
            return Screen(f"{TITLE}\n{ASK_TESTIMONY}", _rows(buttons, 4))
        return self.result(inputs)

    def result(self, inputs: Inputs, note: str | None = None) -> Screen:
        result = estimate(inputs, self.facts, self.a)
        return Screen(self.result_text(inputs, result, note), self.result_keyboard(inputs))

    def result_keyboard(self, inputs: Inputs) -> Keyboard:
        mix = self.a.mix(inputs.mix) or self.a.mixes[0]
        low, high = (int(x) for x in inputs.eval_hours)
        cap = ALL_HOURS if not inputs.panel_cap else f"≤{inputs.panel_cap} panels"
        rows: list[tuple[Button, ...]] = [
            (
                Button(f"⏱ {int(inputs.hours_per_week)} h/week", _data("H", inputs, "r")),
                Button(f"📝 {low}-{high} h/evaluation", _data("E", inputs, "r")),
            ),
            (Button(f"📥 {cap}", _data("P", inputs, "r")), Button(f"🗂 {mix.label}", _data("M", inputs, "r"))),
            (
                Button(f"📄 {inputs.pages} pages", _data("G", inputs, "r")),
                Button(f"⚖️ {int(inputs.testimony_hours)} h testimony", _data("T", inputs, "r")),
            ),
        ]
        toggles = []
        for m in self.facts.estimator.modifiers.items:
            on = m.key in inputs.modifiers
            flipped = inputs.modifiers - {m.key} if on else inputs.modifiers | {m.key}
            mark = "☑️" if on else "⬜"
            toggles.append(
                Button(f"{mark} {m.label} x{m.factor:.2f}", _data("R", replace(inputs, modifiers=flipped), "r"))
            )
        rows += list(_rows(toggles, 2))
        rows.append((Button(CHART, _data("C", inputs, "r")),))
        return tuple(rows)

    def _cite(self, fact: Fact) -> str:
        checked = fact.checked or self.facts.meta.checked
        return f"<i>({esc(fact.source)}; checked {_day(checked)})</i>"

    def result_text(self, inputs: Inputs, result: Estimate, note: str | None = None) -> str:
        f, a = self.facts, self.a
        mix = a.mix(inputs.mix) or a.mixes[0]
        mods = [m for m in f.estimator.modifiers.items if m.key in inputs.modifiers]
        hours_line = f"{inputs.hours_per_week:g} h a week ≈ {result.hours_per_month:.0f} h a month"
        if note:
            hours_line += f" ({esc(note)})"
        lines = [TITLE, NOT_ADVICE, "", f"<b>Your inputs:</b> {hours_line}; {esc(mix.label.lower())}"]
        if mods:
            lines[-1] += f"; modifier x{result.multiplier:.2f} ({esc(', '.join(m.label for m in mods))})"
        if inputs.panel_cap:
            lines[-1] += f"; at most {inputs.panel_cap} new evaluations a month"
        q, i = result.qme_monthly, result.ime_monthly
        qy, iy = result.qme_yearly, result.ime_yearly
        n = result.qme_evaluations
        lines += [
            "",
            "🏛 <b>QME, official Medical-Legal Fee Schedule</b>",
            f"<b>{_range(q.low, q.high)}</b> a month · <b>{_range(qy.low, qy.high)}</b> a year",
            f"about {n.low:.1f}-{n.high:.1f} services a month",
            "",
            "🩺 <b>IME, fees physicians report</b>",
            f"<b>{_range(i.low, i.high)}</b> a month · <b>{_range(iy.low, iy.high)}</b> a year",
            "",
            "<b>Sourced figures</b>",
        ]
        codes = " · ".join(f"{c.code} {_money(c.amount)} {c.unit}" for c in f.fees.codes if c.code != "ML205")
        lines.append(f"• {esc(f.fees.text)} {esc(codes)} {self._cite(f.fees)}")
        lines.append(f"• {esc(f.estimator.modifiers.text)} {self._cite(f.estimator.modifiers)}")
        lines.append(f"• {esc(f.estimator.pages.text)} {self._cite(f.estimator.pages)}")
        lines.append(f"• {esc(f.estimator.supplemental_share.text)} {self._cite(f.estimator.supplemental_share)}")
        rate = result.ime_rate
        lines.append(f"• {esc(rate.text)} {self._cite(rate)}")
        if rate.per == "exam":
            lines.append(f"• {esc(f.estimator.ime_time.text)} {self._cite(f.estimator.ime_time)}")
        lines += ["", "<b>Our assumptions</b> (no source gives these; change them below)"]
        low, high = (int(x) for x in inputs.eval_hours)
        st = a.service_time
        lines.append("• " + esc(a.eval_hours.text.format(low=low, high=high)))
        lines.append("• " + esc(st.text.format(follow_up=st.follow_up, supplemental=st.supplemental)))
        lines.append(f"• {esc(mix.label)}: {esc(mix.text)}")
        pages = round(cwci_pages(f, "comprehensive"))
        lines.append(
            f"• {inputs.pages} record pages beyond the included 200 per comprehensive evaluation"
            + (" (our arithmetic on the CWCI figures)" if inputs.pages == pages else " (your choice)")
            + "; follow-ups and supplementals at the CWCI averages; reading time is inside the hours above"
        )
        if not inputs.panel_cap:
            lines.append(f"• no cap on panels, so they fill your hours. {esc(f.estimator.panels.text)}")
        if rate.per == "exam":
            lines.append("• " + esc(a.ime_hours.text.format(hours=f"{a.ime_hours.hours:g}")))
        lines.append(f"• {a.weeks_per_year} working weeks a year; modifiers add up (AME on psychiatric = x2.35)")
        return "\n".join(lines)


# -- the plugin -------------------------------------------------------------------------------------------------
class Estimator:
    """The `Plugin` (bot.dialogue) behind /estimate."""

    commands = frozenset({"estimate"})
    verbs = frozenset({VERB})

    def __init__(self, sessions: async_sessionmaker[AsyncSession], today: Callable[[], date]) -> None:
        self.sessions = sessions
        self.today = today

    def _screens(self) -> EstimatorScreens:
        return EstimatorScreens(load_facts(), load_assumptions(), self.today())

    async def _answers(self, user_id: int) -> dict[str, object]:
        """The physician's latest flow answers (read only: the estimator writes nothing)."""
        async with self.sessions() as session:
            flow = await repo.latest_flow(session, user_id)
        return dict(flow.answers) if flow is not None else {}

    async def command(self, user_id: int, name: str, args: str) -> Reply:
        screens = self._screens()
        inputs, note = screens.defaults(await self._answers(user_id))
        if note is None:
            return Reply(send=[screens.screen("H", inputs, "s")])
        intro = Screen(f"{TITLE}\n<i>Reusing {esc(note)}.</i>")
        return Reply(send=[intro, screens.screen("E", inputs, "s")])

    async def press(self, user_id: int, data: str) -> Reply:
        screens = self._screens()
        answers = await self._answers(user_id)
        specialty = answers.get("specialty")
        parsed = parse(data, screens.a, screens.facts, specialty if isinstance(specialty, str) else None)
        if parsed is None:
            return Reply(notice=STALE, send=[Screen(esc(STALE))])
        name, inputs, mode = parsed
        if name == "C":
            document = await asyncio.to_thread(self.chart, inputs, screens)
            return Reply(notice=CHART_SENT, documents=[document])
        return Reply(edit=screens.screen(name, inputs, mode))

    async def text(self, user_id: int, text: str) -> Reply | None:
        return None

    def chart(self, inputs: Inputs, screens: EstimatorScreens) -> Document:
        from bot.estimate_chart import chart_png

        png = chart_png(inputs, screens.facts, screens.a)
        return Document(f"estimate-{screens.today.isoformat()}.png", png, CHART_CAPTION)
