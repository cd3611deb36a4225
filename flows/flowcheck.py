"""`medlegal flow check`: prove from the data that every question, option and path can actually be reached.

The loader (`flows.definition`) already rejects names and answers that do not exist. This goes further and
walks the answer space with the real engine and recommender: every question is asked for some answers, every
option can be chosen and leads on to a recommendation, no reachable question is left without a choice, and
each of the four paths is the outcome of some answers.

The space is large (millions of answer combinations), so the walk merges states that can no longer differ:
options that every condition treats alike are explored once, and two partial answer sets are the same state
when every condition either already has the same definite value on both (three-valued logic: a definite value
never changes as answers are added) or reads only answers both gave identically.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import combinations

from flows.conditions import AllOf, Answer, AnyOf, Condition, KeyIn, KeyNotIn, Not, Ref, referenced_keys
from flows.definition import FlowDefinition, Question, load_definition
from flows.engine import FlowEngine, FlowError, FlowState
from flows.recommend import Path, recommend


@dataclass
class FlowReport:
    questions: int = 0
    options: int = 0
    states: int = 0
    problems: list[str] = field(default_factory=list)
    paths: dict[str, dict[str, Answer]] = field(default_factory=dict)
    """Each reachable path with one set of answers that leads to it."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        found = ", ".join(p.value for p in Path if p.value in self.paths)
        return (
            f"flow ok: {self.questions} questions and {self.options} options all reachable, "
            f"every path reachable ({found}); {self.states} distinct answer states explored"
        )


def _atoms(cond: Condition, named: Mapping[str, Condition]) -> Iterator[KeyIn | KeyNotIn]:
    if isinstance(cond, KeyIn | KeyNotIn):
        yield cond
    elif isinstance(cond, AllOf | AnyOf):
        for part in cond.parts:
            yield from _atoms(part, named)
    elif isinstance(cond, Not):
        yield from _atoms(cond.part, named)
    elif isinstance(cond, Ref):
        yield from _atoms(named[cond.name], named)


