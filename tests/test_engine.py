"""Unit tests of the decision-flow state machine (`flows.engine`), with plain function calls."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from flows.conditions import Answer
from flows.engine import (
    CannotGoBack,
    FlowEngine,
    FlowState,
    InvalidAnswer,
    NotEditable,
    Progress,
    StaleAnswer,
    restore,
)

CA_ORTHO: dict[str, Answer] = {
    "profession": "md",
    "ca_license": "active",
    "other_states": ("NY",),
    "board": "certified",
    "stage": "established",
    "treatment_share": "third_plus",
    "specialty": "ortho",
    "income_style": "predictable",
    "hours": "10to20",
    "paperwork": "high",
    "admin_support": "yes",
    "testimony": "comfortable",
    "in_person_ca": "yes",
    "case_types": ("wc",),
}
ALL_KEYS = list(CA_ORTHO)
PREFERENCES = ["income_style", "hours", "paperwork", "admin_support", "testimony", "case_types"]


@pytest.fixture(scope="module")
def engine() -> FlowEngine:
    return FlowEngine()


def plan(**changes: Answer) -> dict[str, Answer]:
    return CA_ORTHO | changes


def psychologist_plan() -> dict[str, Answer]:
    return {k: v for k, v in plan(profession="psychologist", specialty="psychology").items() if k != "board"}


def advance(
    engine: FlowEngine, state: FlowState, answers: Mapping[str, Answer], stop_at: str | None = None
) -> FlowState:
    """Answer from `answers` until `stop_at` is on screen or the flow completes."""
    for _ in range(3 * len(ALL_KEYS)):
        if state.current is None or state.current == stop_at:
            return state
        state = engine.answer(state, state.current, answers[state.current])
        assert engine.is_valid(state)
    raise AssertionError("the flow did not end")


def asked(engine: FlowEngine, answers: Mapping[str, Answer]) -> list[str]:
    state = engine.start()
    keys: list[str] = []
    while state.current is not None:
        keys.append(state.current)
        state = engine.answer(state, state.current, answers[state.current])
    return keys


def complete(engine: FlowEngine, answers: Mapping[str, Answer]) -> FlowState:
    state = advance(engine, engine.start(), answers)
    assert state.complete
    return state


# -- start and progress ----------------------------------------------------------------------------------


def test_start_asks_the_license_as_step_1_of_14(engine: FlowEngine) -> None:
    state = engine.start()
    assert state.current == "profession"
    assert not state.complete
    assert dict(state.answers) == {}
    assert engine.progress(state) == Progress(1, 14)
    assert engine.is_valid(state)
    question = engine.current_question(state)
    assert question is not None and question.key == "profession"


def test_answer_moves_to_the_next_question(engine: FlowEngine) -> None:
    start = engine.start()
    state = engine.answer(start, "profession", "md")
    assert state.current == "ca_license"
    assert dict(state.answers) == {"profession": "md"}
    assert engine.progress(state) == Progress(2, 14)
    assert dict(start.answers) == {}, "moves return a new state and leave the old one alone"


def test_full_md_path_asks_all_fourteen_questions_in_order(engine: FlowEngine) -> None:
    assert asked(engine, CA_ORTHO) == ALL_KEYS
    state = complete(engine, CA_ORTHO)
    assert dict(state.answers) == CA_ORTHO
    assert engine.progress(state) == Progress(14, 14)
    assert engine.current_question(state) is None


def test_psychologist_has_no_board_question(engine: FlowEngine) -> None:
    state = engine.answer(engine.start(), "profession", "psychologist")
    assert engine.progress(state) == Progress(2, 13)
    answers = psychologist_plan()
    assert "board" not in asked(engine, answers)
    assert dict(complete(engine, answers).answers) == answers


def test_resident_path_has_six_questions(engine: FlowEngine) -> None:
    answers = plan(stage="resident")
    assert asked(engine, answers) == ["profession", "ca_license", "other_states", "board", "stage", "specialty"]
    state = complete(engine, answers)
    assert engine.progress(state) == Progress(6, 6)


def test_in_training_board_answer_shrinks_total_to_six(engine: FlowEngine) -> None:
    state = advance(engine, engine.start(), plan(board="training"), stop_at="stage")
    assert engine.progress(state) == Progress(5, 6)


def test_no_california_license_skips_qme_only_questions(engine: FlowEngine) -> None:
    answers = plan(ca_license="no")
    keys = asked(engine, answers)
    assert "treatment_share" not in keys
    assert "in_person_ca" not in keys
    assert len(keys) == 12


@pytest.mark.parametrize("stage", ["retired", "teaching"])
def test_retired_and_teaching_skip_treatment_share(engine: FlowEngine, stage: str) -> None:
    keys = asked(engine, plan(stage=stage))
    assert "treatment_share" not in keys
    assert "in_person_ca" in keys


def test_total_shrinks_and_grows_with_answers(engine: FlowEngine) -> None:
    state = engine.start()
    assert engine.progress(state).total == 14
    state = engine.answer(state, "profession", "psychologist")
    assert engine.progress(state).total == 13
    state = engine.answer(state, "ca_license", "no")
    assert engine.progress(state) == Progress(3, 11)
    state = engine.back(engine.back(state))
    assert state.current == "profession"
    state = engine.answer(state, "profession", "md")
    assert engine.progress(state) == Progress(2, 12)
    state = engine.answer(state, "ca_license", "active")
    assert engine.progress(state) == Progress(3, 14)


def test_non_physician_specialty_shows_only_for_non_md_do(engine: FlowEngine) -> None:
    specialty = engine.defn.question("specialty")
    for profession in ("md", "do"):
        shown = {o.key for o in engine.visible_options(specialty, {"profession": profession})}
        assert "non_physician" not in shown
        assert {"ortho", "psychiatry", "other"} <= shown
    for profession in ("psychologist", "dc", "acupuncturist", "other"):
        shown = {o.key for o in engine.visible_options(specialty, {"profession": profession})}
        assert "non_physician" in shown


def test_md_cannot_answer_non_physician_specialty(engine: FlowEngine) -> None:
    state = advance(engine, engine.start(), CA_ORTHO, stop_at="specialty")
    with pytest.raises(InvalidAnswer):
        engine.answer(state, "specialty", "non_physician")
    chiropractor = advance(engine, engine.start(), plan(profession="dc"), stop_at="specialty")
    state = engine.answer(chiropractor, "specialty", "non_physician")
    assert state.answers["specialty"] == "non_physician"


# -- back -------------------------------------------------------------------------------------------------


def test_back_keeps_the_answer_and_returns_to_previous_question(engine: FlowEngine) -> None:
    state = advance(engine, engine.start(), CA_ORTHO, stop_at="stage")
    before = dict(state.answers)
    state = engine.back(state)
    assert state.current == "board"
    assert dict(state.answers) == before
    assert engine.progress(state) == Progress(4, 14)
    assert engine.is_valid(state)


def test_back_skips_questions_that_do_not_apply(engine: FlowEngine) -> None:
    psychologist = psychologist_plan() | {"other_states": ("NY", "TX")}
    state = advance(engine, engine.start(), psychologist, stop_at="stage")
    state = engine.back(state)
    assert state.current == "other_states"
    assert state.draft == ("NY", "TX"), "a multi-choice answer is pre-selected on return"
    retired = advance(engine, engine.start(), plan(stage="retired"), stop_at="specialty")
    assert engine.back(retired).current == "stage"


def test_back_on_first_question_is_refused(engine: FlowEngine) -> None:
    with pytest.raises(CannotGoBack):
        engine.back(engine.start())
    state = engine.back(engine.answer(engine.start(), "profession", "md"))
    assert state.current == "profession"
    assert state.answers["profession"] == "md"
    with pytest.raises(CannotGoBack):
        engine.back(state)


def test_back_from_the_summary_is_refused(engine: FlowEngine) -> None:
    with pytest.raises(CannotGoBack):
        engine.back(complete(engine, CA_ORTHO))


def test_back_then_same_answer_keeps_later_answers(engine: FlowEngine) -> None:
    state = advance(engine, engine.start(), CA_ORTHO, stop_at="hours")
    before = dict(state.answers)
    while state.current != "ca_license":
        state = engine.back(state)
    state = engine.answer(state, "ca_license", "active")
    assert state.current == "other_states"
    assert dict(state.answers) == before
    state = advance(engine, state, CA_ORTHO)
    assert dict(state.answers) == CA_ORTHO


def test_back_then_different_answer_prunes_what_no_longer_applies(engine: FlowEngine) -> None:
    state = advance(engine, engine.start(), CA_ORTHO, stop_at="case_types")
    while state.current != "ca_license":
        state = engine.back(state)
    state = engine.answer(state, "ca_license", "no")
    assert state.current == "other_states"
    assert "treatment_share" not in state.answers
    assert "in_person_ca" not in state.answers
    not_yet_answered = ("treatment_share", "in_person_ca", "case_types")
    assert dict(state.answers) == {k: v for k, v in plan(ca_license="no").items() if k not in not_yet_answered}
    assert engine.is_valid(state)
    finished = advance(engine, state, plan(ca_license="no"))
    assert finished.complete
    assert set(finished.answers) == set(ALL_KEYS) - {"treatment_share", "in_person_ca"}


def test_back_then_md_to_psychologist_drops_the_board_answer(engine: FlowEngine) -> None:
    state = advance(engine, engine.start(), CA_ORTHO, stop_at="specialty")
    while state.current != "profession":
        state = engine.back(state)
    state = engine.answer(state, "profession", "psychologist")
    assert "board" not in state.answers
    assert state.answers["stage"] == "established"
    assert state.answers["treatment_share"] == "third_plus"


def test_changing_profession_drops_a_specialty_option_that_no_longer_shows(engine: FlowEngine) -> None:
    chiropractor = plan(profession="dc", specialty="non_physician")
    state = advance(engine, engine.start(), chiropractor, stop_at="income_style")
    while state.current != "profession":
        state = engine.back(state)
    state = engine.answer(state, "profession", "md")
    assert "specialty" not in state.answers
    assert engine.is_valid(state)


# -- edit from the summary ----------------------------------------------------------------------------------


def test_edit_changes_one_answer_and_returns_to_the_summary(engine: FlowEngine) -> None:
    done = complete(engine, CA_ORTHO)
    state = engine.edit(done, "hours")
    assert state.current == "hours"
    assert state.editing
    assert engine.progress(state) == Progress(9, 14)
    assert engine.is_valid(state)
    state = engine.answer(state, "hours", "gt20")
    assert state.complete
    assert not state.editing
    assert dict(state.answers) == plan(hours="gt20")


def test_edit_of_a_multi_choice_answer_starts_from_the_stored_selection(engine: FlowEngine) -> None:
    state = engine.edit(complete(engine, CA_ORTHO), "case_types")
    assert state.draft == ("wc",)
    state = engine.toggle(state, "case_types", "pi")
    state = engine.confirm(state, "case_types")
    assert state.complete
    assert dict(state.answers) == plan(case_types=("wc", "pi"))


def test_back_during_an_edit_returns_to_the_summary_unchanged(engine: FlowEngine) -> None:
    done = complete(engine, CA_ORTHO)
    state = engine.back(engine.edit(done, "paperwork"))
    assert state.complete
    assert not state.editing
    assert dict(state.answers) == CA_ORTHO


def test_edit_that_opens_questions_asks_them_before_the_summary(engine: FlowEngine) -> None:
    answers = plan(ca_license="no")
    done = complete(engine, answers)
    state = engine.answer(engine.edit(done, "ca_license"), "ca_license", "active")
    assert state.current == "treatment_share"
    assert state.editing
    state = engine.answer(state, "treatment_share", "third_plus")
    assert state.current == "in_person_ca"
    state = engine.answer(state, "in_person_ca", "yes")
    assert state.complete
    assert not state.editing
    assert dict(state.answers) == CA_ORTHO


def test_edit_psychologist_to_md_asks_board_and_keeps_the_other_answers(engine: FlowEngine) -> None:
    psychologist = psychologist_plan()
    done = complete(engine, psychologist)
    state = engine.answer(engine.edit(done, "profession"), "profession", "md")
    assert state.current == "board"
    assert state.editing
    assert dict(state.answers) == psychologist | {"profession": "md"}
    assert engine.is_valid(state)
    state = engine.answer(state, "board", "certified")
    assert state.complete, f"re-asked {state.current!r} although it was answered before the edit"
    assert dict(state.answers) == psychologist | {"profession": "md", "board": "certified"}


def test_edit_psychologist_to_md_in_training_drops_the_preferences(engine: FlowEngine) -> None:
    state = engine.answer(engine.edit(complete(engine, psychologist_plan()), "profession"), "profession", "md")
    state = engine.answer(state, "board", "training")
    assert state.complete
    assert set(state.answers) == {"profession", "ca_license", "other_states", "board", "stage", "specialty"}


def test_back_then_psychologist_to_md_keeps_later_answers(engine: FlowEngine) -> None:
    psychologist = psychologist_plan()
    state = advance(engine, engine.start(), psychologist, stop_at="case_types")
    before = dict(state.answers)
    while state.current != "profession":
        state = engine.back(state)
    state = engine.answer(state, "profession", "md")
    assert dict(state.answers) == before | {"profession": "md"}
    assert engine.is_valid(state)
    state = advance(engine, state, psychologist | {"profession": "md", "board": "certified"})
    assert dict(state.answers) == psychologist | {"profession": "md", "board": "certified"}


def test_edit_into_training_drops_the_preferences(engine: FlowEngine) -> None:
    state = engine.answer(engine.edit(complete(engine, CA_ORTHO), "board"), "board", "training")
    assert state.complete
    assert engine.is_valid(state)
    assert set(state.answers) == {"profession", "ca_license", "other_states", "board", "stage", "specialty"}


def test_edit_only_answered_applicable_questions(engine: FlowEngine) -> None:
    psychologist = complete(engine, psychologist_plan())
    for key in ("board", "no_such_question"):
        with pytest.raises(NotEditable):
            engine.edit(psychologist, key)
    with pytest.raises(NotEditable):
        engine.edit(engine.start(), "profession")


# -- multi-choice ---------------------------------------------------------------------------------------------


@pytest.fixture
def at_other_states(engine: FlowEngine) -> FlowState:
    state = advance(engine, engine.start(), CA_ORTHO, stop_at="other_states")
    assert state.current == "other_states"
    return state


def test_toggle_builds_a_selection_in_option_order(engine: FlowEngine, at_other_states: FlowState) -> None:
    state = engine.toggle(at_other_states, "other_states", "TX")
    state = engine.toggle(state, "other_states", "NY")
    assert state.draft == ("NY", "TX")
    assert state.current == "other_states"
    assert "other_states" not in state.answers
    assert engine.is_valid(state)
    state = engine.toggle(state, "other_states", "NY")
    assert state.draft == ("TX",)


def test_confirm_stores_the_selection_and_moves_on(engine: FlowEngine, at_other_states: FlowState) -> None:
    state = engine.toggle(engine.toggle(at_other_states, "other_states", "NV"), "other_states", "AZ")
    state = engine.confirm(state, "other_states")
    assert state.answers["other_states"] == ("NV", "AZ")
    assert state.current == "board"
    assert state.draft == ()


def test_none_is_exclusive(engine: FlowEngine, at_other_states: FlowState) -> None:
    state = engine.toggle(engine.toggle(at_other_states, "other_states", "NY"), "other_states", "TX")
    state = engine.toggle(state, "other_states", "none")
    assert state.draft == ("none",)
    state = engine.toggle(state, "other_states", "FL")
    assert state.draft == ("FL",)
    with pytest.raises(InvalidAnswer):
        engine.answer(at_other_states, "other_states", ("NY", "none"))


def test_confirm_with_nothing_selected_is_refused(engine: FlowEngine, at_other_states: FlowState) -> None:
    with pytest.raises(InvalidAnswer):
        engine.confirm(at_other_states, "other_states")
    emptied = engine.toggle(engine.toggle(at_other_states, "other_states", "NY"), "other_states", "NY")
    with pytest.raises(InvalidAnswer):
        engine.confirm(emptied, "other_states")
    with pytest.raises(InvalidAnswer):
        engine.answer(at_other_states, "other_states", ())


def test_multi_answer_given_at_once_is_normalised(engine: FlowEngine, at_other_states: FlowState) -> None:
    state = engine.answer(at_other_states, "other_states", ("TX", "NY", "TX"))
    assert state.answers["other_states"] == ("NY", "TX")
    single = engine.answer(at_other_states, "other_states", "none")
    assert single.answers["other_states"] == ("none",)


def test_toggle_and_confirm_refuse_single_choice_questions(engine: FlowEngine) -> None:
    state = engine.start()
    with pytest.raises(InvalidAnswer):
        engine.toggle(state, "profession", "md")
    with pytest.raises(InvalidAnswer):
        engine.confirm(state, "profession")


def test_toggle_refuses_unknown_options(engine: FlowEngine, at_other_states: FlowState) -> None:
    with pytest.raises(InvalidAnswer):
        engine.toggle(at_other_states, "other_states", "CA")


# -- refused moves ------------------------------------------------------------------------------------------


def test_answer_to_another_question_is_stale(engine: FlowEngine, at_other_states: FlowState) -> None:
    with pytest.raises(StaleAnswer):
        engine.answer(at_other_states, "ca_license", "no")
    with pytest.raises(StaleAnswer):
        engine.answer(at_other_states, "hours", "lt5")
    with pytest.raises(StaleAnswer):
        engine.toggle(at_other_states, "case_types", "wc")
    with pytest.raises(StaleAnswer):
        engine.confirm(at_other_states, "case_types")


def test_answer_after_completion_is_stale(engine: FlowEngine) -> None:
    done = complete(engine, CA_ORTHO)
    with pytest.raises(StaleAnswer):
        engine.answer(done, "case_types", ("pi",))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("profession", "MD"),
        ("profession", "surgeon"),
        ("profession", ("md",)),
        ("profession", ""),
        ("other_states", ("NY", "CA")),
        ("other_states", "zz"),
    ],
)
def test_unknown_options_are_invalid(engine: FlowEngine, key: str, value: Answer) -> None:
    state = advance(engine, engine.start(), CA_ORTHO, stop_at=key)
    with pytest.raises(InvalidAnswer):
        engine.answer(state, key, value)


# -- restore --------------------------------------------------------------------------------------------------


def test_restore_keeps_a_valid_state(engine: FlowEngine) -> None:
    state = engine.toggle(advance(engine, engine.start(), CA_ORTHO, stop_at="case_types"), "case_types", "pi")
    again = restore(engine, dict(state.answers), state.current, state.editing, state.draft)
    assert again == state
    done = complete(engine, CA_ORTHO)
    assert restore(engine, dict(done.answers), None) == done


def test_restore_drops_unknown_questions(engine: FlowEngine) -> None:
    state = restore(engine, {"profession": "md", "favourite_colour": "blue"}, "ca_license")
    assert dict(state.answers) == {"profession": "md"}
    assert state.current == "ca_license"
    assert engine.is_valid(state)


def test_restore_drops_unknown_option_values(engine: FlowEngine) -> None:
    stored: dict[str, Answer | list[str]] = {
        "profession": "md",
        "ca_license": "maybe",
        "other_states": ["NY", "Guam"],
        "board": "certified",
    }
    state = restore(engine, stored, "stage")
    assert dict(state.answers) == {"profession": "md", "board": "certified"}
    assert engine.is_valid(state)


def test_restore_moves_off_a_question_that_no_longer_applies(engine: FlowEngine) -> None:
    stored: dict[str, Answer | list[str]] = {"profession": "psychologist", "ca_license": "no", "other_states": ["TX"]}
    for current in ("board", "treatment_share", "in_person_ca", "question_removed_last_year"):
        state = restore(engine, stored, current)
        assert state.current == "stage"
        assert engine.is_valid(state)


def test_restore_moves_off_a_question_whose_rule_is_undecided(engine: FlowEngine) -> None:
    state = restore(engine, {"profession": "md", "ca_license": "bogus"}, "treatment_share")
    assert state.current == "ca_license"
    assert engine.is_valid(state)


def test_restore_turns_lists_into_multi_answers(engine: FlowEngine) -> None:
    stored: dict[str, Answer | list[str]] = {"profession": "md", "ca_license": "active", "other_states": ["NY", "TX"]}
    state = restore(engine, stored, "other_states", draft=["NY", "TX", "FL"])
    assert state.answers["other_states"] == ("NY", "TX")
    assert state.draft == ("NY", "TX", "FL")
    assert engine.is_valid(state)


def test_restore_replaces_a_draft_that_no_longer_fits(engine: FlowEngine) -> None:
    stored: dict[str, Answer | list[str]] = {"profession": "md", "ca_license": "active", "other_states": ["NY"]}
    state = restore(engine, stored, "other_states", draft=["NY", "Atlantis"])
    assert state.draft == ("NY",)
    assert engine.is_valid(state)
    single = restore(engine, {"profession": "md"}, "ca_license", draft=["active"])
    assert single.draft == ()
    assert engine.is_valid(single)


def test_restore_of_a_finished_flow_with_missing_answers_resumes(engine: FlowEngine) -> None:
    stored: dict[str, Answer | list[str]] = {k: list(v) if isinstance(v, tuple) else v for k, v in CA_ORTHO.items()}
    del stored["hours"]
    state = restore(engine, stored, None, editing=True)
    assert state.current == "hours"
    assert engine.is_valid(state)
    stored["hours"] = "10to20"
    done = restore(engine, stored, None, editing=True, draft=["wc"])
    assert done.complete
    assert not done.editing
    assert done.draft == ()
    assert engine.is_valid(done)
    assert dict(done.answers) == CA_ORTHO


def test_restore_of_an_empty_session_starts_over(engine: FlowEngine) -> None:
    assert restore(engine, {}, None) == engine.start()
    assert restore(engine, {}, "hours") == engine.start()


def test_restore_does_not_keep_none_combined_with_states(engine: FlowEngine) -> None:
    state = restore(engine, {"profession": "md", "ca_license": "active", "other_states": ["NY", "none"]}, "board")
    assert state.answers.get("other_states") != ("NY", "none")
    assert not engine.is_valid(FlowState(answers={**state.answers, "other_states": ("NY", "none")}, current="board"))
