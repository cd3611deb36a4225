"""The README's Mermaid diagram is the one generated from the flow data (`medlegal flow diagram`)."""

from __future__ import annotations

import re
from pathlib import Path

from bot.cli_flow import REGENERATE
from flows.conditions import parse_condition
from flows.definition import load_definition
from flows.diagram import PATHS, condition_text, mermaid
from tests.cli_runner import runner

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"<!-- flow-diagram:start -->\n```mermaid\n(.*?)```\n<!-- flow-diagram:end -->", re.DOTALL)


def test_readme_diagram_is_the_generated_one() -> None:
    match = _BLOCK.search(README.read_text(encoding="utf-8"))
    assert match is not None, "README.md lacks the flow-diagram block (<!-- flow-diagram:start --> ... end)"
    assert match.group(1) == mermaid(), (
        f"README.md's decision-flow diagram differs from the flow data: regenerate it with `{REGENERATE}` "
        "and paste the output between the flow-diagram markers"
    )


def test_diagram_draws_every_question_skip_rule_and_path() -> None:
    text = mermaid()
    defn = load_definition()
    for q in defn.questions:
        assert f"q_{q.key}[" in text
        if q.when is not None:
            assert f"c_{q.key} -- yes --> q_{q.key}" in text and f"c_{q.key} -- no -->" in text
    for path in PATHS:
        assert f"p_{path}([" in text and defn.rules.paths[path].title in text
    assert "non_physician (if not md_or_do)" in text
    assert text.startswith("flowchart TD\n") and "<" not in text.replace("<br/>", "")


def test_conditions_read_like_the_data() -> None:
    cond = parse_condition({"all": ["qme_possible", {"any": [{"key": "stage", "not_in": ["retired"]}, {"not": "x"}]}]})
    assert condition_text(cond) == "qme_possible and (stage not in retired or not x)"


def test_cli_prints_the_diagram(tmp_path: Path) -> None:
    result = runner(tmp_path)("flow", "diagram")
    assert result.returncode == 0, result.stderr
    assert result.stdout == mermaid()
