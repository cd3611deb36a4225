"""A tiny condition language for skip rules and eligibility, read from the flow's data files.

Conditions are evaluated with three values: True, False, or None ("unknown"), because the progress marker
has to count questions whose skip rule depends on answers the physician has not given yet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

Answer = str | tuple[str, ...]
Tri = bool | None


@dataclass(frozen=True)
class KeyIn:
    """True when the answer (or, for a multi-choice answer, any selection) is one of `values`."""

    key: str
    values: frozenset[str]


@dataclass(frozen=True)
class KeyNotIn:
    """True when no part of the answer is one of `values`; an unasked question counts as not in."""

    key: str
    values: frozenset[str]


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    part: Condition


@dataclass(frozen=True)
class Ref:
    """A named condition declared once in the data file and reused."""

    name: str


Condition = Union[KeyIn, KeyNotIn, AllOf, AnyOf, Not, Ref]  # noqa: UP007 - recursive alias needs Union


def parse_condition(raw: Any) -> Condition:
    """Build a condition from its TOML form; raise ValueError with the offending piece on a mistake."""
    if isinstance(raw, KeyIn | KeyNotIn | AllOf | AnyOf | Not | Ref):
        return raw
    if isinstance(raw, str):
        return Ref(raw)
    if not isinstance(raw, Mapping):
        raise ValueError(f"a condition is a table or a name, not {raw!r}")
    keys = set(raw)
    if keys == {"key", "in"} or keys == {"key", "not_in"}:
        values = raw.get("in", raw.get("not_in"))
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise ValueError(f"'in'/'not_in' takes a non-empty list of option keys: {raw!r}")
        cls = KeyIn if "in" in keys else KeyNotIn
        return cls(str(raw["key"]), frozenset(values))
    if keys == {"all"} or keys == {"any"}:
        parts = raw.get("all", raw.get("any"))
        if not isinstance(parts, list) or not parts:
            raise ValueError(f"'all'/'any' takes a non-empty list of conditions: {raw!r}")
        parsed = tuple(parse_condition(p) for p in parts)
        return AllOf(parsed) if "all" in keys else AnyOf(parsed)
    if keys == {"not"}:
        return Not(parse_condition(raw["not"]))
    if keys == {"ref"}:
        return Ref(str(raw["ref"]))
    raise ValueError(f"unknown condition form {dict(raw)!r}: use key+in, key+not_in, all, any, not or ref")


def _parts(answer: Answer) -> tuple[str, ...]:
    return answer if isinstance(answer, tuple) else (answer,)


def evaluate(
    cond: Condition,
    answers: Mapping[str, Answer],
    named: Mapping[str, Condition],
    unknown: Callable[[str], bool] = lambda _key: False,
) -> Tri:
    """Three-valued evaluation: `unknown(key)` says a key may still be answered later."""
    if isinstance(cond, KeyIn | KeyNotIn):
        if cond.key not in answers:
            if unknown(cond.key):
                return None
            return isinstance(cond, KeyNotIn)
        hit = any(part in cond.values for part in _parts(answers[cond.key]))
        return hit if isinstance(cond, KeyIn) else not hit
    if isinstance(cond, AllOf):
        return _all(evaluate(p, answers, named, unknown) for p in cond.parts)
    if isinstance(cond, AnyOf):
        return _any(evaluate(p, answers, named, unknown) for p in cond.parts)
    if isinstance(cond, Not):
        inner = evaluate(cond.part, answers, named, unknown)
        return None if inner is None else not inner
    return evaluate(named[cond.name], answers, named, unknown)


def _all(values: Sequence[Tri] | Any) -> Tri:
    seen = list(values)
    if any(v is False for v in seen):
        return False
    return None if any(v is None for v in seen) else True


def _any(values: Sequence[Tri] | Any) -> Tri:
    seen = list(values)
    if any(v is True for v in seen):
        return True
    return None if any(v is None for v in seen) else False


def referenced_keys(cond: Condition, named: Mapping[str, Condition]) -> set[str]:
    """Every question key a condition reads, through named references; used by the flow check."""
    if isinstance(cond, KeyIn | KeyNotIn):
        return {cond.key}
    if isinstance(cond, AllOf | AnyOf):
        return set().union(*(referenced_keys(p, named) for p in cond.parts))
    if isinstance(cond, Not):
        return referenced_keys(cond.part, named)
    return referenced_keys(named[cond.name], named)


def referenced_values(cond: Condition, named: Mapping[str, Condition]) -> set[tuple[str, str]]:
    """Every (question key, option key) pair a condition names, so typos in data fail the load."""
    if isinstance(cond, KeyIn | KeyNotIn):
        return {(cond.key, v) for v in cond.values}
    if isinstance(cond, AllOf | AnyOf):
        return set().union(*(referenced_values(p, named) for p in cond.parts))
    if isinstance(cond, Not):
        return referenced_values(cond.part, named)
    return referenced_values(named[cond.name], named)


def referenced_names(cond: Condition) -> set[str]:
    if isinstance(cond, Ref):
        return {cond.name}
    if isinstance(cond, AllOf | AnyOf):
        return set().union(*(referenced_names(p) for p in cond.parts))
    if isinstance(cond, Not):
        return referenced_names(cond.part)
    return set()