class _Walker:
    def __init__(self, defn: FlowDefinition) -> None:
        self.defn = defn
        self.engine = FlowEngine(defn)
        rules = defn.rules
        # Skip rules and option conditions, each with the position from which it no longer matters.
        self.position = {q.key: i for i, q in enumerate(defn.questions)}
        self.skips: list[tuple[int, Condition]] = [(i, q.when) for i, q in enumerate(defn.questions) if q.when]
        self.skips += [(i + 1, o.when) for i, q in enumerate(defn.questions) for o in q.options if o.when]
        singles = [rules.bridge.when]
        if defn.has_question("hours"):  # the recommender reads the hours answer directly (decision.mix_hybrid_hours)
            singles.append(KeyIn("hours", frozenset(rules.decision.mix_hybrid_hours)))
        # Groups of conditions and how the recommender combines each: it only sees the combination.
        self.groups: list[tuple[str, list[Condition]]] = [
            ("each", singles),
            ("any", [r.when for r in rules.not_yet]),
            ("all", [r.when for r in rules.qme_requires]),
            ("all", [r.when for r in rules.ime_requires]),
            ("scores", [r.when for r in rules.scores]),
        ]
        every = [c for _, c in self.skips] + [c for _, conds in self.groups for c in conds]
        self.atoms: dict[str, list[frozenset[str]]] = {}
        for atom in (a for c in every for a in _atoms(c, defn.conditions)):
            self.atoms.setdefault(atom.key, []).append(atom.values)
        self.seen: dict[object, bool] = {}
        self.asked: set[str] = set()
        self.chosen: set[tuple[str, str]] = set()
        self.paths: dict[str, dict[str, Answer]] = {}
        self.stuck: dict[str, str] = {}
        """One problem per question, with the first answers that show it."""

    def signature(self, key: str, value: Answer) -> tuple[bool, ...]:
        """How every condition sees an answer: the values that no atom tells apart behave the same."""
        parts = set(value) if isinstance(value, tuple) else {value}
        return tuple(bool(parts & values) for values in self.atoms.get(key, []))

    def state_key(self, state: FlowState) -> object:
        """What the rest of the walk can depend on (see the module docstring)."""
        answers = state.answers
        here = len(self.position) if state.current is None else self.position[state.current]
        skips = [(c, self.defn.judge(c, answers)) for until, c in self.skips if here < until]
        groups = [(how, [(c, self.defn.judge(c, answers)) for c in conds]) for how, conds in self.groups]
        # Not yet, or only one path left possible: scores and tie-breaks no longer matter.
        decided = any(
            (how == "any" and any(v is True for _, v in judged))
            or (how == "all" and any(v is False for _, v in judged))
            for how, judged in groups
        )
        parts: list[object] = [state.current, tuple(v for _, v in skips)]
        relevant = list(skips)
        for how, judged in groups:
            values = [v for _, v in judged]
            undecided = tuple(v is None for v in values)
            if how in {"each", "scores"} and decided:
                parts.append(None)
                continue
            relevant += judged
            if how == "each":
                parts.append(tuple(values))
            elif how == "any":
                parts.append((True in values, undecided))
            elif how == "all":
                parts.append((False in values, undecided))
            else:  # scores: only the lead of one side over the other and the flags matter
                fired = [r for r, v in zip(self.defn.rules.scores, values, strict=True) if v is True]
                lead = sum(r.qme - r.ime for r in fired)
                parts.append((lead, frozenset(r.flag for r in fired if r.flag), undecided))
        open_keys: set[str] = set()
        for cond, value in relevant:
            if value is None:
                open_keys |= referenced_keys(cond, self.defn.conditions)
        parts.append(tuple(sorted((k, self.signature(k, answers[k])) for k in open_keys if k in answers)))
        return tuple(parts)

    def choices(self, q: Question, state: FlowState) -> list[tuple[Answer, list[str]]]:
        """One answer per class of equivalent choices, with the options it stands for."""
        visible = self.engine.visible_options(q, state.answers)
        classes: dict[tuple[bool, ...], list[str]] = {}
        for option in visible:
            classes.setdefault(self.signature(q.key, option.key), []).append(option.key)
        if not q.multi:
            return [(keys[0], keys) for keys in classes.values()]
        exclusive = set(q.exclusive)
        out: list[tuple[Answer, list[str]]] = []
        for keys in classes.values():  # exclusive options stand alone
            for key in keys:
                if key in exclusive:
                    out.append(((key,), [key]))
        shared = [[k for k in keys if k not in exclusive] for keys in classes.values()]
        shared = [keys for keys in shared if keys]
        for size in range(1, len(shared) + 1):
            for combo in combinations(shared, size):
                picked = tuple(o.key for o in q.options if o.key in {keys[0] for keys in combo})
                out.append((picked, [k for keys in combo for k in keys]))
        return out

    def walk(self, state: FlowState) -> bool:
        """Explore from a state; True when some recommendation is reachable from it."""
        key = self.state_key(state)
        if key in self.seen:
            return self.seen[key]  # explored already (a dead end there was reported then)
        self.seen[key] = False
        if state.complete:
            path = recommend(state.answers, self.defn).path.value
            self.paths.setdefault(path, dict(state.answers))
            self.seen[key] = True
            return True
        q = self.engine.current_question(state)
        assert q is not None
        self.asked.add(q.key)
        options = self.choices(q, state)
        if not options:
            self.stuck.setdefault(
                q.key, f"question {q.key} can be reached with no option to choose (e.g. after {_show(state)})"
            )
            return False
        reached = False
        for value, stands_for in options:
            try:
                moved = self.engine.answer(state, q.key, value)
            except FlowError as exc:
                self.stuck.setdefault(q.key, f"question {q.key}: the engine refuses {value!r} ({exc})")
                continue
            if self.walk(moved):
                reached = True
                self.chosen.update((q.key, o) for o in stands_for)
        self.seen[key] = reached
        return reached


def _show(state: FlowState) -> str:
    return ", ".join(f"{k}={'+'.join(v) if isinstance(v, tuple) else v}" for k, v in state.answers.items()) or "start"


def check_flow(defn: FlowDefinition | None = None) -> FlowReport:
    defn = defn or load_definition()
    walker = _Walker(defn)
    walker.walk(walker.engine.start())
    report = FlowReport(
        questions=len(defn.questions),
        options=sum(len(q.options) for q in defn.questions),
        states=len(walker.seen),
        paths=walker.paths,
    )
    report.problems += list(walker.stuck.values())
    for q in defn.questions:
        if q.key not in walker.asked:
            report.problems.append(f"question {q.key} is never asked: its skip rule is false for every answer")
            continue
        for option in q.options:
            if (q.key, option.key) not in walker.chosen:
                report.problems.append(
                    f"option {q.key}.{option.key} leads nowhere: no answers show it and reach a recommendation"
                )
    for path in Path:
        if path.value not in walker.paths:
            report.problems.append(f"path {path.value} is never recommended, whatever the answers")
    return report
