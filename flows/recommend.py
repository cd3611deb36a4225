"""Choose QME, IME, hybrid or not yet from a physician's answers, with the reasons in their own words.

The rules (eligibility, weights, thresholds, wording) are data in `flows/data/rules.toml`; this module only
applies them in the order shared/domain/decision.md gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from flows.conditions import Answer
from flows.definition import FlowDefinition, Requirement, ScoreRule, load_definition


class Path(StrEnum):
    QME = "qme"
    IME = "ime"
    HYBRID = "hybrid"
    NOT_YET = "not_yet"


@dataclass(frozen=True)
class Recommendation:
    path: Path
    reasons: tuple[str, ...]
    """Why this path, strongest first, in the physician's words."""
    blockers: tuple[str, ...] = ()
    """What rules a path out, or what would change a "not yet"."""
    qme_score: int = 0
    ime_score: int = 0
    qme_possible: bool = False
    ime_possible: bool = False
    ruled_out: Path | None = None
    """The path the blockers rule out, when only one path is possible."""

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path.value,
            "reasons": list(self.reasons),
            "blockers": list(self.blockers),
            "qme_score": self.qme_score,
            "ime_score": self.ime_score,
            "qme_possible": self.qme_possible,
            "ime_possible": self.ime_possible,
            "ruled_out": self.ruled_out.value if self.ruled_out else None,
        }


def _check(
    defn: FlowDefinition, reqs: tuple[Requirement, ...], answers: Mapping[str, Answer]
) -> tuple[bool, list[str], list[str]]:
    """(all requirements hold, reasons met, reasons unmet).

    A requirement that reads a question the physician was never asked (it was skipped because another
    requirement already failed) is not met, but it is not reported either: they never said it.
    """
    ok = True
    met: list[str] = []
    unmet: list[str] = []
    for req in reqs:
        status = defn.judge(req.when, answers)
        ok = ok and status is True
        if status is True and req.met:
            met.append(defn.fill(req.met, answers))
        elif status is False:
            unmet.append(defn.fill(req.unmet, answers))
    return ok, met, unmet


def recommend(answers: Mapping[str, Answer], defn: FlowDefinition | None = None) -> Recommendation:
    defn = defn or load_definition()
    rules = defn.rules

    for rule in rules.not_yet:
        if defn.holds(rule.when, answers):
            return Recommendation(Path.NOT_YET, (defn.fill(rule.reason, answers),), (rule.change,))

    qme_ok, qme_met, qme_unmet = _check(defn, rules.qme_requires, answers)
    ime_ok, ime_met, ime_unmet = _check(defn, rules.ime_requires, answers)
    fired = [r for r in rules.scores if defn.holds(r.when, answers)]
    qme = sum(r.qme for r in fired)
    ime = sum(r.ime for r in fired)

    def scored(
        path: Path, reasons: tuple[str, ...], blockers: tuple[str, ...] = (), ruled_out: Path | None = None
    ) -> Recommendation:
        return Recommendation(path, reasons, blockers, qme, ime, qme_ok, ime_ok, ruled_out)

    if not qme_ok and not ime_ok:
        blockers = tuple(dict.fromkeys(qme_unmet + ime_unmet))
        return scored(Path.NOT_YET, blockers, blockers)
    if not ime_ok:
        why = (*qme_met, *_reasons(defn, fired, answers, "qme"))
        return scored(Path.QME, why, tuple(ime_unmet), ruled_out=Path.IME)
    if not qme_ok:
        why = (*ime_met, *_reasons(defn, fired, answers, "ime"))
        return scored(Path.IME, why, tuple(qme_unmet), ruled_out=Path.QME)

    flags = {r.flag for r in fired if r.flag}
    hours = answers.get("hours")
    if ("mix" in flags and hours in rules.decision.mix_hybrid_hours) or abs(qme - ime) <= rules.decision.hybrid_margin:
        return scored(Path.HYBRID, _reasons(defn, fired, answers, "both"))
    if qme > ime:
        if defn.holds(rules.bridge.when, answers):
            bridge = defn.fill(rules.bridge.reason, answers)
            return scored(Path.HYBRID, (bridge, *_reasons(defn, fired, answers, "qme")))
        return scored(Path.QME, _reasons(defn, fired, answers, "qme"))
    return scored(Path.IME, _reasons(defn, fired, answers, "ime"))


def _reasons(defn: FlowDefinition, fired: list[ScoreRule], answers: Mapping[str, Answer], side: str) -> tuple[str, ...]:
    """The answers that weighed most toward the chosen side, strongest first."""

    def weight(rule: ScoreRule) -> int:
        if side == "qme":
            return rule.qme
        if side == "ime":
            return rule.ime
        return max(rule.qme, rule.ime)

    ranked = sorted((r for r in fired if weight(r) > 0), key=weight, reverse=True)
    return tuple(defn.fill(r.reason, answers) for r in ranked[: defn.rules.decision.max_reasons])
