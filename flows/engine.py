"""The decision-flow engine: a pure state machine over the questions declared in `flows/data`.

A `FlowState` is an immutable value; every move (answer, toggle, back, edit, restart) returns a new one or
raises a `FlowError` that says, in a physician's words, why the move was refused. Nothing here knows about
Telegram, a console or a database.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Generic, TypeVar

from flows.conditions import Answer, evaluate
from flows.definition import FlowDefinition, Option, Question, load_definition
from flows.recommend import Recommendation, recommend

CACHE_SIZE = 4096
"""Answer sets whose question statuses, pruned answers and recommendation are kept (about a kilobyte each)."""


AnswerSet = frozenset[tuple[str, Answer]] | None
V = TypeVar("V")


def _answer_set(answers: Mapping[str, Answer]) -> AnswerSet:
    """A hashable key for a set of answers; None when a value is not hashable (a list), which is not cached."""
    try:
        return frozenset(answers.items())
    except TypeError:
        return None


class _Recent(Generic[V]):
    """The results of a pure function of an answer set for the most recent sets (bounded, least recent out)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[frozenset[tuple[str, Answer]], V] = OrderedDict()

    def get(self, key: AnswerSet) -> V | None:
        if key is None:
            return None
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: AnswerSet, value: V) -> None:
        if key is None:
            return
        self._items[key] = value
        if len(self._items) > self.size:
            self._items.popitem(last=False)


class FlowError(Exception):
    """A move the engine refuses; the message is safe to show to the physician."""


class StaleAnswer(FlowError):
    """An answer for a question that is not the one being asked (an old button, a duplicate update)."""


class InvalidAnswer(FlowError):
    """An option that does not exist or does not apply, or an incomplete multi-choice selection."""


class CannotGoBack(FlowError):
    pass


class NotEditable(FlowError):
    pass


def _freeze(answers: Mapping[str, Answer]) -> Mapping[str, Answer]:
    return MappingProxyType(dict(answers))


@dataclass(frozen=True)
class FlowState:
    """Where one physician stands: their answers, the question on screen, and an unconfirmed multi-selection.

    `current` is None once every applicable question is answered (the summary and recommendation are shown).
    `editing` means the physician came from the summary to change one answer and returns there afterwards.
    """

    answers: Mapping[str, Answer] = field(default_factory=lambda: _freeze({}))
    current: str | None = None
    editing: bool = False
    draft: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.current is None


@dataclass(frozen=True)
class Progress:
    step: int
    total: int


