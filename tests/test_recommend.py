"""The golden personas of shared/domain/decision.md and the eligibility edge cases, through `recommend()`.

Every answer set is first played through the engine, so the tests see exactly what the flow would store
(skipped questions absent, multi-choice answers as ordered tuples).
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from flows.conditions import Answer
from flows.definition import load_definition
from flows.engine import FlowEngine
from flows.recommend import Path, Recommendation, recommend

ENGINE = FlowEngine()

# Answers a persona leaves open; chosen so that none of them scores toward either path.
NEUTRAL: dict[str, Answer] = {
    "profession": "md",
    "ca_license": "active",
    "other_states": ("none",),
    "board": "certified",
    "stage": "established",
    "treatment_share": "third_plus",
    "specialty": "im",
    "income_style": "mix",
    "hours": "5to10",
    "paperwork": "medium",
    "admin_support": "could",
    "testimony": "comfortable",
    "in_person_ca": "yes",
    "case_types": ("wc", "pi"),
}


def play(answers: Mapping[str, Answer]) -> dict[str, Answer]:
    """Answer what the flow asks from `answers`, tapping multi-choice options one by one, and return what it stores."""
    state = ENGINE.start()
    for _ in ENGINE.defn.questions:
        key = state.current
        if key is None:
            break
        assert key in answers, f"the flow asked {key!r}, which the test does not answer"
        value = answers[key]
        if ENGINE.defn.question(key).multi:
            assert isinstance(value, tuple)
            for option in value:
                state = ENGINE.toggle(state, key, option)
            state = ENGINE.confirm(state, key)
        else:
            state = ENGINE.answer(state, key, value)
        assert ENGINE.is_valid(state)
    assert state.complete, f"the flow did not complete; it still asks {state.current!r}"
    return dict(state.answers)


def physician(**given: Answer) -> dict[str, Answer]:
    """A physician's stored answers: `given` over neutral defaults; every given answer must have been asked."""
    stored = play(NEUTRAL | given)
    assert set(given) <= set(stored), f"not asked: {sorted(set(given) - set(stored))}"
    return stored


def assert_in_words(rec: Recommendation) -> None:
    assert rec.reasons
    for text in (*rec.reasons, *rec.blockers):
        assert text.strip()
        assert "{" not in text and "}" not in text
        assert "(-)" not in text, "a reason names an answer the physician did not give"


# -- golden personas ------------------------------------------------------------------------------------------

PERSONAS: dict[str, tuple[dict[str, Answer], Path, list[str]]] = {
    "california orthopedic surgeon": (
        {
            "profession": "md",
            "ca_license": "active",
            "board": "certified",
            "stage": "established",
            "treatment_share": "third_plus",
            "specialty": "ortho",
            "income_style": "predictable",
            "hours": "10to20",
            "paperwork": "high",
            "admin_support": "yes",
            "case_types": ("wc",),
        },
        Path.QME,
        ["predictable volume", "workers' compensation interests you", "orthopedics"],
    ),
    "texas-only nephrologist": (
        {
            "profession": "md",
            "ca_license": "no",
            "other_states": ("TX",),
            "board": "certified",
            "specialty": "nephro",
            "income_style": "ceiling",
            "paperwork": "low",
            "case_types": ("pi", "ltd"),
        },
        Path.IME,
        ["Texas", "highest per-case ceiling", "personal injury, long-term disability", "paperwork light"],
    ),
    "california pm&r physician wanting both": (
        {
            "profession": "md",
            "ca_license": "active",
            "other_states": ("NV",),
            "board": "certified",
            "specialty": "pmr",
            "income_style": "mix",
            "hours": "10to20",
            "paperwork": "medium",
            "admin_support": "yes",
            "case_types": ("wc", "pi", "ltd"),
        },
        Path.HYBRID,
        ["mix of predictable and high-ceiling", "workers' compensation interests you"],
    ),
    "second-year resident": (
        {"profession": "md", "board": "training", "stage": "resident"},
        Path.NOT_YET,
        ["still in training", "resident or fellow"],
    ),
    "california psychiatrist, low paperwork tolerance": (
        {
            "profession": "md",
            "ca_license": "active",
            "board": "certified",
            "specialty": "psychiatry",
            "income_style": "ceiling",
            "paperwork": "low",
            "admin_support": "no",
            "case_types": ("pi", "ffd"),
        },
        Path.IME,
        ["highest per-case ceiling", "paperwork light", "personal injury, fitness-for-duty"],
    ),
    "nevada orthopedic surgeon willing to get a california license": (
        {
            "profession": "md",
            "ca_license": "willing",
            "other_states": ("NV",),
            "board": "certified",
            "specialty": "ortho",
            "income_style": "predictable",
            "case_types": ("wc",),
        },
        Path.HYBRID,
        ["Nevada", "once licensed in California", "predictable volume", "workers' compensation interests you"],
    ),
}


