"""The income estimator's arithmetic: properties over open-ended inputs, and the figures against facts.toml."""

from __future__ import annotations

import re
import tomllib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.estimator import EstimatorScreens, parse, token
from flows.definition import DATA_DIR
from flows.estimate import Inputs, cwci_pages, estimate, fee, load_assumptions, multiplier
from flows.facts import load_facts

FACTS = load_facts()
ASSUME = load_assumptions()
MODS = [m.key for m in FACTS.estimator.modifiers.items]
RAW = tomllib.loads((DATA_DIR / "facts.toml").read_text(encoding="utf-8"))

inputs = st.builds(
    Inputs,
    hours_per_week=st.floats(min_value=0, max_value=80, allow_nan=False),
    eval_hours=st.tuples(st.floats(1, 30), st.floats(1, 30)),
    mix=st.sampled_from([m.key for m in ASSUME.mixes]),
    pages=st.integers(0, 5000),
    testimony_hours=st.floats(0, 40),
    modifiers=st.frozensets(st.sampled_from(MODS)),
    panel_cap=st.integers(0, 40),
    specialty=st.sampled_from([None, "ortho", "psychiatry", "psychology", "nephro"]),
)
SETTINGS = settings(max_examples=150, deadline=None)


@SETTINGS
@given(inputs)
def test_zero_hours_gives_zero(x: Inputs) -> None:
    result = estimate(replace(x, hours_per_week=0.0))
    assert result.qme_monthly.low == result.qme_monthly.high == 0
    assert result.ime_monthly.low == result.ime_monthly.high == 0
    assert result.qme_yearly.high == result.ime_yearly.high == 0


@SETTINGS
@given(inputs, st.floats(min_value=0, max_value=40, allow_nan=False))
def test_more_hours_never_gives_less(x: Inputs, more: float) -> None:
    before, after = estimate(x), estimate(replace(x, hours_per_week=x.hours_per_week + more))
    for side in ("qme_monthly", "ime_monthly"):
        assert getattr(after, side).low >= getattr(before, side).low - 1e-6
        assert getattr(after, side).high >= getattr(before, side).high - 1e-6


@SETTINGS
@given(inputs, st.sampled_from(MODS))
def test_a_modifier_never_lowers_a_fee(x: Inputs, modifier: str) -> None:
    without = replace(x, modifiers=x.modifiers - {modifier})
    with_it = replace(x, modifiers=x.modifiers | {modifier})
    assert multiplier(FACTS, with_it.modifiers) >= multiplier(FACTS, without.modifiers)
    low, high = estimate(without).qme_monthly, estimate(with_it).qme_monthly
    assert high.low >= low.low - 1e-6 and high.high >= low.high - 1e-6


@SETTINGS
@given(inputs)
def test_the_range_is_ordered_and_the_token_round_trips(x: Inputs) -> None:
    result = estimate(x)
    assert result.qme_monthly.low <= result.qme_monthly.high + 1e-6
    assert result.ime_monthly.low <= result.ime_monthly.high
    # buttons carry whole numbers from the offered choices
    c = ASSUME.choices
    pair = ASSUME.eval_hours.choices[x.pages % len(ASSUME.eval_hours.choices)]
    sample = replace(
        x,
        hours_per_week=float(c.hours[int(x.hours_per_week) % len(c.hours)]),
        eval_hours=(float(pair[0]), float(pair[1])),
        pages=x.pages % (max(c.pages) + 1),
        testimony_hours=float(c.testimony[int(x.testimony_hours) % len(c.testimony)]),
        panel_cap=c.panels[x.panel_cap % len(c.panels)],
    )
    data = f"es:R:{token(sample)}:r"
    assert len(data.encode()) <= 64
    assert parse(data, ASSUME, FACTS, sample.specialty) == ("R", sample, "r")


def test_fee_codes_are_the_ones_in_facts_toml() -> None:
    codes = {c["code"]: c["amount"] for c in RAW["fees"]["codes"]}
    assert codes == {"ML201": 2015.0, "ML202": 1316.25, "ML203": 650.0, "ML204": 455.0, "ML205": 325.0,
                     "ML200": 503.75, "MLPRR": 3.0}  # fmt: skip
    for code, amount in codes.items():
        assert fee(FACTS, code).amount == amount


def test_modifiers_match_the_sourced_text_including_the_ame_combinations() -> None:
    text = FACTS.estimator.modifiers.text
    assert text == FACTS.fees.modifiers.text  # one wording, two places: the roadmap's and the estimator's
    for m in FACTS.estimator.modifiers.items:
        assert f"x{m.factor:.2f}" in text
    # the sources list AME on psychiatric as x2.35 and on toxicology/oncology as x1.85: increments add up
    assert multiplier(FACTS, {"p", "a"}) == pytest.approx(2.35)
    assert multiplier(FACTS, {"t", "a"}) == pytest.approx(1.85)
    assert "(AME x2.35)" in text and "(AME x1.85)" in text
    assert multiplier(FACTS, set()) == 1.0


