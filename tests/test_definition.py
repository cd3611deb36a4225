"""The shipped flow data loads, and `build_definition()` rejects broken data with a message that names the mistake."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from flows.conditions import Condition, referenced_keys, referenced_names, referenced_values
from flows.definition import DATA_DIR, FlowDefinition, build_definition, definition_problems, load_definition

Data = dict[str, Any]


def shipped() -> tuple[Data, Data]:
    """Fresh copies of the two data files, safe to mutate."""
    with (DATA_DIR / "questions.toml").open("rb") as fh:
        questions = tomllib.load(fh)
    with (DATA_DIR / "rules.toml").open("rb") as fh:
        rules = tomllib.load(fh)
    return copy.deepcopy(questions), copy.deepcopy(rules)


def question(data: Data, key: str) -> Data:
    found: Data = next(q for q in data["questions"] if q["key"] == key)
    return found


def every_condition(defn: FlowDefinition) -> list[tuple[str, Condition]]:
    found: list[tuple[str, Condition]] = [(f"condition {k}", c) for k, c in defn.conditions.items()]
    for q in defn.questions:
        if q.when is not None:
            found.append((f"question {q.key}", q.when))
        found += [(f"option {q.key}.{o.key}", o.when) for o in q.options if o.when is not None]
    rules = defn.rules
    found += [(f"not_yet[{i}]", r.when) for i, r in enumerate(rules.not_yet)]
    found += [(f"qme_requires[{i}]", r.when) for i, r in enumerate(rules.qme_requires)]
    found += [(f"ime_requires[{i}]", r.when) for i, r in enumerate(rules.ime_requires)]
    found += [(f"scores[{i}]", r.when) for i, r in enumerate(rules.scores)]
    found.append(("bridge", rules.bridge.when))
    return found


# -- the shipped data -----------------------------------------------------------------------------------------


def test_shipped_definition_loads() -> None:
    defn = load_definition()
    assert [q.key for q in defn.questions] == [
        "profession",
        "ca_license",
        "other_states",
        "board",
        "stage",
        "treatment_share",
        "specialty",
        "income_style",
        "hours",
        "paperwork",
        "admin_support",
        "testimony",
        "in_person_ca",
        "case_types",
    ]
    assert set(defn.rules.paths) == {"qme", "ime", "hybrid", "not_yet"}
    assert definition_problems(defn) == []
    assert load_definition() is defn, "loaded once per process"


def test_shipped_data_builds_from_the_raw_files() -> None:
    assert build_definition(*shipped()) == load_definition()


def test_multi_choice_questions() -> None:
    defn = load_definition()
    assert {q.key for q in defn.questions if q.multi} == {"other_states", "case_types"}
    assert defn.question("other_states").exclusive == ("none",)
    states = {o.key for o in defn.question("other_states").options}
    assert {"NY", "WA", "TX", "PA", "FL", "CO", "NV", "AZ", "OR", "another", "none"} <= states


def test_every_condition_references_known_questions_and_options() -> None:
    defn = load_definition()
    options = {(q.key, o.key) for q in defn.questions for o in q.options}
    conditions = every_condition(defn)
    assert len(conditions) > 20
    for where, cond in conditions:
        assert referenced_names(cond) <= set(defn.conditions), where
        assert referenced_values(cond, defn.conditions) <= options, where


def test_skip_rules_read_only_earlier_questions() -> None:
    defn = load_definition()
    for index, q in enumerate(defn.questions):
        earlier = {p.key for p in defn.questions[:index]}
        conds = [q.when] if q.when is not None else []
        conds += [o.when for o in q.options if o.when is not None]
        for cond in conds:
            assert referenced_keys(cond, defn.conditions) <= earlier, q.key


def test_reason_templates_name_only_questions() -> None:
    defn = load_definition()
    keys = {q.key for q in defn.questions}
    rules = defn.rules
    templates = [r.reason for r in rules.not_yet] + [r.reason for r in rules.scores] + [rules.bridge.reason]
    templates += [t for r in (*rules.qme_requires, *rules.ime_requires) for t in (r.met, r.unmet) if t]
    for template in templates:
        named = {part.split("}")[0] for part in template.split("{")[1:]}
        assert named <= keys, template


# -- broken data is rejected ----------------------------------------------------------------------------------


def _unknown_condition_name(q: Data, r: Data) -> None:
    question(q, "board")["when"] = "md_or_dos"


def _unknown_condition_name_in_rules(q: Data, r: Data) -> None:
    r["bridge"]["when"] = "license_brigde"


def _unknown_option_in_condition(q: Data, r: Data) -> None:
    q["conditions"]["md_or_do"] = {"key": "profession", "in": ["md", "do", "mbbs"]}


def _unknown_option_in_rule(q: Data, r: Data) -> None:
    r["scores"][0]["when"] = {"key": "income_style", "in": ["predictible"]}


def _unknown_question_in_condition(q: Data, r: Data) -> None:
    question(q, "hours")["when"] = {"key": "hour", "in": ["lt5"]}


def _reads_a_later_question(q: Data, r: Data) -> None:
    question(q, "board")["when"] = {"key": "stage", "in": ["established"]}


def _reads_itself(q: Data, r: Data) -> None:
    question(q, "hours")["when"] = {"key": "hours", "not_in": ["lt5"]}


def _option_reads_a_later_question(q: Data, r: Data) -> None:
    question(q, "specialty")["options"][0]["when"] = {"key": "hours", "in": ["lt5"]}


def _named_condition_reads_a_later_question(q: Data, r: Data) -> None:
    q["conditions"]["md_or_do"] = {"key": "case_types", "in": ["wc"]}


def _duplicate_option_keys(q: Data, r: Data) -> None:
    question(q, "hours")["options"].append({"key": "lt5", "label": "Less than 5"})


def _exclusive_not_multi(q: Data, r: Data) -> None:
    question(q, "board")["exclusive"] = ["training"]


def _exclusive_not_an_option(q: Data, r: Data) -> None:
    question(q, "other_states")["exclusive"] = ["nowhere"]


def _duplicate_question_keys(q: Data, r: Data) -> None:
    q["questions"].append(copy.deepcopy(question(q, "testimony")))


def _condition_declared_twice(q: Data, r: Data) -> None:
    r["conditions"]["md_or_do"] = {"key": "profession", "in": ["md"]}


def _unknown_condition_form(q: Data, r: Data) -> None:
    question(q, "board")["when"] = {"key": "profession", "is": "md"}


def _empty_in_list(q: Data, r: Data) -> None:
    question(q, "board")["when"] = {"key": "profession", "in": []}


def _missing_path(q: Data, r: Data) -> None:
    del r["paths"]["hybrid"]


def _unknown_mix_hours(q: Data, r: Data) -> None:
    r["decision"]["mix_hybrid_hours"] = ["5to10", "over9000"]


def _unknown_field(q: Data, r: Data) -> None:
    question(q, "hours")["skip_if"] = "in_training"


def _one_option(q: Data, r: Data) -> None:
    question(q, "hours")["options"] = question(q, "hours")["options"][:1]


BREAKAGES: list[tuple[Callable[[Data, Data], None], str]] = [
    (_unknown_condition_name, r"question board names unknown condition\(s\) \['md_or_dos'\]"),
    (_unknown_condition_name_in_rules, r"bridge names unknown condition\(s\) \['license_brigde'\]"),
    (_unknown_option_in_condition, r"condition md_or_do names unknown answer profession=mbbs"),
    (_unknown_option_in_rule, r"score rule names unknown answer income_style=predictible"),
    (_unknown_question_in_condition, r"question hours names unknown answer hour=lt5"),
    (_reads_a_later_question, r"question board depends on itself or later questions \['stage'\]"),
    (_reads_itself, r"question hours depends on itself or later questions \['hours'\]"),
    (_option_reads_a_later_question, r"question specialty depends on itself or later questions \['hours'\]"),
    (_named_condition_reads_a_later_question, r"question board depends on .* \['case_types'\]"),
    (_duplicate_option_keys, r"question 'hours' repeats an option key"),
    (_exclusive_not_multi, r"question 'board': only multi-choice questions have exclusive options"),
    (_exclusive_not_an_option, r"exclusive options must be among its options"),
    (_duplicate_question_keys, r"question keys repeat"),
    (_condition_declared_twice, r"conditions declared twice: \['md_or_do'\]"),
    (_unknown_condition_form, r"unknown condition form"),
    (_empty_in_list, r"non-empty list of option keys"),
    (_missing_path, r"rules.paths lacks 'hybrid'"),
    (_unknown_mix_hours, r"mix_hybrid_hours names unknown hours options"),
    (_unknown_field, r"skip_if\s+Extra inputs are not permitted"),
    (_one_option, r"options\s+Tuple should have at least 2 items"),
]


@pytest.mark.parametrize(("breakage", "message"), BREAKAGES, ids=[b.__name__.strip("_") for b, _ in BREAKAGES])
def test_broken_data_is_rejected(breakage: Callable[[Data, Data], None], message: str) -> None:
    questions, rules = shipped()
    breakage(questions, rules)
    with pytest.raises(ValueError, match=message):
        build_definition(questions, rules)


def test_validation_errors_are_value_errors() -> None:
    """The loader promises ValueError; pydantic's ValidationError must stay one."""
    questions, rules = shipped()
    _duplicate_option_keys(questions, rules)
    with pytest.raises(ValidationError):
        build_definition(questions, rules)
    assert issubclass(ValidationError, ValueError)


def test_mutations_do_not_leak_into_the_shipped_definition() -> None:
    questions, rules = shipped()
    _exclusive_not_multi(questions, rules)
    with pytest.raises(ValueError):
        build_definition(questions, rules)
    assert load_definition().question("board").exclusive == ()
    assert build_definition(*shipped()) == load_definition()


def test_self_referencing_condition_is_rejected_with_a_clear_message() -> None:
    questions, rules = shipped()
    questions["conditions"]["in_training"] = {"any": ["not_in_training", {"key": "stage", "in": ["resident"]}]}
    with pytest.raises(ValueError, match=r"loop: (not_)?in_training -> "):
        build_definition(questions, rules)


def test_a_condition_naming_itself_is_rejected() -> None:
    questions, rules = shipped()
    questions["conditions"]["md_or_do"] = {"not": "md_or_do"}
    with pytest.raises(ValueError, match="md_or_do -> md_or_do"):
        build_definition(questions, rules)