@pytest.mark.parametrize(("given", "path", "phrases"), list(PERSONAS.values()), ids=list(PERSONAS))
def test_golden_persona(given: dict[str, Answer], path: Path, phrases: list[str]) -> None:
    rec = recommend(physician(**given))
    assert rec.path is path, rec
    assert_in_words(rec)
    said = " | ".join(rec.reasons)
    for phrase in phrases:
        assert phrase in said, f"{phrase!r} not in the reasons: {said}"


def test_ca_orthopedic_surgeon_scores_and_strongest_reason_first() -> None:
    rec = recommend(physician(**PERSONAS["california orthopedic surgeon"][0]))
    assert rec.qme_possible and rec.ime_possible
    assert rec.qme_score > rec.ime_score
    assert rec.reasons[0] == "you want predictable volume and fixed fees"
    assert rec.blockers == ()


def test_texas_nephrologist_is_told_why_qme_is_out() -> None:
    stored = physician(**PERSONAS["texas-only nephrologist"][0])
    assert "treatment_share" not in stored and "in_person_ca" not in stored
    rec = recommend(stored)
    assert rec.ruled_out is Path.QME
    assert not rec.qme_possible
    assert rec.reasons[0] == "you can start IMEs where you are licensed (Texas)"
    assert any("California license" in b for b in rec.blockers)


def test_nevada_surgeon_is_bridged_from_ime_to_qme() -> None:
    rec = recommend(physician(**PERSONAS["nevada orthopedic surgeon willing to get a california license"][0]))
    assert rec.qme_score > rec.ime_score + load_definition().rules.decision.hybrid_margin
    assert rec.reasons[0] == (
        "you can start IMEs now where you are licensed (Nevada) and add QME work once licensed in California"
    )


def test_resident_is_told_what_would_change_it() -> None:
    stored = physician(**PERSONAS["second-year resident"][0])
    assert set(stored) == {"profession", "ca_license", "other_states", "board", "stage", "specialty"}
    rec = recommend(stored)
    assert rec.reasons == ("you are still in training (resident or fellow)",)
    assert any("Finish residency" in b for b in rec.blockers)


@pytest.mark.parametrize(
    "given",
    [{"board": "training"}, {"stage": "resident"}, {"profession": "do", "board": "residency", "stage": "resident"}],
)
def test_anyone_in_training_is_not_yet(given: dict[str, Answer]) -> None:
    assert recommend(physician(**given)).path is Path.NOT_YET


# -- eligibility edge cases ---------------------------------------------------------------------------------


def test_other_licensed_clinician_is_not_yet() -> None:
    stored = physician(profession="other", specialty="non_physician", income_style="predictable")
    assert "board" not in stored and "treatment_share" not in stored and "in_person_ca" not in stored
    rec = recommend(stored)
    assert rec.path is Path.NOT_YET
    assert not rec.qme_possible and not rec.ime_possible
    assert any("open to MDs, DOs" in b for b in rec.blockers)
    assert any("other licensed clinician" in b for b in rec.blockers)
    assert rec.reasons == rec.blockers
    assert_in_words(rec)


def test_no_license_anywhere_and_not_willing_is_not_yet() -> None:
    rec = recommend(physician(ca_license="no", other_states=("none",), income_style="ceiling"))
    assert rec.path is Path.NOT_YET
    assert any("don't plan to get one" in b for b in rec.blockers)
    assert any("you have none yet" in b for b in rec.blockers)
    assert_in_words(rec)


