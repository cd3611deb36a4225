"""A monthly and yearly gross range for QME work (official fee schedule) next to IME work (reported fees).

Pure arithmetic on two data files: `facts.toml` for every sourced figure (fee codes, modifiers, page charges,
IME fees) and `estimator.toml` for the estimator's own assumptions (time per evaluation, case mixes), which
the bot always labels as assumptions. Nothing here is advice: it turns stated inputs into a range.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows.definition import DATA_DIR
from flows.facts import Facts, FeeCode, ImeRate, load_facts


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HoursFromFlow(_Model):
    model_config = ConfigDict(frozen=True, extra="allow")
    text: str

    def hours_for(self, band: str) -> int | None:
        value = (self.model_extra or {}).get(band)
        return int(value) if isinstance(value, int) else None


class Choices(_Model):
    hours: tuple[int, ...]
    panels: tuple[int, ...]
    testimony: tuple[int, ...]
    pages: tuple[int, ...]
    chart_max_hours: int = Field(gt=0)


class EvalHours(_Model):
    text: str
    choices: tuple[tuple[int, int], ...]
    default: tuple[int, int]
    by_specialty: dict[str, tuple[int, int]] = {}

    def for_specialty(self, specialty: str | None) -> tuple[int, int]:
        return self.by_specialty.get(specialty or "", self.default)


class ServiceTime(_Model):
    text: str
    follow_up: float = Field(gt=0, le=1)
    supplemental: float = Field(gt=0, le=1)


class Mix(_Model):
    key: str = Field(pattern=r"^[a-z]$")
    label: str
    comprehensive: float = Field(ge=0, le=1)
    follow_up: float = Field(ge=0, le=1)
    supplemental: float = Field(ge=0, le=1)
    text: str

    @model_validator(mode="after")
    def _sums_to_one(self) -> Mix:
        if abs(self.comprehensive + self.follow_up + self.supplemental - 1) > 1e-9:
            raise ValueError(f"mix {self.key!r}: shares must sum to 1")
        return self


class ImeHours(_Model):
    hours: float = Field(gt=0)
    text: str


class Assumptions(_Model):
    """The estimator's own assumptions (estimator.toml)."""

    weeks_per_year: int = Field(gt=0)
    hours_from_flow: HoursFromFlow
    choices: Choices
    eval_hours: EvalHours
    service_time: ServiceTime
    mixes: tuple[Mix, ...] = Field(min_length=1)
    ime_hours: ImeHours

    def mix(self, key: str) -> Mix | None:
        return next((m for m in self.mixes if m.key == key), None)


@cache
def load_assumptions() -> Assumptions:
    with (DATA_DIR / "estimator.toml").open("rb") as fh:
        return Assumptions.model_validate(tomllib.load(fh))


@dataclass(frozen=True)
class Inputs:
    """What the physician said (or accepted): everything the estimate depends on."""

    hours_per_week: float
    eval_hours: tuple[float, float]
    """Hours a comprehensive evaluation takes in all, (fast, slow)."""
    mix: str
    pages: int
    """Record pages beyond the 200 included, per comprehensive evaluation."""
    testimony_hours: float
    """Hours of testimony (ML204) a month, taken out of the hours given."""
    modifiers: frozenset[str] = frozenset()
    panel_cap: int = 0
    """At most this many new (comprehensive) evaluations a month, from panels (0: as many as the hours allow)."""
    specialty: str | None = None


@dataclass(frozen=True)
class Range:
    low: float
    high: float

    def times(self, factor: float) -> Range:
        return Range(self.low * factor, self.high * factor)


@dataclass(frozen=True)
class Estimate:
    hours_per_month: float
    qme_monthly: Range
    qme_evaluations: Range
    """Services (comprehensive, follow-up, supplemental) a month, at the slow and fast pace."""
    ime_monthly: Range
    ime_rate: ImeRate
    multiplier: float

    @property
    def qme_yearly(self) -> Range:
        return self.qme_monthly.times(12)

    @property
    def ime_yearly(self) -> Range:
        return self.ime_monthly.times(12)


def fee(facts: Facts, code: str) -> FeeCode:
    return next(c for c in facts.fees.codes if c.code == code)


def multiplier(facts: Facts, keys: Iterable[str]) -> float:
    """Combined modifier: 1 plus each modifier's increment, which gives the AME combinations the sources list
    (psychiatric 2.00 + AME 0.35 = 2.35; toxicology 1.50 + AME 0.35 = 1.85). Never below 1."""
    chosen = set(keys)
    return 1.0 + sum(m.factor - 1.0 for m in facts.estimator.modifiers.items if m.key in chosen)


def cwci_pages(facts: Facts, service: str) -> float:
    """Pages beyond the included ones an average service of this kind is paid for (our arithmetic on CWCI's
    share of services with a surcharge times the average surcharge, at the MLPRR rate)."""
    charges = getattr(facts.estimator.pages, service)
    return float(charges.percent / 100 * charges.average / fee(facts, "MLPRR").amount)


def hours_per_month(hours_per_week: float, assumptions: Assumptions) -> float:
    return hours_per_week * assumptions.weeks_per_year / 12


def estimate(inputs: Inputs, facts: Facts | None = None, assumptions: Assumptions | None = None) -> Estimate:
    facts = facts or load_facts()
    assumptions = assumptions or load_assumptions()
    mix = assumptions.mix(inputs.mix) or assumptions.mixes[0]
    hours = max(0.0, hours_per_month(inputs.hours_per_week, assumptions))
    factor = multiplier(facts, inputs.modifiers)
    page_rate = fee(facts, "MLPRR").amount

    testimony = min(max(0.0, inputs.testimony_hours), hours)
    testimony_pay = testimony * fee(facts, "ML204").amount * factor
    left = hours - testimony

    # One "unit" is a mix-weighted service: its fee and its time.
    unit_fee = (
        mix.comprehensive * (fee(facts, "ML201").amount * factor + max(0, inputs.pages) * page_rate)
        + mix.follow_up * (fee(facts, "ML202").amount * factor + cwci_pages(facts, "follow_up") * page_rate)
        + mix.supplemental * (fee(facts, "ML203").amount * factor + cwci_pages(facts, "supplemental") * page_rate)
    )
    share = mix.comprehensive + mix.follow_up * assumptions.service_time.follow_up
    share += mix.supplemental * assumptions.service_time.supplemental

    def services(eval_hours: float) -> float:
        count = left / (share * eval_hours) if eval_hours > 0 else 0.0
        if inputs.panel_cap > 0 and mix.comprehensive > 0:
            count = min(count, inputs.panel_cap / mix.comprehensive)  # panels bring the comprehensive evaluations
        return count

    fast, slow = sorted(inputs.eval_hours)
    done = Range(services(slow), services(fast))
    qme = Range(done.low * unit_fee + testimony_pay, done.high * unit_fee + testimony_pay)

    rate = facts.estimator.ime_rate(inputs.specialty)
    if rate.per == "hour":
        ime = Range(hours * rate.low, hours * rate.high)
    else:
        exams = hours / assumptions.ime_hours.hours
        ime = Range(exams * rate.low, exams * rate.high)
    return Estimate(hours, qme, done, ime, rate, factor)


def curve(inputs: Inputs, max_hours: int) -> list[tuple[int, Estimate]]:
    """The estimate at each whole number of hours a week from 0 to max_hours, for the chart."""
    from dataclasses import replace

    return [(h, estimate(replace(inputs, hours_per_week=float(h)))) for h in range(max_hours + 1)]
