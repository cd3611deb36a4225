"""The facts the roadmap cites, loaded from `flows/data/facts.toml` and validated at load time.

Every fact carries its source, a confidence mark and the date it was last checked, so the roadmap can cite it
and say "last checked on ..." when it is older than the data file allows.
"""

from __future__ import annotations

import tomllib
from datetime import date, timedelta
from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows.definition import DATA_DIR, Cond

Confidence = Literal["C", "S", "U"]
CONFIDENCE_WORDS: dict[str, str] = {"C": "confirmed", "S": "single source", "U": "uncertain"}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class Fact(_Model):
    text: str
    source: str
    confidence: Confidence
    checked: date | None = None


class DaysFact(Fact):
    days: int = Field(ge=0)


class AmountFact(Fact):
    amount: int = Field(ge=0)


class MonthsFact(Fact):
    months: tuple[int, ...] = Field(min_length=1)


class PercentFact(Fact):
    percent: int = Field(ge=0, le=100)


class Announcement(DaysFact):
    check_months: tuple[int, ...] = Field(min_length=1)
    check_day: int = Field(ge=1, le=28)


class Exam(_Model):
    fee: AmountFact
    frequency: MonthsFact
    announcement: Announcement
    deadline_gap: DaysFact
    review: DaysFact
    format: Fact
    pass_rate: PercentFact
    study: Fact


class Course(Fact):
    hours: int
    lead: DaysFact
    chiropractor: Fact


class Eligibility(_Model):
    license: Fact
    md_do: Fact
    psychologist: Fact
    other: Fact
    treatment: Fact
    conduct: Fact


class CaLicense(_Model):
    lead: DaysFact


class Appointment(_Model):
    fees: Fact
    offices: Fact
    time: Fact
    panels: Fact


class Reappointment(Fact):
    years: int


class FeeCode(_Model):
    code: str
    label: str
    amount: float
    unit: str


class Fees(Fact):
    codes: tuple[FeeCode, ...]
    modifiers: Fact


class Ime(_Model):
    fees: Fact
    poll: Fact
    lead: Fact
    license: Fact
    insurance: Fact
    reports: Fact
    referrals: Fact
    california: Fact


class StateRule(Fact):
    key: str
    name: str


class SpecialtyFit(_Model):
    keys: tuple[str, ...]
    qme: str
    ime: str
    source: str
    confidence: Confidence
    checked: date | None = None


class CaseType(_Model):
    key: str
    text: str


class ListFact(_Model):
    source: str
    confidence: Confidence
    checked: date | None = None


class Alternatives(ListFact):
    items: tuple[str, ...]
    show_when: Cond


class NotYet(ListFact):
    steps: tuple[str, ...]


class Modifier(_Model):
    key: str = Field(pattern=r"^[a-z]$")
    label: str
    factor: float = Field(ge=1.0)
    """A multiplier of at least 1: a modifier never lowers a fee."""


class Modifiers(Fact):
    items: tuple[Modifier, ...] = Field(min_length=1)


class PageCharges(_Model):
    percent: float = Field(ge=0, le=100)
    """Share of services that carried a record-page surcharge."""
    average: float = Field(ge=0)
    """Average page charge (dollars) where one was charged."""


class Pages(Fact):
    comprehensive: PageCharges
    follow_up: PageCharges
    supplemental: PageCharges


class ShareFact(Fact):
    percent: float = Field(ge=0, le=100)


class ImeRate(Fact):
    keys: tuple[str, ...]
    """Specialty keys of the flow; empty for the default band."""
    per: Literal["exam", "hour"]
    low: float = Field(gt=0)
    high: float = Field(gt=0)


class Estimator(_Model):
    """The sourced figures the income estimator uses (facts.md 3 and 9); its own assumptions live elsewhere."""

    modifiers: Modifiers
    pages: Pages
    supplemental_share: ShareFact
    psych_exam_day: Fact
    ime_time: Fact
    panels: Fact
    eval_time: Fact
    ime_rates: tuple[ImeRate, ...] = Field(min_length=1)

    def ime_rate(self, specialty: str | None) -> ImeRate:
        """The band for a specialty, or the default (empty keys) band."""
        for rate in self.ime_rates:
            if specialty is not None and specialty in rate.keys:
                return rate
        return next(rate for rate in self.ime_rates if not rate.keys)


class Meta(_Model):
    checked: date
    max_age_days: int = Field(ge=1)
    dwc_qme_page: str


class Facts(_Model):
    meta: Meta
    exam: Exam
    course: Course
    eligibility: Eligibility
    ca_license: CaLicense
    appointment: Appointment
    reappointment: Reappointment
    fees: Fees
    ime: Ime
    states: tuple[StateRule, ...]
    specialties: tuple[SpecialtyFit, ...]
    case_types: tuple[CaseType, ...]
    case_poll: Fact
    alternatives: Alternatives
    not_yet: NotYet
    estimator: Estimator

    @model_validator(mode="after")
    def _unique_keys(self) -> Facts:
        seen: set[str] = set()
        for fit in self.specialties:
            if seen & set(fit.keys):
                raise ValueError(f"specialties repeat {sorted(seen & set(fit.keys))}")
            seen |= set(fit.keys)
        return self

    def checked_on(self, fact: Fact | SpecialtyFit | ListFact) -> date:
        return fact.checked or self.meta.checked

    def is_stale(self, fact: Fact | SpecialtyFit | ListFact, today: date) -> bool:
        return today - self.checked_on(fact) > timedelta(days=self.meta.max_age_days)

    def specialty(self, key: str) -> SpecialtyFit | None:
        return next((fit for fit in self.specialties if key in fit.keys), None)

    def state(self, key: str) -> StateRule | None:
        return next((rule for rule in self.states if rule.key == key), None)


@cache
def load_facts() -> Facts:
    with (DATA_DIR / "facts.toml").open("rb") as fh:
        return Facts.model_validate(tomllib.load(fh))