def test_page_charges_are_the_cwci_figures() -> None:
    pages = FACTS.estimator.pages
    assert (pages.comprehensive.percent, pages.comprehensive.average) == (43.3, 1817.0)
    assert (pages.follow_up.percent, pages.follow_up.average) == (24.9, 1338.0)
    assert (pages.supplemental.percent, pages.supplemental.average) == (30.8, 1335.0)
    assert cwci_pages(FACTS, "comprehensive") == pytest.approx(0.433 * 1817 / 3)


def test_one_comprehensive_evaluation_is_paid_ml201_plus_pages() -> None:
    """Hours for exactly one comprehensive evaluation a month, nothing else in the mix: the fee schedule's price."""
    first = ASSUME.mixes[0].model_copy(update={"comprehensive": 1.0, "follow_up": 0.0, "supplemental": 0.0})
    only = ASSUME.model_copy(update={"mixes": (first,)})
    weekly = 8 * 12 / ASSUME.weeks_per_year  # 8 hours a month
    x = Inputs(weekly, (8.0, 8.0), only.mixes[0].key, 100, 0.0, frozenset({"p"}))
    result = estimate(x, FACTS, only)
    assert result.qme_monthly.low == pytest.approx(2015.0 * 2.0 + 100 * 3.0)  # the modifier does not touch MLPRR
    assert result.qme_evaluations.high == pytest.approx(1.0)


def test_ime_bands_come_from_facts_by_specialty() -> None:
    hourly = estimate(Inputs(12.0, (6.0, 10.0), "t", 0, 0.0, specialty="psychiatry"))
    month = 12 * ASSUME.weeks_per_year / 12
    assert (hourly.ime_monthly.low, hourly.ime_monthly.high) == pytest.approx((350 * month, 1000 * month))
    per_exam = estimate(Inputs(12.0, (6.0, 10.0), "t", 0, 0.0, specialty="ortho"))
    exams = month / ASSUME.ime_hours.hours
    assert (per_exam.ime_monthly.low, per_exam.ime_monthly.high) == pytest.approx((750 * exams, 2500 * exams))
    psychologist = estimate(Inputs(12.0, (6.0, 10.0), "t", 0, 0.0, specialty="psychology"))
    assert psychologist.ime_rate.low == 250 and psychologist.ime_rate.high == 600


def test_a_panel_cap_limits_new_evaluations() -> None:
    free = estimate(Inputs(40.0, (6.0, 10.0), "c", 0, 0.0))
    capped = estimate(Inputs(40.0, (6.0, 10.0), "c", 0, 0.0, panel_cap=2))
    mix = ASSUME.mix("c")
    assert mix is not None
    assert capped.qme_evaluations.high * mix.comprehensive == pytest.approx(2)
    assert capped.qme_monthly.high < free.qme_monthly.high


def test_every_number_in_the_message_is_sourced_or_labelled_ours() -> None:
    screens = EstimatorScreens(FACTS, ASSUME, FACTS.meta.checked)
    x, note = screens.defaults({"hours": "10to20", "specialty": "psychiatry"})
    assert note is not None and "15 h" in note and x.modifiers == frozenset({"p"}) and x.eval_hours == (10.0, 16.0)
    screen = screens.result(x, note)
    text = screen.text
    assert len(text) <= 4096
    assert "estimate, not advice" in text
    assert "ML201 $2,015" in text and "ML202 $1,316.25" in text and "MLPRR $3" in text
    assert "forensicexpertpro.com" in text and "checked 29 Nov 2026" in text
    assert "Our assumptions" in text and "10-16 hours" in text
    assert all(len(b.data.encode()) <= 64 for b in screen.buttons())


def test_forged_or_out_of_range_buttons_are_refused() -> None:
    good = "es:R:15.6-10.t.262.0.0._:r"
    assert parse(good, ASSUME, FACTS, None) is not None
    bad_data = [
        "es:R:15.6-11.t.262.0.0._:r",  # hours per evaluation not offered
        "es:R:15.6-10.z.262.0.0._:r",  # no such mix
        "es:R:999.6-10.t.262.0.0._:r",  # hours out of range
        "es:R:15.6-10.t.262.3.0._:r",  # testimony not offered
        "es:R:15.6-10.t.262.0.0.q:r",  # no such modifier
        "es:X:15.6-10.t.262.0.0._:r",  # no such screen
        "es:R",
    ]
    for bad in bad_data:
        assert parse(bad, ASSUME, FACTS, None) is None, bad


def test_the_chart_is_a_png() -> None:
    from bot.estimate_chart import chart_png

    png = chart_png(Inputs(15.0, (6.0, 10.0), "t", 262, 0.0), FACTS, ASSUME)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    assert re.search(rb"IEND", png)