class FlowEngine:
    """Moves a `FlowState` through a `FlowDefinition`."""

    def __init__(self, definition: FlowDefinition | None = None) -> None:
        self.defn = definition or load_definition()
        self._order = {q.key: i for i, q in enumerate(self.defn.questions)}
        self._statuses: _Recent[Mapping[str, bool | None]] = _Recent()
        self._pruned: _Recent[Mapping[str, Answer]] = _Recent()
        self._recommended: _Recent[Recommendation] = _Recent()

    # -- reading ---------------------------------------------------------------------------------------
    def statuses(self, answers: Mapping[str, Answer]) -> Mapping[str, bool | None]:
        """For each question: True asked, False skipped, None depends on answers not given yet.

        Every move and screen asks this several times for the same answers, and evaluating every question's
        condition tree was the largest part of a step's CPU; answers are immutable values, so the result is kept
        for the most recent answer sets.
        """
        key = _answer_set(answers)
        cached = self._statuses.get(key)
        if cached is None:
            cached = MappingProxyType(self._evaluate_statuses(answers))
            self._statuses.put(key, cached)
        return cached

    def recommend(self, answers: Mapping[str, Answer]) -> Recommendation:
        """`flows.recommend.recommend` for these answers, kept like the statuses: the same answers, the same path."""
        key = _answer_set(answers)
        cached = self._recommended.get(key)
        if cached is None:
            cached = recommend(answers, self.defn)
            self._recommended.put(key, cached)
        return cached

    def _evaluate_statuses(self, answers: Mapping[str, Answer]) -> dict[str, bool | None]:
        status: dict[str, bool | None] = {}

        def unknown(key: str) -> bool:
            return key not in answers and status.get(key, True) is not False

        for q in self.defn.questions:
            status[q.key] = True if q.when is None else evaluate(q.when, answers, self.defn.conditions, unknown)
        return status

    def applicable(self, answers: Mapping[str, Answer]) -> list[Question]:
        """Questions that apply given the answers so far (those still undecided count as applying)."""
        status = self.statuses(answers)
        return [q for q in self.defn.questions if status[q.key] is not False]

    def visible_options(self, question: Question, answers: Mapping[str, Answer]) -> tuple[Option, ...]:
        return tuple(o for o in question.options if o.when is None or self.defn.holds(o.when, answers))

    def progress(self, state: FlowState) -> Progress:
        questions = self.applicable(state.answers)
        total = len(questions)
        if state.current is None:
            return Progress(total, total)
        keys = [q.key for q in questions]
        return Progress(keys.index(state.current) + 1 if state.current in keys else 1, total)

    def current_question(self, state: FlowState) -> Question | None:
        return None if state.current is None else self.defn.question(state.current)

    def summary(self, state: FlowState) -> list[tuple[Question, str]]:
        """The answered, applicable questions with the physician's answers in words, in flow order."""
        return [(q, q.label_of(state.answers[q.key])) for q in self.applicable(state.answers) if q.key in state.answers]

    def is_valid(self, state: FlowState) -> bool:
        """The invariants every stored state must keep; used by tests and when loading from the database."""
        status = self.statuses(state.answers)
        for key, value in state.answers.items():
            if key not in status or status[key] is False:
                return False
            q = self.defn.question(key)
            if not self._valid_value(q, value, state.answers):
                return False
        if state.current is None:
            return (
                not state.editing
                and not state.draft
                and all(q.key in state.answers for q in self.defn.questions if status[q.key] is True)
            )
        if status.get(state.current) is not True:
            return False
        q = self.defn.question(state.current)
        if state.draft and not q.multi:
            return False
        options = {o.key for o in self.visible_options(q, state.answers)}
        return set(state.draft) <= options

    # -- moves -----------------------------------------------------------------------------------------
    def start(self) -> FlowState:
        first = self._next_after(None, {})
        return FlowState(current=first)

    def answer(self, state: FlowState, key: str, value: Answer) -> FlowState:
        """Record an answer to the question on screen and move on."""
        q = self._expect_current(state, key)
        if q.multi:
            value = self._normalise_multi(q, value)
        elif not isinstance(value, str):
            raise InvalidAnswer("Please choose one option.")
        if not self._valid_value(q, value, state.answers):
            raise InvalidAnswer("That option is not one of the choices for this question.")
        answers = self.prune({**state.answers, key: value})
        if state.editing:
            nxt = self.first_unanswered(answers)
        else:
            nxt = self._next_after(key, answers) or self.first_unanswered(answers)
        return self.arrive(FlowState(answers=_freeze(answers), current=nxt, editing=state.editing and nxt is not None))

    def toggle(self, state: FlowState, key: str, option: str) -> FlowState:
        """Flip one choice of a multi-choice question without confirming it yet."""
        q = self._expect_current(state, key)
        if not q.multi:
            raise InvalidAnswer("This question takes a single choice.")
        if option not in {o.key for o in self.visible_options(q, state.answers)}:
            raise InvalidAnswer("That option is not one of the choices for this question.")
        chosen = set(state.draft)
        if option in chosen:
            chosen.discard(option)
        elif option in q.exclusive:
            chosen = {option}
        else:
            chosen = (chosen - set(q.exclusive)) | {option}
        ordered = tuple(o.key for o in q.options if o.key in chosen)
        return replace(state, draft=ordered)

    def confirm(self, state: FlowState, key: str) -> FlowState:
        """Confirm the toggled choices of the multi-choice question on screen."""
        q = self._expect_current(state, key)
        if not q.multi:
            raise InvalidAnswer("This question takes a single choice.")
        if not state.draft:
            raise InvalidAnswer("Please pick at least one option, then tap Done.")
        return self.answer(state, key, state.draft)

    def back(self, state: FlowState) -> FlowState:
        """Return to the previous applicable question, keeping its answer to confirm or change."""
        if state.current is None:
            raise CannotGoBack("You're at the summary: tap an answer to change it.")
        if state.editing and self.first_unanswered(state.answers) is None:
            return FlowState(answers=state.answers)
        keys = [q.key for q in self.applicable(state.answers)]
        index = keys.index(state.current)
        if index == 0:
            raise CannotGoBack("This is the first question.")
        return self.arrive(FlowState(answers=state.answers, current=keys[index - 1], editing=state.editing))

    def edit(self, state: FlowState, key: str) -> FlowState:
        """From the summary, reopen one answered question; the rest stays as it is."""
        if not self.defn.has_question(key) or key not in state.answers:
            raise NotEditable("That answer can't be changed from here.")
        if self.statuses(state.answers).get(key) is not True:
            raise NotEditable("That question no longer applies to your answers.")
        return self.arrive(FlowState(answers=state.answers, current=key, editing=True))

    def restart(self) -> FlowState:
        return self.start()

    # -- helpers ---------------------------------------------------------------------------------------
    def _expect_current(self, state: FlowState, key: str) -> Question:
        if state.current is None or key != state.current:
            raise StaleAnswer("That button belongs to an earlier question.")
        return self.defn.question(key)

    def _normalise_multi(self, q: Question, value: Answer) -> tuple[str, ...]:
        chosen = set((value,) if isinstance(value, str) else value)
        if not chosen:
            raise InvalidAnswer("Please pick at least one option, then tap Done.")
        if not chosen <= {o.key for o in q.options}:
            raise InvalidAnswer("That option is not one of the choices for this question.")
        if len(chosen) > 1 and chosen & set(q.exclusive):
            clash = q.label_of(tuple(sorted(chosen & set(q.exclusive))))
            raise InvalidAnswer(f"“{clash}” can't be combined with other choices.")
        return tuple(o.key for o in q.options if o.key in chosen)

    def _valid_value(self, q: Question, value: Answer, answers: Mapping[str, Answer]) -> bool:
        allowed = {o.key for o in self.visible_options(q, answers)}
        if q.multi:
            if not isinstance(value, tuple) or not value or len(set(value)) != len(value):
                return False
            return set(value) <= allowed and (len(value) == 1 or not set(value) & set(q.exclusive))
        return isinstance(value, str) and value in allowed

    def prune(self, answers: Mapping[str, Answer]) -> dict[str, Answer]:
        """Drop answers to questions that no longer apply, or whose chosen option no longer shows.

        An answer whose question is undecided (it depends on a question that has just become applicable and
        is not answered yet) is kept: the physician only changed one answer.
        """
        key = _answer_set(answers)
        cached = self._pruned.get(key)
        if cached is None:
            cached = MappingProxyType(self._prune(answers))
            self._pruned.put(key, cached)
        return dict(cached)

    def _prune(self, answers: Mapping[str, Answer]) -> dict[str, Answer]:
        kept = dict(answers)
        changed = True
        while changed:
            changed = False
            status = self.statuses(kept)
            for key in list(kept):
                q = self.defn.question(key)
                if status[key] is False or not self._valid_value(q, kept[key], kept):
                    del kept[key]
                    changed = True
        return kept

    def _next_after(self, key: str | None, answers: Mapping[str, Answer]) -> str | None:
        status = self.statuses(answers)
        start = 0 if key is None else self._order[key] + 1
        for q in self.defn.questions[start:]:
            if status[q.key] is True:
                return q.key
        return None

    def first_unanswered(self, answers: Mapping[str, Answer]) -> str | None:
        status = self.statuses(answers)
        return next((q.key for q in self.defn.questions if status[q.key] is True and q.key not in answers), None)

    def arrive(self, state: FlowState) -> FlowState:
        """Entering a question pre-selects its earlier answer for multi-choice questions."""
        if state.current is None:
            return replace(state, draft=(), editing=False)
        q = self.defn.question(state.current)
        previous = state.answers.get(q.key)
        draft = previous if q.multi and isinstance(previous, tuple) else ()
        return replace(state, draft=draft)


def restore(
    engine: FlowEngine,
    answers: Mapping[str, Answer | list[str]],
    current: str | None,
    editing: bool = False,
    draft: tuple[str, ...] | list[str] = (),
) -> FlowState:
    """Rebuild a state from stored values, repairing anything the current flow data no longer allows.

    Stored sessions outlive deployments: a renamed option or a removed question must not wedge a physician,
    so unknown answers are dropped and the position falls back to the first unanswered question.
    """
    known: dict[str, Answer] = {}
    for key, value in answers.items():
        if not engine.defn.has_question(key):
            continue
        known[key] = tuple(value) if isinstance(value, list | tuple) else value
    pruned = engine.prune(known)
    status = engine.statuses(pruned)
    if current is not None and status.get(current) is True:
        state = FlowState(answers=_freeze(pruned), current=current, editing=editing, draft=tuple(draft))
        if engine.is_valid(state):
            return state
        return engine.arrive(FlowState(answers=_freeze(pruned), current=current, editing=editing))
    nxt = engine.first_unanswered(pruned)
    return engine.arrive(FlowState(answers=_freeze(pruned), current=nxt, editing=editing and nxt is not None))
