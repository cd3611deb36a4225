"""Property tests: no sequence of taps wedges the flow, and every finished flow gets a recommendation."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.conditions import Answer
from flows.engine import FlowEngine, FlowError, FlowState, restore
from flows.recommend import Path, recommend

ENGINE = FlowEngine()
KEYS = [q.key for q in ENGINE.defn.questions]
OPTION_KEYS = sorted({o.key for q in ENGINE.defn.questions for o in q.options})
JUNK = ["", "xx", "MD", "None", "CA", "non physician", "🙂"]
MOVES = ["answer"] * 12 + ["toggle", "confirm", "back"] * 2 + ["invalid", "stale", "edit", "restart"]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Each example already walks the whole flow, so fewer examples cover as much ground.
WALK_SETTINGS = settings(SETTINGS, max_examples=100)


def check(state: FlowState) -> None:
    assert ENGINE.is_valid(state), state
    progress = ENGINE.progress(state)
    assert 1 <= progress.step <= progress.total <= len(KEYS)
    if state.complete:
        assert progress.step == progress.total
        rec = recommend(state.answers)
        assert rec.path in set(Path)
        assert rec.reasons and all(r.strip() for r in rec.reasons)


def check_round_trip(state: FlowState) -> None:
    again = restore(ENGINE, dict(state.answers), state.current, state.editing, state.draft)
    assert again == state, "restoring a valid state changes nothing"


def valid_choice(data: st.DataObject, state: FlowState) -> Answer:
    """A choice the physician could make on the question on screen."""
    q = ENGINE.current_question(state)
    assert q is not None
    options = [o.key for o in ENGINE.visible_options(q, state.answers)]
    if not q.multi:
        return data.draw(st.sampled_from(options))
    plain = [o for o in options if o not in q.exclusive]
    only_exclusive: bool = data.draw(st.booleans())
    if q.exclusive and only_exclusive:
        return (data.draw(st.sampled_from(list(q.exclusive))),)
    return tuple(data.draw(st.lists(st.sampled_from(plain), min_size=1, max_size=4, unique=True)))


def move(data: st.DataObject, state: FlowState) -> FlowState:
    kind = data.draw(st.sampled_from(MOVES), label="move")
    on_screen = ENGINE.current_question(state)
    if kind == "answer":
        if on_screen is None:
            return ENGINE.answer(state, data.draw(st.sampled_from(KEYS)), "md")
        if on_screen.multi:
            options = [o.key for o in on_screen.options]
            picked = tuple(data.draw(st.lists(st.sampled_from(options), min_size=0, max_size=4)))
            return ENGINE.answer(state, on_screen.key, picked)
        return ENGINE.answer(state, on_screen.key, valid_choice(data, state))
    if kind == "invalid":
        key = state.current or data.draw(st.sampled_from(KEYS))
        junk: str = data.draw(st.sampled_from(JUNK + OPTION_KEYS))
        as_tuple: bool = data.draw(st.booleans())
        return ENGINE.answer(state, key, (junk,) if as_tuple else junk)
    if kind == "stale":
        key = data.draw(st.sampled_from(KEYS))
        return ENGINE.answer(state, key, data.draw(st.sampled_from(OPTION_KEYS)))
    if kind in ("toggle", "confirm"):
        on_screen_key: bool = data.draw(st.integers(0, 4)) > 0
        key = state.current if on_screen_key and state.current else data.draw(st.sampled_from(KEYS))
        if kind == "confirm":
            return ENGINE.confirm(state, key)
        return ENGINE.toggle(state, key, data.draw(st.sampled_from([*OPTION_KEYS, "xx"])))
    if kind == "back":
        return ENGINE.back(state)
    if kind == "edit":
        return ENGINE.edit(state, data.draw(st.sampled_from([*KEYS, "gone"])))
    return ENGINE.restart()


@SETTINGS
@given(st.data())
def test_any_sequence_of_moves_keeps_the_state_valid(data: st.DataObject) -> None:
    state = ENGINE.start()
    check(state)
    for _ in range(data.draw(st.integers(1, 40), label="moves")):
        with contextlib.suppress(FlowError):
            state = move(data, state)
        check(state)
    check_round_trip(state)


@WALK_SETTINGS
@given(st.data())
def test_answering_through_always_completes_and_recommends(data: st.DataObject) -> None:
    """Valid answers finish the flow in at most one step per question, with edits and backs in between."""
    state = ENGINE.start()
    for _ in KEYS:
        state = ENGINE.answer(state, state.current or "", valid_choice(data, state))
        check(state)
        if state.complete:
            break
    assert state.complete
    for _ in range(data.draw(st.integers(0, 3), label="edits")):
        key = data.draw(st.sampled_from(sorted(state.answers)))
        state = ENGINE.edit(state, key)
        if data.draw(st.booleans()):
            state = ENGINE.back(state)
            assert state.complete
        for _ in KEYS:
            if state.complete:
                break
            state = ENGINE.answer(state, state.current or "", valid_choice(data, state))
            check(state)
        assert state.complete
    check_round_trip(state)


def test_completion_is_reached_by_the_random_moves_too() -> None:
    """Guard for the first property: the move mix must reach the summary often enough to test it."""
    reached: list[bool] = []

    @settings(max_examples=25, deadline=None, derandomize=True, database=None)
    @given(st.data())
    def walk(data: st.DataObject) -> None:
        state = ENGINE.start()
        for _ in range(60):
            with contextlib.suppress(FlowError):
                state = move(data, state)
            if state.complete:
                reached.append(True)
                return

    walk()
    assert len(reached) >= 3


STORED_VALUE = st.one_of(
    st.sampled_from(OPTION_KEYS + JUNK),
    st.lists(st.sampled_from(OPTION_KEYS + JUNK), max_size=4),
)


@SETTINGS
@given(
    answers=st.dictionaries(st.sampled_from([*KEYS, "old_question"]), STORED_VALUE, max_size=len(KEYS) + 1),
    current=st.one_of(st.none(), st.sampled_from([*KEYS, "old_question"])),
    editing=st.booleans(),
    draft=st.lists(st.sampled_from(OPTION_KEYS + JUNK), max_size=4),
)
def test_restore_repairs_any_stored_state(
    answers: dict[str, Answer | list[str]], current: str | None, editing: bool, draft: list[str]
) -> None:
    state = restore(ENGINE, answers, current, editing, draft)
    check(state)
    assert set(state.answers) <= set(answers) - {"old_question"}
    for key, value in state.answers.items():
        stored = answers[key]
        assert value == (tuple(stored) if isinstance(stored, list) else stored)


ANY_ANSWERS = st.dictionaries(
    st.sampled_from(KEYS),
    st.one_of(
        st.sampled_from(OPTION_KEYS + JUNK),
        st.lists(st.sampled_from(OPTION_KEYS), min_size=1, max_size=3, unique=True).map(tuple),
    ),
    max_size=len(KEYS),
)


@SETTINGS
@given(st.lists(ANY_ANSWERS, min_size=1, max_size=6))
def test_kept_statuses_and_pruned_answers_equal_a_fresh_evaluation(sets: list[dict[str, Answer]]) -> None:
    """The engine keeps statuses, pruned answers and recommendations per answer set: a kept result is the fresh
    one, and a caller changing what it got back changes nothing kept."""
    engine = FlowEngine(ENGINE.defn)
    fresh = FlowEngine(ENGINE.defn)
    for answers in sets + sets:  # the second round comes from what was kept
        assert dict(engine.statuses(answers)) == fresh._evaluate_statuses(answers)
        pruned = engine.prune(answers)
        assert pruned == fresh._prune(answers)
        pruned["profession"] = "changed by the caller"
        assert engine.prune(answers) == fresh._prune(answers)
        assert engine.recommend(answers) == recommend(answers, ENGINE.defn)
