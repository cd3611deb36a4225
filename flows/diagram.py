"""A Mermaid flowchart of the decision flow, generated from the flow data itself (`medlegal flow diagram`).

The questions in order, each skip rule as a yes/no diamond, the named conditions, and how the recommender
reaches the four paths from the rules file. The README embeds the output; a test keeps the two identical, so
the picture can never drift from the data.
"""

from __future__ import annotations

from flows.conditions import AllOf, AnyOf, Condition, KeyIn, KeyNotIn, Not, Ref
from flows.definition import FlowDefinition, Question, load_definition

PATHS = ("qme", "ime", "hybrid", "not_yet")


def condition_text(cond: Condition, top: bool = True) -> str:
    """A condition in words a reader of the data files recognises: `profession in md, do`, `not in_training`."""
    if isinstance(cond, KeyIn | KeyNotIn):
        verb = "in" if isinstance(cond, KeyIn) else "not in"
        return f"{cond.key} {verb} {', '.join(sorted(cond.values))}"
    if isinstance(cond, Ref):
        return cond.name
    if isinstance(cond, Not):
        return f"not {condition_text(cond.part, top=False)}"
    joiner = " and " if isinstance(cond, AllOf) else " or "
    assert isinstance(cond, AllOf | AnyOf)
    text = joiner.join(condition_text(p, top=False) for p in cond.parts)
    return text if top else f"({text})"


def _label(*lines: str) -> str:
    """A quoted Mermaid label; quotes and angle brackets become Mermaid entities."""
    safe = [line.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;") for line in lines]
    return '"' + "<br/>".join(safe) + '"'


def _question_node(q: Question) -> str:
    options = []
    for o in q.options:
        options.append(f"{o.key} (if {condition_text(o.when)})" if o.when is not None else o.key)
    kind = "multi-choice" if q.multi else "one choice"
    return f"  q_{q.key}[{_label(f'{q.title} ({q.key}, {kind})', ' · '.join(options))}]"


def mermaid(defn: FlowDefinition | None = None) -> str:
    """The whole diagram as Mermaid source, ending with a newline."""
    defn = defn or load_definition()
    rules = defn.rules
    out = ["flowchart TD", '  start(["/start"])']
    entries: list[str] = []
    for q in defn.questions:
        out.append(_question_node(q))
        if q.when is not None:
            out.append(f"  c_{q.key}{{{_label(f'ask {q.key} if', condition_text(q.when))}}}")
            entries.append(f"c_{q.key}")
        else:
            entries.append(f"q_{q.key}")
    entries.append("nyrule")
    out.append(f"  start --> {entries[0]}")
    for index, q in enumerate(defn.questions):
        following = entries[index + 1]
        if q.when is not None:
            out.append(f"  c_{q.key} -- yes --> q_{q.key}")
            out.append(f"  c_{q.key} -- no --> {following}")
        out.append(f"  q_{q.key} --> {following}")

    not_yet = [condition_text(r.when) for r in rules.not_yet]
    out.append(f"  nyrule{{{_label('not-yet rule holds?', *not_yet)}}}")
    out.append("  nyrule -- yes --> p_not_yet")
    out.append("  nyrule -- no --> req")
    req_lines = ["which paths are possible?", "QME needs all of:"]
    req_lines += [f"• {condition_text(r.when)}" for r in rules.qme_requires]
    req_lines += ["IME needs all of:", *(f"• {condition_text(r.when)}" for r in rules.ime_requires)]
    out.append(f"  req{{{_label(*req_lines)}}}")
    out.append("  req -- neither --> p_not_yet")
    out.append("  req -- QME only --> p_qme")
    out.append("  req -- IME only --> p_ime")
    out.append("  req -- both --> score")
    score_lines = ["score QME vs IME:"]
    for s in rules.scores:
        weights = " ".join(f"{side} +{points}" for side, points in (("QME", s.qme), ("IME", s.ime)) if points)
        flag = f" (flag {s.flag})" if s.flag else ""
        score_lines.append(f"• {condition_text(s.when)}: {weights}{flag}")
    out.append(f"  score[{_label(*score_lines)}]")
    d = rules.decision
    hybrid = f"scores within {d.hybrid_margin}, or flag mix and hours in {', '.join(d.mix_hybrid_hours)}"
    out.append(f"  score --> lead{{{_label('which leads?')}}}")
    out.append(f"  lead -- {_label(hybrid)} --> p_hybrid")
    out.append("  lead -- QME leads --> bridge")
    out.append("  lead -- IME leads --> p_ime")
    out.append(f"  bridge{{{_label('bridge:', condition_text(rules.bridge.when))}}}")
    out.append("  bridge -- yes --> p_hybrid")
    out.append("  bridge -- no --> p_qme")
    for path in PATHS:
        out.append(f"  p_{path}([{_label(f'{path}: {rules.paths[path].title}')}])")
    if defn.conditions:
        out.append('  subgraph named["named conditions"]')
        out.append("    direction LR")
        for name, cond in defn.conditions.items():
            out.append(f"    n_{name}[{_label(f'{name} = {condition_text(cond)}')}]")
        out.append("  end")
    out.append("  classDef path fill:#e8f4ea,stroke:#2e7d32")
    out.append(f"  class {','.join(f'p_{p}' for p in PATHS)} path")
    return "\n".join(out) + "\n"
