"""Load and validate the flow's data files (questions and recommendation rules) into typed objects.

Everything the engine and the recommender know about questions, options, skip rules, weights and the words
shown to a physician comes from `flows/data/*.toml`; a mistake there fails loudly at load time.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from flows.conditions import Answer, Condition, evaluate, parse_condition, referenced_names, referenced_values

DATA_DIR = Path(__file__).parent / "data"

Cond = Annotated[Condition, BeforeValidator(parse_condition)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class Option(_Model):
    key: str = Field(pattern=r"^[A-Za-z0-9_]{1,16}$")
    label: str = Field(min_length=1, max_length=48)
    when: Cond | None = None


class Question(_Model):
    key: str = Field(pattern=r"^[a-z_]{1,20}$")
    title: str
    text: str
    help: str | None = None
    multi: bool = False
    columns: int = Field(default=1, ge=1, le=4)
    exclusive: tuple[str, ...] = ()
    names: bool = False
    """Option labels are proper names (states): keep their capitals inside reason sentences."""
    when: Cond | None = None
    options: tuple[Option, ...] = Field(min_length=2)

    @model_validator(mode="after")
    def _check_options(self) -> Question:
        keys = [o.key for o in self.options]
        if len(keys) != len(set(keys)):
            raise ValueError(f"question {self.key!r} repeats an option key")
        if not set(self.exclusive) <= set(keys):
            raise ValueError(f"question {self.key!r}: exclusive options must be among its options")
        if self.exclusive and not self.multi:
            raise ValueError(f"question {self.key!r}: only multi-choice questions have exclusive options")
        return self

    def option(self, key: str) -> Option | None:
        return next((o for o in self.options if o.key == key), None)

    def label_of(self, answer: Answer) -> str:
        parts = answer if isinstance(answer, tuple) else (answer,)
        labels = [opt.label if (opt := self.option(p)) else p for p in parts]
        return ", ".join(labels)


class PathText(_Model):
    title: str
    summary: str


class NotYetRule(_Model):
    when: Cond
    reason: str
    change: str


class Requirement(_Model):
    when: Cond
    met: str | None = None
    unmet: str


class ScoreRule(_Model):
    when: Cond
    qme: int = 0
    ime: int = 0
    flag: str | None = None
    reason: str


class Decision(_Model):
    hybrid_margin: int = Field(ge=0)
    mix_hybrid_hours: tuple[str, ...]
    max_reasons: int = Field(ge=1)


class Bridge(_Model):
    when: Cond
    reason: str


class Rules(_Model):
    paths: dict[str, PathText]
    not_yet: tuple[NotYetRule, ...]
    qme_requires: tuple[Requirement, ...]
    ime_requires: tuple[Requirement, ...]
    scores: tuple[ScoreRule, ...]
    decision: Decision
    bridge: Bridge


class FlowDefinition(_Model):
    """The questions in order, named conditions from both files, and the rules."""

    questions: tuple[Question, ...]
    conditions: dict[str, Cond]
    rules: Rules

    @model_validator(mode="after")
    def _check_references(self) -> FlowDefinition:
        problems = definition_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def question(self, key: str) -> Question:
        for q in self.questions:
            if q.key == key:
                return q
        raise KeyError(key)

    def has_question(self, key: str) -> bool:
        return any(q.key == key for q in self.questions)

    def holds(self, cond: Condition, answers: Mapping[str, Answer]) -> bool:
        """Two-valued evaluation for rules, where an unanswered question simply has no answer."""
        return evaluate(cond, answers, self.conditions) is True

    def judge(self, cond: Condition, answers: Mapping[str, Answer]) -> bool | None:
        """Three-valued evaluation where a question without an answer is unknown rather than "no"."""
        return evaluate(cond, answers, self.conditions, lambda key: key not in answers)

    def fill(self, template: str, answers: Mapping[str, Answer]) -> str:
        """Put the physician's own option labels into a reason template."""
        labels: dict[str, str] = {}
        for q in self.questions:
            if q.key in answers:
                value = answers[q.key]
                parts = value if isinstance(value, tuple) else (value,)
                words = [q.label_of(part) for part in parts]
                labels[q.key] = ", ".join(words if q.names else [_in_sentence(w) for w in words])
        return template.format_map(_Labels(labels))