def test_under_a_third_of_time_in_treatment_is_ime_with_a_qme_blocker() -> None:
    stored = physician(
        treatment_share="under_third",
        income_style="predictable",
        case_types=("wc",),
        paperwork="high",
        specialty="ortho",
    )
    rec = recommend(stored)
    assert rec.path is Path.IME
    assert rec.ruled_out is Path.QME
    assert not rec.qme_possible and rec.ime_possible
    assert any("at least a third" in b for b in rec.blockers)
    assert_in_words(rec)


@pytest.mark.parametrize("stage", ["retired", "teaching"])
def test_retired_and_teaching_skip_treatment_share_and_stay_qme_eligible(stage: str) -> None:
    stored = physician(stage=stage, income_style="predictable", case_types=("wc",), paperwork="high")
    assert "treatment_share" not in stored
    rec = recommend(stored)
    assert rec.qme_possible
    assert rec.path is Path.QME


def test_not_willing_to_examine_in_california_rules_out_qme() -> None:
    rec = recommend(physician(in_person_ca="no", income_style="predictable", case_types=("wc",)))
    assert rec.path is Path.IME
    assert any("in person" in b for b in rec.blockers)


def test_completed_residency_without_certification_is_enough_for_qme() -> None:
    rec = recommend(physician(board="residency", income_style="predictable", case_types=("wc",)))
    assert rec.qme_possible
    assert rec.path is Path.QME


def test_willing_without_other_licenses_is_qme_only() -> None:
    rec = recommend(physician(ca_license="willing", other_states=("none",), income_style="ceiling"))
    assert rec.path is Path.QME
    assert rec.ruled_out is Path.IME
    assert "you hold or will get a California license" in rec.reasons


def test_acupuncturist_can_be_a_qme_but_not_an_ime() -> None:
    rec = recommend(physician(profession="acupuncturist", specialty="non_physician"))
    assert rec.path is Path.QME
    assert not rec.ime_possible
    assert any("acupuncturist" in b for b in rec.blockers)


@pytest.mark.parametrize(("hours", "path"), [("lt5", Path.QME), ("5to10", Path.HYBRID), ("gt20", Path.HYBRID)])
def test_mix_is_hybrid_only_with_five_hours_or_more(hours: str, path: Path) -> None:
    stored = physician(
        income_style="mix", hours=hours, case_types=("wc",), paperwork="high", admin_support="yes", specialty="ortho"
    )
    rec = recommend(stored)
    assert (rec.qme_score, rec.ime_score) == (7, 2)
    assert rec.path is path


@pytest.mark.parametrize(
    ("given", "scores", "path"),
    [
        ({"income_style": "ceiling", "case_types": ("wc",), "paperwork": "high"}, (3, 3), Path.HYBRID),
        ({"income_style": "predictable", "case_types": ("ltd",), "paperwork": "low"}, (3, 4), Path.HYBRID),
        ({"income_style": "predictable", "case_types": ("ltd",), "admin_support": "yes"}, (4, 2), Path.QME),
        ({"income_style": "ceiling", "case_types": ("wc",), "paperwork": "low"}, (2, 5), Path.IME),
    ],
    ids=["tie", "within-margin", "qme-by-two", "ime-by-three"],
)
def test_close_scores_are_hybrid(given: dict[str, Answer], scores: tuple[int, int], path: Path) -> None:
    assert load_definition().rules.decision.hybrid_margin == 1
    rec = recommend(physician(**given))
    assert (rec.qme_score, rec.ime_score) == scores
    assert rec.path is path
    assert_in_words(rec)


def test_reasons_are_capped() -> None:
    stored = physician(
        income_style="predictable", case_types=("wc",), paperwork="high", admin_support="yes", specialty="psychiatry"
    )
    rec = recommend(stored)
    assert rec.path is Path.QME
    assert len(rec.reasons) <= load_definition().rules.decision.max_reasons


def test_reasons_keep_the_capitals_of_labels() -> None:
    qme_only = recommend(physician(ca_license="willing", other_states=("none",), specialty="pmr"))
    said = " | ".join(qme_only.reasons)
    assert "your license (MD)" in said
    assert "PM&R is among the most requested QME panel specialties" in said