def _in_sentence(label: str) -> str:
    """A label as it reads mid-sentence: "Orthopedics" -> "orthopedics", but "MD" and "PM&R" stay."""
    if len(label) > 1 and label[1].islower():
        return label[0].lower() + label[1:]
    return label


class _Labels(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "-"


def _all_conditions(defn: FlowDefinition) -> list[tuple[str, Condition]]:
    found: list[tuple[str, Condition]] = [(f"condition {k}", c) for k, c in defn.conditions.items()]
    for q in defn.questions:
        if q.when is not None:
            found.append((f"question {q.key}", q.when))
        found += [(f"option {q.key}.{o.key}", o.when) for o in q.options if o.when is not None]
    r = defn.rules
    found += [("not_yet rule", x.when) for x in r.not_yet]
    found += [("qme requirement", x.when) for x in r.qme_requires]
    found += [("ime requirement", x.when) for x in r.ime_requires]
    found += [("score rule", x.when) for x in r.scores]
    found.append(("bridge", r.bridge.when))
    return found


def definition_problems(defn: FlowDefinition) -> list[str]:
    """Static checks that keep the data honest: names exist, options exist, rules read only earlier answers."""
    problems: list[str] = []
    keys = [q.key for q in defn.questions]
    if len(keys) != len(set(keys)):
        problems.append("question keys repeat")
    options = {(q.key, o.key) for q in defn.questions for o in q.options}
    cycle = _named_cycle(defn.conditions)
    if cycle:
        return [*problems, f"named conditions refer to each other in a loop: {' -> '.join(cycle)}"]
    for where, cond in _all_conditions(defn):
        missing = referenced_names(cond) - set(defn.conditions)
        if missing:
            problems.append(f"{where} names unknown condition(s) {sorted(missing)}")
            continue
        for key, value in referenced_values(cond, defn.conditions):
            if (key, value) not in options:
                problems.append(f"{where} names unknown answer {key}={value}")
    if problems:
        return problems
    from flows.conditions import referenced_keys  # local: only needed once the names resolve

    for index, q in enumerate(defn.questions):
        conds = [q.when] if q.when is not None else []
        conds += [o.when for o in q.options if o.when is not None]
        later = set(keys[index:])
        for cond in conds:
            bad = referenced_keys(cond, defn.conditions) & later
            if bad:
                problems.append(f"question {q.key} depends on itself or later questions {sorted(bad)}")
    for path in ("qme", "ime", "hybrid", "not_yet"):
        if path not in defn.rules.paths:
            problems.append(f"rules.paths lacks {path!r}")
    hours = {o.key for o in defn.question("hours").options} if "hours" in keys else set()
    if not set(defn.rules.decision.mix_hybrid_hours) <= hours:
        problems.append("decision.mix_hybrid_hours names unknown hours options")
    return problems


def _named_cycle(named: Mapping[str, Condition]) -> list[str]:
    """A loop among named conditions (a -> b -> a), which would make evaluation recurse forever; [] if none."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str]:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done or name not in named:
            return []
        for ref in sorted(referenced_names(named[name])):
            found = visit(ref, [*path, name])
            if found:
                return found
        done.add(name)
        return []

    for start in named:
        found = visit(start, [])
        if found:
            return found
    return []


def _read(name: str) -> dict[str, Any]:
    with (DATA_DIR / name).open("rb") as fh:
        return tomllib.load(fh)


def build_definition(questions: Mapping[str, Any], rules: Mapping[str, Any]) -> FlowDefinition:
    """Combine the two files; the named conditions of both share one namespace."""
    q_conds = dict(questions.get("conditions", {}))
    r_conds = dict(rules.get("conditions", {}))
    clash = set(q_conds) & set(r_conds)
    if clash:
        raise ValueError(f"conditions declared twice: {sorted(clash)}")
    rules_body = {k: v for k, v in rules.items() if k != "conditions"}
    return FlowDefinition.model_validate(
        {"questions": questions.get("questions", []), "conditions": q_conds | r_conds, "rules": rules_body}
    )


@cache
def load_definition() -> FlowDefinition:
    """The flow shipped with the package, loaded once per process."""
    return build_definition(_read("questions.toml"), _read("rules.toml"))
